//! The fleetcert stack: everything DESIGN.md's rotation and JITR flows need.

use std::collections::{BTreeMap, BTreeSet};

use rules::functions::Function as Fn_;
use serde_json::{Value as Json, json};

use crate::config::{Architecture, DevicePolicy, Frequency, Validated};
use crate::from_rules;
use crate::generated::dynamodb_table::{
    AttributeDefinition, AttributeDefinitionAttributeType, GlobalSecondaryIndex,
    GlobalSecondaryIndexKeySchemaItem, KeySchemaItem, PointInTimeRecoverySpecification, Projection,
    ProjectionProjectionType, SseSpecification, Table, TableBillingMode, TimeToLiveSpecification,
};
use crate::generated::events_rule::{Rule, Target};
use crate::generated::iam_role::{Policy as InlinePolicy, Role};
use crate::generated::iot_account_audit_configuration::{
    AccountAuditConfiguration, AuditCheckConfigurations, AuditNotificationTarget,
    AuditNotificationTargetConfigurations, CertAgeCheckCustomConfiguration,
    CertExpirationCheckCustomConfiguration, DeviceCertAgeAuditCheckConfiguration,
    DeviceCertExpirationAuditCheckConfiguration,
};
use crate::generated::iot_ca_certificate::{
    CaCertificate, CaCertificateAutoRegistrationStatus, CaCertificateStatus,
};
use crate::generated::iot_policy::Policy as IotPolicy;
use crate::generated::iot_scheduled_audit::{
    ScheduledAudit, ScheduledAuditDayOfWeek, ScheduledAuditFrequency,
};
use crate::generated::iot_topic_rule::{
    Action, LambdaAction, SqsAction, TopicRule, TopicRulePayload,
};
use crate::generated::kms_key::Key;
use crate::generated::lambda_event_source_mapping::EventSourceMapping;
use crate::generated::lambda_function::{
    Code, DeadLetterConfig, Environment, Function, FunctionArchitecturesItem, FunctionRuntime,
    LoggingConfig, LoggingConfigLogFormat,
};
use crate::generated::lambda_permission::Permission;
use crate::generated::logs_log_group::LogGroup;
use crate::generated::sns_topic::{Subscription, Topic};
use crate::generated::sqs_queue::Queue;
use crate::intrinsics::{Pseudo, Value, join, sub, sub_if_needed};
use crate::stack::{Handle, Options, Stack, checkov_skips};
use rules::functions::{
    CERTIFICATE_INDEX, CREATED_AT_ATTRIBUTE, DEADLINE_ATTRIBUTE, DUE_INDEX, DUE_KEY_ATTRIBUTE,
    Issuer, OLD_CERTIFICATE_ATTRIBUTE, Resource,
};
use rules::issuer::PrivateCaSettings;

/// AWS's managed policy for the Device Defender audit role (the partition
/// is substituted).
pub const AUDIT_MANAGED_POLICY: &str =
    "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSIoTDeviceDefenderAudit";

/// The CDK bootstrap qualifier the stock `cdk bootstrap` uses.
pub const QUALIFIER: &str = "hnb659fds";

/// The asset of one function: where its zip is expected, its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaAsset {
    /// The function.
    pub function: Fn_,
    /// SHA-256 of the zip (hex), or of the missing path when absent.
    pub hash: String,
    /// Whether the zip exists.
    pub present: bool,
}

/// A function's timeout: audit-fanout has its own (one invocation queues a
/// whole audit's findings), the others share `lambda.timeout_seconds`.
fn timeout_seconds(c: &crate::config::Config, f: Fn_) -> u32 {
    match f {
        Fn_::AuditFanout => c.lambda.fanout_timeout_seconds,
        _ => c.lambda.timeout_seconds,
    }
}

/// API quotas (requests per second, AWS defaults from DESIGN.md) and how
/// many calls of each a single invocation makes: reserved concurrency is
/// the largest that keeps every call under its quota, assuming an
/// invocation lasts about one second.
fn reserved_concurrency(f: Fn_, issuer: Issuer) -> u32 {
    let calls: &[(u32, u32)] = match f {
        // RegisterCertificate 10, AttachPolicy 15, AttachThingPrincipal 15
        // (ACM PCA's IssueCertificate quota is higher).
        Fn_::CsrIssuer if issuer == Issuer::PrivateCa => &[(10, 1), (15, 1), (15, 1)],
        // ListAuditFindings pages (no published quota; keep it serial).
        Fn_::AuditFanout => &[(1, 1)],
        // batch of 10 messages → 10 ListPrincipalThings (10 rps).
        Fn_::RotationStarter => &[(10, 10)],
        // CreateCertificateFromCsr 15, AttachPolicy 15, AttachThingPrincipal 15.
        Fn_::CsrIssuer => &[(15, 1), (15, 1), (15, 1)],
        // DetachPolicy 15, UpdateCertificate 10, DeleteCertificate 10.
        Fn_::Commit | Fn_::ErrorHandler => &[(15, 1), (10, 1), (10, 1)],
        // one sweep at a time.
        Fn_::Sweeper => &[(1, 1)],
        // DescribeCertificate 10, UpdateCertificate 10, AttachPolicy 15.
        Fn_::JitrActivator => &[(10, 1), (10, 1), (15, 1)],
    };
    calls
        .iter()
        .map(|(quota, per_call)| quota / per_call)
        .min()
        .unwrap_or(1)
        .max(1)
}

