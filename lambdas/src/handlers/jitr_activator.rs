//! `jitr-activator`: the registration event → `DescribeCertificate` and
//! `DescribeCACertificate` → `rules::jitr::decide` → the device policy and
//! the thing attached (the thing created when configured) → ACTIVE. The
//! event repeats while the certificate is pending: every step is
//! idempotent. A rejected certificate is set REVOKED and reported.

use rules::contracts::JitrRegistrationEvent;
use rules::csr::inspect_certificate;
use rules::functions::Function;
use rules::jitr::{
    CaDescription, CertificateDescription, JitrDecision, JitrInput, JitrRejection, decide,
};

use super::{HandlerError, Outcome, SupportNotice, done, notify, parse_event, port, reject};
use crate::config::Config;
use crate::ports::{CertificateStatus, IotRegistry, Ports};

const FUNCTION: Function = Function::JitrActivator;

/// Handles one JITR registration event (raw JSON).
///
/// # Errors
/// A [`HandlerError`] when a port call fails; AWS IoT publishes the event
/// again at the device's next connection attempt, and each step is
/// idempotent.
pub async fn handle<P: Ports>(
    ports: &P,
    cfg: &Config,
    payload: &[u8],
    now_ms: i64,
) -> Result<Outcome, HandlerError> {
    let event: JitrRegistrationEvent = match parse_event(FUNCTION, payload) {
        Ok(e) => e,
        Err(outcome) => return Ok(outcome),
    };
    let registry = ports.registry();
    let cert_id = event.certificate_id.as_str();
    let ca_id = event.ca_certificate_id.as_str();
    let cert = match registry.describe_certificate(cert_id).await {
        Ok(c) => c,
        Err(e) if e.is_not_found() => {
            return Ok(reject(
                FUNCTION,
                "unknown_certificate",
                format!("certificate {cert_id} is not registered"),
            ));
        }
        Err(e) => {
            return Err(HandlerError::Port {
                function: FUNCTION.name(),
                source: e,
            });
        }
    };
    let ca = match registry.describe_ca_certificate(ca_id).await {
        Ok(c) => c,
        Err(e) if e.is_not_found() => {
            return Ok(reject(
                FUNCTION,
                "unknown_ca",
                format!("ca {ca_id} is not registered"),
            ));
        }
        Err(e) => {
            return Err(HandlerError::Port {
                function: FUNCTION.name(),
                source: e,
            });
        }
    };
    let info = match inspect_certificate(&cert.certificate_pem) {
        Ok(i) => i,
        Err(e) => return Ok(reject(FUNCTION, "bad_certificate", e.to_string())),
    };
    let input = JitrInput {
        certificate_id: cert_id,
        ca_certificate_id: ca_id,
        certificate: CertificateDescription {
            certificate_id: &cert.certificate_id,
            status: &cert.status,
            ca_certificate_id: cert.ca_certificate_id.as_deref(),
            not_before_ms: cert.not_before_ms,
            not_after_ms: cert.not_after_ms,
            subject_cn: info.subject_cn.as_deref(),
        },
        ca: CaDescription {
            ca_certificate_id: &ca.ca_certificate_id,
            status: &ca.status,
            auto_registration_status: &ca.auto_registration_status,
        },
        now_ms,
    };
    let (thing, create_thing, policy, activate) = match decide(&input, &cfg.jitr) {
        JitrDecision::Activate {
            thing_name,
            create_thing,
            policy_name,
        } => (thing_name, create_thing, policy_name, true),
        JitrDecision::AlreadyActive {
            thing_name,
            create_thing,
            policy_name,
        } => (thing_name, create_thing, policy_name, false),
        JitrDecision::Reject { reason } => {
            return refuse(ports, cert_id, &cert.status, &reason).await;
        }
    };
    match registry.describe_thing(&thing).await {
        Ok(_) => {}
        Err(e) if e.is_not_found() && create_thing => {
            registry
                .create_thing(&thing)
                .await
                .map_err(port(FUNCTION))?;
        }
        Err(e) if e.is_not_found() => {
            return Ok(reject(
                FUNCTION,
                "unknown_thing",
                format!("thing {thing} does not exist and creating things is off"),
            ));
        }
        Err(e) => {
            return Err(HandlerError::Port {
                function: FUNCTION.name(),
                source: e,
            });
        }
    }
    registry
        .attach_policy(&policy, &cert.certificate_arn)
        .await
        .map_err(port(FUNCTION))?;
    registry
        .attach_thing_principal(&thing, &cert.certificate_arn)
        .await
        .map_err(port(FUNCTION))?;
    if activate {
        registry
            .update_certificate(cert_id, CertificateStatus::Active)
            .await
            .map_err(port(FUNCTION))?;
        Ok(done(
            FUNCTION,
            format!("certificate {cert_id} activated for thing {thing}"),
        ))
    } else {
        Ok(done(
            FUNCTION,
            format!("certificate {cert_id} already active for thing {thing}; attachments ensured"),
        ))
    }
}

/// Whether a rejection is about the certificate (revoke it) rather than an
/// inconsistent event or the configuration (change nothing).
fn revokes(reason: &JitrRejection) -> bool {
    matches!(
        reason,
        JitrRejection::CaNotAllowed { .. }
            | JitrRejection::CaNotActive { .. }
            | JitrRejection::AutoRegistrationDisabled { .. }
            | JitrRejection::Expired { .. }
            | JitrRejection::NotYetValid { .. }
            | JitrRejection::MissingSubjectCn
            | JitrRejection::BadThingName { .. }
    )
}

async fn refuse<P: Ports>(
    ports: &P,
    cert_id: &str,
    status: &CertificateStatus,
    reason: &JitrRejection,
) -> Result<Outcome, HandlerError> {
    if !revokes(reason) {
        return Ok(reject(FUNCTION, reason.kind(), reason.to_string()));
    }
    if *status == CertificateStatus::PendingActivation {
        ports
            .registry()
            .update_certificate(cert_id, CertificateStatus::Revoked)
            .await
            .map_err(port(FUNCTION))?;
        let detail = format!("certificate {cert_id} revoked: {reason}");
        let notice = SupportNotice {
            kind: "jitr_rejected",
            thing_name: None,
            rotation_id: None,
            certificate_id: Some(cert_id),
            device_error: None,
            detail: &detail,
            cleaned_up: Vec::new(),
        };
        notify(
            ports,
            FUNCTION,
            "fleetcert: jitr certificate rejected",
            &notice,
        )
        .await?;
    }
    Ok(reject(FUNCTION, reason.kind(), reason.to_string()))
}
