//! The ports the handlers are written against: the AWS IoT registry, MQTT
//! publishing (iot-data), rotation state, support notifications, the
//! rotation work queue and AWS Private CA (the issuer of fleets on their own
//! CA).
//!
//! No AWS SDK type appears here. The AWS adapters (`lambdas::aws`, feature
//! `aws`) and the in-memory adapters ([`crate::memory`]) implement these
//! traits; the handlers are generic over [`Ports`] and never see which.
//!
//! Every method returns a `Send` future so that a handler can be spawned on
//! a multi-threaded tokio runtime. Implementations may write `async fn`.
//! Paginated AWS APIs are exposed one page at a time ([`Page`]) so that no
//! handler has to hold a fleet in memory.

use std::future::Future;

use rules::campaign::CampaignItem;
use rules::contracts::AuditFinding;
use rules::rotation::Rotation;

/// The result of a port call.
pub type PortResult<T> = Result<T, PortError>;

pub use rules::functions::{Operation, Resource};

/// The port `operation` belongs to.
pub const fn port_of(operation: Operation) -> PortKind {
    match operation {
        Operation::Publish => PortKind::Publisher,
        Operation::CreateRotation
        | Operation::GetRotation
        | Operation::LatestRotationForThing
        | Operation::UpdateRotation
        | Operation::ListDueRotations
        | Operation::GetCampaign
        | Operation::PutCampaign
        | Operation::LatestRotationForCertificate => PortKind::RotationStore,
        Operation::NotifySupport => PortKind::Notifier,
        Operation::SendMessageBatch => PortKind::WorkQueue,
        Operation::IssueCertificate | Operation::GetCertificate | Operation::RevokeCertificate => {
            PortKind::PrivateCa
        }
        _ => PortKind::Registry,
    }
}

/// Which of the six ports an [`Operation`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortKind {
    /// [`IotRegistry`].
    Registry,
    /// [`Publisher`].
    Publisher,
    /// [`RotationStore`].
    RotationStore,
    /// [`Notifier`].
    Notifier,
    /// [`WorkQueue`].
    WorkQueue,
    /// [`PrivateCa`].
    PrivateCa,
}

/// A failed port call, classified for the handlers: retryable errors
/// ([`PortError::is_retryable`]) fail the invocation so Lambda retries it;
/// the others are answered by the handler.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// The service throttled the call (after the adapter's own retries).
    #[error("{operation} was throttled: {message}")]
    Throttled {
        /// The operation.
        operation: Operation,
        /// What the service said.
        message: String,
    },
    /// A 5xx, a timeout or a dropped connection.
    #[error("{operation} failed transiently: {message}")]
    Transient {
        /// The operation.
        operation: Operation,
        /// What went wrong.
        message: String,
    },
    /// The resource does not exist (`ResourceNotFoundException`).
    #[error("{operation}: not found: {message}")]
    NotFound {
        /// The operation.
        operation: Operation,
        /// What was not found.
        message: String,
    },
    /// A conditional write found the row changed since it was read, or a
    /// conditional create found the row (or an open rotation) already there.
    #[error("{operation}: condition failed: {message}")]
    ConditionFailed {
        /// The operation.
        operation: Operation,
        /// Which condition.
        message: String,
    },
    /// The request conflicts with the resource's state, e.g. deleting a
    /// certificate that is ACTIVE or still attached
    /// (`DeleteConflictException`, `CertificateStateException`).
    #[error("{operation}: conflict: {message}")]
    Conflict {
        /// The operation.
        operation: Operation,
        /// What conflicts.
        message: String,
    },
    /// The request was refused as invalid (`InvalidRequestException`, a
    /// CSR the service does not accept, ...).
    #[error("{operation}: invalid request: {message}")]
    Invalid {
        /// The operation.
        operation: Operation,
        /// Why.
        message: String,
    },
    /// IAM refused the call (`AccessDeniedException`,
    /// `UnauthorizedException`, `AuthorizationError`): the function's role
    /// does not allow it. Not retryable.
    #[error("{operation}: access denied: {message}")]
    AccessDenied {
        /// The operation.
        operation: Operation,
        /// What IAM said (role, action, resource).
        message: String,
    },
    /// Anything else (an unexpected response, ...).
    #[error("{operation} failed: {message}")]
    Other {
        /// The operation.
        operation: Operation,
        /// What went wrong.
        message: String,
    },
}

