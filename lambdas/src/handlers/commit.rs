//! `commit`: the `crt_ack` rule's event → only when `principal` is the new
//! certificate: COMMITTED, then the old certificate's policies and thing
//! detached, deactivated, deleted.

use rules::contracts::{Contract, Message, validate};
use rules::rotation::Event;

use super::{
    HandlerError, Outcome, advance, contract_rejection, done, find_device_rotation, reject,
    run_actions,
};
use crate::config::Config;
use crate::ports::Ports;

const FUNCTION: &str = "commit";

/// Handles one `crt_ack` rule event (raw JSON).
///
/// # Errors
/// A [`HandlerError`] when a port call fails; the retry finishes the
/// retirement (COMMITTED rows owe it idempotently).
pub async fn handle<P: Ports>(
    ports: &P,
    _cfg: &Config,
    payload: &[u8],
    now_ms: i64,
) -> Result<Outcome, HandlerError> {
    let event = match validate(Contract::CrtAckRuleEvent, payload) {
        Ok(Message::CrtAckRuleEvent(e)) => e,
        Ok(_) => {
            return Ok(reject(
                FUNCTION,
                "invalid_payload",
                "not a crt_ack rule event",
            ));
        }
        Err(e) => return Ok(contract_rejection(FUNCTION, &e)),
    };
    let thing = event.clientid.as_str();
    let rotation_id = event.rotation_id.as_ref().map(|r| r.as_str());
    let topic_client_id = event.topic_client_id.as_str();
    let row =
        match find_device_rotation(ports, FUNCTION, thing, topic_client_id, rotation_id).await? {
            Ok(row) => row,
            Err(outcome) => return Ok(outcome),
        };
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
        run_actions(ports, FUNCTION, &next, &owed, None).await?;
        return Ok(done(
            FUNCTION,
            format!("rotation {} already committed", next.rotation_id),
        ));
    }
    run_actions(ports, FUNCTION, &next, &actions, None).await?;
    Ok(done(
        FUNCTION,
        format!(
            "rotation {} committed; old certificate {} retired",
            next.rotation_id, next.old_certificate_id
        ),
    ))
}
