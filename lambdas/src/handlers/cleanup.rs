//! The certificate removals a closed rotation owes, and clearing its
//! `cleanupPending` once they succeeded.

use rules::functions::Function;
use rules::rotation::{Action, Rotation};

use super::outcome::{HandlerError, port};
use super::paging::PageBudget;
use crate::ports::{CertificateStatus, IotRegistry, Operation, Ports, RotationStore};

/// Runs the idempotent removals a closed row owes; returns the
/// certificates this call actually removed.
pub(crate) async fn run_cleanup<P: Ports>(
    ports: &P,
    function: Function,
    row: &Rotation,
    actions: &[Action],
) -> Result<Vec<String>, HandlerError> {
    let _ = row;
    let mut removed = Vec::new();
    for action in actions {
        if let Action::RetireOldCertificate {
            old_certificate_id: id,
        }
        | Action::DeleteNewCertificate { certificate_id: id } = action
            && remove_certificate(ports, function, id).await?
        {
            removed.push(id.clone());
        }
    }
    Ok(removed)
}

/// Clears a closed row's `cleanup_pending` once its cleanup succeeded.
/// Best effort: when the write fails (a lost race, throttling), the sweeper
/// runs the idempotent cleanup again after the deadline and clears it then.
pub(crate) async fn settle<P: Ports>(ports: &P, function: Function, row: &Rotation) {
    if !row.cleanup_pending {
        return;
    }
    let settled = Rotation {
        cleanup_pending: false,
        ..row.clone()
    };
    if let Err(e) = ports.store().update(row, &settled).await {
        tracing::info!(function = function.name(), rotation_id = %row.rotation_id, error = %e, "cleanup done; the row stays marked until the sweeper settles it");
    }
}

/// Detaches every policy and thing, deactivates and deletes a certificate.
/// Returns false when it was already gone.
pub(crate) async fn remove_certificate<P: Ports>(
    ports: &P,
    function: Function,
    certificate_id: &str,
) -> Result<bool, HandlerError> {
    let registry = ports.registry();
    let cert = match registry.describe_certificate(certificate_id).await {
        Ok(c) => c,
        Err(e) if e.is_not_found() => return Ok(false),
        Err(e) => {
            return Err(HandlerError::Port {
                function: function.name(),
                source: e,
            });
        }
    };
    let arn = cert.certificate_arn;
    // List from the start after each detach round: detaching changes the
    // listing under a page token.
    let mut rounds = PageBudget::new(function, Operation::ListAttachedPolicies);
    loop {
        rounds.take()?;
        let page = registry
            .list_attached_policies(&arn, None)
            .await
            .map_err(port(function))?;
        if page.items.is_empty() {
            break;
        }
        for policy in &page.items {
            registry
                .detach_policy(policy, &arn)
                .await
                .map_err(port(function))?;
        }
    }
    let mut rounds = PageBudget::new(function, Operation::ListPrincipalThings);
    loop {
        rounds.take()?;
        let page = registry
            .list_principal_things(&arn, None)
            .await
            .map_err(port(function))?;
        if page.items.is_empty() {
            break;
        }
        for thing in &page.items {
            registry
                .detach_thing_principal(thing, &arn)
                .await
                .map_err(port(function))?;
        }
    }
    if cert.status == CertificateStatus::Active {
        registry
            .update_certificate(certificate_id, CertificateStatus::Inactive)
            .await
            .map_err(port(function))?;
    }
    match registry.delete_certificate(certificate_id).await {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(HandlerError::Port {
            function: function.name(),
            source: e,
        }),
    }
}
