//! `commit`: the `crt_ack` rule's event → only when `principal` is the new
//! certificate: COMMITTED, then the old certificate's policies and thing
//! detached, deactivated, deleted.

use rules::contracts::CrtAckRuleEvent;
use rules::functions::Function;
use rules::rotation::Event;

use super::{HandlerError, Outcome, advance, device_event, done, reject, run_actions};
use crate::config::Config;
use crate::ports::Ports;

const FUNCTION: Function = Function::Commit;

/// Handles one `crt_ack` rule event (raw JSON).
///
/// # Errors
/// A [`HandlerError`] when a port call fails; the retry finishes the
/// retirement (COMMITTED rows owe it idempotently).
pub async fn handle<P: Ports>(
    ports: &P,
    cfg: &Config,
    payload: &[u8],
    now_ms: i64,
) -> Result<Outcome, HandlerError> {
    let (event, row) = match device_event::<CrtAckRuleEvent, _>(ports, FUNCTION, payload).await? {
        Ok(found) => found,
        Err(outcome) => return Ok(outcome),
    };
    let rotation_id = event.rotation_id.as_ref().map(|r| r.as_str());
    let ack = Event::Ack {
        principal: event.principal.as_str().to_owned(),
        rotation_id: rotation_id.map(str::to_owned),
        certificate_id: event.certificate_id.as_ref().map(|c| c.as_str().to_owned()),
        now_ms,
    };
    let (next, actions) = match advance(ports, FUNCTION, row, &ack).await? {
        Ok(t) => t,
        Err(rejection) => return Ok(reject(FUNCTION, rejection.kind(), rejection.to_string())),
    };
    if actions.is_empty() {
        // A duplicate ack on a committed rotation: finish any retirement
        // an earlier invocation left undone.
        let owed = next.cleanup_actions();
        run_actions(ports, cfg, FUNCTION, &next, &owed, None).await?;
        return Ok(done(
            FUNCTION,
            format!("rotation {} already committed", next.rotation_id),
        ));
    }
    run_actions(ports, cfg, FUNCTION, &next, &actions, None).await?;
    Ok(done(
        FUNCTION,
        format!(
            "rotation {} committed; old certificate {} retired",
            next.rotation_id, next.old_certificate_id
        ),
    ))
}
