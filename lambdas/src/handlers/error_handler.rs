//! `error-handler`: the `crt_err` rule's event → the new certificate
//! removed (if issued) → FAILED → a support notification with the thing,
//! the rotation, the device's error and what was cleaned up.

use rules::contracts::CrtErrRuleEvent;
use rules::functions::Function;
use rules::rotation::Event;

use super::{
    HandlerError, IssueContext, Outcome, advance, device_event, done, reject, run_actions,
};
use crate::config::Config;
use crate::ports::Ports;

const FUNCTION: Function = Function::ErrorHandler;

/// Handles one `crt_err` rule event (raw JSON).
///
/// # Errors
/// A [`HandlerError`] when a port call fails; the retry finishes the
/// cleanup (FAILED rows owe it idempotently).
pub async fn handle<P: Ports>(
    ports: &P,
    cfg: &Config,
    payload: &[u8],
    now_ms: i64,
) -> Result<Outcome, HandlerError> {
    let (event, row) = match device_event::<CrtErrRuleEvent, _>(ports, FUNCTION, payload).await? {
        Ok(found) => found,
        Err(outcome) => return Ok(outcome),
    };
    let rotation_id = event.rotation_id.as_ref().map(|r| r.as_str());
    // The error must come over a certificate the device may keep: an error
    // sent over the new certificate would have it deleted under the device.
    if row.state.is_open() && row.state.new_certificate_id() == Some(event.principal.as_str()) {
        return Ok(reject(
            FUNCTION,
            "error_on_new_certificate",
            format!(
                "crt_err for rotation {} arrived over the new certificate {}: the device holds it, nothing is removed",
                row.rotation_id,
                event.principal.as_str()
            ),
        ));
    }
    let error = event.error.as_str();
    let device_error = Event::DeviceError {
        error: error.to_owned(),
        rotation_id: rotation_id.map(str::to_owned),
        now_ms,
    };
    let (next, actions) = match advance(ports, FUNCTION, row, &device_error).await? {
        Ok(t) => t,
        Err(rejection) => return Ok(reject(FUNCTION, rejection.kind(), rejection.to_string())),
    };
    let ctx = IssueContext {
        old: None,
        device_error: Some(error),
    };
    run_actions(ports, cfg, FUNCTION, &next, &actions, Some(&ctx)).await?;
    Ok(done(
        FUNCTION,
        format!("rotation {} failed: {error}", next.rotation_id),
    ))
}