impl PortError {
    /// The operation that failed.
    pub fn operation(&self) -> Operation {
        match self {
            Self::Throttled { operation, .. }
            | Self::Transient { operation, .. }
            | Self::NotFound { operation, .. }
            | Self::ConditionFailed { operation, .. }
            | Self::Conflict { operation, .. }
            | Self::Invalid { operation, .. }
            | Self::AccessDenied { operation, .. }
            | Self::Other { operation, .. } => *operation,
        }
    }

    /// The message without the operation.
    pub fn message(&self) -> &str {
        match self {
            Self::Throttled { message, .. }
            | Self::Transient { message, .. }
            | Self::NotFound { message, .. }
            | Self::ConditionFailed { message, .. }
            | Self::Conflict { message, .. }
            | Self::Invalid { message, .. }
            | Self::AccessDenied { message, .. }
            | Self::Other { message, .. } => message,
        }
    }

    /// Whether trying the same call again may succeed: throttling and
    /// transient failures.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Transient { .. })
    }

    /// A stable snake_case code for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "throttled",
            Self::Transient { .. } => "transient",
            Self::NotFound { .. } => "not_found",
            Self::ConditionFailed { .. } => "condition_failed",
            Self::Conflict { .. } => "conflict",
            Self::Invalid { .. } => "invalid",
            Self::AccessDenied { .. } => "access_denied",
            Self::Other { .. } => "other",
        }
    }

    /// Whether this is [`PortError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// Whether this is [`PortError::ConditionFailed`].
    pub fn is_condition_failed(&self) -> bool {
        matches!(self, Self::ConditionFailed { .. })
    }
}

/// One page of a paginated listing. `next_token` is `None` on the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The page's items.
    pub items: Vec<T>,
    /// Pass to the next call to get the next page; `None`: no more pages.
    pub next_token: Option<String>,
}

impl<T> Page<T> {
    /// The last page, holding `items`.
    pub fn last(items: Vec<T>) -> Self {
        Self {
            items,
            next_token: None,
        }
    }
}

/// A certificate status as AWS IoT names it (defined once, in `rules`).
pub use rules::status::CertificateStatus;

/// How a principal (certificate) is attached to a thing
/// (`thingPrincipalType`; AWS's default is non-exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum ThingPrincipalType {
    /// `EXCLUSIVE_THING`: the thing is the only one attached to the
    /// principal.
    Exclusive,
    /// `NON_EXCLUSIVE_THING`: several things may be attached.
    #[default]
    NonExclusive,
}

/// One thing a principal is attached to, and how (`PrincipalThingObject`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PrincipalThing {
    /// The thing.
    pub thing_name: String,
    /// How it is attached.
    pub kind: ThingPrincipalType,
}

/// What `DescribeCertificate` returns that fleetcert uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateDescription {
    /// The certificate id (64 lowercase hex digits).
    pub certificate_id: String,
    /// The certificate ARN (the principal for attach/detach calls).
    pub certificate_arn: String,
    /// Its status.
    pub status: CertificateStatus,
    /// The certificate in PEM form.
    pub certificate_pem: String,
    /// The CA that signed it, when registered through a CA (JITR).
    pub ca_certificate_id: Option<String>,
    /// `validity.notBefore`, ms since the Unix epoch.
    pub not_before_ms: i64,
    /// `validity.notAfter`, ms since the Unix epoch.
    pub not_after_ms: i64,
}

/// What `CreateCertificateFromCsr` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedCertificate {
    /// The new certificate's id.
    pub certificate_id: String,
    /// The new certificate's ARN.
    pub certificate_arn: String,
    /// The new certificate in PEM form.
    pub certificate_pem: String,
}

/// What `DescribeThing` / `CreateThing` return that fleetcert uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThingDescription {
    /// The thing's name.
    pub thing_name: String,
    /// The thing's ARN.
    pub thing_arn: String,
}

/// What `DescribeCACertificate` returns that fleetcert uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCertificateDescription {
    /// The CA certificate id.
    pub ca_certificate_id: String,
    /// `ACTIVE` or `INACTIVE`.
    pub status: String,
    /// `ENABLE` or `DISABLE`.
    pub auto_registration_status: String,
    /// The CA certificate in PEM form.
    pub certificate_pem: String,
}

