//! `audit-fanout`: SNS audit notification → `ListAuditFindings` for the
//! checks that start rotations (the expiring-certificate check and the
//! certificate-age check), every page → one queue message per certificate
//! (a certificate both checks found is queued once), in batches of at most
//! ten. When a check itself failed
//! (`checkRunStatus: FAILED`, e.g. `INSUFFICIENT_PERMISSIONS` when the
//! audit role may not read the certificates), nothing can rotate: support
//! is told, once per notification.

use std::collections::HashSet;

use futures_util::future::{join, join_all};
use rules::contracts::{AuditFinding, RotationWork, SnsEvent};
use rules::functions::Function;

use super::{
    HandlerError, Outcome, PageBudget, SupportNotice, done, notify, parse_event, port, reject,
};
use crate::config::Config;
use crate::ports::{IotRegistry, MAX_QUEUE_BATCH, Operation, Ports, QueueMessage, WorkQueue};

const FUNCTION: Function = Function::AuditFanout;
/// How many times a batch's failed entries are sent again.
const ENTRY_RETRIES: usize = 3;
/// `SendMessageBatch` calls in flight at once: one page of
/// `ListAuditFindings` (250 findings) is 25 batches.
pub const BATCHES_IN_FLIGHT: usize = 25;

/// Handles one SNS event (raw JSON).
///
/// # Errors
/// A [`HandlerError`] when a port call fails; the whole notification is
/// then retried (the starter ignores duplicates).
pub async fn handle<P: Ports>(
    ports: &P,
    _cfg: &Config,
    payload: &[u8],
    _now_ms: i64,
) -> Result<Outcome, HandlerError> {
    let event: SnsEvent = match parse_event(FUNCTION, payload) {
        Ok(e) => e,
        Err(outcome) => return Ok(outcome),
    };
    if event.records.is_empty() {
        return Ok(reject(
            FUNCTION,
            "invalid_payload",
            "sns event has no records",
        ));
    }
    let mut queued = 0usize;
    let mut checks = 0usize;
    let mut failed_checks = 0usize;
    let mut refused = Vec::new();
    for record in &event.records {
        let notification = match record.audit_notification() {
            Ok(n) => n,
            Err(e) => {
                refused.push(e.to_string());
                continue;
            }
        };
        for detail in notification
            .audit_details
            .iter()
            .filter(|d| d.check_name.starts_rotations() && d.check_run_status == "FAILED")
        {
            failed_checks += 1;
            let detail_text = format!(
                "Device Defender's {} check of audit task {} failed ({}): {}; no certificate of this audit will rotate until it runs",
                detail.check_name.as_str(),
                notification.task_id,
                detail.error_code.as_deref().unwrap_or("no error code"),
                detail.message.as_deref().unwrap_or("no message"),
            );
            let notice = SupportNotice {
                kind: "audit_check_failed",
                thing_name: None,
                rotation_id: None,
                certificate_id: None,
                device_error: None,
                detail: &detail_text,
                cleaned_up: Vec::new(),
            };
            notify(
                ports,
                FUNCTION,
                &format!(
                    "fleetcert: the {} audit check failed",
                    detail.check_name.as_str()
                ),
                &notice,
            )
            .await?;
        }
        let mut seen = HashSet::new();
        for detail in notification
            .audit_details
            .iter()
            .filter(|d| d.check_name.starts_rotations() && d.non_compliant_resources_count > 0)
        {
            checks += 1;
            queued += fan_out(
                ports,
                &notification.task_id,
                detail.check_name.as_str(),
                &mut seen,
            )
            .await?;
        }
    }
    if checks == 0 && failed_checks > 0 {
        return Ok(done(
            FUNCTION,
            format!("{failed_checks} failed rotation checks reported to support"),
        ));
    }
    if checks == 0 {
        let reason = if refused.is_empty() {
            "no non-compliant expiring-certificate or certificate-age check in the notification"
                .to_owned()
        } else {
            refused.join("; ")
        };
        let kind = if refused.is_empty() {
            "nothing_to_rotate"
        } else {
            "invalid_payload"
        };
        return Ok(reject(FUNCTION, kind, reason));
    }
    Ok(done(
        FUNCTION,
        format!("queued {queued} certificates from {checks} checks"),
    ))
}

