//! `csr-issuer`: the `csr_res` rule's event → the rotation row and the CSR
//! policy → one certificate per ISSUING claim (written first) from the
//! configured issuer (`CreateCertificateFromCsr`, or AWS Private CA then
//! `RegisterCertificate`: `handlers::issuer`) → the old certificate's
//! policies and the thing attached → ACTIVE → `crt`. A duplicate `csr_res`
//! re-sends the certificate already issued.

use rules::contracts::CsrResRuleEvent;
use rules::csr::{CsrCheck, inspect_certificate, inspect_csr};
use rules::functions::Function;
use rules::rotation::{Event, Rotation, RotationState};

use super::issuer::{AwsIotIssuer, CertificateIssuer, PrivateCaIssuer, Retake};
use super::paging::all_policies;
use super::{
    HandlerError, IssueContext, Outcome, advance, device_event, done, reject, run_actions,
};
use crate::config::{Config, IssuerConfig};
use crate::ports::{CertificateDescription, IotRegistry, Ports, RotationStore};

const FUNCTION: Function = Function::CsrIssuer;

/// A CSR the policy refuses (unreadable, a bad signature, a key or subject
/// it does not accept) ends a rotation that waits for one at once: FAILED
/// with the reason, support told with the thing, the reason and what the
/// CSR holds; the device keeps its current certificate. Firmware that sent
/// such a CSR would send it again, and the rotation would otherwise wait
/// for its deadline before anyone heard. A rotation already issuing from an
/// accepted CSR is left alone. The message is rejected either way (not
/// retried).
async fn refuse<P: Ports>(
    ports: &P,
    cfg: &Config,
    row: Rotation,
    rotation_id: Option<&str>,
    kind: &'static str,
    reason: String,
) -> Result<Outcome, HandlerError> {
    let refused = Event::CsrRefused {
        reason: reason.clone(),
        rotation_id: rotation_id.map(str::to_owned),
    };
    if let Ok((failed, actions)) = advance(ports, FUNCTION, row, &refused).await? {
        run_actions(ports, cfg, FUNCTION, &failed, &actions, None).await?;
        return Ok(reject(
            FUNCTION,
            kind,
            format!("{reason}; rotation {} failed", failed.rotation_id),
        ));
    }
    Ok(reject(FUNCTION, kind, reason))
}

/// The old certificate's policies the allow-list refuses, as the reason a
/// rotation fails before any certificate is created; `None` when every
/// policy may be copied (always, without listing them, when the
/// allow-list is `*`) or the rotation no longer waits for a CSR.
async fn refused_policies<P: Ports>(
    ports: &P,
    cfg: &Config,
    row: &Rotation,
    old: Option<&CertificateDescription>,
) -> Result<Option<String>, HandlerError> {
    let Some(old) = old else { return Ok(None) };
    if cfg.policy_copy.copies_all() || row.state != RotationState::Requested {
        return Ok(None);
    }
    let policies = all_policies(ports, FUNCTION, &old.certificate_arn).await?;
    Ok(cfg.policy_copy.plan(&policies).err().map(|e| e.to_string()))
}

/// Handles one `csr_res` rule event (raw JSON).
///
/// # Errors
/// A [`HandlerError`] when a port call fails; the retry resumes (or, when
/// the failure came before the ISSUED row was written, starts over after
/// removing the certificate it created).
pub async fn handle<P: Ports>(
    ports: &P,
    cfg: &Config,
    payload: &[u8],
    now_ms: i64,
) -> Result<Outcome, HandlerError> {
    let (event, row) = match device_event::<CsrResRuleEvent, _>(ports, FUNCTION, payload).await? {
        Ok(found) => found,
        Err(outcome) => return Ok(outcome),
    };
    let thing = event.clientid.as_str();
    let rotation_id = event.rotation_id.as_ref().map(|r| r.as_str());
    let csr_pem = event.csr.as_str();
    let info = match inspect_csr(csr_pem) {
        Ok(i) => i,
        Err(e) => return refuse(ports, cfg, row, rotation_id, "bad_csr", e.to_string()).await,
    };
    let old = match ports
        .registry()
        .describe_certificate(&row.old_certificate_id)
        .await
    {
        Ok(old) => Some(old),
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            return Err(HandlerError::Port {
                function: FUNCTION.name(),
                source: e,
            });
        }
    };
    let old_fingerprint = old.as_ref().and_then(|o| {
        inspect_certificate(&o.certificate_pem)
            .ok()
            .map(|i| i.public_key_fingerprint)
    });
    let check = CsrCheck {
        thing_name: thing,
        old_public_key_fingerprint: old_fingerprint.as_deref(),
    };
    if let Err(e) = cfg.csr_policy.check(&info, &check) {
        let reason = format!(
            "{e} (the csr holds a {} key, subject CN {})",
            info.key,
            info.subject_cn.as_deref().unwrap_or("absent")
        );
        return refuse(ports, cfg, row, rotation_id, "csr_policy", reason).await;
    }
    if let Some(refused) = refused_policies(ports, cfg, &row, old.as_ref()).await? {
        return refuse(ports, cfg, row, rotation_id, "policy_not_allowed", refused).await;
    }
    let fingerprint = info.public_key_fingerprint;
    let received = Event::CsrReceived {
        rotation_id: rotation_id.map(str::to_owned),
        csr_fingerprint: fingerprint.clone(),
        now_ms,
    };
    let (claimed, actions) = match advance(ports, FUNCTION, row.clone(), &received).await? {
        Ok(t) => t,
        Err(rejection) => return Ok(reject(FUNCTION, rejection.kind(), rejection.to_string())),
    };
    let creates = actions
        .iter()
        .any(|a| matches!(a, rules::rotation::Action::CreateCertificateFromCsr));
    if !creates {
        // ISSUED, same key: attach (idempotent) and re-send.
        let ctx = IssueContext {
            device_error: None,
            old: old.as_ref(),
        };
        run_actions(ports, cfg, FUNCTION, &claimed, &actions, Some(&ctx)).await?;
        let id = claimed
            .state
            .new_certificate_id()
            .unwrap_or_default()
            .to_owned();
        return Ok(done(
            FUNCTION,
            format!(
                "rotation {}: certificate {id} sent again",
                claimed.rotation_id
            ),
        ));
    }
    issue(ports, cfg, &claimed, csr_pem, &fingerprint, old.as_ref()).await
}

