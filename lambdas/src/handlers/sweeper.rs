//! `sweeper` (scheduled): open rotations past their deadline → EXPIRED → a
//! support notification, the new certificate removed only when it was never
//! made ACTIVE (never sent: the device cannot hold it), else kept beside the
//! old one (the device may have acked and switched while the commit never
//! landed; see `rules::rotation`);
//! closed rotations past their deadline whose cleanup is still pending →
//! the cleanup finished; open rotations past half their time → the message
//! the device is waiting for (`csr_req` or `crt`) sent again, since a
//! device that was offline or lost it would otherwise wait until the
//! rotation expires and the next audit. One sweep acts on at most
//! `SWEEP_MAX_ROWS` rows, the most overdue first; the next sweep goes on.
//! Then it settles the active campaigns ([`super::campaign`]): outcomes
//! counted, the next members released, the abort rule applied.

use rules::functions::Function;
use rules::rotation::{Event, Rotation, RotationState};

use super::rotation_starter::publish_csr_req;
use super::{
    HandlerError, Outcome, PageBudget, advance, done, port, publish_crt_of, reject, run_actions,
};
use crate::config::Config;
use crate::events::ScheduledEvent;
use crate::ports::{CertificateStatus, IotRegistry, Operation, Ports, RotationStore};

const FUNCTION: Function = Function::Sweeper;

/// Handles one scheduled event (raw JSON): every page of due rotations.
///
/// # Errors
/// The first retryable [`HandlerError`], after the other rotations were
/// swept (each is idempotent, so the retried invocation redoes only what is
/// left).
pub async fn handle<P: Ports>(
    ports: &P,
    cfg: &Config,
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
    let mut resent = 0usize;
    let mut failed = 0usize;
    let mut first_error = None;
    let mut token = None;
    // Rows due, and rows past half of a configured rotation window.
    let horizon = now_ms.saturating_add(cfg.rotation_deadline_ms / 2);
    let mut pages = PageBudget::new(FUNCTION, Operation::ListDueRotations);
    // The index is sorted by deadline: the most overdue rows come first,
    // and a backlog past the limit is left to the next sweep.
    let mut stopped = false;
    'pages: loop {
        pages.take()?;
        let page = ports
            .store()
            .open_due(horizon, token)
            .await
            .map_err(port(FUNCTION))?;
        for row in page.items {
            if expired + resent + failed >= cfg.sweep_max_rows {
                stopped = true;
                break 'pages;
            }
            let rotation_id = row.rotation_id.clone();
            if row.deadline_ms >= now_ms {
                // Not due: an open row past half its time gets its message
                // again; a closed one is left to its handler's retries.
                match resend(ports, &row, now_ms).await {
                    Ok(true) => resent += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(function = FUNCTION.name(), %rotation_id, error = %e, "re-send failed");
                        failed += 1;
                        first_error.get_or_insert(e);
                    }
                }
                continue;
            }
            let new_certificate_unsent = match never_sent(ports, &row).await {
                Ok(unsent) => unsent,
                Err(e) => {
                    tracing::warn!(function = FUNCTION.name(), %rotation_id, error = %e, "sweep failed");
                    failed += 1;
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            let sweep = Event::Sweep {
                now_ms,
                new_certificate_unsent,
            };
            let result = match advance(ports, FUNCTION, row, &sweep).await {
                Ok(Ok((next, actions))) => run_actions(ports, cfg, FUNCTION, &next, &actions, None)
                    .await
                    .map(|()| true),
                Ok(Err(rejection)) => {
                    tracing::info!(function = FUNCTION.name(), %rotation_id, reason = %rejection, "not expired");
                    Ok(false)
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(true) => expired += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(function = FUNCTION.name(), %rotation_id, error = %e, "sweep failed");
                    failed += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    let mut summary = format!("{expired} rotations expired, {resent} messages sent again");
    if stopped {
        summary.push_str(&format!(
            "; stopped at the limit of {} rows, the next sweep goes on",
            cfg.sweep_max_rows
        ));
    }
    // After the rotations: an outcome the sweep just expired counts now.
    match super::campaign::settle_all(ports, cfg, now_ms).await {
        Ok(campaigns) => summary.push_str(&campaigns.summary()),
        Err(e) => {
            tracing::warn!(function = FUNCTION.name(), error = %e, "campaigns not settled");
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(done(FUNCTION, summary)),
    }
}

/// Sends an open rotation's pending message again at half and at three
/// quarters of its time ([`Rotation::resend_mark`]): `csr_req` while
/// REQUESTED, `crt` while ISSUED (both idempotent for the device and the
/// handlers), then records the re-send on the row so that later sweeps do
/// not repeat it. Returns whether it sent.
async fn resend<P: Ports>(ports: &P, row: &Rotation, now_ms: i64) -> Result<bool, HandlerError> {
    if row.resend_mark(now_ms).is_none() {
        return Ok(false);
    }
    match &row.state {
        RotationState::Requested => publish_csr_req(ports, FUNCTION, row).await?,
        RotationState::Issued {
            new_certificate_id, ..
        } => {
            // The issuer activates the new certificate last, after its
            // policies and thing: until then its own retry sends the `crt`
            // (a device sent it now would be refused and roll back).
            let new = ports
                .registry()
                .describe_certificate(new_certificate_id)
                .await
                .map_err(port(FUNCTION))?;
            if new.status != CertificateStatus::Active {
                return Ok(false);
            }
            publish_crt_of(ports, FUNCTION, row, &new).await?;
        }
        _ => return Ok(false),
    }
    // Sent first, marked after: a lost mark costs one more message at the
    // next sweep, never a re-send skipped.
    let marked = Rotation {
        resent_at_ms: Some(now_ms),
        ..row.clone()
    };
    if let Err(e) = ports.store().update(row, &marked).await {
        tracing::info!(function = FUNCTION.name(), rotation_id = %row.rotation_id, error = %e, "sent again; the mark was not written (the row moved on, or the write failed)");
    }
    tracing::info!(function = FUNCTION.name(), rotation_id = %row.rotation_id, state = %row.state, "message sent again");
    Ok(true)
}

/// Whether an ISSUED row's new certificate is read as not ACTIVE (or gone):
/// the issuer activates it before any `crt` is published, so the device
/// cannot hold it and the expiry may delete it. False for every other
/// state, and whenever in doubt.
async fn never_sent<P: Ports>(ports: &P, row: &Rotation) -> Result<bool, HandlerError> {
    let RotationState::Issued {
        new_certificate_id, ..
    } = &row.state
    else {
        return Ok(false);
    };
    match ports
        .registry()
        .describe_certificate(new_certificate_id)
        .await
    {
        Ok(new) => Ok(new.status != CertificateStatus::Active),
        Err(e) if e.is_not_found() => Ok(true),
        Err(e) => Err(port(FUNCTION)(e)),
    }
}