/// The settings of the configuration a function reads (the environment
/// `rules::functions::Config::from_env` parses): the rotation deadline for
/// the functions that set and sweep it, the CSR policy for csr-issuer, the
/// sweep bound for the sweeper, thing creation for jitr-activator, the
/// issuer for csr-issuer (nothing for AWS IoT's CA, the default).
fn function_settings(
    f: Fn_,
    c: &crate::config::Config,
    private_ca: Option<&PrivateCaSettings>,
) -> Vec<(&'static str, String)> {
    let deadline_ms = || {
        (
            "ROTATION_DEADLINE_MS",
            (u64::from(c.rotation_deadline_hours()) * 3_600_000).to_string(),
        )
    };
    match f {
        Fn_::RotationStarter => vec![deadline_ms()],
        Fn_::Sweeper => vec![
            deadline_ms(),
            ("SWEEP_MAX_ROWS", c.rotation.sweep_max_rows.to_string()),
        ],
        Fn_::CsrIssuer => [
            ("COPY_POLICIES", c.policies.copy.join(",")),
            ("ADD_POLICIES", c.policies.add.join(",")),
            ("CSR_MIN_RSA_BITS", c.csr.min_rsa_bits.to_string()),
            ("CSR_MAX_RSA_BITS", c.csr.max_rsa_bits.to_string()),
            ("CSR_ALLOW_P256", c.csr.allow_p256.to_string()),
            ("CSR_ALLOW_P384", c.csr.allow_p384.to_string()),
            ("CSR_REQUIRE_NEW_KEY", c.csr.require_new_key.to_string()),
            (
                "CSR_REQUIRE_CN_MATCHES_THING",
                c.csr.require_cn_matches_thing.to_string(),
            ),
        ]
        .into_iter()
        .chain(private_ca.into_iter().flat_map(|p| {
            [
                ("ISSUER", Issuer::PrivateCa.name().to_owned()),
                ("PCA_CA_ARN", p.ca_arn.clone()),
                ("PCA_SIGNING_ALGORITHM", p.signing_algorithm.to_string()),
                ("PCA_VALIDITY_DAYS", p.validity_days.to_string()),
                ("PCA_TEMPLATE_ARN", p.template_arn.clone()),
            ]
        }))
        .collect(),
        Fn_::JitrActivator => vec![("JITR_CREATE_THING", c.jitr.create_thing.to_string())],
        Fn_::AuditFanout | Fn_::Commit | Fn_::ErrorHandler => Vec::new(),
    }
}

fn arn(kind: &str) -> String {
    format!("arn:${{AWS::Partition}}:iot:${{AWS::Region}}:${{AWS::AccountId}}:{kind}")
}

fn pascal(f: Fn_) -> String {
    f.name()
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|h| h.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

struct Refs {
    table: Handle<Table>,
    queue: Handle<Queue>,
    support: Handle<Topic>,
    support_key: Handle<Key>,
    /// fleetcert's device policy, unless `policies.device_policy = "none"`.
    device_policy: Option<Handle<IotPolicy>>,
    /// csr-issuer's AWS Private CA, when `issuer.kind = "private_ca"`.
    private_ca: Option<PrivateCaSettings>,
}

impl Refs {
    fn issuer(&self) -> Issuer {
        if self.private_ca.is_some() {
            Issuer::PrivateCa
        } else {
            Issuer::AwsIot
        }
    }
}

/// Whether Lambda invokes `f` asynchronously (topic rules, SNS, the
/// schedule), so that a dead-letter queue applies; rotation-starter is
/// polled from SQS, synchronously.
pub fn invoked_asynchronously(f: Fn_) -> bool {
    f != Fn_::RotationStarter
}

/// checkov checks a function does not pass, each with its reason.
fn function_skips(f: Fn_) -> Vec<(&'static str, &'static str)> {
    let mut skips = vec![
        (
            "CKV_AWS_117",
            "the functions call only AWS APIs over public endpoints; a VPC adds NAT cost and no isolation here",
        ),
        (
            "CKV_AWS_173",
            "environment variables hold resource names only, no secrets; the AWS managed key encrypts them",
        ),
        (
            "CKV_AWS_272",
            "code signing needs a signing profile per account; the zips are built and hashed by the pipeline",
        ),
    ];
    if !invoked_asynchronously(f) {
        skips.push((
            "CKV_AWS_116",
            "invoked synchronously by its SQS event source, where a function dead-letter queue never applies: the rotation queue's redrive policy moves a message to the dead-letter queue after 5 receives",
        ));
    }
    skips
}

/// The management topics `f` publishes to (`iot:Publish`).
fn publish_topics(f: Fn_) -> &'static [&'static str] {
    match f {
        Fn_::RotationStarter => &["csr_req"],
        Fn_::CsrIssuer => &["crt"],
        // sends a stalled rotation's message again
        Fn_::Sweeper => &["csr_req", "crt"],
        _ => &[],
    }
}

/// The KMS actions SNS performs with a publisher's credentials on the key
/// of an encrypted topic (SNS's key management page: a publisher needs
/// `kms:GenerateDataKey` and `kms:Decrypt` on the topic's key).
pub const SNS_PUBLISHER_KMS_ACTIONS: [&str; 2] = ["kms:GenerateDataKey", "kms:Decrypt"];

