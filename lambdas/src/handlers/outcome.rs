//! What a handler returns: an [`Outcome`] (done, or rejected and not to be
//! retried) or a [`HandlerError`] (Lambda retries when retryable), and the
//! logging constructors the handlers build them with.

use rules::contracts::{ContractError, Contracted};
use rules::functions::Function;

use crate::ports::{Operation, PortError};

/// What a handler did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The event was acted on; `summary` says how (for the log and tests).
    Done {
        /// What happened.
        summary: String,
    },
    /// The event was refused and changed no state (except idempotent
    /// cleanup a closed rotation still owed); not to be retried.
    Rejected {
        /// A stable snake_case code.
        kind: &'static str,
        /// Why, for the log.
        reason: String,
    },
}

impl Outcome {
    /// Whether this is [`Outcome::Rejected`].
    pub fn is_rejected(&self) -> bool {
        matches!(self, Self::Rejected { .. })
    }

    /// The rejection kind, if rejected.
    pub fn rejection_kind(&self) -> Option<&'static str> {
        match self {
            Self::Rejected { kind, .. } => Some(kind),
            Self::Done { .. } => None,
        }
    }
}

/// Why a handler failed; Lambda retries the invocation when
/// [`HandlerError::is_retryable`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// A port call failed.
    #[error("{function}: {source}")]
    Port {
        /// The handler.
        function: &'static str,
        /// The port error.
        source: PortError,
    },
    /// The rotation row kept changing under the handler.
    #[error("{function}: rotation {rotation_id} changed concurrently {attempts} times")]
    Contended {
        /// The handler.
        function: &'static str,
        /// The rotation.
        rotation_id: String,
        /// How many times the conditional write failed.
        attempts: u32,
    },
    /// Some batch entries could not be queued.
    #[error("{function}: {failed} queue messages could not be sent: {last_error}")]
    QueueRejected {
        /// The handler.
        function: &'static str,
        /// How many entries failed.
        failed: usize,
        /// The last entry's error.
        last_error: PortError,
    },
    /// A listing did not end within 100,000 pages (a token that
    /// keeps coming back, or detach rounds that never empty a list). The
    /// handler stops instead of acting on a silently shortened listing.
    #[error(
        "{function}: {} still returned more after {pages} pages (or rounds); stopped instead of acting on a partial listing",
        operation.name()
    )]
    TooManyPages {
        /// The handler.
        function: &'static str,
        /// The listing operation.
        operation: Operation,
        /// How many pages were followed.
        pages: usize,
    },
}

impl HandlerError {
    /// Whether Lambda should retry: throttling, transient failures,
    /// contention. Other port errors (access denied, conflicts) too are
    /// surfaced as errors, and Lambda's retry limit and dead-letter queue
    /// bound them.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Port { source, .. } => source.is_retryable(),
            Self::Contended { .. } => true,
            Self::QueueRejected { last_error, .. } => last_error.is_retryable(),
            Self::TooManyPages { .. } => false,
        }
    }

    /// A stable error type for the Lambda runtime's `Diagnostic`:
    /// `Retryable` or `Fatal` followed by the kind.
    pub fn error_type(&self) -> &'static str {
        match (self.is_retryable(), self) {
            (true, Self::Port { .. }) => "Retryable.Port",
            (false, Self::Port { .. }) => "Fatal.Port",
            (_, Self::Contended { .. }) => "Retryable.Contended",
            (true, Self::QueueRejected { .. }) => "Retryable.Queue",
            (false, Self::QueueRejected { .. }) => "Fatal.Queue",
            (_, Self::TooManyPages { .. }) => "Fatal.TooManyPages",
        }
    }
}

/// Logs and builds a rejection.
pub(crate) fn reject(function: Function, kind: &'static str, reason: impl Into<String>) -> Outcome {
    let reason = reason.into();
    tracing::warn!(function = function.name(), kind, %reason, "rejected");
    Outcome::Rejected { kind, reason }
}

/// Logs and builds a success.
pub(crate) fn done(function: Function, summary: impl Into<String>) -> Outcome {
    let summary = summary.into();
    tracing::info!(function = function.name(), %summary, "done");
    Outcome::Done { summary }
}

pub(crate) fn contract_rejection(function: Function, error: &ContractError) -> Outcome {
    let kind = match error {
        ContractError::TooLarge { .. } => "payload_too_large",
        ContractError::Malformed { .. } => "malformed_payload",
        _ => "invalid_payload",
    };
    reject(function, kind, error.to_string())
}

pub(crate) fn port(function: Function) -> impl Fn(PortError) -> HandlerError {
    move |source| HandlerError::Port {
        function: function.name(),
        source,
    }
}

/// The event of `payload`, parsed and validated as its own contract
/// (`E::CONTRACT`); a payload that is not one is a logged rejection.
pub(crate) fn parse_event<E: Contracted>(function: Function, payload: &[u8]) -> Result<E, Outcome> {
    E::validate(payload).map_err(|e| contract_rejection(function, &e))
}
