//! The Lambda functions fleetcert deploys, named once for `infra`,
//! `lambdas` and the emulator: each function, the AWS operations its
//! handler calls ([`operations`]), the IAM actions and resources of each
//! operation ([`Operation::iam_actions`], [`Operation::resources`]), and
//! the rotation table's layout and defaults that both the stack and the
//! handlers name. `infra` builds every role from these without depending
//! on `lambdas`.

use std::fmt;

/// One deployed Lambda function (one binary in `lambdas/src/bin/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    /// SNS audit notification → one queue message per expiring certificate.
    AuditFanout,
    /// Queue batch → rotation row → `csr_req`.
    RotationStarter,
    /// `csr_res` rule → a certificate from the configured [`Issuer`] → `crt`.
    CsrIssuer,
    /// `crt_ack` rule → retire the old certificate.
    Commit,
    /// `crt_err` rule → clean up the new certificate, notify support.
    ErrorHandler,
    /// Schedule → expire stuck rotations, settle campaigns and release
    /// their next members.
    Sweeper,
    /// JITR registration event → check, attach, activate.
    JitrActivator,
}

impl Function {
    /// Every function.
    pub const ALL: [Function; 7] = [
        Function::AuditFanout,
        Function::RotationStarter,
        Function::CsrIssuer,
        Function::Commit,
        Function::ErrorHandler,
        Function::Sweeper,
        Function::JitrActivator,
    ];

    /// The binary name in `lambdas/src/bin/` and the asset folder name.
    pub const fn name(self) -> &'static str {
        match self {
            Function::AuditFanout => "audit-fanout",
            Function::RotationStarter => "rotation-starter",
            Function::CsrIssuer => "csr-issuer",
            Function::Commit => "commit",
            Function::ErrorHandler => "error-handler",
            Function::Sweeper => "sweeper",
            Function::JitrActivator => "jitr-activator",
        }
    }
}

