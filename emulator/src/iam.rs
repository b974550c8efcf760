//! IAM on every call a function makes, as AWS does it.
//!
//! [`Authorized`] wraps any [`Ports`] and authorizes each port call before
//! it runs, against the calling function's role **as the synthesized
//! template defines it** ([`crate::wiring`]): the call's IAM actions
//! ([`Operation::iam_actions`]), on the ARNs AWS authorizes each action on
//! (`rules::iam::request_resources`, from AWS's Service Authorization
//! Reference data), with IAM's evaluation logic (`rules::iam::evaluate`).
//! A refused call fails with [`PortError::AccessDenied`] before it has any
//! effect, exactly where AWS would refuse it, and leaves a log line and an
//! entry in the [`AccessLog`] naming the role, the action and the
//! resource.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use lambdas::ports::{
    CaCertificateDescription, CampaignWrite, CertificateDescription, CertificateStatus,
    CreatedCertificate, FailedEntry, IotRegistry, IssueRequest, IssuedCertificate, Notifier,
    Operation, Page, PortError, PortResult, Ports, PrincipalThing, PrivateCa, Publisher,
    QueueMessage, Resource, RotationStore, ThingDescription, ThingPrincipalType, WorkQueue,
};
use rules::campaign::CampaignItem;
use rules::contracts::AuditFinding;
use rules::iam::{Decision, IamPolicy, Request, evaluate, request_resources};
use rules::policy::ArnScope;
use rules::rotation::Rotation;

use crate::kms::{Caller, Kms};

/// One refused call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Who called (a function's name, `device-defender-audit`, ...).
    pub caller: String,
    /// The role's logical id.
    pub role: String,
    /// The IAM action.
    pub action: String,
    /// The resource it was refused on (`*` for account-wide actions).
    pub resource: String,
    /// Why (no statement allows it, an explicit deny, or no resource of a
    /// type AWS authorizes the action on).
    pub reason: String,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (role {}) may not {} on {}: {}",
            self.caller, self.role, self.action, self.resource, self.reason
        )
    }
}

/// Every refused call, shared by the whole emulated cloud.
#[derive(Debug, Clone, Default)]
pub struct AccessLog {
    denials: Arc<Mutex<Vec<Denial>>>,
}

impl AccessLog {
    /// Records and logs a denial.
    pub fn record(&self, denial: Denial) {
        tracing::warn!(
            caller = %denial.caller, role = %denial.role, action = %denial.action,
            resource = %denial.resource, reason = %denial.reason,
            "access denied"
        );
        self.denials
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(denial);
    }

    /// Every denial so far.
    pub fn denials(&self) -> Vec<Denial> {
        self.denials
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A principal: one role and the policies IAM evaluates for it.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Who acts with it, for the log.
    pub caller: String,
    /// The role's logical id.
    pub role: String,
    /// The role's ARN (what a key policy names).
    pub arn: String,
    /// Its identity-based policies.
    pub policies: Vec<IamPolicy>,
    /// Where refusals are recorded.
    pub log: AccessLog,
}

impl Principal {
    /// Authorizes `action` on the call's resources `named` (as `(resource
    /// type, ARN)`), recording a denial.
    ///
    /// # Errors
    /// The denial, when IAM refuses.
    pub fn authorize(&self, action: &str, named: &[(&str, String)]) -> Result<(), Denial> {
        self.authorize_in(action, named, BTreeMap::new())
    }

