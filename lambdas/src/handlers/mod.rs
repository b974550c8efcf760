//! The Lambda handlers, generic over [`Ports`].
//!
//! Each handler is `handle(ports, cfg, payload, now_ms)`: `payload` is the
//! raw event JSON (validated here with `rules::contracts::validate`),
//! `now_ms` the clock (never read inside). A rejection (bad input, policy
//! failure, unknown rotation, topic spoofing) is logged and returned as
//! `Ok(Outcome::Rejected { .. })`: it changed nothing and must not be
//! retried. A retryable port failure is `Err` so that Lambda retries.

use rules::contracts::ContractError;
use rules::rotation::{Action, Event, Rejection, Rotation, step};
use serde::Serialize;

use std::future::Future;

use crate::ports::{
    CertificateDescription, CertificateStatus, IotRegistry, Notifier, Operation, Page, PortError,
    PortResult, Ports, Publisher, RotationStore,
};

pub mod audit_fanout;
pub mod commit;
pub mod csr_issuer;
pub mod error_handler;
pub mod jitr_activator;
pub mod rotation_starter;
pub mod sweeper;

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

pub use rules::functions::{closes_rotations, operations, publishes};

/// Logs and builds a rejection.
pub(crate) fn reject(
    function: &'static str,
    kind: &'static str,
    reason: impl Into<String>,
) -> Outcome {
    let reason = reason.into();
    tracing::warn!(function, kind, %reason, "rejected");
    Outcome::Rejected { kind, reason }
}

/// Logs and builds a success.
pub(crate) fn done(function: &'static str, summary: impl Into<String>) -> Outcome {
    let summary = summary.into();
    tracing::info!(function, %summary, "done");
    Outcome::Done { summary }
}

pub(crate) fn contract_rejection(function: &'static str, error: &ContractError) -> Outcome {
    let kind = match error {
        ContractError::TooLarge { .. } => "payload_too_large",
        ContractError::Malformed { .. } => "malformed_payload",
        _ => "invalid_payload",
    };
    reject(function, kind, error.to_string())
}

pub(crate) fn port(function: &'static str) -> impl Fn(PortError) -> HandlerError {
    move |source| HandlerError::Port { function, source }
}

/// The support notification body: a JSON document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SupportNotice<'a> {
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thing_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_error: Option<&'a str>,
    pub detail: &'a str,
    pub cleaned_up: Vec<&'a str>,
}

pub(crate) async fn notify<P: Ports>(
    ports: &P,
    function: &'static str,
    subject: &str,
    notice: &SupportNotice<'_>,
) -> Result<(), HandlerError> {
    let body = serde_json::to_string(notice).unwrap_or_else(|_| notice.detail.to_owned());
    ports
        .notifier()
        .notify(subject, &body)
        .await
        .map_err(port(function))
}

/// The rotation a device's rule event is about ([`find_rotation`]), after
/// checking that the client published on its own topic: the policy allows
/// only that, so a mismatch is a spoof or a misrouted rule and is rejected
/// before any state is read.
pub(crate) async fn find_device_rotation<P: Ports>(
    ports: &P,
    function: &'static str,
    client_id: &str,
    topic_client_id: &str,
    rotation_id: Option<&str>,
) -> Result<Result<Rotation, Outcome>, HandlerError> {
    if topic_client_id != client_id {
        return Ok(Err(reject(
            function,
            "topic_client_id_mismatch",
            format!("client {client_id} published on the topic of {topic_client_id}"),
        )));
    }
    find_rotation(ports, function, client_id, rotation_id).await
}

/// Finds the rotation a device message is about: by `rotationId` when
/// given (and then it must belong to the thing), else the thing's latest.
pub(crate) async fn find_rotation<P: Ports>(
    ports: &P,
    function: &'static str,
    thing_name: &str,
    rotation_id: Option<&str>,
) -> Result<Result<Rotation, Outcome>, HandlerError> {
    let row = match rotation_id {
        Some(id) => ports.store().get(id).await.map_err(port(function))?,
        None => ports
            .store()
            .latest_for_thing(thing_name)
            .await
            .map_err(port(function))?,
    };
    Ok(match row {
        None => Err(reject(
            function,
            "unknown_rotation",
            match rotation_id {
                Some(id) => format!("no rotation {id} (thing {thing_name})"),
                None => format!("thing {thing_name} has no rotation"),
            },
        )),
        Some(row) if row.thing_name != thing_name => Err(reject(
            function,
            "rotation_of_another_thing",
            format!(
                "rotation {} belongs to thing {}, not {thing_name}",
                row.rotation_id, row.thing_name
            ),
        )),
        Some(row) => Ok(row),
    })
}

/// How many times a conditional write is retried on a fresh read.
const WRITE_ATTEMPTS: u32 = 3;