/// The actions `f`'s role needs beyond its port operations, with the
/// resources each acts on: finding the iot-data endpoint at start-up
/// (functions that publish), reading its SQS event source
/// (rotation-starter; the Lambda service polls with the function's role),
/// and the support topic's key (functions that notify support: SNS calls
/// KMS with the publisher's credentials).
pub fn role_extras(f: Fn_) -> Vec<(&'static str, &'static [Resource])> {
    let mut extras: Vec<(&'static str, &'static [Resource])> = Vec::new();
    if rules::functions::publishes(f) {
        extras.push(("iot:DescribeEndpoint", &[]));
    }
    if rules::functions::operations(f).contains(&rules::functions::Operation::NotifySupport) {
        for action in SNS_PUBLISHER_KMS_ACTIONS {
            extras.push((action, &[Resource::SupportTopicKey]));
        }
    }
    if f == Fn_::RotationStarter {
        for action in [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
        ] {
            extras.push((action, &[Resource::WorkQueue]));
        }
    }
    extras
}

/// Every action `f`'s role allows for its work (without the logging and
/// dead-letter statements) when csr-issuer's certificates come from
/// `issuer`, with the resources of fleetcert's it acts on: the IAM actions
/// of the operations its handler calls (`rules::functions::operations_for`,
/// `Operation::resources`) and [`role_extras`].
pub fn role_grants(f: Fn_, issuer: Issuer) -> BTreeMap<&'static str, BTreeSet<Resource>> {
    let mut grants: BTreeMap<&'static str, BTreeSet<Resource>> = BTreeMap::new();
    for op in rules::functions::operations_for(f, issuer) {
        for action in op.iam_actions() {
            grants
                .entry(action)
                .or_default()
                .extend(op.resources().iter().copied());
        }
    }
    if rules::functions::closes_rotations(f) {
        grants
            .entry("dynamodb:UpdateItem")
            .or_default()
            .insert(Resource::RotationTable);
    }
    for (action, resources) in role_extras(f) {
        grants
            .entry(action)
            .or_default()
            .extend(resources.iter().copied());
    }
    grants
}

/// The actions of [`role_grants`].
pub fn role_actions(f: Fn_, issuer: Issuer) -> BTreeSet<&'static str> {
    role_grants(f, issuer).into_keys().collect()
}

/// What one statement of a role is scoped to, decided by AWS's Service
/// Authorization Reference (`rules::iam`): the resources of the call whose
/// type AWS authorizes the action on, or `*` when AWS lists no resource
/// type for the action (a grant on anything else is never honoured).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// `*`: the action accepts no resource-level permission.
    Unscoped,
    /// These resources.
    Resources(BTreeSet<Resource>),
}

/// The [`Scope`] of `action` on `resources`.
///
/// # Panics
/// When AWS authorizes the action on resource types of which fleetcert's
/// call names none, or the action is not in AWS's data: a defect of the
/// operation table that no deployment could survive (tested for every
/// function).
pub fn scope_of(action: &str, resources: &BTreeSet<Resource>) -> Scope {
    let data = rules::iam::AwsIamData::get()
        .action(action)
        .unwrap_or_else(|e| panic!("{e}"));
    if data.resource_types.is_empty() {
        return Scope::Unscoped;
    }
    let service = action.split(':').next().unwrap_or_default();
    let kept: BTreeSet<Resource> = resources
        .iter()
        .copied()
        .filter(|r| {
            let (svc, kind) = r.iam_type();
            svc == service && data.resource_types.iter().any(|t| t.name == kind)
        })
        .collect();
    assert!(
        !kept.is_empty(),
        "AWS authorizes {action} on {:?}; fleetcert's call names {resources:?}",
        data.resource_types
    );
    Scope::Resources(kept)
}

fn sid(scope: &Scope) -> String {
    match scope {
        Scope::Unscoped => "AccountWideCalls".to_owned(),
        Scope::Resources(set) => set
            .iter()
            .map(|r| match r {
                Resource::Certificate => "Certificates",
                Resource::Thing => "Things",
                Resource::Policy => "DevicePolicy",
                Resource::CaCertificate => "CaCertificates",
                Resource::DeviceTopic => "DeviceTopics",
                Resource::RotationTable => "RotationTable",
                Resource::DueIndex => "RotationTableDueIndex",
                Resource::CertificateIndex => "RotationTableCertificateIndex",
                Resource::SupportTopic => "SupportTopic",
                Resource::WorkQueue => "RotationQueue",
                Resource::SupportTopicKey => "SupportTopicKey",
                Resource::PrivateCa => "PrivateCa",
                _ => "Other",
            })
            .collect::<Vec<_>>()
            .join("And"),
    }
}

/// The actions of `f` that AWS authorizes on `*` only.
pub fn unscoped_actions(f: Fn_, issuer: Issuer) -> Vec<&'static str> {
    role_grants(f, issuer)
        .into_iter()
        .filter(|(action, resources)| scope_of(action, resources) == Scope::Unscoped)
        .map(|(action, _)| action)
        .collect()
}

