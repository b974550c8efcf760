//! The workflow the rotation handlers share: find the rotation a device's
//! event is about, [`advance`] it through `rules::rotation::step` with a
//! conditional write, run the transition's actions (attach, publish `crt`,
//! notify support) and the cleanup they owe ([`super::cleanup`]).

use std::collections::HashMap;

use rules::contracts::{Contracted, CrtAckRuleEvent, CrtErrRuleEvent, CsrResRuleEvent};
use rules::functions::Function;
use rules::policy_copy::PolicyCopy;
use rules::rotation::{Action, Event, Rejection, Rotation, step};
use serde::Serialize;

use super::cleanup::{remove_certificate, run_cleanup, settle};
use super::outcome::{HandlerError, Outcome, parse_event, port, reject};
use super::paging::{all_policies, all_principal_things};
use crate::config::Config;
use crate::ports::{
    CertificateDescription, CertificateStatus, IotRegistry, Notifier, Ports, PrincipalThing,
    Publisher, RotationStore, ThingPrincipalType,
};

/// The support notification body: a JSON document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SupportNotice<'a> {
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thing_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_error: Option<&'a str>,
    pub detail: &'a str,
    pub cleaned_up: Vec<&'a str>,
}

pub(crate) async fn notify<P: Ports>(
    ports: &P,
    function: Function,
    subject: &str,
    notice: &SupportNotice<'_>,
) -> Result<(), HandlerError> {
    let body = serde_json::to_string(notice).unwrap_or_else(|_| notice.detail.to_owned());
    ports
        .notifier()
        .notify(subject, &body)
        .await
        .map_err(port(function))
}

/// The rotation a device's rule event is about ([`find_rotation`]), after
/// checking that the client published on its own topic: the policy allows
/// only that, so a mismatch is a spoof or a misrouted rule and is rejected
/// before any state is read.
pub(crate) async fn find_device_rotation<P: Ports>(
    ports: &P,
    function: Function,
    client_id: &str,
    topic_client_id: &str,
    rotation_id: Option<&str>,
) -> Result<Result<Rotation, Outcome>, HandlerError> {
    if topic_client_id != client_id {
        return Ok(Err(reject(
            function,
            "topic_client_id_mismatch",
            format!("client {client_id} published on the topic of {topic_client_id}"),
        )));
    }
    find_rotation(ports, function, client_id, rotation_id).await
}

/// Finds the rotation a device message is about: by `rotationId` when
/// given (and then it must belong to the thing), else the thing's latest.
pub(crate) async fn find_rotation<P: Ports>(
    ports: &P,
    function: Function,
    thing_name: &str,
    rotation_id: Option<&str>,
) -> Result<Result<Rotation, Outcome>, HandlerError> {
    let row = match rotation_id {
        Some(id) => ports.store().get(id).await.map_err(port(function))?,
        None => ports
            .store()
            .latest_for_thing(thing_name)
            .await
            .map_err(port(function))?,
    };
    Ok(match row {
        None => Err(reject(
            function,
            "unknown_rotation",
            match rotation_id {
                Some(id) => format!("no rotation {id} (thing {thing_name})"),
                None => format!("thing {thing_name} has no rotation"),
            },
        )),
        Some(row) if row.thing_name != thing_name => Err(reject(
            function,
            "rotation_of_another_thing",
            format!(
                "rotation {} belongs to thing {}, not {thing_name}",
                row.rotation_id, row.thing_name
            ),
        )),
        Some(row) => Ok(row),
    })
}

/// A device's rule event (`csr_res`, `crt_ack`, `crt_err`): who published
/// it, on whose topic, about which rotation.
pub(crate) trait DeviceRuleEvent: Contracted {
    /// The MQTT client id (the thing), as the rule selected it.
    fn client_id(&self) -> &str;
    /// The client id in the topic the message was published on.
    fn topic_client_id(&self) -> &str;
    /// The rotation the device named, if any.
    fn rotation_id(&self) -> Option<&str>;
}

macro_rules! device_rule_event {
    ($($ty:ty),+) => {$(
        impl DeviceRuleEvent for $ty {
            fn client_id(&self) -> &str {
                self.clientid.as_str()
            }
            fn topic_client_id(&self) -> &str {
                self.topic_client_id.as_str()
            }
            fn rotation_id(&self) -> Option<&str> {
                self.rotation_id.as_ref().map(|r| r.as_str())
            }
        }
    )+};
}
device_rule_event!(CsrResRuleEvent, CrtAckRuleEvent, CrtErrRuleEvent);

/// The handlers' prologue for a device's rule event: the payload parsed as
/// `E`'s contract, then the rotation it is about ([`find_device_rotation`]).
/// `Ok(Err(outcome))` is a logged rejection the handler returns as is.
pub(crate) async fn device_event<E: DeviceRuleEvent, P: Ports>(
    ports: &P,
    function: Function,
    payload: &[u8],
) -> Result<Result<(E, Rotation), Outcome>, HandlerError> {
    let event: E = match parse_event(function, payload) {
        Ok(e) => e,
        Err(outcome) => return Ok(Err(outcome)),
    };
    let row = find_device_rotation(
        ports,
        function,
        event.client_id(),
        event.topic_client_id(),
        event.rotation_id(),
    )
    .await?;
    Ok(row.map(|row| (event, row)))
}

