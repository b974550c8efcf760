//! `sweeper` (scheduled): open rotations past their deadline → the new
//! certificate removed (if issued) → EXPIRED → a support notification.

use rules::rotation::Event;

use super::{HandlerError, MAX_PAGES, Outcome, advance, done, port, reject, run_actions};
use crate::config::Config;
use crate::events::ScheduledEvent;
use crate::ports::{Ports, RotationStore};

const FUNCTION: &str = "sweeper";

/// Handles one scheduled event (raw JSON): every page of due rotations.
///
/// # Errors
/// The first retryable [`HandlerError`], after the other rotations were
/// swept (each is idempotent, so the retried invocation redoes only what is
/// left).
pub async fn handle<P: Ports>(
    ports: &P,
    _cfg: &Config,
    payload: &[u8],
    now_ms: i64,
) -> Result<Outcome, HandlerError> {
    if let Err(e) = serde_json::from_slice::<ScheduledEvent>(payload) {
        return Ok(reject(
            FUNCTION,
            "malformed_payload",
            format!("not a scheduled event: {e}"),
        ));
    }
    let mut expired = 0usize;
    let mut first_error = None;
    let mut token = None;
    for _ in 0..MAX_PAGES {
        let page = ports
            .store()
            .open_due(now_ms, token)
            .await
            .map_err(port(FUNCTION))?;
        for row in page.items {
            let rotation_id = row.rotation_id.clone();
            let result = match advance(ports, FUNCTION, row, &Event::Sweep { now_ms }).await {
                Ok(Ok((next, actions))) => run_actions(ports, FUNCTION, &next, &actions, None)
                    .await
                    .map(|()| true),
                Ok(Err(rejection)) => {
                    tracing::info!(function = FUNCTION, %rotation_id, reason = %rejection, "not expired");
                    Ok(false)
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(true) => expired += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(function = FUNCTION, %rotation_id, error = %e, "sweep failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(done(FUNCTION, format!("{expired} rotations expired"))),
    }
}