/// Reads → steps → writes conditionally, re-reading on a lost race.
/// Returns the written row and its actions, or the rejection (after
/// running the cleanup a closed rotation still owes).
pub(crate) async fn advance<P: Ports>(
    ports: &P,
    function: &'static str,
    mut row: Rotation,
    event: &Event,
) -> Result<Result<(Rotation, Vec<Action>), Rejection>, HandlerError> {
    for _ in 0..WRITE_ATTEMPTS {
        let transition = match step(&row, event) {
            Ok(t) => t,
            Err(rejection) => {
                if matches!(rejection, Rejection::RotationClosed { .. }) {
                    // A retry of an invocation that wrote the terminal row
                    // but failed during its cleanup or the notification
                    // after it: finish it (idempotent). The row owes both
                    // until it is settled, and it is settled only after the
                    // notification went out, so a notification that failed
                    // after a complete cleanup is sent now, not lost (at
                    // least once: a settle that fails after a sent
                    // notification sends it again).
                    let owed = row.cleanup_pending;
                    let actions = row.cleanup_actions();
                    let removed = run_cleanup(ports, function, &row, &actions).await?;
                    if (owed || !removed.is_empty())
                        && row.state.new_certificate_id().is_some()
                        && !matches!(row.state, rules::rotation::RotationState::Committed { .. })
                    {
                        // The earlier invocation stopped before its
                        // notification: send it now.
                        let detail = format!(
                            "rotation {} ended {}; cleanup finished on a retry",
                            row.rotation_id,
                            row.state.name()
                        );
                        let notice = SupportNotice {
                            kind: row.state.name(),
                            thing_name: Some(&row.thing_name),
                            rotation_id: Some(&row.rotation_id),
                            certificate_id: Some(&row.old_certificate_id),
                            device_error: match &row.state {
                                rules::rotation::RotationState::Failed { reason, .. } => {
                                    Some(reason)
                                }
                                _ => None,
                            },
                            detail: &detail,
                            cleaned_up: removed.iter().map(String::as_str).collect(),
                        };
                        let subject = format!(
                            "fleetcert: rotation {} for {}",
                            row.state.name().to_lowercase(),
                            row.thing_name
                        );
                        notify(ports, function, &subject, &notice).await?;
                    }
                    settle(ports, function, &row).await;
                }
                return Ok(Err(rejection));
            }
        };
        if transition.is_unchanged(&row) {
            return Ok(Ok((transition.next, transition.actions)));
        }
        let mut next = transition.next;
        if next.state.is_terminal() && next.state != row.state {
            // Closing an open row, or an EXPIRED row whose kept new
            // certificate is committed after all.
            // Owed until the actions that remove certificates succeed.
            next.cleanup_pending = !next.cleanup_actions().is_empty();
        }
        match ports.store().update(&row, &next).await {
            Ok(()) => return Ok(Ok((next, transition.actions))),
            Err(e) if e.is_condition_failed() => {
                tracing::info!(function, rotation_id = %row.rotation_id, "row changed, re-reading");
                match ports
                    .store()
                    .get(&row.rotation_id)
                    .await
                    .map_err(port(function))?
                {
                    Some(fresh) => row = fresh,
                    None => {
                        return Err(HandlerError::Port {
                            function,
                            source: e,
                        });
                    }
                }
            }
            Err(e) => {
                return Err(HandlerError::Port {
                    function,
                    source: e,
                });
            }
        }
    }
    Err(HandlerError::Contended {
        function,
        rotation_id: row.rotation_id,
        attempts: WRITE_ATTEMPTS,
    })
}

/// Runs the idempotent removals a closed row owes; returns the
/// certificates this call actually removed.
pub(crate) async fn run_cleanup<P: Ports>(
    ports: &P,
    function: &'static str,
    row: &Rotation,
    actions: &[Action],
) -> Result<Vec<String>, HandlerError> {
    let _ = row;
    let mut removed = Vec::new();
    for action in actions {
        if let Action::RetireOldCertificate {
            old_certificate_id: id,
        }
        | Action::DeleteNewCertificate { certificate_id: id } = action
            && remove_certificate(ports, function, id).await?
        {
            removed.push(id.clone());
        }
    }
    Ok(removed)
}

/// Clears a closed row's `cleanup_pending` once its cleanup succeeded.
/// Best effort: when the write fails (a lost race, throttling), the sweeper
/// runs the idempotent cleanup again after the deadline and clears it then.
pub(crate) async fn settle<P: Ports>(ports: &P, function: &'static str, row: &Rotation) {
    if !row.cleanup_pending {
        return;
    }
    let settled = Rotation {
        cleanup_pending: false,
        ..row.clone()
    };
    if let Err(e) = ports.store().update(row, &settled).await {
        tracing::info!(function, rotation_id = %row.rotation_id, error = %e, "cleanup done; the row stays marked until the sweeper settles it");
    }
}