    /// [`authorize`](Self::authorize) with the request's condition keys
    /// (`acm-pca:TemplateArn`, ...).
    ///
    /// # Errors
    /// The denial, when IAM refuses.
    pub fn authorize_in(
        &self,
        action: &str,
        named: &[(&str, String)],
        context: BTreeMap<String, String>,
    ) -> Result<(), Denial> {
        let deny = |resource: String, reason: String| Denial {
            caller: self.caller.clone(),
            role: self.role.clone(),
            action: action.to_owned(),
            resource,
            reason,
        };
        let result = match request_resources(action, named) {
            Err(e) => Err(deny(
                named
                    .iter()
                    .map(|(_, a)| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                e.to_string(),
            )),
            Ok(resources) => {
                let request = Request {
                    action: action.to_owned(),
                    resources,
                    context,
                };
                match evaluate(&self.policies, &request) {
                    Decision::Allowed => Ok(()),
                    Decision::ImplicitDeny { resource } => Err(deny(
                        resource,
                        format!("no identity-based policy allows the {action} action"),
                    )),
                    Decision::ExplicitDeny {
                        policy,
                        statement,
                        resource,
                    } => Err(deny(
                        resource,
                        format!("explicit deny in {policy} statement {statement}"),
                    )),
                }
            }
        };
        if let Err(d) = &result {
            self.log.record(d.clone());
        }
        result
    }
}

/// The ARN of the SQS queue at `url` (`https://sqs.<region>.amazonaws.com/<account>/<name>`)
/// in `scope`.
pub fn queue_arn(scope: &ArnScope, url: &str) -> String {
    format!(
        "arn:{}:sqs:{}:{}:{}",
        scope.partition,
        scope.region,
        scope.account,
        url.rsplit('/').next().unwrap_or_default()
    )
}

/// The ARNs of the resources a function's environment names, built as
/// AWS builds them, in the emulator's partition, region and account.
#[derive(Debug, Clone)]
pub struct ResourceArns {
    scope: ArnScope,
    table: String,
    index: String,
    certificate_index: String,
    queue: String,
    support_topic: String,
}

impl ResourceArns {
    /// From a function's environment (`ROTATION_TABLE`, `ROTATION_QUEUE_URL`,
    /// `SUPPORT_TOPIC_ARN`), as the deployed function finds them; a
    /// variable that is missing leaves an ARN no grant matches.
    pub fn from_environment(scope: &ArnScope, env: &BTreeMap<String, String>) -> ResourceArns {
        let var = |k: &str| env.get(k).cloned().unwrap_or_else(|| format!("<no {k}>"));
        let table = format!(
            "arn:{}:dynamodb:{}:{}:table/{}",
            scope.partition,
            scope.region,
            scope.account,
            var("ROTATION_TABLE")
        );
        ResourceArns {
            index: format!("{table}/index/{}", lambdas::config::DUE_INDEX),
            certificate_index: format!("{table}/index/{}", lambdas::config::CERTIFICATE_INDEX),
            table,
            queue: queue_arn(scope, &var("ROTATION_QUEUE_URL")),
            support_topic: var("SUPPORT_TOPIC_ARN"),
            scope: scope.clone(),
        }
    }

    /// The work queue's ARN.
    pub fn queue_arn(&self) -> &str {
        &self.queue
    }

    fn iot(&self, rest: &str) -> String {
        format!(
            "arn:{}:iot:{}:{}:{rest}",
            self.scope.partition, self.scope.region, self.scope.account
        )
    }
}

/// [`Ports`] whose every call is authorized against one function's role
/// first. Cheap to clone (the principal is shared).
#[derive(Debug, Clone)]
pub struct Authorized<P> {
    inner: P,
    principal: Arc<Principal>,
    arns: Arc<ResourceArns>,
    kms: Arc<Kms>,
}

impl<P: Ports> Authorized<P> {
    /// `inner`, called as `principal`; publishes to encrypted topics go
    /// through `kms`.
    pub fn new(
        inner: P,
        principal: Arc<Principal>,
        arns: Arc<ResourceArns>,
        kms: Arc<Kms>,
    ) -> Self {
        Authorized {
            inner,
            principal,
            arns,
            kms,
        }
    }

    /// The wrapped ports.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    fn named(&self, resource: Resource, arn: String) -> (&'static str, String) {
        (resource.iam_type().1, arn)
    }

    /// Authorizes `actions` of `operation` on `resources` (given as
    /// `(resource, ARN)`); the first refusal fails the call.
    fn check(
        &self,
        operation: Operation,
        actions: &[&str],
        resources: Vec<(Resource, String)>,
    ) -> PortResult<()> {
        self.check_in(operation, actions, resources, &BTreeMap::new())
    }

    /// [`check`](Self::check) with the request's condition keys.
    fn check_in(
        &self,
        operation: Operation,
        actions: &[&str],
        resources: Vec<(Resource, String)>,
        context: &BTreeMap<String, String>,
    ) -> PortResult<()> {
        for action in actions {
            let service = action.split(':').next().unwrap_or_default();
            let named: Vec<(&str, String)> = resources
                .iter()
                .filter(|(r, _)| r.iam_type().0 == service)
                .map(|(r, arn)| self.named(*r, arn.clone()))
                .collect();
            self.principal
                .authorize_in(action, &named, context.clone())
                .map_err(|d| PortError::AccessDenied {
                    operation,
                    message: format!(
                        "User: {} is not authorized to perform: {} on resource: {} because {}",
                        d.role, d.action, d.resource, d.reason
                    ),
                })?;
        }
        Ok(())
    }