/// One statement of a role: sid, actions, resources, and its `Condition`.
type Statement = (String, Vec<&'static str>, Vec<Json>, Option<Json>);

/// The action ACM PCA lets a role pin the certificate template of, with
/// the condition key (`acm-pca:TemplateArn`, in AWS's data).
const TEMPLATE_PINNED: (&str, &str) = ("acm-pca:IssueCertificate", "acm-pca:TemplateArn");

/// Least-privilege statements of one function, as `(sid, actions,
/// resources, condition)`, derived from [`role_grants`] and AWS's data:
/// one statement per [`Scope`], except `acm-pca:IssueCertificate`, which
/// has its own, pinned to the configured template.
fn statements(f: Fn_, r: &Refs) -> Vec<Statement> {
    let mut scopes: BTreeMap<Scope, Vec<&'static str>> = BTreeMap::new();
    let mut pinned = Vec::new();
    for (action, resources) in role_grants(f, r.issuer()) {
        let scope = scope_of(action, &resources);
        if action == TEMPLATE_PINNED.0 {
            pinned.push((action, scope));
            continue;
        }
        scopes.entry(scope).or_default().push(action);
    }
    let resources_of = |scope: &Scope| match scope {
        Scope::Unscoped => vec![json!("*")],
        Scope::Resources(set) => set.iter().flat_map(|res| arns(f, *res, r)).collect(),
    };
    let mut out: Vec<Statement> = scopes
        .into_iter()
        .map(|(scope, actions)| (sid(&scope), actions, resources_of(&scope), None))
        .collect();
    for (action, scope) in pinned {
        let template = r.private_ca.as_ref().map(|p| p.template_arn.clone());
        let condition = template.map(|t| json!({ "StringEquals": { TEMPLATE_PINNED.1: t } }));
        out.push((
            "IssueFromTemplate".to_owned(),
            vec![action],
            resources_of(&scope),
            condition,
        ));
    }
    out
}

/// The ARNs (patterns) of one kind of fleetcert resource, for `f`'s role.
fn arns(f: Fn_, resource: Resource, r: &Refs) -> Vec<Json> {
    match resource {
        Resource::Certificate => vec![sub(arn("cert/*")).to_json()],
        Resource::Thing => vec![sub(arn("thing/*")).to_json()],
        Resource::Policy => r.device_policy.iter().map(|p| p.arn().to_json()).collect(),
        Resource::CaCertificate => vec![sub(arn("cacert/*")).to_json()],
        Resource::DeviceTopic => publish_topics(f)
            .iter()
            .map(|kind| sub(arn(&format!("topic/management/topic/*/{kind}"))).to_json())
            .collect(),
        Resource::RotationTable => vec![r.table.arn().to_json()],
        Resource::DueIndex | Resource::CertificateIndex => {
            let index = if resource == Resource::DueIndex {
                rules::functions::DUE_INDEX
            } else {
                rules::functions::CERTIFICATE_INDEX
            };
            vec![join("", vec![r.table.arn(), format!("/index/{index}").into()]).to_json()]
        }
        Resource::WorkQueue => vec![r.queue.arn().to_json()],
        Resource::SupportTopic => vec![r.support.r#ref().to_json()],
        Resource::SupportTopicKey => vec![r.support_key.arn().to_json()],
        Resource::PrivateCa => r.private_ca.iter().map(|p| json!(p.ca_arn)).collect(),
        other => panic!("no ARN for {other:?}"),
    }
}

fn assume(service: &str) -> Json {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": service },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "aws:SourceAccount": { "Ref": "AWS::AccountId" } } }
        }]
    })
}

fn policy_doc(statements: Vec<Statement>) -> Json {
    json!({
        "Version": "2012-10-17",
        "Statement": statements.into_iter().map(|(sid, actions, resources, condition)| {
            let mut statement = json!({
                "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources
            });
            if let (Some(condition), Some(map)) = (condition, statement.as_object_mut()) {
                map.insert("Condition".to_owned(), condition);
            }
            statement
        }).collect::<Vec<_>>()
    })
}