/// The AWS IoT registry (control plane) and Device Defender findings.
///
/// Certificates are named by id where AWS takes an id and by ARN where AWS
/// takes a principal or target ARN (attach/detach/list calls); the ARNs come
/// from [`describe_certificate`](Self::describe_certificate) or
/// [`create_certificate_from_csr`](Self::create_certificate_from_csr).
pub trait IotRegistry: Send + Sync {
    /// `DescribeCertificate`. [`PortError::NotFound`] when it does not exist.
    fn describe_certificate(
        &self,
        certificate_id: &str,
    ) -> impl Future<Output = PortResult<CertificateDescription>> + Send;

    /// `CreateCertificateFromCsr`: a new certificate every call (not
    /// idempotent), ACTIVE when `set_as_active`, attached to nothing.
    fn create_certificate_from_csr(
        &self,
        csr_pem: &str,
        set_as_active: bool,
    ) -> impl Future<Output = PortResult<CreatedCertificate>> + Send;

    /// `RegisterCertificate`: registers `certificate_pem`, signed by the CA
    /// `ca_certificate_pem` that is registered (and ACTIVE) in AWS IoT, with
    /// `status`, attached to nothing. [`PortError::Conflict`] when it is
    /// registered already (`ResourceAlreadyExistsException`).
    fn register_certificate(
        &self,
        certificate_pem: &str,
        ca_certificate_pem: &str,
        status: CertificateStatus,
    ) -> impl Future<Output = PortResult<CreatedCertificate>> + Send;

    /// `UpdateCertificate`: sets the status (`ACTIVE`, `INACTIVE`, `REVOKED`).
    fn update_certificate(
        &self,
        certificate_id: &str,
        status: CertificateStatus,
    ) -> impl Future<Output = PortResult<()>> + Send;

    /// `DeleteCertificate`: [`PortError::Conflict`] while the certificate is
    /// ACTIVE or has a policy or thing attached.
    fn delete_certificate(
        &self,
        certificate_id: &str,
    ) -> impl Future<Output = PortResult<()>> + Send;

    /// `ListAttachedPolicies(target)`: one page of policy names.
    fn list_attached_policies(
        &self,
        target_arn: &str,
        next_token: Option<String>,
    ) -> impl Future<Output = PortResult<Page<String>>> + Send;

    /// `AttachPolicy`: idempotent.
    fn attach_policy(
        &self,
        policy_name: &str,
        target_arn: &str,
    ) -> impl Future<Output = PortResult<()>> + Send;

    /// `DetachPolicy`: detaching a policy that is not attached succeeds.
    fn detach_policy(
        &self,
        policy_name: &str,
        target_arn: &str,
    ) -> impl Future<Output = PortResult<()>> + Send;

    /// `ListPrincipalThings(principal)`: one page of thing names.
    fn list_principal_things(
        &self,
        principal_arn: &str,
        next_token: Option<String>,
    ) -> impl Future<Output = PortResult<Page<String>>> + Send;

    /// `ListPrincipalThingsV2(principal)`: one page of the things and how
    /// each is attached.
    fn list_principal_things_v2(
        &self,
        principal_arn: &str,
        next_token: Option<String>,
    ) -> impl Future<Output = PortResult<Page<PrincipalThing>>> + Send;

    /// `AttachThingPrincipal` with its `thingPrincipalType`: idempotent;
    /// [`PortError::NotFound`] when the thing does not exist;
    /// [`PortError::Invalid`] when the attachment would break an
    /// exclusive one ("the thing will be the only thing that's attached to
    /// the principal", AWS IoT API reference).
    fn attach_thing_principal_as(
        &self,
        thing_name: &str,
        principal_arn: &str,
        kind: ThingPrincipalType,
    ) -> impl Future<Output = PortResult<()>> + Send;

    /// `AttachThingPrincipal` non-exclusively (AWS's default).
    fn attach_thing_principal(
        &self,
        thing_name: &str,
        principal_arn: &str,
    ) -> impl Future<Output = PortResult<()>> + Send {
        self.attach_thing_principal_as(thing_name, principal_arn, ThingPrincipalType::NonExclusive)
    }

    /// `DetachThingPrincipal`: detaching what is not attached succeeds.
    fn detach_thing_principal(
        &self,
        thing_name: &str,
        principal_arn: &str,
    ) -> impl Future<Output = PortResult<()>> + Send;

    /// `DescribeThing`: [`PortError::NotFound`] when it does not exist.
    fn describe_thing(
        &self,
        thing_name: &str,
    ) -> impl Future<Output = PortResult<ThingDescription>> + Send;