    fn op(&self, operation: Operation, resources: Vec<(Resource, String)>) -> PortResult<()> {
        self.check(operation, operation.iam_actions(), resources)
    }

    fn cert(&self, id: &str) -> (Resource, String) {
        (Resource::Certificate, self.arns.iot(&format!("cert/{id}")))
    }

    fn thing(&self, name: &str) -> (Resource, String) {
        (Resource::Thing, self.arns.iot(&format!("thing/{name}")))
    }

    /// The resources of an attach/detach of `policy` on the certificate
    /// `target_arn`.
    fn policy_on(&self, policy: &str, target_arn: &str) -> Vec<(Resource, String)> {
        vec![
            (Resource::Certificate, target_arn.to_owned()),
            (Resource::Policy, self.arns.iot(&format!("policy/{policy}"))),
        ]
    }

    /// The resources of an attach/detach of the certificate
    /// `principal_arn` to `thing`.
    fn thing_principal(&self, thing: &str, principal_arn: &str) -> Vec<(Resource, String)> {
        vec![
            (Resource::Certificate, principal_arn.to_owned()),
            self.thing(thing),
        ]
    }

    fn table(&self) -> (Resource, String) {
        (Resource::RotationTable, self.arns.table.clone())
    }
}

impl<P: Ports> IotRegistry for Authorized<P> {
    async fn describe_certificate(
        &self,
        certificate_id: &str,
    ) -> PortResult<CertificateDescription> {
        self.op(
            Operation::DescribeCertificate,
            vec![self.cert(certificate_id)],
        )?;
        self.inner
            .registry()
            .describe_certificate(certificate_id)
            .await
    }

    async fn create_certificate_from_csr(
        &self,
        csr_pem: &str,
        set_as_active: bool,
    ) -> PortResult<CreatedCertificate> {
        self.op(Operation::CreateCertificateFromCsr, vec![])?;
        self.inner
            .registry()
            .create_certificate_from_csr(csr_pem, set_as_active)
            .await
    }

    async fn register_certificate(
        &self,
        certificate_pem: &str,
        ca_certificate_pem: &str,
        status: CertificateStatus,
    ) -> PortResult<CreatedCertificate> {
        self.op(Operation::RegisterCertificate, vec![])?;
        self.inner
            .registry()
            .register_certificate(certificate_pem, ca_certificate_pem, status)
            .await
    }

    async fn update_certificate(
        &self,
        certificate_id: &str,
        status: CertificateStatus,
    ) -> PortResult<()> {
        self.op(
            Operation::UpdateCertificate,
            vec![self.cert(certificate_id)],
        )?;
        self.inner
            .registry()
            .update_certificate(certificate_id, status)
            .await
    }

    async fn delete_certificate(&self, certificate_id: &str) -> PortResult<()> {
        self.op(
            Operation::DeleteCertificate,
            vec![self.cert(certificate_id)],
        )?;
        self.inner
            .registry()
            .delete_certificate(certificate_id)
            .await
    }