/// One AWS API operation a port calls, named as AWS names it. Used in
/// errors, for fault injection and call counting in `lambdas::memory`, by
/// the AWS adapters' rate limiter (one bucket per operation), and to list
/// what each function calls ([`Operation::iam_actions`] gives the IAM
/// actions, e.g. `iot:AttachPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Operation {
    /// `iot:DescribeCertificate`.
    DescribeCertificate,
    /// `iot:CreateCertificateFromCsr` (not idempotent).
    CreateCertificateFromCsr,
    /// `iot:UpdateCertificate`.
    UpdateCertificate,
    /// `iot:DeleteCertificate`.
    DeleteCertificate,
    /// `iot:ListAttachedPolicies`.
    ListAttachedPolicies,
    /// `iot:AttachPolicy`.
    AttachPolicy,
    /// `iot:DetachPolicy`.
    DetachPolicy,
    /// `iot:ListPrincipalThings`.
    ListPrincipalThings,
    /// `iot:ListPrincipalThingsV2`: the things with how each is attached
    /// (exclusively or not).
    ListPrincipalThingsV2,
    /// `iot:AttachThingPrincipal`.
    AttachThingPrincipal,
    /// `iot:DetachThingPrincipal`.
    DetachThingPrincipal,
    /// `iot:DescribeThing`.
    DescribeThing,
    /// `iot:CreateThing`.
    CreateThing,
    /// `iot:DescribeCACertificate`.
    DescribeCaCertificate,
    /// `iot:ListAuditFindings` (Device Defender).
    ListAuditFindings,
    /// `iot:RegisterCertificate`: a certificate signed by a CA registered
    /// in AWS IoT (the [`Issuer::PrivateCa`] path).
    RegisterCertificate,
    /// `acm-pca:IssueCertificate` (idempotent for one token, for a while).
    IssueCertificate,
    /// `acm-pca:GetCertificate` (`RequestInProgressException` until issued).
    GetCertificate,
    /// `acm-pca:RevokeCertificate` (a certificate issued but never recorded).
    RevokeCertificate,
    /// `iot:Publish` (iot-data).
    Publish,
    /// `lambdas::ports::RotationStore::create`: a conditional `dynamodb:PutItem`.
    CreateRotation,
    /// `lambdas::ports::RotationStore::get`: `dynamodb:GetItem`.
    GetRotation,
    /// `lambdas::ports::RotationStore::latest_for_thing`: `dynamodb:GetItem` of the thing's
    /// pointer row (or a query), as the adapter stores it.
    LatestRotationForThing,
    /// `lambdas::ports::RotationStore::update`: a conditional `dynamodb:UpdateItem` / `PutItem`.
    UpdateRotation,
    /// `lambdas::ports::RotationStore::open_due`: `dynamodb:Query` of the due index.
    ListDueRotations,
    /// `lambdas::ports::RotationStore::get_campaign`: `dynamodb:GetItem` of a
    /// campaign item (`rules::campaign`).
    GetCampaign,
    /// `lambdas::ports::RotationStore::put_campaign`: conditional puts of
    /// campaign items in one `TransactWriteItems` (`dynamodb:PutItem`).
    PutCampaign,
    /// `lambdas::ports::RotationStore::latest_for_certificate`: `dynamodb:Query`
    /// of the certificate index.
    LatestRotationForCertificate,
    /// `lambdas::ports::Notifier::notify`: `sns:Publish`.
    NotifySupport,
    /// `lambdas::ports::WorkQueue::send_batch`: `sqs:SendMessageBatch` (IAM action `sqs:SendMessage`).
    SendMessageBatch,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 30] = [
        Operation::DescribeCertificate,
        Operation::CreateCertificateFromCsr,
        Operation::UpdateCertificate,
        Operation::DeleteCertificate,
        Operation::ListAttachedPolicies,
        Operation::AttachPolicy,
        Operation::DetachPolicy,
        Operation::ListPrincipalThings,
        Operation::ListPrincipalThingsV2,
        Operation::AttachThingPrincipal,
        Operation::DetachThingPrincipal,
        Operation::DescribeThing,
        Operation::CreateThing,
        Operation::DescribeCaCertificate,
        Operation::ListAuditFindings,
        Operation::RegisterCertificate,
        Operation::IssueCertificate,
        Operation::GetCertificate,
        Operation::RevokeCertificate,
        Operation::Publish,
        Operation::CreateRotation,
        Operation::GetRotation,
        Operation::LatestRotationForThing,
        Operation::UpdateRotation,
        Operation::ListDueRotations,
        Operation::GetCampaign,
        Operation::PutCampaign,
        Operation::LatestRotationForCertificate,
        Operation::NotifySupport,
        Operation::SendMessageBatch,
    ];

    /// The operation's name: the AWS API name for AWS calls
    /// (`CreateCertificateFromCsr`), the port method for the rotation store
    /// (`CreateRotation`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::DescribeCertificate => "DescribeCertificate",
            Self::CreateCertificateFromCsr => "CreateCertificateFromCsr",
            Self::UpdateCertificate => "UpdateCertificate",
            Self::DeleteCertificate => "DeleteCertificate",
            Self::ListAttachedPolicies => "ListAttachedPolicies",
            Self::AttachPolicy => "AttachPolicy",
            Self::DetachPolicy => "DetachPolicy",
            Self::ListPrincipalThings => "ListPrincipalThings",
            Self::ListPrincipalThingsV2 => "ListPrincipalThingsV2",
            Self::AttachThingPrincipal => "AttachThingPrincipal",
            Self::DetachThingPrincipal => "DetachThingPrincipal",
            Self::DescribeThing => "DescribeThing",
            Self::CreateThing => "CreateThing",
            Self::DescribeCaCertificate => "DescribeCACertificate",
            Self::ListAuditFindings => "ListAuditFindings",
            Self::RegisterCertificate => "RegisterCertificate",
            Self::IssueCertificate => "IssueCertificate",
            Self::GetCertificate => "GetCertificate",
            Self::RevokeCertificate => "RevokeCertificate",
            Self::Publish => "Publish",
            Self::CreateRotation => "CreateRotation",
            Self::GetRotation => "GetRotation",
            Self::LatestRotationForThing => "LatestRotationForThing",
            Self::UpdateRotation => "UpdateRotation",
            Self::ListDueRotations => "ListDueRotations",
            Self::GetCampaign => "GetCampaign",
            Self::PutCampaign => "PutCampaign",
            Self::LatestRotationForCertificate => "LatestRotationForCertificate",
            Self::NotifySupport => "NotifySupport",
            Self::SendMessageBatch => "SendMessageBatch",
        }
    }

    /// The operation with this [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Operation> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }

    /// The IAM actions the AWS adapter's call needs: `iot:<name>` for the
    /// registry (`iot:DescribeCACertificate`), `acm-pca:<name>` for AWS
    /// Private CA, `iot:Publish`, the DynamoDB,
    /// SNS and SQS actions behind the rotation store, notifier and queue.
    /// `infra` builds each function's role from these.
    pub const fn iam_actions(self) -> &'static [&'static str] {
        match self {
            Self::DescribeCertificate => &["iot:DescribeCertificate"],
            Self::CreateCertificateFromCsr => &["iot:CreateCertificateFromCsr"],
            Self::UpdateCertificate => &["iot:UpdateCertificate"],
            Self::DeleteCertificate => &["iot:DeleteCertificate"],
            Self::ListAttachedPolicies => &["iot:ListAttachedPolicies"],
            Self::AttachPolicy => &["iot:AttachPolicy"],
            Self::DetachPolicy => &["iot:DetachPolicy"],
            Self::ListPrincipalThings => &["iot:ListPrincipalThings"],
            Self::ListPrincipalThingsV2 => &["iot:ListPrincipalThingsV2"],
            Self::AttachThingPrincipal => &["iot:AttachThingPrincipal"],
            Self::DetachThingPrincipal => &["iot:DetachThingPrincipal"],
            Self::DescribeThing => &["iot:DescribeThing"],
            Self::CreateThing => &["iot:CreateThing"],
            Self::DescribeCaCertificate => &["iot:DescribeCACertificate"],
            Self::ListAuditFindings => &["iot:ListAuditFindings"],
            Self::RegisterCertificate => &["iot:RegisterCertificate"],
            Self::IssueCertificate => &["acm-pca:IssueCertificate"],
            Self::GetCertificate => &["acm-pca:GetCertificate"],
            Self::RevokeCertificate => &["acm-pca:RevokeCertificate"],
            Self::Publish => &["iot:Publish"],
            Self::CreateRotation => &["dynamodb:PutItem"],
            // closing a rotation also updates the thing's pointer
            // (`dynamodb:UpdateItem`): see `handlers::closes_rotations`
            Self::UpdateRotation => &["dynamodb:PutItem"],
            Self::GetRotation | Self::LatestRotationForThing | Self::GetCampaign => {
                &["dynamodb:GetItem"]
            }
            Self::PutCampaign => &["dynamodb:PutItem"],
            Self::ListDueRotations | Self::LatestRotationForCertificate => &["dynamodb:Query"],
            Self::NotifySupport => &["sns:Publish"],
            Self::SendMessageBatch => &["sqs:SendMessage"],
        }
    }

    /// The resources of fleetcert's a call of this operation involves,
    /// whatever IAM authorizes it on. IAM decides which of them (if any) a
    /// grant must name: `rules::iam::request_resources` keeps those whose
    /// type AWS's Service Authorization Reference lists for the action, or
    /// `*` when it lists none. `infra` scopes each role statement and the
    /// emulator authorizes each call through the same data.
    pub const fn resources(self) -> &'static [Resource] {
        match self {
            Self::DescribeCertificate
            | Self::UpdateCertificate
            | Self::DeleteCertificate
            | Self::ListAttachedPolicies
            | Self::ListPrincipalThings
            | Self::ListPrincipalThingsV2 => &[Resource::Certificate],
            Self::AttachPolicy | Self::DetachPolicy => &[Resource::Certificate, Resource::Policy],
            Self::AttachThingPrincipal | Self::DetachThingPrincipal => {
                &[Resource::Certificate, Resource::Thing]
            }
            Self::DescribeThing | Self::CreateThing => &[Resource::Thing],
            Self::DescribeCaCertificate => &[Resource::CaCertificate],
            // a new certificate has no ARN yet; findings belong to the account
            Self::CreateCertificateFromCsr
            | Self::RegisterCertificate
            | Self::ListAuditFindings => &[],
            // the configured CA (`[issuer] ca_arn`), and nothing else
            Self::IssueCertificate | Self::GetCertificate | Self::RevokeCertificate => {
                &[Resource::PrivateCa]
            }
            Self::Publish => &[Resource::DeviceTopic],
            Self::CreateRotation
            | Self::GetRotation
            | Self::LatestRotationForThing
            | Self::UpdateRotation
            | Self::GetCampaign
            | Self::PutCampaign => &[Resource::RotationTable],
            Self::ListDueRotations => &[Resource::DueIndex],
            Self::LatestRotationForCertificate => &[Resource::CertificateIndex],
            Self::NotifySupport => &[Resource::SupportTopic],
            Self::SendMessageBatch => &[Resource::WorkQueue],
        }
    }

    /// AWS's published default rate quota in requests per second for the
    /// IoT control-plane operations DESIGN.md lists, and the rate assumed
    /// for SQS's `SendMessageBatch` (`None`: not a listed quota; the
    /// adapters pick their own).
    pub const fn default_quota_per_second(self) -> Option<u32> {
        match self {
            Self::CreateCertificateFromCsr => Some(15),
            Self::UpdateCertificate
            | Self::DeleteCertificate
            | Self::DescribeCertificate
            | Self::RegisterCertificate
            | Self::ListPrincipalThings => Some(10),
            Self::AttachPolicy
            | Self::DetachPolicy
            | Self::ListAttachedPolicies
            | Self::AttachThingPrincipal => Some(15),
            // SQS standard queues: "a nearly unlimited number of API calls
            // per second, per API action" (Amazon SQS quotas); 1,000
            // batches (10,000 messages) a second is what fleetcert assumes,
            // so that audit-fanout queues a million findings in minutes.
            Self::SendMessageBatch => Some(1000),
            _ => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A resource of fleetcert's that a port call acts on, named for IAM by
/// its service and its resource type in AWS's Service Authorization
/// Reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Resource {
    /// A device certificate (`iot` `cert`).
    Certificate,
    /// A thing (`iot` `thing`).
    Thing,
    /// An IoT policy (`iot` `policy`).
    Policy,
    /// A registered CA certificate (`iot` `cacert`).
    CaCertificate,
    /// An MQTT topic of a device (`iot` `topic`).
    DeviceTopic,
    /// The rotation table (`dynamodb` `table`).
    RotationTable,
    /// The rotation table's due index (`dynamodb` `index`).
    DueIndex,
    /// The rotation table's certificate index (`dynamodb` `index`).
    CertificateIndex,
    /// The support topic (`sns` `topic`).
    SupportTopic,
    /// The rotation work queue (`sqs` `queue`).
    WorkQueue,
    /// The customer managed key the support topic is encrypted with (`kms`
    /// `key`): SNS uses it with the publisher's credentials.
    SupportTopicKey,
    /// The AWS Private CA that issues a fleet's certificates (`acm-pca`
    /// `certificate-authority`): the configured `ca_arn`, never another.
    PrivateCa,
}

impl Resource {
    /// `(service prefix, resource type)` as the Service Authorization
    /// Reference names them.
    pub const fn iam_type(self) -> (&'static str, &'static str) {
        match self {
            Self::Certificate => ("iot", "cert"),
            Self::Thing => ("iot", "thing"),
            Self::Policy => ("iot", "policy"),
            Self::CaCertificate => ("iot", "cacert"),
            Self::DeviceTopic => ("iot", "topic"),
            Self::RotationTable => ("dynamodb", "table"),
            Self::DueIndex | Self::CertificateIndex => ("dynamodb", "index"),
            Self::SupportTopic => ("sns", "topic"),
            Self::WorkQueue => ("sqs", "queue"),
            Self::SupportTopicKey => ("kms", "key"),
            Self::PrivateCa => ("acm-pca", "certificate-authority"),
        }
    }
}

/// Whether `function` publishes MQTT messages (iot-data `Publish`): only
/// these look up the iot-data endpoint at start-up (`iot:DescribeEndpoint`).
pub fn publishes(function: Function) -> bool {
    operations(function).contains(&Operation::Publish)
}

/// Whether `function` may close an open rotation (COMMITTED, FAILED,
/// EXPIRED; csr-issuer fails a rotation whose CSR it refused): its
/// [`Operation::UpdateRotation`] then also closes the
/// thing's pointer in the same transaction (`dynamodb:UpdateItem`). The
/// others only ever move a rotation between open states or finish the
/// cleanup of one already closed.
pub fn closes_rotations(function: Function) -> bool {
    matches!(
        function,
        Function::Commit | Function::ErrorHandler | Function::Sweeper | Function::CsrIssuer
    )
}

/// Where csr-issuer's new certificates come from (`[issuer] kind` in the
/// stack's configuration, `ISSUER` in csr-issuer's environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Issuer {
    /// AWS IoT's CA: `CreateCertificateFromCsr` (the original protocol).
    #[default]
    AwsIot,
    /// AWS Private CA: `acm-pca:IssueCertificate` on one configured CA,
    /// `GetCertificate`, then `iot:RegisterCertificate` (the CA is
    /// registered in AWS IoT); `RevokeCertificate` for a certificate issued
    /// but never recorded.
    PrivateCa,
}