    /// `CreateThing`: idempotent for a thing without attributes.
    fn create_thing(
        &self,
        thing_name: &str,
    ) -> impl Future<Output = PortResult<ThingDescription>> + Send;

    /// `DescribeCACertificate`: [`PortError::NotFound`] for an unknown CA.
    fn describe_ca_certificate(
        &self,
        ca_certificate_id: &str,
    ) -> impl Future<Output = PortResult<CaCertificateDescription>> + Send;

    /// `ListAuditFindings(taskId, checkName)`: one page (at most 250).
    fn list_audit_findings(
        &self,
        task_id: &str,
        check_name: &str,
        next_token: Option<String>,
    ) -> impl Future<Output = PortResult<Page<AuditFinding>>> + Send;
}

/// What `acm-pca:IssueCertificate` is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest<'a> {
    /// The certificate authority's ARN.
    pub ca_arn: &'a str,
    /// The CSR in PEM form.
    pub csr_pem: &'a str,
    /// ACM PCA's `SigningAlgorithm` (e.g. `SHA256WITHECDSA`).
    pub signing_algorithm: &'a str,
    /// `Validity` in days.
    pub validity_days: u32,
    /// `TemplateArn`.
    pub template_arn: &'a str,
    /// `IdempotencyToken` (1 to 36 characters): the same token gives the
    /// same certificate for a while.
    pub idempotency_token: &'a str,
}

/// What `acm-pca:GetCertificate` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The certificate in PEM form.
    pub certificate_pem: String,
    /// The chain in PEM form, the issuing CA's certificate first (empty
    /// for a certificate of the root itself).
    pub certificate_chain_pem: String,
}

/// The serial number of the certificate `pem` as ACM PCA's
/// `RevokeCertificate` takes it: lowercase hex bytes joined by colons,
/// without the sign byte DER adds to a serial whose first bit is set.
///
/// # Errors
/// When `pem` is not a certificate.
pub fn certificate_serial(pem: &str) -> Result<String, String> {
    let info = rules::csr::inspect_certificate(pem).map_err(|e| e.to_string())?;
    let hex = info.serial_hex;
    let hex = match hex.strip_prefix("00") {
        Some(rest) if !rest.is_empty() => rest,
        _ => hex.as_str(),
    };
    Ok(hex
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect::<Vec<_>>()
        .join(":"))
}

/// AWS Private CA (`acm-pca`): the issuer of a fleet on its own CA.
pub trait PrivateCa: Send + Sync {
    /// `IssueCertificate`: the new certificate's ARN (issuance is
    /// asynchronous; [`get_certificate`](Self::get_certificate) fetches it).
    fn issue_certificate(
        &self,
        request: &IssueRequest<'_>,
    ) -> impl Future<Output = PortResult<String>> + Send;

    /// `GetCertificate`: [`PortError::Transient`] while the certificate is
    /// still being issued (`RequestInProgressException`).
    fn get_certificate(
        &self,
        ca_arn: &str,
        certificate_arn: &str,
    ) -> impl Future<Output = PortResult<IssuedCertificate>> + Send;

    /// `RevokeCertificate` (reason `SUPERSEDED`) of the certificate with
    /// this serial number (hex, colon separated); revoking it again
    /// succeeds (`RequestAlreadyProcessedException`).
    fn revoke_certificate(
        &self,
        ca_arn: &str,
        certificate_serial: &str,
    ) -> impl Future<Output = PortResult<()>> + Send;
}

/// MQTT publishing through the iot-data plane.
pub trait Publisher: Send + Sync {
    /// Publishes `payload` to `topic` with QoS `qos` (0 or 1).
    fn publish(
        &self,
        topic: &str,
        payload: &[u8],
        qos: u8,
    ) -> impl Future<Output = PortResult<()>> + Send;
}

/// Rotation state rows ([`Rotation`]), one per rotation id, with at most
/// one open rotation per thing.
pub trait RotationStore: Send + Sync {
    /// Writes a new row if no row has its rotation id and the thing has no
    /// open rotation; otherwise [`PortError::ConditionFailed`] (a duplicate
    /// start is not an error for the caller to retry).
    fn create(&self, rotation: &Rotation) -> impl Future<Output = PortResult<()>> + Send;

    /// The row with this id, if any.
    fn get(&self, rotation_id: &str) -> impl Future<Output = PortResult<Option<Rotation>>> + Send;

