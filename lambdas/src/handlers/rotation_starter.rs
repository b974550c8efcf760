//! `rotation-starter`: SQS batch of `rotation_work` → `ListPrincipalThings`
//! → the rotation row (conditional create: an open rotation for the thing
//! is not started twice) → `csr_req`. Expired certificates go to support.
//! A campaign member (`rules::campaign`) starts only while its campaign
//! runs, under its member's rotation id.
//! Failures are reported per message (`batchItemFailures`).

use rules::campaign::{CampaignItem, CampaignState, campaign_key, member_rotation_id};
use rules::contracts::{CsrReq, RotationId, RotationWork};
use rules::csr::inspect_certificate;
use rules::functions::Function;
use rules::rotation::{Rotation, RotationState, primary_thing};
use rules::topic::{MessageKind, management_topic};
use sha2::{Digest, Sha256};

use super::{
    HandlerError, Outcome, SupportNotice, all_things, done, notify, parse_event, port, reject,
};
use crate::config::Config;
use crate::events::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use crate::ports::{CertificateStatus, IotRegistry, Ports, Publisher, RotationStore};

const FUNCTION: Function = Function::RotationStarter;

/// What the starter did with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The response for Lambda: the messages to redeliver.
    pub response: SqsBatchResponse,
    /// Per message, in order: its id and what happened (`Err`: reported
    /// as a batch item failure).
    pub outcomes: Vec<(String, Result<Outcome, HandlerError>)>,
}

/// The deterministic rotation id of (thing, old certificate, audit task):
/// a redelivered message names the same rotation.
pub fn rotation_id(thing_name: &str, old_certificate_id: &str, task_id: &str) -> String {
    let mut h = Sha256::new();
    for part in [thing_name, old_certificate_id, task_id] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = hex::encode(h.finalize());
    format!("r{}", &digest[..32])
}

/// Handles one SQS event (raw JSON). A malformed envelope is rejected
/// (there is no message to redeliver).
pub async fn handle<P: Ports>(
    ports: &P,
    cfg: &Config,
    payload: &[u8],
    now_ms: i64,
) -> BatchOutcome {
    let event: SqsEvent = match serde_json::from_slice(payload) {
        Ok(e) => e,
        Err(e) => {
            let outcome = reject(
                FUNCTION,
                "malformed_payload",
                format!("not an sqs event: {e}"),
            );
            return BatchOutcome {
                response: SqsBatchResponse::default(),
                outcomes: vec![(String::new(), Ok(outcome))],
            };
        }
    };
    let mut response = SqsBatchResponse::default();
    let mut outcomes = Vec::with_capacity(event.records.len());
    for record in &event.records {
        let result = start_one(ports, cfg, record.body.as_bytes(), now_ms).await;
        if let Err(e) = &result {
            tracing::warn!(function = FUNCTION.name(), message_id = %record.message_id, error = %e, "message failed");
            response.batch_item_failures.push(BatchItemFailure {
                item_identifier: record.message_id.clone(),
            });
        }
        outcomes.push((record.message_id.clone(), result));
    }
    BatchOutcome { response, outcomes }
}