/// Queues the findings of one check, every page, skipping certificates in
/// `seen` (found by another check of the same task) and adding its own.
///
/// A page's batches are sent at once ([`BATCHES_IN_FLIGHT`] at a time)
/// while the next page is read: at a million findings the fan-out is
/// bounded by `ListAuditFindings`' round trips, not by one
/// `SendMessageBatch` after another.
async fn fan_out<P: Ports>(
    ports: &P,
    task_id: &str,
    check_name: &str,
    seen: &mut HashSet<String>,
) -> Result<usize, HandlerError> {
    let list = |token| async move {
        ports
            .registry()
            .list_audit_findings(task_id, check_name, token)
            .await
            .map_err(port(FUNCTION))
    };
    let mut queued = 0;
    let mut pages = PageBudget::new(FUNCTION, Operation::ListAuditFindings);
    pages.take()?;
    let mut page = list(None).await?;
    loop {
        let work = rotation_work(task_id, &page.items, seen);
        queued += work.len();
        let Some(token) = page.next_token.take() else {
            send_all(ports, &work).await?;
            return Ok(queued);
        };
        pages.take()?;
        let (sent, next) = join(send_all(ports, &work), list(Some(token))).await;
        sent?;
        page = next?;
    }
}

/// One queue message per finding whose certificate is not in `seen`.
fn rotation_work(
    task_id: &str,
    findings: &[AuditFinding],
    seen: &mut HashSet<String>,
) -> Vec<QueueMessage> {
    findings
        .iter()
        .filter_map(|f| {
            let certificate_id = f.device_certificate_id()?.clone();
            if !seen.insert(certificate_id.as_str().to_owned()) {
                return None;
            }
            let body = RotationWork {
                certificate_id,
                task_id: task_id.to_owned(),
                check_name: f.check_name.clone(),
                expiration_time_ms: f.expiration_time_ms(),
                past_expiration: f.is_past_expiration(),
                campaign: None,
            };
            serde_json::to_string(&body).ok()
        })
        .enumerate()
        .map(|(i, body)| QueueMessage {
            id: format!("m{i}"),
            body,
        })
        .collect()
}

/// Sends `work` in batches of [`MAX_QUEUE_BATCH`], [`BATCHES_IN_FLIGHT`]
/// batches at a time; the first failure is the result.
async fn send_all<P: Ports>(ports: &P, work: &[QueueMessage]) -> Result<(), HandlerError> {
    for round in work.chunks(MAX_QUEUE_BATCH * BATCHES_IN_FLIGHT) {
        // `join_all` over this few futures polls every one each time
        // (no reliance on wakers), which the planner's virtual clock needs.
        join_all(
            round
                .chunks(MAX_QUEUE_BATCH)
                .map(|batch| send(ports, batch)),
        )
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()?;
    }
    Ok(())
}

async fn send<P: Ports>(ports: &P, batch: &[QueueMessage]) -> Result<(), HandlerError> {
    let mut pending = batch.to_vec();
    for _ in 0..=ENTRY_RETRIES {
        let failed = ports
            .queue()
            .send_batch(&pending)
            .await
            .map_err(port(FUNCTION))?;
        if failed.is_empty() {
            return Ok(());
        }
        if let Some(last) = failed.last()
            && !last.error.is_retryable()
        {
            return Err(HandlerError::QueueRejected {
                function: FUNCTION.name(),
                failed: failed.len(),
                last_error: last.error.clone(),
            });
        }
        pending.retain(|m| failed.iter().any(|f| f.id == m.id));
        if let Some(last) = failed.last()
            && pending.is_empty()
        {
            return Err(HandlerError::QueueRejected {
                function: FUNCTION.name(),
                failed: failed.len(),
                last_error: last.error.clone(),
            });
        }
    }
    Err(HandlerError::QueueRejected {
        function: FUNCTION.name(),
        failed: pending.len(),
        last_error: crate::ports::PortError::Transient {
            operation: crate::ports::Operation::SendMessageBatch,
            message: format!("entries still failing after {ENTRY_RETRIES} retries"),
        },
    })
}