/// Extra facts for the actions of the CSR issuer.
pub(crate) struct IssueContext<'a> {
    pub device_error: Option<&'a str>,
}

/// Runs a transition's actions (all idempotent) in order.
/// [`Action::CreateCertificateFromCsr`] is the CSR issuer's and is skipped.
pub(crate) async fn run_actions<P: Ports>(
    ports: &P,
    function: &'static str,
    row: &Rotation,
    actions: &[Action],
    ctx: Option<&IssueContext<'_>>,
) -> Result<(), HandlerError> {
    let mut cleaned: Vec<String> = Vec::new();
    for action in actions {
        match action {
            Action::CreateCertificateFromCsr => {}
            Action::AttachOldPoliciesAndThing { new_certificate_id } => {
                attach_like_old(ports, function, row, new_certificate_id).await?;
            }
            Action::PublishCrt { certificate_id }
            | Action::ResendCertificate { certificate_id } => {
                publish_crt(ports, function, row, certificate_id).await?;
            }
            Action::RetireOldCertificate { old_certificate_id } => {
                if remove_certificate(ports, function, old_certificate_id).await? {
                    cleaned.push(old_certificate_id.clone());
                }
            }
            Action::DeleteNewCertificate { certificate_id } => {
                if remove_certificate(ports, function, certificate_id).await? {
                    cleaned.push(certificate_id.clone());
                }
            }
            Action::NotifySupport { subject, message } => {
                let notice = SupportNotice {
                    kind: row.state.name(),
                    thing_name: Some(&row.thing_name),
                    rotation_id: Some(&row.rotation_id),
                    certificate_id: Some(&row.old_certificate_id),
                    device_error: ctx.and_then(|c| c.device_error),
                    detail: message,
                    cleaned_up: cleaned.iter().map(String::as_str).collect(),
                };
                notify(ports, function, subject, &notice).await?;
            }
        }
    }
    settle(ports, function, row).await;
    Ok(())
}

/// Upper bound on list pages followed in one call (a million-device
/// listing at 250 per page is 4000 pages).
pub(crate) const MAX_PAGES: usize = 100_000;

/// Counts the pages (or detach rounds) one listing has taken. Past
/// [`MAX_PAGES`] it is [`HandlerError::TooManyPages`], never a listing cut
/// short without a word.
#[derive(Debug)]
pub(crate) struct PageBudget {
    function: &'static str,
    operation: Operation,
    taken: usize,
}

impl PageBudget {
    pub(crate) fn new(function: &'static str, operation: Operation) -> Self {
        Self {
            function,
            operation,
            taken: 0,
        }
    }

    /// Call before fetching each page.
    pub(crate) fn take(&mut self) -> Result<(), HandlerError> {
        if self.taken == MAX_PAGES {
            return Err(HandlerError::TooManyPages {
                function: self.function,
                operation: self.operation,
                pages: self.taken,
            });
        }
        self.taken += 1;
        Ok(())
    }
}