    /// The thing's open rotation if it has one, else its most recently
    /// created one, else `None` (devices on the original contract send no
    /// `rotationId`).
    fn latest_for_thing(
        &self,
        thing_name: &str,
    ) -> impl Future<Output = PortResult<Option<Rotation>>> + Send;

    /// The most recently created rotation of the certificate
    /// `old_certificate_id` (the one it replaces), else `None`. Read from
    /// an index that may lag a write by a moment: a pre-check before API
    /// calls, never the condition that keeps one open rotation per thing.
    fn latest_for_certificate(
        &self,
        old_certificate_id: &str,
    ) -> impl Future<Output = PortResult<Option<Rotation>>> + Send;

    /// Replaces the row `expected` (as it was read) with `next` (same
    /// rotation id); [`PortError::ConditionFailed`] when the stored row is
    /// no longer `expected`.
    fn update(
        &self,
        expected: &Rotation,
        next: &Rotation,
    ) -> impl Future<Output = PortResult<()>> + Send;

    /// One page of rotations whose deadline is before `before_ms` and that
    /// are open, or closed with their cleanup pending.
    fn open_due(
        &self,
        before_ms: i64,
        next_token: Option<String>,
    ) -> impl Future<Output = PortResult<Page<Rotation>>> + Send;

    /// The campaign item stored under `key` (`campaign#…`, see
    /// `rules::campaign`), if any.
    fn get_campaign(
        &self,
        key: &str,
    ) -> impl Future<Output = PortResult<Option<CampaignItem>>> + Send;

    /// Writes every [`CampaignWrite`] in one transaction (at most
    /// [`MAX_CAMPAIGN_WRITES`]), each on condition that the stored item is
    /// its `expected` (`None`: absent); [`PortError::ConditionFailed`] and
    /// nothing written when one is not.
    fn put_campaign(&self, writes: &[CampaignWrite])
    -> impl Future<Output = PortResult<()>> + Send;
}

/// Most items one [`RotationStore::put_campaign`] writes.
pub const MAX_CAMPAIGN_WRITES: usize = 25;

/// One conditional write of a campaign item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignWrite {
    /// The item as it was read (`None`: it must not exist).
    pub expected: Option<CampaignItem>,
    /// The item to write (same key).
    pub next: CampaignItem,
}

impl CampaignWrite {
    /// Checks the write: `expected` and `next` name the same key.
    ///
    /// # Errors
    /// [`PortError::Invalid`].
    pub fn check(writes: &[CampaignWrite]) -> PortResult<()> {
        let invalid = |message: String| PortError::Invalid {
            operation: Operation::PutCampaign,
            message,
        };
        if writes.is_empty() || writes.len() > MAX_CAMPAIGN_WRITES {
            return Err(invalid(format!(
                "a campaign write holds 1 to {MAX_CAMPAIGN_WRITES} items, not {}",
                writes.len()
            )));
        }
        for (i, w) in writes.iter().enumerate() {
            let key = w.next.key();
            if w.expected.as_ref().is_some_and(|e| e.key() != key) {
                return Err(invalid(format!("a write may not change the key {key}")));
            }
            if writes[..i].iter().any(|o| o.next.key() == key) {
                return Err(invalid(format!("{key} is written twice")));
            }
        }
        Ok(())
    }
}

/// Support notifications (SNS).
pub trait Notifier: Send + Sync {
    /// Publishes `message` (a JSON document) with `subject` (one line, the
    /// adapter truncates it to SNS's 100 characters).
    fn notify(&self, subject: &str, message: &str) -> impl Future<Output = PortResult<()>> + Send;
}

/// Largest batch [`WorkQueue::send_batch`] takes (SQS's limit).
pub const MAX_QUEUE_BATCH: usize = 10;

/// One message for the work queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// Batch entry id, unique within a batch (`[A-Za-z0-9_-]{1,80}`).
    pub id: String,
    /// The message body.
    pub body: String,
}

/// One entry of a batch that was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    /// The [`QueueMessage::id`].
    pub id: String,
    /// Why; retryable when the service says so (`SenderFault = false`).
    pub error: PortError,
}

/// The rotation work queue (SQS).
pub trait WorkQueue: Send + Sync {
    /// Sends at most [`MAX_QUEUE_BATCH`] messages; returns the entries that
    /// were not sent (empty: all sent). More than the limit is
    /// [`PortError::Invalid`].
    fn send_batch(
        &self,
        messages: &[QueueMessage],
    ) -> impl Future<Output = PortResult<Vec<FailedEntry>>> + Send;
}