impl Issuer {
    /// Both issuers.
    pub const ALL: [Issuer; 2] = [Issuer::AwsIot, Issuer::PrivateCa];

    /// The configuration spelling: `aws_iot`, `private_ca`.
    pub const fn name(self) -> &'static str {
        match self {
            Issuer::AwsIot => "aws_iot",
            Issuer::PrivateCa => "private_ca",
        }
    }

    /// The issuer spelled `name`.
    pub fn from_name(name: &str) -> Option<Issuer> {
        Self::ALL.into_iter().find(|i| i.name() == name)
    }
}

impl fmt::Display for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// [`operations_for`] with AWS IoT's CA as the issuer (the default).
pub fn operations(function: Function) -> &'static [Operation] {
    operations_for(function, Issuer::AwsIot)
}

/// Every AWS operation `function`'s handler may call when csr-issuer's
/// certificates come from `issuer` (only csr-issuer's list depends on it);
/// `infra` builds each role from these, and
/// `lambdas/tests/handlers_operations.rs` proves the list exact for both
/// issuers on the memory adapters' call counters.
pub fn operations_for(function: Function, issuer: Issuer) -> &'static [Operation] {
    use Operation as O;
    const CLEANUP: [Operation; 7] = [
        O::DescribeCertificate,
        O::ListAttachedPolicies,
        O::DetachPolicy,
        O::ListPrincipalThings,
        O::DetachThingPrincipal,
        O::UpdateCertificate,
        O::DeleteCertificate,
    ];
    const ROW: [Operation; 3] = [O::GetRotation, O::LatestRotationForThing, O::UpdateRotation];
    const fn cat<const A: usize, const B: usize, const C: usize>(
        a: [Operation; A],
        b: [Operation; B],
    ) -> [Operation; C] {
        let mut out = [O::Publish; C];
        let mut i = 0;
        while i < A {
            out[i] = a[i];
            i += 1;
        }
        while i < C {
            out[i] = b[i - A];
            i += 1;
        }
        out
    }
    // Every function that advances a row may find it closed with cleanup
    // still owed, finish it and send the notification the earlier
    // invocation did not (`advance`): NotifySupport.
    // The issuer attaches the new certificate to each thing of the old one
    // as the old one is attached (exclusively or not): ListPrincipalThingsV2.
    const ISSUER: [Operation; 16] = cat(
        cat::<3, 7, 10>(ROW, CLEANUP),
        [
            O::ListPrincipalThingsV2,
            O::CreateCertificateFromCsr,
            O::AttachPolicy,
            O::AttachThingPrincipal,
            O::Publish,
            O::NotifySupport,
        ],
    );
    // AWS Private CA instead of CreateCertificateFromCsr: issue, fetch,
    // register in AWS IoT, and revoke what was issued but never recorded.
    const ISSUER_PCA: [Operation; 19] = cat(
        cat::<3, 7, 10>(ROW, CLEANUP),
        [
            O::ListPrincipalThingsV2,
            O::IssueCertificate,
            O::GetCertificate,
            O::RegisterCertificate,
            O::RevokeCertificate,
            O::AttachPolicy,
            O::AttachThingPrincipal,
            O::Publish,
            O::NotifySupport,
        ],
    );
    const COMMIT: [Operation; 11] = cat(cat::<3, 7, 10>(ROW, CLEANUP), [O::NotifySupport]);
    const ERROR: [Operation; 11] = COMMIT;
    // The sweeper also sends a stalled rotation's message again: Publish;
    // and settles the active campaigns (`rules::campaign`): reads and
    // writes their items, reads their members' rotation rows, releases the
    // next members onto the work queue and tells support when one pauses.
    const SWEEPER: [Operation; 15] = cat(
        CLEANUP,
        [
            O::ListDueRotations,
            O::UpdateRotation,
            O::Publish,
            O::NotifySupport,
            O::GetCampaign,
            O::PutCampaign,
            O::GetRotation,
            O::SendMessageBatch,
        ],
    );
    match function {
        Function::AuditFanout => &[O::ListAuditFindings, O::SendMessageBatch, O::NotifySupport],
        Function::RotationStarter => &[
            O::LatestRotationForCertificate,
            O::DescribeCertificate,
            O::ListPrincipalThings,
            O::CreateRotation,
            O::GetRotation,
            O::Publish,
            O::NotifySupport,
            // a campaign member starts only while its campaign runs
            O::GetCampaign,
        ],
        Function::CsrIssuer => match issuer {
            Issuer::AwsIot => &ISSUER,
            Issuer::PrivateCa => &ISSUER_PCA,
        },
        Function::Commit => &COMMIT,
        Function::ErrorHandler => &ERROR,
        Function::Sweeper => &SWEEPER,
        Function::JitrActivator => &[
            O::DescribeCertificate,
            O::DescribeCaCertificate,
            O::DescribeThing,
            O::CreateThing,
            O::AttachPolicy,
            O::AttachThingPrincipal,
            O::UpdateCertificate,
            O::NotifySupport,
        ],
    }
}