    async fn list_attached_policies(
        &self,
        target_arn: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<String>> {
        self.op(
            Operation::ListAttachedPolicies,
            vec![(Resource::Certificate, target_arn.to_owned())],
        )?;
        self.inner
            .registry()
            .list_attached_policies(target_arn, next_token)
            .await
    }

    async fn attach_policy(&self, policy_name: &str, target_arn: &str) -> PortResult<()> {
        self.op(
            Operation::AttachPolicy,
            self.policy_on(policy_name, target_arn),
        )?;
        self.inner
            .registry()
            .attach_policy(policy_name, target_arn)
            .await
    }

    async fn detach_policy(&self, policy_name: &str, target_arn: &str) -> PortResult<()> {
        self.op(
            Operation::DetachPolicy,
            self.policy_on(policy_name, target_arn),
        )?;
        self.inner
            .registry()
            .detach_policy(policy_name, target_arn)
            .await
    }

    async fn list_principal_things(
        &self,
        principal_arn: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<String>> {
        self.op(
            Operation::ListPrincipalThings,
            vec![(Resource::Certificate, principal_arn.to_owned())],
        )?;
        self.inner
            .registry()
            .list_principal_things(principal_arn, next_token)
            .await
    }

    async fn list_principal_things_v2(
        &self,
        principal_arn: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<PrincipalThing>> {
        self.op(
            Operation::ListPrincipalThingsV2,
            vec![(Resource::Certificate, principal_arn.to_owned())],
        )?;
        self.inner
            .registry()
            .list_principal_things_v2(principal_arn, next_token)
            .await
    }

    async fn attach_thing_principal_as(
        &self,
        thing_name: &str,
        principal_arn: &str,
        kind: ThingPrincipalType,
    ) -> PortResult<()> {
        self.op(
            Operation::AttachThingPrincipal,
            self.thing_principal(thing_name, principal_arn),
        )?;
        self.inner
            .registry()
            .attach_thing_principal_as(thing_name, principal_arn, kind)
            .await
    }

    async fn detach_thing_principal(
        &self,
        thing_name: &str,
        principal_arn: &str,
    ) -> PortResult<()> {
        self.op(
            Operation::DetachThingPrincipal,
            self.thing_principal(thing_name, principal_arn),
        )?;
        self.inner
            .registry()
            .detach_thing_principal(thing_name, principal_arn)
            .await
    }

    async fn describe_thing(&self, thing_name: &str) -> PortResult<ThingDescription> {
        self.op(Operation::DescribeThing, vec![self.thing(thing_name)])?;
        self.inner.registry().describe_thing(thing_name).await
    }

    async fn create_thing(&self, thing_name: &str) -> PortResult<ThingDescription> {
        self.op(Operation::CreateThing, vec![self.thing(thing_name)])?;
        self.inner.registry().create_thing(thing_name).await
    }

    async fn describe_ca_certificate(
        &self,
        ca_certificate_id: &str,
    ) -> PortResult<CaCertificateDescription> {
        self.op(
            Operation::DescribeCaCertificate,
            vec![(
                Resource::CaCertificate,
                self.arns.iot(&format!("cacert/{ca_certificate_id}")),
            )],
        )?;
        self.inner
            .registry()
            .describe_ca_certificate(ca_certificate_id)
            .await
    }

    async fn list_audit_findings(
        &self,
        task_id: &str,
        check_name: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<AuditFinding>> {
        self.op(Operation::ListAuditFindings, vec![])?;
        self.inner
            .registry()
            .list_audit_findings(task_id, check_name, next_token)
            .await
    }
}

impl<P: Ports> Publisher for Authorized<P> {
    async fn publish(&self, topic: &str, payload: &[u8], qos: u8) -> PortResult<()> {
        self.op(
            Operation::Publish,
            vec![(
                Resource::DeviceTopic,
                self.arns.iot(&format!("topic/{topic}")),
            )],
        )?;
        self.inner.publisher().publish(topic, payload, qos).await
    }
}

impl<P: Ports> RotationStore for Authorized<P> {
    async fn create(&self, rotation: &Rotation) -> PortResult<()> {
        // one TransactWriteItems of two puts: IAM checks dynamodb:PutItem
        self.op(Operation::CreateRotation, vec![self.table()])?;
        self.inner.store().create(rotation).await
    }

    async fn get(&self, rotation_id: &str) -> PortResult<Option<Rotation>> {
        self.op(Operation::GetRotation, vec![self.table()])?;
        self.inner.store().get(rotation_id).await
    }

    async fn latest_for_thing(&self, thing_name: &str) -> PortResult<Option<Rotation>> {
        self.op(Operation::LatestRotationForThing, vec![self.table()])?;
        self.inner.store().latest_for_thing(thing_name).await
    }

    async fn latest_for_certificate(
        &self,
        old_certificate_id: &str,
    ) -> PortResult<Option<Rotation>> {
        self.op(
            Operation::LatestRotationForCertificate,
            vec![(
                Resource::CertificateIndex,
                self.arns.certificate_index.clone(),
            )],
        )?;
        self.inner
            .store()
            .latest_for_certificate(old_certificate_id)
            .await
    }

    async fn update(&self, expected: &Rotation, next: &Rotation) -> PortResult<()> {
        // the DynamoDB adapter's transaction: a Put of the row, and an
        // Update of the thing's pointer when the rotation closes
        let actions: &[&str] = if expected.closes_into(next) {
            &["dynamodb:PutItem", "dynamodb:UpdateItem"]
        } else {
            &["dynamodb:PutItem"]
        };
        self.check(Operation::UpdateRotation, actions, vec![self.table()])?;
        self.inner.store().update(expected, next).await
    }

    async fn open_due(
        &self,
        before_ms: i64,
        next_token: Option<String>,
    ) -> PortResult<Page<Rotation>> {
        self.op(
            Operation::ListDueRotations,
            vec![(Resource::DueIndex, self.arns.index.clone())],
        )?;
        self.inner.store().open_due(before_ms, next_token).await
    }

    async fn get_campaign(&self, key: &str) -> PortResult<Option<CampaignItem>> {
        self.op(Operation::GetCampaign, vec![self.table()])?;
        self.inner.store().get_campaign(key).await
    }

    async fn put_campaign(&self, writes: &[CampaignWrite]) -> PortResult<()> {
        // one TransactWriteItems of puts: IAM checks dynamodb:PutItem
        self.op(Operation::PutCampaign, vec![self.table()])?;
        self.inner.store().put_campaign(writes).await
    }
}

impl<P: Ports> Notifier for Authorized<P> {
    async fn notify(&self, subject: &str, message: &str) -> PortResult<()> {
        self.op(
            Operation::NotifySupport,
            vec![(Resource::SupportTopic, self.arns.support_topic.clone())],
        )?;
        // SNS encrypts the message with the topic's key, using the
        // publisher's credentials
        self.kms
            .authorize_publish(Caller::Role(&self.principal), &self.arns.support_topic)
            .map_err(|d| PortError::AccessDenied {
                operation: Operation::NotifySupport,
                message: format!(
                    "User: {} is not authorized to perform: {} on resource: {} because {}",
                    d.role, d.action, d.resource, d.reason
                ),
            })?;
        self.inner.notifier().notify(subject, message).await
    }
}

impl<P: Ports> WorkQueue for Authorized<P> {
    async fn send_batch(&self, messages: &[QueueMessage]) -> PortResult<Vec<FailedEntry>> {
        self.op(
            Operation::SendMessageBatch,
            vec![(Resource::WorkQueue, self.arns.queue.clone())],
        )?;
        self.inner.queue().send_batch(messages).await
    }
}

/// AWS Private CA: each call on the CA it names (the function's configured
/// `PCA_CA_ARN`), `IssueCertificate` with the request's
/// `acm-pca:TemplateArn`.
impl<P: Ports> PrivateCa for Authorized<P> {
    async fn issue_certificate(&self, request: &IssueRequest<'_>) -> PortResult<String> {
        let context = BTreeMap::from([(
            "acm-pca:TemplateArn".to_owned(),
            request.template_arn.to_owned(),
        )]);
        self.check_in(
            Operation::IssueCertificate,
            Operation::IssueCertificate.iam_actions(),
            vec![(Resource::PrivateCa, request.ca_arn.to_owned())],
            &context,
        )?;
        self.inner.private_ca().issue_certificate(request).await
    }

    async fn get_certificate(
        &self,
        ca_arn: &str,
        certificate_arn: &str,
    ) -> PortResult<IssuedCertificate> {
        self.op(
            Operation::GetCertificate,
            vec![(Resource::PrivateCa, ca_arn.to_owned())],
        )?;
        self.inner
            .private_ca()
            .get_certificate(ca_arn, certificate_arn)
            .await
    }

    async fn revoke_certificate(&self, ca_arn: &str, certificate_serial: &str) -> PortResult<()> {
        self.op(
            Operation::RevokeCertificate,
            vec![(Resource::PrivateCa, ca_arn.to_owned())],
        )?;
        self.inner
            .private_ca()
            .revoke_certificate(ca_arn, certificate_serial)
            .await
    }
}

impl<P: Ports> Ports for Authorized<P> {
    type Registry = Self;
    type Publisher = Self;
    type Store = Self;
    type Notifier = Self;
    type Queue = Self;
    type PrivateCa = Self;

    fn registry(&self) -> &Self {
        self
    }
    fn private_ca(&self) -> &Self {
        self
    }
    fn publisher(&self) -> &Self {
        self
    }
    fn store(&self) -> &Self {
        self
    }
    fn notifier(&self) -> &Self {
        self
    }
    fn queue(&self) -> &Self {
        self
    }
}