/// Builds the stack from a validated configuration and the Lambda assets.
pub fn build(v: &Validated, assets: &[LambdaAsset]) -> Stack {
    let c = &v.config;
    let mut s = Stack::new(
        "fleetcert: AWS IoT device certificate rotation (Device Defender) and just-in-time registration",
    );
    s.parameter(
        "BootstrapVersion",
        json!({
            "Type": "AWS::SSM::Parameter::Value<String>",
            "Default": format!("/cdk-bootstrap/{QUALIFIER}/version"),
            "Description": "Version of the CDK bootstrap resources in this environment, automatically retrieved from SSM Parameter Store. [cdk:skip]"
        }),
    );
    s.rule(
        "CheckBootstrapVersion",
        json!({
            "Assertions": [{
                "Assert": { "Fn::Not": [{ "Fn::Contains": [["1", "2", "3", "4", "5"], { "Ref": "BootstrapVersion" }] }] },
                "AssertDescription": "CDK bootstrap stack version 6 required. Please run 'cdk bootstrap' with a recent version of the CDK CLI."
            }]
        }),
    );

    // --- state, queues, topics ------------------------------------------
    let table = s.add_with(
        "RotationTable",
        Table {
            attribute_definitions: Some(vec![
                AttributeDefinition::new("rotationId", AttributeDefinitionAttributeType::S),
                AttributeDefinition::new(DUE_KEY_ATTRIBUTE, AttributeDefinitionAttributeType::S),
                AttributeDefinition::new(DEADLINE_ATTRIBUTE, AttributeDefinitionAttributeType::N),
                AttributeDefinition::new(
                    OLD_CERTIFICATE_ATTRIBUTE,
                    AttributeDefinitionAttributeType::S,
                ),
                AttributeDefinition::new(
                    CREATED_AT_ATTRIBUTE,
                    AttributeDefinitionAttributeType::N,
                ),
            ]),
            // Sparse: only open rows and rows owing a cleanup carry the
            // partition key, so the sweeper reads those and not the fleet.
            // The certificate index: every rotation row by the certificate
            // it replaces, newest first (pointer rows have no such key).
            global_secondary_indexes: Some(vec![
                GlobalSecondaryIndex::new(
                    DUE_INDEX,
                    vec![
                        GlobalSecondaryIndexKeySchemaItem::new(DUE_KEY_ATTRIBUTE, "HASH"),
                        GlobalSecondaryIndexKeySchemaItem::new(DEADLINE_ATTRIBUTE, "RANGE"),
                    ],
                    Projection {
                        projection_type: Some(ProjectionProjectionType::Include),
                        non_key_attributes: Some(vec!["row".into()]),
                    },
                ),
                GlobalSecondaryIndex::new(
                    CERTIFICATE_INDEX,
                    vec![
                        GlobalSecondaryIndexKeySchemaItem::new(OLD_CERTIFICATE_ATTRIBUTE, "HASH"),
                        GlobalSecondaryIndexKeySchemaItem::new(CREATED_AT_ATTRIBUTE, "RANGE"),
                    ],
                    Projection {
                        projection_type: Some(ProjectionProjectionType::Include),
                        non_key_attributes: Some(vec!["row".into()]),
                    },
                ),
            ]),
            billing_mode: Some(TableBillingMode::PayPerRequest),
            point_in_time_recovery_specification: Some(PointInTimeRecoverySpecification {
                point_in_time_recovery_enabled: Some(true.into()),
                ..Default::default()
            }),
            sse_specification: Some(SseSpecification::new(true)),
            time_to_live_specification: Some(TimeToLiveSpecification {
                attribute_name: Some(rules::functions::ROTATION_TTL_ATTRIBUTE.into()),
                ..TimeToLiveSpecification::new(true)
            }),
            ..Table::new(vec![KeySchemaItem::new("rotationId", "HASH")])
        },
        Options {
            deletion_policy: Some("Retain"),
            metadata: Some(checkov_skips(&[(
                "CKV_AWS_119",
                "encrypted at rest with the AWS owned key; rotation rows hold certificate ids, not secrets, and a customer managed key adds cost and a key policy to run",
            )])),
            ..Options::default()
        },
    );
    let dlq = s.add(
        "RotationDeadLetterQueue",
        Queue {
            kms_master_key_id: Some("alias/aws/sqs".into()),
            message_retention_period: Some(1_209_600_i64.into()),
            ..Queue::default()
        },
    );
    let queue = s.add(
        "RotationQueue",
        Queue {
            kms_master_key_id: Some("alias/aws/sqs".into()),
            visibility_timeout: Some(i64::from(c.lambda.timeout_seconds * 6).into()),
            redrive_policy: Some(
                json!({ "deadLetterTargetArn": dlq.arn().to_json(), "maxReceiveCount": 5 }),
            ),
            ..Queue::default()
        },
    );
    let rule_errors = s.add(
        "RuleErrorQueue",
        Queue {
            kms_master_key_id: Some("alias/aws/sqs".into()),
            message_retention_period: Some(1_209_600_i64.into()),
            ..Queue::default()
        },
    );
    // The audit topic's only publisher is the audit notification role, a
    // principal of the account, which the AWS managed key's policy lets
    // use it through SNS. The support topic is also published to by
    // CloudWatch alarms, a service principal, which an AWS managed key's
    // policy (fixed by AWS) never lets use it: its own key.
    let kms_sns = Some(sub(
        "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:alias/aws/sns",
    ));
    let support_key = s.add("SupportTopicKey", support_topic_key());
    let support = s.add(
        "SupportTopic",
        Topic {
            kms_master_key_id: Some(support_key.arn()),
            ..Topic::default()
        },
    );

    // --- device policy from rules ----------------------------------------
    let device_doc = to_sub(&from_rules::device_policy(
        "${AWS::Partition}",
        "${AWS::Region}",
        "${AWS::AccountId}",
    ));
    let device_policy = (c.policies.device_policy == DevicePolicy::Fleetcert)
        .then(|| s.add("DevicePolicy", IotPolicy::new(device_doc)));

    let refs = Refs {
        table: table.clone(),
        queue: queue.clone(),
        support: support.clone(),
        support_key,
        device_policy,
        private_ca: v.private_ca.clone(),
    };
    let issuer = refs.issuer();

    // --- functions --------------------------------------------------------
    let mut functions: BTreeMap<Fn_, Handle<Function>> = BTreeMap::new();
    for f in Fn_::ALL {
        let id = pascal(f);
        let log = s.add_with(
            &format!("{id}Logs"),
            LogGroup {
                retention_in_days: Some(i64::from(c.lambda.log_retention_days).into()),
                ..LogGroup::default()
            },
            Options {
                metadata: Some(checkov_skips(&[(
                    "CKV_AWS_158",
                    "CloudWatch Logs encrypts every log group at rest; the logs carry ids and reasons, no keys or secrets, so a customer managed key only adds a key policy to run",
                )])),
                ..Options::default()
            },
        );
        let mut stmts = statements(f, &refs);
        // AWS's sources disagree on what CreateLogStream is authorized on:
        // the Service Authorization Reference data says the log stream
        // (`log-group:<name>:log-stream:<stream>`, which the group's
        // `...:*` ARN covers), CloudWatch Logs' own page the log group
        // (`log-group:<name>`). Both are granted, so it works under both.
        stmts.push((
            "WriteOwnLogs".to_owned(),
            vec!["logs:CreateLogStream", "logs:PutLogEvents"],
            vec![
                sub(format!(
                    "arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:${{{}}}",
                    log.logical_id()
                ))
                .to_json(),
                log.arn().to_json(),
            ],
            None,
        ));
        // Lambda sends an event to the dead-letter queue only after every
        // retry of an asynchronous invocation failed (rules, SNS, the
        // schedule); rotation-starter is invoked synchronously by its SQS
        // event source, whose redrive policy dead-letters instead.
        if invoked_asynchronously(f) {
            stmts.push((
                "DeadLetter".to_owned(),
                vec!["sqs:SendMessage"],
                vec![dlq.arn().to_json()],
                None,
            ));
        }
        let star_reason = format!(
            "the only * resources are {}, which AWS's Service Authorization Reference authorizes on * only (rules/data/aws-iam.json)",
            unscoped_actions(f, issuer).join(", ")
        );
        let role = s.add_with(
            &format!("{id}Role"),
            Role {
                policies: Some(vec![InlinePolicy::new(
                    policy_doc(stmts),
                    format!("{}-least-privilege", f.name()),
                )]),
                ..Role::new(assume("lambda.amazonaws.com"))
            },
            Options {
                metadata: Some(checkov_skips(&[
                    ("CKV_AWS_111", star_reason.as_str()),
                    ("CKV_AWS_356", star_reason.as_str()),
                ])),
                ..Options::default()
            },
        );
        let asset = assets.iter().find(|a| a.function == f);
        let key = format!(
            "{}.zip",
            asset.map(|a| a.hash.as_str()).unwrap_or("missing")
        );
        let mut vars = BTreeMap::new();
        vars.insert("ROTATION_TABLE".to_owned(), table.r#ref().to_json());
        vars.insert("ROTATION_QUEUE_URL".to_owned(), queue.r#ref().to_json());
        vars.insert("SUPPORT_TOPIC_ARN".to_owned(), support.r#ref().to_json());
        vars.insert(
            "ROTATION_TTL_DAYS".to_owned(),
            json!(c.rotation_ttl_days.to_string()),
        );
        // The policy JITR attaches: the configured customer policy, else
        // fleetcert's own; with neither, jitr-activator refuses every
        // registration (`policy_name_missing`).
        let jitr_policy = match (&c.jitr.policy_name, &refs.device_policy) {
            (Some(name), _) => Some(json!(name)),
            (None, Some(policy)) => Some(policy.r#ref().to_json()),
            (None, None) => None,
        };
        if let Some(name) = jitr_policy {
            vars.insert("DEVICE_POLICY_NAME".to_owned(), name);
        }
        // an unset list is an absent variable, not an empty one
        for (name, value) in function_settings(f, c, v.private_ca.as_ref())
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
        {
            vars.insert(name.to_owned(), json!(value));
        }
        // Each quota the function shares with another of a rotation's
        // functions, split by calls per rotation (`quota_shares`).
        for (name, value) in crate::quota_shares::quota_shares(f) {
            vars.insert(name, json!(value));
        }
        // `lambdas::limits` divides each API quota by this, so that the
        // function's instances together stay under the account's quota.
        vars.insert(
            "FLEETCERT_CONCURRENCY".to_owned(),
            json!(reserved_concurrency(f, issuer).to_string()),
        );
        let function = s.add_with(
            &id,
            Function {
                architectures: Some(vec![match c.lambda.architecture {
                    Architecture::Arm64 => FunctionArchitecturesItem::Arm64,
                    Architecture::X86_64 => FunctionArchitecturesItem::X8664,
                }]),
                runtime: Some(FunctionRuntime::ProvidedAl2023),
                handler: Some("bootstrap".into()),
                description: Some(format!("fleetcert {}", f.name()).into()),
                memory_size: Some(i64::from(c.lambda.memory_mb).into()),
                timeout: Some(i64::from(timeout_seconds(c, f)).into()),
                reserved_concurrent_executions: Some(
                    i64::from(reserved_concurrency(f, issuer)).into(),
                ),
                dead_letter_config: invoked_asynchronously(f).then(|| DeadLetterConfig {
                    target_arn: Some(dlq.arn()),
                }),
                environment: Some(Environment {
                    variables: Some(vars),
                }),
                logging_config: Some(LoggingConfig {
                    log_format: Some(LoggingConfigLogFormat::Json),
                    log_group: Some(log.r#ref()),
                    ..LoggingConfig::default()
                }),
                ..Function::new(
                    Code {
                        s3_bucket: Some(sub(format!(
                            "cdk-{QUALIFIER}-assets-${{AWS::AccountId}}-${{AWS::Region}}"
                        ))),
                        s3_key: Some(key.into()),
                        ..Code::default()
                    },
                    role.arn(),
                )
            },
            Options {
                metadata: Some(checkov_skips(&function_skips(f))),
                ..Options::default()
            },
        );
        functions.insert(f, function);
    }

    // --- Device Defender --------------------------------------------------
    let fanout = &functions[&Fn_::AuditFanout];
    let audit_topic = s.add(
        "AuditNotificationTopic",
        Topic {
            kms_master_key_id: kms_sns,
            subscription: Some(vec![Subscription::new(fanout.arn(), "lambda")]),
            ..Topic::default()
        },
    );
    // The role AWS IoT assumes to read devices, certificates and policies
    // while it audits: AWS documents its managed policy
    // `service-role/AWSIoTDeviceDefenderAudit` (read-only; vendored in
    // rules/data/aws-iam.json) as the reference, and which calls each
    // check makes is not documented, so a hand-picked subset could fail a
    // check on AWS that passes here. The managed policy works under both.
    let audit_role = s.add(
        "AuditRole",
        Role {
            managed_policy_arns: Some(vec![sub(AUDIT_MANAGED_POLICY)]),
            ..Role::new(assume("iot.amazonaws.com"))
        },
    );
    // The notification target's own role: publish to the audit topic only.
    let audit_notification_role = s.add(
        "AuditNotificationRole",
        Role {
            policies: Some(vec![InlinePolicy::new(
                policy_doc(vec![(
                    "PublishAuditNotifications".to_owned(),
                    vec!["sns:Publish"],
                    vec![audit_topic.r#ref().to_json()],
                    None,
                )]),
                "audit-notifications",
            )]),
            ..Role::new(assume("iot.amazonaws.com"))
        },
    );
    let audit_config = s.add(
        "AuditConfiguration",
        AccountAuditConfiguration {
            audit_notification_target_configurations: Some(AuditNotificationTargetConfigurations {
                sns: Some(AuditNotificationTarget {
                    enabled: Some(true.into()),
                    role_arn: Some(audit_notification_role.arn()),
                    target_arn: Some(audit_topic.r#ref()),
                }),
            }),
            ..AccountAuditConfiguration::new(
                Pseudo::AccountId.value(),
                AuditCheckConfigurations {
                    device_certificate_expiring_check: Some(
                        DeviceCertExpirationAuditCheckConfiguration {
                            enabled: Some(true.into()),
                            configuration: Some(CertExpirationCheckCustomConfiguration {
                                cert_expiration_threshold_in_days: Some(
                                    c.audit.expiring_threshold_days.to_string().into(),
                                ),
                            }),
                        },
                    ),
                    // "disabled by default" (Device Defender guide): on
                    // only with a threshold in the config
                    device_certificate_age_check: c.audit.age_threshold_days.map(|days| {
                        DeviceCertAgeAuditCheckConfiguration {
                            enabled: Some(true.into()),
                            configuration: Some(CertAgeCheckCustomConfiguration {
                                cert_age_threshold_in_days: Some(days.to_string().into()),
                            }),
                        }
                    }),
                    ..AuditCheckConfigurations::default()
                },
                audit_role.arn(),
            )
        },
    );
    s.add_with(
        "ScheduledAudit",
        ScheduledAudit {
            day_of_week: c.audit.day_of_week.as_deref().and_then(day_of_week),
            day_of_month: c.audit.day_of_month.clone().map(Into::into),
            ..ScheduledAudit::new(
                match c.audit.frequency {
                    Frequency::Daily => ScheduledAuditFrequency::Daily,
                    Frequency::Weekly => ScheduledAuditFrequency::Weekly,
                    Frequency::Biweekly => ScheduledAuditFrequency::Biweekly,
                    Frequency::Monthly => ScheduledAuditFrequency::Monthly,
                },
                std::iter::once("DEVICE_CERTIFICATE_EXPIRING_CHECK")
                    .chain(
                        c.audit
                            .age_threshold_days
                            .map(|_| "DEVICE_CERTIFICATE_AGE_CHECK"),
                    )
                    .map(Value::from)
                    .collect::<Vec<_>>(),
            )
        },
        Options {
            depends_on: vec![audit_config.logical_id().to_owned()],
            ..Options::default()
        },
    );
    // audit topic → fan-out
    s.add(
        "AuditFanoutSubscriptionPermission",
        Permission::new("lambda:InvokeFunction", fanout.r#ref(), "sns.amazonaws.com")
            .with_source(audit_topic.r#ref(), None),
    );

    // --- queue → rotation starter -----------------------------------------
    s.add(
        "RotationQueueMapping",
        EventSourceMapping {
            event_source_arn: Some(queue.arn()),
            batch_size: Some(10_i64.into()),
            ..EventSourceMapping::new(functions[&Fn_::RotationStarter].r#ref())
        },
    );

    // --- sweeper schedule ---------------------------------------------------
    let sweeper = &functions[&Fn_::Sweeper];
    let schedule = s.add(
        "SweeperSchedule",
        Rule {
            schedule_expression: Some("rate(15 minutes)".into()),
            targets: Some(vec![Target::new(sweeper.arn(), "sweeper")]),
            ..Rule::default()
        },
    );
    s.add(
        "SweeperSchedulePermission",
        Permission::new(
            "lambda:InvokeFunction",
            sweeper.r#ref(),
            "events.amazonaws.com",
        )
        .with_source(schedule.arn(), None),
    );

    // --- JITR CA ------------------------------------------------------------
    let mut ca_ids: Vec<String> = c.jitr.ca_certificate_ids.clone();
    if let Some((ca_pem, verification)) = &v.jitr_ca {
        let ca = s.add(
            "JitrCaCertificate",
            CaCertificate {
                auto_registration_status: Some(CaCertificateAutoRegistrationStatus::Enable),
                verification_certificate_pem: verification.clone().map(Into::into),
                ..CaCertificate::new(ca_pem.as_str(), CaCertificateStatus::Active)
            },
        );
        ca_ids.push(format!("${{{}.Id}}", ca.logical_id()));
    }

    // --- topic rules --------------------------------------------------------
    let rule_role = s.add(
        "TopicRuleErrorRole",
        Role {
            policies: Some(vec![InlinePolicy::new(
                policy_doc(vec![(
                    "RecordRuleErrors".to_owned(),
                    vec!["sqs:SendMessage"],
                    vec![rule_errors.arn().to_json()],
                    None,
                )]),
                "rule-errors",
            )]),
            ..Role::new(assume("iot.amazonaws.com"))
        },
    );
    let id_refs: Vec<&str> = ca_ids.iter().map(String::as_str).collect();
    for rule in from_rules::deployed_rules(&id_refs) {
        let function = &functions[&rule.function];
        let logical = format!(
            "{}Rule",
            rule.name
                .split('_')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|h| h.to_ascii_uppercase().to_string() + c.as_str())
                        .unwrap_or_default()
                })
                .collect::<String>()
        );
        s.add(
            &logical,
            TopicRule::new(TopicRulePayload {
                aws_iot_sql_version: Some("2016-03-23".into()),
                description: Some(rule.description.clone().into()),
                rule_disabled: Some(false.into()),
                error_action: Some(Action {
                    sqs: Some(SqsAction::new(rule_errors.r#ref(), rule_role.arn())),
                    ..Action::default()
                }),
                ..TopicRulePayload::new(
                    vec![Action {
                        lambda: Some(LambdaAction {
                            function_arn: Some(function.arn()),
                        }),
                        ..Action::default()
                    }],
                    sub_if_needed(&rule.sql),
                )
            })
            .named(&rule.name),
        );
        s.add(
            &format!("{logical}Permission"),
            Permission::new(
                "lambda:InvokeFunction",
                function.r#ref(),
                "iot.amazonaws.com",
            )
            // the rule ARN is built from its fixed name rather than read
            // with GetAtt: moto skips topic rules, and the name is ours
            .with_source(
                sub(arn(&format!("rule/{}", rule.name))),
                Some(Pseudo::AccountId.value()),
            ),
        );
    }

    // --- alarms and the dashboard -------------------------------------------
    crate::watch::add(
        &mut s,
        c,
        &crate::watch::Watched {
            functions: &functions,
            dead_letters: &dlq,
            rule_errors: &rule_errors,
            support: &support,
            logical_ids: Fn_::ALL.into_iter().map(|f| (f, pascal(f))).collect(),
        },
    );

    // --- what the operator's commands take ----------------------------------
    s.output(
        "RotationTableName",
        table.r#ref(),
        "the rotation table: fleetcert status --table",
    );
    s.output(
        "RotationQueueUrl",
        queue.r#ref(),
        "the work queue the audit feeds: fleetcert rotate --queue-url",
    );
    s.output(
        "DeadLetterQueueUrl",
        dlq.r#ref(),
        "messages no handler could process (an alarm watches it)",
    );
    s.output(
        "SupportTopicArn",
        support.r#ref(),
        "support notifications and alarms: subscribe the team to it",
    );
    s
}

/// The key administration actions of KMS's documented key policy for key
/// administrators (everything but using the key).
const KEY_ADMINISTRATION: [&str; 14] = [
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
];

/// The support topic's customer managed key, rotated yearly. Its policy:
/// - the account administers the key (KMS refuses a key policy that would
///   not let the account call `PutKeyPolicy` again, the lockout check);
/// - the account's IAM policies decide who may use it, for SNS only
///   (`kms:ViaService`) and only the two actions SNS performs for a
///   publisher: each notifying function's role grants them on this key;
/// - CloudWatch alarms of this stack (`aws:SourceArn`, by the alarm name
///   prefix `watch::alarm_name` gives them) in this account
///   (`aws:SourceAccount`) may use it to publish, as CloudWatch's and
///   SNS's documentation give the statement (`kms:Decrypt`,
///   `kms:GenerateDataKey*`).
pub fn support_topic_key() -> Key {
    let root = sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root").to_json();
    Key {
        description: Some("fleetcert: the support topic's messages (functions and alarms)".into()),
        enable_key_rotation: Some(true.into()),
        key_policy: Some(json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountAdministersTheKey",
                    "Effect": "Allow",
                    "Principal": { "AWS": root },
                    "Action": KEY_ADMINISTRATION,
                    "Resource": "*"
                },
                {
                    "Sid": "IamPoliciesGrantUseThroughSns",
                    "Effect": "Allow",
                    "Principal": { "AWS": root },
                    "Action": SNS_PUBLISHER_KMS_ACTIONS,
                    "Resource": "*",
                    "Condition": { "StringEquals": {
                        "kms:ViaService": sub("sns.${AWS::Region}.amazonaws.com").to_json(),
                        "kms:CallerAccount": { "Ref": "AWS::AccountId" }
                    } }
                },
                {
                    "Sid": "CloudWatchAlarmsPublish",
                    "Effect": "Allow",
                    "Principal": { "Service": "cloudwatch.amazonaws.com" },
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": { "aws:SourceAccount": { "Ref": "AWS::AccountId" } },
                        "ArnLike": { "aws:SourceArn": sub(format!(
                            "arn:${{AWS::Partition}}:cloudwatch:${{AWS::Region}}:${{AWS::AccountId}}:alarm:{}",
                            crate::watch::alarm_name("*")
                        )).to_json() }
                    }
                }
            ]
        })),
        ..Key::default()
    }
}

fn day_of_week(d: &str) -> Option<ScheduledAuditDayOfWeek> {
    Some(match d {
        "SUN" => ScheduledAuditDayOfWeek::Sun,
        "MON" => ScheduledAuditDayOfWeek::Mon,
        "TUE" => ScheduledAuditDayOfWeek::Tue,
        "WED" => ScheduledAuditDayOfWeek::Wed,
        "THU" => ScheduledAuditDayOfWeek::Thu,
        "FRI" => ScheduledAuditDayOfWeek::Fri,
        "SAT" => ScheduledAuditDayOfWeek::Sat,
        _ => return None,
    })
}

/// Every string of a policy document that holds `${…}` becomes `Fn::Sub`,
/// IoT policy variables escaped.
pub fn to_sub(doc: &Json) -> Json {
    match doc {
        Json::String(s) => sub_if_needed(s).to_json(),
        Json::Array(a) => Json::Array(a.iter().map(to_sub).collect()),
        Json::Object(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), to_sub(v))).collect()),
        other => other.clone(),
    }
}

impl Permission {
    fn with_source(self, source_arn: Value<String>, source_account: Option<Value<String>>) -> Self {
        Permission {
            source_arn: Some(source_arn),
            source_account: source_account.or_else(|| Some(Pseudo::AccountId.value())),
            ..self
        }
    }
}

impl TopicRule {
    fn named(self, name: &str) -> Self {
        TopicRule {
            rule_name: Some(name.into()),
            ..self
        }
    }
}