/// Default time a device has to finish a rotation: 7 days.
pub const DEFAULT_ROTATION_DEADLINE_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Default most rows one sweep acts on: 200.
pub const DEFAULT_SWEEP_MAX_ROWS: usize = 200;

/// Default days a finished rotation row is kept: 90.
pub const DEFAULT_ROTATION_TTL_DAYS: u32 = 90;

/// The longest `ROTATION_TTL_DAYS` accepted: 10 years.
pub const MAX_ROTATION_TTL_DAYS: u32 = 3650;

/// The rotation table's DynamoDB TTL attribute (epoch seconds), set on
/// finished rows only; infra declares it in `TimeToLiveSpecification`.
pub const ROTATION_TTL_ATTRIBUTE: &str = "expiresAt";

/// The rotation table's sparse global secondary index of the rows the
/// sweeper looks at: open rows and closed rows owing a cleanup, the only
/// rows that carry [`DUE_KEY_ATTRIBUTE`]. The sweeper queries it for the
/// rows past a deadline instead of scanning every row of the fleet.
pub const DUE_INDEX: &str = "due";

/// The due index's partition key; its one value is [`DUE_KEY_VALUE`]. One
/// partition is enough: its writes follow the rotation rate, which the IoT
/// API quotas hold to tens per second, far below a partition's 1,000.
pub const DUE_KEY_ATTRIBUTE: &str = "dueKey";

/// The value of [`DUE_KEY_ATTRIBUTE`] on every due row.
pub const DUE_KEY_VALUE: &str = "due";

/// The rotation table's global secondary index of rotation rows by the
/// certificate they replace (partition [`OLD_CERTIFICATE_ATTRIBUTE`], sort
/// [`CREATED_AT_ATTRIBUTE`]): rotation-starter looks a certificate up
/// there before it spends an IoT API call on it, so the daily audit
/// finding a certificate that is already rotating (or rotated) costs one
/// read instead of a share of the `DescribeCertificate` quota.
pub const CERTIFICATE_INDEX: &str = "certificate";

/// The rotation row attribute naming the certificate the rotation replaces
/// (S), the certificate index's partition key.
pub const OLD_CERTIFICATE_ATTRIBUTE: &str = "oldCertificateId";

/// The rotation row attribute of its creation (N, ms since the Unix
/// epoch), the certificate index's sort key.
pub const CREATED_AT_ATTRIBUTE: &str = "createdAtMs";

/// The rotation row attribute of the deadline (N, ms since the Unix
/// epoch), the due index's sort key.
pub const DEADLINE_ATTRIBUTE: &str = "deadlineMs";