/// Handles one `rotation_work` message body.
///
/// # Errors
/// A [`HandlerError`] when a port call fails (the message is redelivered).
pub async fn start_one<P: Ports>(
    ports: &P,
    cfg: &Config,
    body: &[u8],
    now_ms: i64,
) -> Result<Outcome, HandlerError> {
    let work: RotationWork = match parse_event(FUNCTION, body) {
        Ok(w) => w,
        Err(outcome) => return Ok(outcome),
    };
    if let Some(member) = &work.campaign {
        // a campaign's member starts only while the campaign runs (or has
        // finished); refused while paused, the sweeper releases it again
        // after a resume; cancelled, never
        let key = campaign_key(&member.id);
        match ports
            .store()
            .get_campaign(&key)
            .await
            .map_err(port(FUNCTION))?
        {
            // FINISHED: a member counted as skipped (its message waited on
            // the queue past the campaign's grace) still rotates
            Some(CampaignItem::Campaign(c))
                if matches!(c.state, CampaignState::Running | CampaignState::Finished) => {}
            Some(CampaignItem::Campaign(c)) => {
                return Ok(reject(
                    FUNCTION,
                    "campaign_not_running",
                    format!(
                        "campaign {} is {}: member {} not started",
                        member.id, c.state, member.member
                    ),
                ));
            }
            _ => {
                return Ok(reject(
                    FUNCTION,
                    "unknown_campaign",
                    format!("campaign {} does not exist", member.id),
                ));
            }
        }
    }
    let old_id = work.certificate_id.as_str();
    if let Some(outcome) = already_handled(ports, &work).await? {
        return Ok(outcome);
    }
    let cert = match ports.registry().describe_certificate(old_id).await {
        Ok(c) => c,
        Err(e) if e.is_not_found() => {
            return Ok(reject(
                FUNCTION,
                "unknown_certificate",
                format!("certificate {old_id} no longer exists"),
            ));
        }
        Err(e) => {
            return Err(HandlerError::Port {
                function: FUNCTION.name(),
                source: e,
            });
        }
    };
    let things = all_things(ports, FUNCTION, &cert.certificate_arn).await?;
    let expired = work.past_expiration || cert.not_after_ms <= now_ms;
    let problem = if expired {
        Some(("certificate_expired", "the certificate has expired and cannot connect: the device needs a new certificate by another way".to_owned()))
    } else if cert.status != CertificateStatus::Active {
        Some((
            "certificate_not_active",
            format!(
                "the certificate is {}, the device cannot connect with it",
                cert.status
            ),
        ))
    } else if things.is_empty() {
        Some((
            "no_thing",
            "the certificate is attached to no thing: no device can be told to rotate".to_owned(),
        ))
    } else {
        None
    };
    let cn = inspect_certificate(&cert.certificate_pem)
        .ok()
        .and_then(|i| i.subject_cn);
    let thing = primary_thing(&things, cn.as_deref());
    if let Some((kind, detail)) = problem {
        let notice = SupportNotice {
            kind,
            thing_name: thing,
            rotation_id: None,
            certificate_id: Some(old_id),
            device_error: None,
            detail: &detail,
            cleaned_up: Vec::new(),
        };
        let subject = format!(
            "fleetcert: cannot rotate certificate {}",
            &old_id[..12.min(old_id.len())]
        );
        notify(ports, FUNCTION, &subject, &notice).await?;
        return Ok(reject(
            FUNCTION,
            kind,
            format!("certificate {old_id}: {detail}"),
        ));
    }
    let Some(thing) = thing else {
        return Ok(reject(FUNCTION, "no_thing", "no thing"));
    };
    let shared = if things.len() > 1 {
        format!(
            "; the certificate is shared by {} things ({}): csr_req goes to {thing}, the new certificate will be attached to all of them",
            things.len(),
            things.join(", ")
        )
    } else {
        String::new()
    };
    let id = match &work.campaign {
        Some(m) => member_rotation_id(&m.id, m.member, m.attempt),
        None => rotation_id(thing, old_id, &work.task_id),
    };
    let row = Rotation::requested(
        &id,
        thing,
        old_id,
        now_ms,
        now_ms.saturating_add(cfg.rotation_deadline_ms),
    );
    match ports.store().create(&row).await {
        Ok(()) => {}
        Err(e) if e.is_condition_failed() => {
            // A redelivery after the row was written: send csr_req again
            // while it is still REQUESTED (the device answers once).
            match ports.store().get(&id).await.map_err(port(FUNCTION))? {
                Some(existing) if existing.state == RotationState::Requested => {
                    publish_csr_req(ports, FUNCTION, &existing).await?;
                    return Ok(done(
                        FUNCTION,
                        format!("rotation {id} already requested; csr_req sent again"),
                    ));
                }
                Some(existing) => {
                    return Ok(reject(
                        FUNCTION,
                        "duplicate",
                        format!("rotation {id} is already {}", existing.state),
                    ));
                }
                None => {
                    return Ok(reject(
                        FUNCTION,
                        "rotation_open",
                        format!("thing {thing} already has an open rotation"),
                    ));
                }
            }
        }
        Err(e) => {
            return Err(HandlerError::Port {
                function: FUNCTION.name(),
                source: e,
            });
        }
    }
    publish_csr_req(ports, FUNCTION, &row).await?;
    Ok(done(
        FUNCTION,
        format!("rotation {id} requested for thing {thing}{shared}"),
    ))
}

/// What to do with work for a certificate that already has a rotation,
/// decided from the rotation table alone, before any IoT API call: the
/// daily audit finds a certificate again every day until its rotation has
/// deleted it, and each of those findings would otherwise spend a share
/// of the `DescribeCertificate` quota the rotations themselves need.
///
/// `None`: start (or resume) as usual — no rotation yet, the last one
/// FAILED or EXPIRED (this audit tries again), or this very message's
/// rotation (a redelivery, which the usual path answers).
async fn already_handled<P: Ports>(
    ports: &P,
    work: &RotationWork,
) -> Result<Option<Outcome>, HandlerError> {
    let old_id = work.certificate_id.as_str();
    let Some(prior) = ports
        .store()
        .latest_for_certificate(old_id)
        .await
        .map_err(port(FUNCTION))?
    else {
        return Ok(None);
    };
    let own = match &work.campaign {
        Some(m) => member_rotation_id(&m.id, m.member, m.attempt),
        None => rotation_id(&prior.thing_name, old_id, &work.task_id),
    };
    if prior.rotation_id == own {
        return Ok(None);
    }
    Ok(match &prior.state {
        state if state.is_open() => Some(reject(
            FUNCTION,
            "rotation_open",
            format!(
                "certificate {old_id} is already rotating (rotation {} of thing {}, {state})",
                prior.rotation_id, prior.thing_name
            ),
        )),
        RotationState::Committed { new_certificate_id } => Some(reject(
            FUNCTION,
            "already_rotated",
            format!(
                "certificate {old_id} was replaced by {new_certificate_id} (rotation {})",
                prior.rotation_id
            ),
        )),
        _ => None,
    })
}

/// Publishes the row's `csr_req` (QoS 1) to its thing.
pub(crate) async fn publish_csr_req<P: Ports>(
    ports: &P,
    function: Function,
    row: &Rotation,
) -> Result<(), HandlerError> {
    let request = CsrReq {
        rotation_id: RotationId::new(row.rotation_id.clone()).ok(),
        key_algorithm: None,
        deadline: u64::try_from(row.deadline_ms).ok(),
    };
    let payload = serde_json::to_vec(&request).unwrap_or_else(|_| b"{}".to_vec());
    let topic = management_topic(&row.thing_name, MessageKind::CsrReq);
    ports
        .publisher()
        .publish(&topic, &payload, 1)
        .await
        .map_err(port(function))
}