/// How many times a conditional write is retried on a fresh read.
const WRITE_ATTEMPTS: u32 = 3;

/// Reads → steps → writes conditionally, re-reading on a lost race.
/// Returns the written row and its actions, or the rejection (after
/// running the cleanup a closed rotation still owes).
pub(crate) async fn advance<P: Ports>(
    ports: &P,
    function: Function,
    mut row: Rotation,
    event: &Event,
) -> Result<Result<(Rotation, Vec<Action>), Rejection>, HandlerError> {
    for _ in 0..WRITE_ATTEMPTS {
        let transition = match step(&row, event) {
            Ok(t) => t,
            Err(rejection) => {
                if matches!(rejection, Rejection::RotationClosed { .. }) {
                    // A retry of an invocation that wrote the terminal row
                    // but failed during its cleanup or the notification
                    // after it: finish it (idempotent). The row owes both
                    // until it is settled, and it is settled only after the
                    // notification went out, so a notification that failed
                    // after a complete cleanup is sent now, not lost (at
                    // least once: a settle that fails after a sent
                    // notification sends it again).
                    let owed = row.cleanup_pending;
                    let actions = row.cleanup_actions();
                    let removed = run_cleanup(ports, function, &row, &actions).await?;
                    if (owed || !removed.is_empty())
                        && row.state.new_certificate_id().is_some()
                        && !matches!(row.state, rules::rotation::RotationState::Committed { .. })
                    {
                        // The earlier invocation stopped before its
                        // notification: send it now.
                        let detail = format!(
                            "rotation {} ended {}; cleanup finished on a retry",
                            row.rotation_id,
                            row.state.name()
                        );
                        let notice = SupportNotice {
                            kind: row.state.name(),
                            thing_name: Some(&row.thing_name),
                            rotation_id: Some(&row.rotation_id),
                            certificate_id: Some(&row.old_certificate_id),
                            device_error: match &row.state {
                                rules::rotation::RotationState::Failed { reason, .. } => {
                                    Some(reason)
                                }
                                _ => None,
                            },
                            detail: &detail,
                            cleaned_up: removed.iter().map(String::as_str).collect(),
                        };
                        let subject = format!(
                            "fleetcert: rotation {} for {}",
                            row.state.name().to_lowercase(),
                            row.thing_name
                        );
                        notify(ports, function, &subject, &notice).await?;
                    }
                    settle(ports, function, &row).await;
                }
                return Ok(Err(rejection));
            }
        };
        if transition.is_unchanged(&row) {
            return Ok(Ok((transition.next, transition.actions)));
        }
        let mut next = transition.next;
        if next.state.is_terminal() && next.state != row.state {
            // Closing an open row, or an EXPIRED row whose kept new
            // certificate is committed after all.
            // Owed until the actions that remove certificates succeed.
            next.cleanup_pending = !next.cleanup_actions().is_empty();
        }
        match ports.store().update(&row, &next).await {
            Ok(()) => return Ok(Ok((next, transition.actions))),
            Err(e) if e.is_condition_failed() => {
                tracing::info!(function = function.name(), rotation_id = %row.rotation_id, "row changed, re-reading");
                match ports
                    .store()
                    .get(&row.rotation_id)
                    .await
                    .map_err(port(function))?
                {
                    Some(fresh) => row = fresh,
                    None => {
                        return Err(HandlerError::Port {
                            function: function.name(),
                            source: e,
                        });
                    }
                }
            }
            Err(e) => {
                return Err(HandlerError::Port {
                    function: function.name(),
                    source: e,
                });
            }
        }
    }
    Err(HandlerError::Contended {
        function: function.name(),
        rotation_id: row.rotation_id,
        attempts: WRITE_ATTEMPTS,
    })
}

/// Extra facts for the actions of the CSR issuer.
pub(crate) struct IssueContext<'a> {
    pub device_error: Option<&'a str>,
    /// The old certificate as the handler already described it (its ARN
    /// and PEM do not change), so that the actions do not describe it
    /// again: `DescribeCertificate` is the quota a rotation spends most of.
    pub old: Option<&'a CertificateDescription>,
}

/// Certificates described once per invocation: an ARN and a PEM never
/// change, and the status is only read where a description is first
/// made (attaching the new certificate, before it is activated).
#[derive(Default)]
struct Described(HashMap<String, CertificateDescription>);

impl Described {
    fn seeded(known: Option<&CertificateDescription>) -> Self {
        let mut cache = Self::default();
        if let Some(d) = known {
            cache.0.insert(d.certificate_id.clone(), d.clone());
        }
        cache
    }

