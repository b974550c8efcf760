//! The Lambda runtime glue (feature `aws`): one event in, the function's
//! handler, the outcome mapped to what Lambda expects.
//!
//! - `rotation-starter` (SQS event source with `ReportBatchItemFailures`):
//!   always answers `{"batchItemFailures":[...]}`; a message that failed
//!   retryably is listed and redelivered, a rejected one is not.
//! - Every other function: `Ok` with `{"outcome":"done","summary":...}`,
//!   or `Ok` with `{"outcome":"rejected","kind":...,"reason":...}` for an
//!   event that was refused (logged by the handler with its reason; an
//!   error would make Lambda retry it for nothing), or `Err` with a
//!   [`HandlerFailure`] whose `Diagnostic` error type says whether a retry
//!   may help (`Retryable.Port`, `Fatal.Port`, `Retryable.Contended`, ...).
//!
//! [`dispatch`] is that mapping as a pure function of the event (tested on
//! the memory adapters); [`serve`] runs it under `lambda_runtime`.
//!
//! Metrics: [`dispatch_recorded_at`] records each event's outcome (and a
//! rejection's kind) into a [`Metrics`] buffer; [`main`] wraps the ports
//! in [`Metered`] (around [`Limited`]) on the same buffer, and [`serve`]
//! writes it to stdout as EMF documents after every invocation.

use std::future::Future;
use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use rules::functions::Function;
use serde_json::{Value, json};

use crate::config::Config;
use crate::handlers::{self, HandlerError, Outcome};
use crate::limits::{Limited, LimitsConfig};
use crate::metrics::{Metered, Metrics};
use crate::ports::Ports;

/// Why an invocation failed. Lambda retries it (asynchronous invocations:
/// twice, then the function's failure destination); the error type tells
/// the reader of the log whether that can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerFailure {
    /// The handler failed; [`HandlerError::is_retryable`] says whether a
    /// retry may succeed.
    #[error(transparent)]
    Handler(#[from] HandlerError),
}

impl HandlerFailure {
    /// Whether trying the event again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Handler(e) => e.is_retryable(),
        }
    }

    /// The `Diagnostic` error type: `Retryable.<kind>` or `Fatal.<kind>`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Handler(e) => e.error_type(),
        }
    }
}