/// Holds the ISSUING claim: has the configured issuer create the
/// certificate (registered inactive), records it (ISSUED), then attaches,
/// activates and publishes.
async fn issue<P: Ports>(
    ports: &P,
    cfg: &Config,
    claimed: &Rotation,
    csr_pem: &str,
    fingerprint: &str,
    old: Option<&CertificateDescription>,
) -> Result<Outcome, HandlerError> {
    match &cfg.issuer {
        IssuerConfig::AwsIot => {
            issue_with(
                ports,
                cfg,
                &AwsIotIssuer,
                claimed,
                csr_pem,
                fingerprint,
                old,
            )
            .await
        }
        IssuerConfig::PrivateCa(settings) => {
            let issuer = PrivateCaIssuer { settings };
            issue_with(ports, cfg, &issuer, claimed, csr_pem, fingerprint, old).await
        }
    }
}

async fn issue_with<P: Ports, I: CertificateIssuer>(
    ports: &P,
    cfg: &Config,
    issuer: &I,
    claimed: &Rotation,
    csr_pem: &str,
    fingerprint: &str,
    old: Option<&CertificateDescription>,
) -> Result<Outcome, HandlerError> {
    let created = match issuer.issue(ports, claimed, csr_pem, fingerprint).await {
        Ok(c) => c,
        Err(failure) => {
            release_claim(ports, claimed, failure.retake).await;
            return Err(HandlerError::Port {
                function: FUNCTION.name(),
                source: failure.error,
            });
        }
    };
    let event = Event::CertificateCreated {
        certificate_id: created.certificate_id.clone(),
        csr_fingerprint: fingerprint.to_owned(),
    };
    let (issued, actions) = match advance(ports, FUNCTION, claimed.clone(), &event).await {
        Ok(Ok(t)) => t,
        Ok(Err(rejection)) => {
            // The API handed back the old certificate: never touch it.
            return Ok(reject(FUNCTION, rejection.kind(), rejection.to_string()));
        }
        Err(e) => {
            // Not recorded: remove it (inactive, attached to nothing; and
            // revoked at a Private CA) and hand the claim back, so the
            // retry starts over with a new certificate.
            issuer.discard(ports, &created).await;
            release_claim(ports, claimed, Retake::NextAttempt).await;
            return Err(e);
        }
    };
    let ctx = IssueContext {
        device_error: None,
        old,
    };
    run_actions(ports, cfg, FUNCTION, &issued, &actions, Some(&ctx)).await?;
    let recorded = matches!(&issued.state, RotationState::Issued { new_certificate_id, .. } if *new_certificate_id == created.certificate_id);
    if recorded {
        Ok(done(
            FUNCTION,
            format!(
                "rotation {}: certificate {} issued and sent",
                issued.rotation_id, created.certificate_id
            ),
        ))
    } else {
        // The row's actions removed it from AWS IoT; a Private CA also
        // revokes it.
        issuer.discard(ports, &created).await;
        Ok(reject(
            FUNCTION,
            "certificate_not_recorded",
            format!(
                "rotation {} moved on; certificate {} removed",
                issued.rotation_id, created.certificate_id
            ),
        ))
    }
}

/// ISSUING → REQUESTED after a failed issue, so that Lambda's retry of
/// this event can claim again: with the same attempt number (the same
/// idempotency token) when nothing was issued that must not come back,
/// with the next when a certificate was discarded. Best effort: if it
/// fails, the sweeper expires the rotation.
async fn release_claim<P: Ports>(ports: &P, claimed: &Rotation, retake: Retake) {
    let attempts = match retake {
        Retake::SameAttempt => claimed.attempts.saturating_sub(1),
        Retake::NextAttempt => claimed.attempts,
    };
    let released = Rotation {
        state: RotationState::Requested,
        attempts,
        ..claimed.clone()
    };
    if let Err(e) = ports.store().update(claimed, &released).await {
        tracing::error!(function = FUNCTION.name(), rotation_id = %claimed.rotation_id, error = %e, "could not release the issuing claim");
    }
}