/// Every item of a paginated listing: `fetch` is called with each page's
/// token until a page has none ([`HandlerError::TooManyPages`] past
/// [`MAX_PAGES`]).
async fn all_pages<F, Fut>(
    function: &'static str,
    operation: Operation,
    mut fetch: F,
) -> Result<Vec<String>, HandlerError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = PortResult<Page<String>>>,
{
    let mut out = Vec::new();
    let mut token = None;
    let mut pages = PageBudget::new(function, operation);
    loop {
        pages.take()?;
        let page = fetch(token).await.map_err(port(function))?;
        out.extend(page.items);
        token = page.next_token;
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// Every policy attached to `arn`, all pages.
pub(crate) async fn all_policies<P: Ports>(
    ports: &P,
    function: &'static str,
    arn: &str,
) -> Result<Vec<String>, HandlerError> {
    all_pages(function, Operation::ListAttachedPolicies, |token| {
        ports.registry().list_attached_policies(arn, token)
    })
    .await
}

/// Every thing attached to `arn`, all pages.
pub(crate) async fn all_things<P: Ports>(
    ports: &P,
    function: &'static str,
    arn: &str,
) -> Result<Vec<String>, HandlerError> {
    all_pages(function, Operation::ListPrincipalThings, |token| {
        ports.registry().list_principal_things(arn, token)
    })
    .await
}

/// Attaches the old certificate's policies and the thing to the new
/// certificate, then makes it ACTIVE (it is created inactive, so that a
/// certificate whose creation response was lost is never left usable).
async fn attach_like_old<P: Ports>(
    ports: &P,
    function: &'static str,
    row: &Rotation,
    new_certificate_id: &str,
) -> Result<(), HandlerError> {
    let registry = ports.registry();
    let old = registry
        .describe_certificate(&row.old_certificate_id)
        .await
        .map_err(port(function))?;
    let new = registry
        .describe_certificate(new_certificate_id)
        .await
        .map_err(port(function))?;
    let policies = all_policies(ports, function, &old.certificate_arn).await?;
    for policy in &policies {
        registry
            .attach_policy(policy, &new.certificate_arn)
            .await
            .map_err(port(function))?;
    }
    registry
        .attach_thing_principal(&row.thing_name, &new.certificate_arn)
        .await
        .map_err(port(function))?;
    if new.status != CertificateStatus::Active {
        registry
            .update_certificate(new_certificate_id, CertificateStatus::Active)
            .await
            .map_err(port(function))?;
    }
    Ok(())
}

/// Publishes `crt` (QoS 1) with the issued certificate's PEM.
async fn publish_crt<P: Ports>(
    ports: &P,
    function: &'static str,
    row: &Rotation,
    certificate_id: &str,
) -> Result<(), HandlerError> {
    let cert = ports
        .registry()
        .describe_certificate(certificate_id)
        .await
        .map_err(port(function))?;
    publish_crt_of(ports, function, row, &cert).await
}

/// Publishes `crt` (QoS 1) for a certificate already described.
pub(crate) async fn publish_crt_of<P: Ports>(
    ports: &P,
    function: &'static str,
    row: &Rotation,
    cert: &CertificateDescription,
) -> Result<(), HandlerError> {
    let payload = serde_json::json!({
        "rotationId": row.rotation_id,
        "certificateId": cert.certificate_id,
        "certificatePem": cert.certificate_pem,
    });
    let topic = rules::topic::management_topic(&row.thing_name, rules::topic::MessageKind::Crt);
    ports
        .publisher()
        .publish(&topic, payload.to_string().as_bytes(), 1)
        .await
        .map_err(port(function))
}

/// Detaches every policy and thing, deactivates and deletes a certificate.
/// Returns false when it was already gone.
pub(crate) async fn remove_certificate<P: Ports>(
    ports: &P,
    function: &'static str,
    certificate_id: &str,
) -> Result<bool, HandlerError> {
    let registry = ports.registry();
    let cert = match registry.describe_certificate(certificate_id).await {
        Ok(c) => c,
        Err(e) if e.is_not_found() => return Ok(false),
        Err(e) => {
            return Err(HandlerError::Port {
                function,
                source: e,
            });
        }
    };
    let arn = cert.certificate_arn;
    // List from the start after each detach round: detaching changes the
    // listing under a page token.
    let mut rounds = PageBudget::new(function, Operation::ListAttachedPolicies);
    loop {
        rounds.take()?;
        let page = registry
            .list_attached_policies(&arn, None)
            .await
            .map_err(port(function))?;
        if page.items.is_empty() {
            break;
        }
        for policy in &page.items {
            registry
                .detach_policy(policy, &arn)
                .await
                .map_err(port(function))?;
        }
    }
    let mut rounds = PageBudget::new(function, Operation::ListPrincipalThings);
    loop {
        rounds.take()?;
        let page = registry
            .list_principal_things(&arn, None)
            .await
            .map_err(port(function))?;
        if page.items.is_empty() {
            break;
        }
        for thing in &page.items {
            registry
                .detach_thing_principal(thing, &arn)
                .await
                .map_err(port(function))?;
        }
    }
    if cert.status == CertificateStatus::Active {
        registry
            .update_certificate(certificate_id, CertificateStatus::Inactive)
            .await
            .map_err(port(function))?;
    }
    match registry.delete_certificate(certificate_id).await {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(HandlerError::Port {
            function,
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(items: &[&str], next: Option<&str>) -> Page<String> {
        Page {
            items: items.iter().map(|s| (*s).to_owned()).collect(),
            next_token: next.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn all_pages_follows_every_token_to_the_end() {
        let items = all_pages("test", Operation::ListPrincipalThings, |token| async move {
            Ok(match token.as_deref() {
                None => page(&["a", "b"], Some("t1")),
                Some("t1") => page(&[], Some("t2")),
                Some("t2") => page(&["c"], None),
                other => panic!("unexpected token {other:?}"),
            })
        })
        .await
        .unwrap();
        assert_eq!(items, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_listing_that_never_ends_is_a_typed_error_not_a_short_list() {
        let mut calls = 0usize;
        let err = all_pages("test", Operation::ListAttachedPolicies, |_| {
            calls += 1;
            async { Ok(page(&["p"], Some("again"))) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, MAX_PAGES);
        assert!(
            matches!(
                err,
                HandlerError::TooManyPages {
                    operation: Operation::ListAttachedPolicies,
                    pages: MAX_PAGES,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        assert_eq!(err.error_type(), "Fatal.TooManyPages");
        assert!(err.to_string().contains("ListAttachedPolicies"), "{err}");
    }
}