impl From<HandlerFailure> for Diagnostic {
    fn from(e: HandlerFailure) -> Self {
        Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// The current time in milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Runs `function`'s handler on `event` at the current time and maps the
/// outcome (module documentation).
///
/// # Errors
/// A [`HandlerFailure`] when the handler failed (Lambda retries the event).
pub async fn dispatch<P: Ports>(
    function: Function,
    ports: &P,
    config: &Config,
    event: Value,
) -> Result<Value, HandlerFailure> {
    dispatch_at(function, ports, config, event, now_ms()).await
}

/// [`dispatch`] at `now_ms`.
///
/// # Errors
/// A [`HandlerFailure`] when the handler failed (Lambda retries the event).
pub async fn dispatch_at<P: Ports>(
    function: Function,
    ports: &P,
    config: &Config,
    event: Value,
    now_ms: i64,
) -> Result<Value, HandlerFailure> {
    let discarded = Metrics::new(function);
    dispatch_recorded_at(function, ports, config, event, now_ms, &discarded).await
}

/// [`dispatch_at`], recording into `metrics` how each event ended
/// (`Outcomes` by outcome, `Rejections` by kind; for rotation-starter each
/// message of the batch).
///
/// # Errors
/// A [`HandlerFailure`] when the handler failed (Lambda retries the event).
pub async fn dispatch_recorded_at<P: Ports>(
    function: Function,
    ports: &P,
    config: &Config,
    event: Value,
    now_ms: i64,
    metrics: &Metrics,
) -> Result<Value, HandlerFailure> {
    // The handlers validate raw JSON themselves (size limits, contracts)
    // and reject what does not parse.
    let payload = event.to_string().into_bytes();
    let result = match function {
        Function::RotationStarter => {
            let batch = handlers::rotation_starter::handle(ports, config, &payload, now_ms).await;
            let failed = batch.response.batch_item_failures.len();
            for (_, outcome) in &batch.outcomes {
                metrics.outcome(outcome);
            }
            tracing::info!(
                function = function.name(),
                messages = batch.outcomes.len(),
                failed,
                "batch handled"
            );
            return Ok(serde_json::to_value(&batch.response)
                .unwrap_or_else(|_| json!({ "batchItemFailures": [] })));
        }
        Function::AuditFanout => {
            handlers::audit_fanout::handle(ports, config, &payload, now_ms).await
        }
        Function::CsrIssuer => handlers::csr_issuer::handle(ports, config, &payload, now_ms).await,
        Function::Commit => handlers::commit::handle(ports, config, &payload, now_ms).await,
        Function::ErrorHandler => {
            handlers::error_handler::handle(ports, config, &payload, now_ms).await
        }
        Function::Sweeper => handlers::sweeper::handle(ports, config, &payload, now_ms).await,
        Function::JitrActivator => {
            handlers::jitr_activator::handle(ports, config, &payload, now_ms).await
        }
    };
    metrics.outcome(&result);
    match result {
        Ok(Outcome::Done { summary }) => Ok(json!({ "outcome": "done", "summary": summary })),
        // The handler logged the rejection with its reason; answering Ok
        // keeps Lambda from retrying an event that cannot succeed.
        Ok(Outcome::Rejected { kind, reason }) => Ok(json!({
            "outcome": "rejected",
            "kind": kind,
            "reason": reason,
        })),
        Err(e) => {
            let failure = HandlerFailure::from(e);
            tracing::error!(
                function = function.name(),
                error_type = failure.error_type(),
                error = %failure,
                "invocation failed"
            );
            Err(failure)
        }
    }
}

/// JSON logs on stdout (CloudWatch), filtered by `RUST_LOG`, else
/// `AWS_LAMBDA_LOG_LEVEL`, else `info`. Does nothing when a subscriber is
/// already installed.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            EnvFilter::try_new(
                std::env::var("AWS_LAMBDA_LOG_LEVEL")
                    .unwrap_or_else(|_| "info".to_owned())
                    .to_lowercase(),
            )
        })
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false)
        .with_current_span(false)
        .try_init();
}

/// Serves `function` under the Lambda runtime API until the process ends;
/// after each invocation the `metrics` recorded (by the invocation and by
/// ports wrapped in [`Metered`] on the same buffer) go to stdout as EMF.
///
/// # Errors
/// What `lambda_runtime::run` returns (the runtime API is unreachable).
pub async fn serve<P: Ports + 'static>(
    function: Function,
    ports: Arc<P>,
    config: Config,
    metrics: Metrics,
) -> Result<(), lambda_runtime::Error> {
    let config = Arc::new(config);
    tracing::info!(function = function.name(), "ready");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let ports = Arc::clone(&ports);
        let config = Arc::clone(&config);
        let metrics = metrics.clone();
        async move {
            let result = dispatch_recorded_at(
                function,
                &*ports,
                &config,
                event.payload,
                now_ms(),
                &metrics,
            )
            .await;
            metrics.flush_to_stdout();
            result
        }
    }))
    .await
}

/// A binary's `main`: JSON logging, [`Config::from_env`],
/// [`LimitsConfig::from_env`], the adapters from `load`, wrapped in
/// [`Limited`] and that in [`Metered`], then [`serve`]. A configuration or start-up error is
/// logged and returned (the runtime reports it as an init error).
///
/// # Errors
/// The first configuration, adapter or runtime error.
pub async fn main<P, F, Fut, E>(function: Function, load: F) -> Result<(), lambda_runtime::Error>
where
    P: Ports + 'static,
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = Result<P, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    init_logging();
    let started = async {
        let config = Config::from_env()?;
        let limits = LimitsConfig::from_env()?;
        let ports = load(config.clone()).await?;
        Ok::<_, lambda_runtime::Error>((config, limits, ports))
    };
    let (config, limits, ports) = match started.await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(function = function.name(), error = %e, "start-up failed");
            return Err(e);
        }
    };
    let metrics = Metrics::new(function);
    let ports = Arc::new(Metered::new(Limited::new(ports, &limits), metrics.clone()));
    serve(function, ports, config, metrics).await
}