    async fn get<P: Ports>(
        &mut self,
        ports: &P,
        function: Function,
        id: &str,
    ) -> Result<CertificateDescription, HandlerError> {
        if let Some(d) = self.0.get(id) {
            return Ok(d.clone());
        }
        let d = ports
            .registry()
            .describe_certificate(id)
            .await
            .map_err(port(function))?;
        self.0.insert(id.to_owned(), d.clone());
        Ok(d)
    }
}

/// Runs a transition's actions (all idempotent) in order.
/// [`Action::CreateCertificateFromCsr`] is the CSR issuer's and is skipped.
pub(crate) async fn run_actions<P: Ports>(
    ports: &P,
    cfg: &Config,
    function: Function,
    row: &Rotation,
    actions: &[Action],
    ctx: Option<&IssueContext<'_>>,
) -> Result<(), HandlerError> {
    let mut cleaned: Vec<String> = Vec::new();
    let mut described = Described::seeded(ctx.and_then(|c| c.old));
    for action in actions {
        match action {
            Action::CreateCertificateFromCsr => {}
            Action::AttachOldPoliciesAndThing { new_certificate_id } => {
                attach_like_old(
                    ports,
                    &cfg.policy_copy,
                    function,
                    row,
                    new_certificate_id,
                    &mut described,
                )
                .await?;
            }
            Action::PublishCrt { certificate_id }
            | Action::ResendCertificate { certificate_id } => {
                let cert = described.get(ports, function, certificate_id).await?;
                publish_crt_of(ports, function, row, &cert).await?;
            }
            Action::RetireOldCertificate { old_certificate_id } => {
                if remove_certificate(ports, function, old_certificate_id).await? {
                    cleaned.push(old_certificate_id.clone());
                }
            }
            Action::DeleteNewCertificate { certificate_id } => {
                if remove_certificate(ports, function, certificate_id).await? {
                    cleaned.push(certificate_id.clone());
                }
            }
            Action::NotifySupport { subject, message } => {
                let notice = SupportNotice {
                    kind: row.state.name(),
                    thing_name: Some(&row.thing_name),
                    rotation_id: Some(&row.rotation_id),
                    certificate_id: Some(&row.old_certificate_id),
                    device_error: ctx.and_then(|c| c.device_error),
                    detail: message,
                    cleaned_up: cleaned.iter().map(String::as_str).collect(),
                };
                notify(ports, function, subject, &notice).await?;
            }
        }
    }
    settle(ports, function, row).await;
    Ok(())
}

/// Attaches the old certificate's policies that `policies` allows (plus
/// those it adds) and the thing to the new certificate, then makes it
/// ACTIVE (it is created inactive, so that a certificate whose creation
/// response was lost is never left usable). A policy outside the
/// allow-list is never attached: csr-issuer refused the rotation before
/// creating the certificate, so one seen here was attached to the old
/// certificate since, and is logged.
async fn attach_like_old<P: Ports>(
    ports: &P,
    policies: &PolicyCopy,
    function: Function,
    row: &Rotation,
    new_certificate_id: &str,
    described: &mut Described,
) -> Result<(), HandlerError> {
    let registry = ports.registry();
    let old = described
        .get(ports, function, &row.old_certificate_id)
        .await?;
    let new = described.get(ports, function, new_certificate_id).await?;
    let old_policies = all_policies(ports, function, &old.certificate_arn).await?;
    if let Err(refused) = policies.plan(&old_policies) {
        tracing::warn!(function = function.name(), rotation_id = %row.rotation_id, %refused, "not copied");
    }
    for policy in &policies.attachable(&old_policies) {
        registry
            .attach_policy(policy, &new.certificate_arn)
            .await
            .map_err(port(function))?;
    }
    // Every thing the old certificate is attached to (a certificate may
    // be shared by several), as it is attached (exclusively or not), and
    // the rotation's own in any case.
    let mut things = all_principal_things(ports, function, &old.certificate_arn).await?;
    if !things.iter().any(|t| t.thing_name == row.thing_name) {
        things.push(PrincipalThing {
            thing_name: row.thing_name.clone(),
            kind: ThingPrincipalType::NonExclusive,
        });
    }
    for thing in &things {
        registry
            .attach_thing_principal_as(&thing.thing_name, &new.certificate_arn, thing.kind)
            .await
            .map_err(port(function))?;
    }
    if new.status != CertificateStatus::Active {
        registry
            .update_certificate(new_certificate_id, CertificateStatus::Active)
            .await
            .map_err(port(function))?;
    }
    Ok(())
}

/// Publishes `crt` (QoS 1) for a certificate already described.
pub(crate) async fn publish_crt_of<P: Ports>(
    ports: &P,
    function: Function,
    row: &Rotation,
    cert: &CertificateDescription,
) -> Result<(), HandlerError> {
    let payload = serde_json::json!({
        "rotationId": row.rotation_id,
        "certificateId": cert.certificate_id,
        "certificatePem": cert.certificate_pem,
    });
    let topic = rules::topic::management_topic(&row.thing_name, rules::topic::MessageKind::Crt);
    ports
        .publisher()
        .publish(&topic, payload.to_string().as_bytes(), 1)
        .await
        .map_err(port(function))
}