/// The six ports a handler may use, as one bundle.
pub trait Ports: Send + Sync {
    /// The registry adapter.
    type Registry: IotRegistry;
    /// The iot-data adapter.
    type Publisher: Publisher;
    /// The rotation state adapter.
    type Store: RotationStore;
    /// The support notification adapter.
    type Notifier: Notifier;
    /// The work queue adapter.
    type Queue: WorkQueue;
    /// The AWS Private CA adapter (called only when csr-issuer's issuer is
    /// [`rules::functions::Issuer::PrivateCa`]).
    type PrivateCa: PrivateCa;

    /// The registry.
    fn registry(&self) -> &Self::Registry;
    /// The iot-data publisher.
    fn publisher(&self) -> &Self::Publisher;
    /// The rotation store.
    fn store(&self) -> &Self::Store;
    /// The support notifier.
    fn notifier(&self) -> &Self::Notifier;
    /// The work queue.
    fn queue(&self) -> &Self::Queue;
    /// AWS Private CA.
    fn private_ca(&self) -> &Self::PrivateCa;
}

/// A [`Ports`] bundle from six adapters.
#[derive(Debug, Clone, Default)]
pub struct PortSet<R, P, S, N, Q, C> {
    /// The registry.
    pub registry: R,
    /// The iot-data publisher.
    pub publisher: P,
    /// The rotation store.
    pub store: S,
    /// The support notifier.
    pub notifier: N,
    /// The work queue.
    pub queue: Q,
    /// AWS Private CA.
    pub private_ca: C,
}

impl<R, P, S, N, Q, C> Ports for PortSet<R, P, S, N, Q, C>
where
    R: IotRegistry,
    P: Publisher,
    S: RotationStore,
    N: Notifier,
    Q: WorkQueue,
    C: PrivateCa,
{
    type Registry = R;
    type Publisher = P;
    type Store = S;
    type Notifier = N;
    type Queue = Q;
    type PrivateCa = C;

    fn registry(&self) -> &R {
        &self.registry
    }
    fn publisher(&self) -> &P {
        &self.publisher
    }
    fn store(&self) -> &S {
        &self.store
    }
    fn notifier(&self) -> &N {
        &self.notifier
    }
    fn queue(&self) -> &Q {
        &self.queue
    }
    fn private_ca(&self) -> &C {
        &self.private_ca
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_round_trip() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_name(op.name()), Some(op));
        }
        assert_eq!(Operation::from_name("NoSuchOperation"), None);
    }

    #[test]
    fn registry_operations_need_the_iot_action_of_their_name() {
        for op in Operation::ALL {
            if port_of(op) == PortKind::Registry {
                assert_eq!(op.iam_actions(), [format!("iot:{}", op.name())]);
            } else if port_of(op) == PortKind::PrivateCa {
                assert_eq!(op.iam_actions(), [format!("acm-pca:{}", op.name())]);
            } else {
                assert!(!op.iam_actions().is_empty(), "{op}");
            }
        }
    }

    #[test]
    fn only_throttled_and_transient_are_retryable() {
        let op = Operation::AttachPolicy;
        let m = String::new;
        let retryable: Vec<bool> = [
            PortError::Throttled {
                operation: op,
                message: m(),
            },
            PortError::Transient {
                operation: op,
                message: m(),
            },
            PortError::NotFound {
                operation: op,
                message: m(),
            },
            PortError::ConditionFailed {
                operation: op,
                message: m(),
            },
            PortError::Conflict {
                operation: op,
                message: m(),
            },
            PortError::Invalid {
                operation: op,
                message: m(),
            },
            PortError::Other {
                operation: op,
                message: m(),
            },
        ]
        .iter()
        .map(PortError::is_retryable)
        .collect();
        assert_eq!(retryable, [true, true, false, false, false, false, false]);
    }

    #[test]
    fn status_spellings_round_trip() {
        for s in [
            "ACTIVE",
            "INACTIVE",
            "REVOKED",
            "PENDING_TRANSFER",
            "REGISTER_INACTIVE",
            "PENDING_ACTIVATION",
            "NEW_ONE",
        ] {
            assert_eq!(CertificateStatus::from(s).as_str(), s);
        }
    }
}
