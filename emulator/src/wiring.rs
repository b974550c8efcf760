//! What the synthesized template deploys around the functions, as the
//! emulator enforces it: every IAM role with its policies (inline, and AWS
//! managed ones from `rules/data/aws-iam.json`), each function's role,
//! environment, dead-letter queue and log group, the `AWS::Lambda::Permission`s
//! that let services invoke them, SQS event-source mappings, SNS
//! subscriptions, EventBridge schedules, the Device Defender audit
//! configuration, each topic rule's error action, the KMS keys and the
//! topics they encrypt, and the CloudWatch alarms with their actions.
//!
//! Read with the same [`Resolver`] as the device policy and the rules, so
//! the ARNs the emulator authorizes against are the ARNs the template
//! grants.

use std::collections::BTreeMap;

use rules::functions::Function;
use rules::iam::{AwsIamData, IamPolicy};
use serde_json::Value;

use crate::kms::{KeyDef, TopicKey};
use crate::template::{Resolver, TemplateError, function_logical_id};

/// One IAM role.
#[derive(Debug, Clone)]
pub struct RoleDef {
    /// Its logical id.
    pub logical_id: String,
    /// Its ARN.
    pub arn: String,
    /// The services its trust policy lets assume it.
    pub trusted_services: Vec<String>,
    /// Its identity-based policies (inline, then managed).
    pub policies: Vec<IamPolicy>,
}

impl RoleDef {
    /// Whether the role's trust policy lets `service` assume it.
    pub fn trusts(&self, service: &str) -> bool {
        self.trusted_services.iter().any(|s| s == service)
    }
}

/// One fleetcert function as deployed.
#[derive(Debug, Clone)]
pub struct FunctionDef {
    /// Its logical id.
    pub logical_id: String,
    /// Its ARN.
    pub arn: String,
    /// Its role's logical id.
    pub role: String,
    /// Its environment variables, resolved.
    pub environment: BTreeMap<String, String>,
    /// Its dead-letter queue's ARN, if it has one.
    pub dead_letter_arn: Option<String>,
    /// Its log group's name.
    pub log_group: Option<String>,
}

/// One `AWS::Lambda::Permission`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionDef {
    /// Its logical id.
    pub logical_id: String,
    /// The function it applies to.
    pub function: Function,
    /// `Action`.
    pub action: String,
    /// `Principal` (a service such as `iot.amazonaws.com`).
    pub principal: String,
    /// `SourceArn`, if set.
    pub source_arn: Option<String>,
    /// `SourceAccount`, if set.
    pub source_account: Option<String>,
}

/// The Device Defender audit configuration.
#[derive(Debug, Clone)]
pub struct AuditDef {
    /// The role AWS IoT assumes to audit (logical id).
    pub role: String,
    /// Whether `DEVICE_CERTIFICATE_EXPIRING_CHECK` is enabled.
    pub expiring_check_enabled: bool,
    /// Its threshold in days, if configured.
    pub expiring_threshold_days: Option<u32>,
    /// The threshold of `DEVICE_CERTIFICATE_AGE_CHECK` in days, when that
    /// check is enabled.
    pub age_threshold_days: Option<u32>,
    /// The SNS notification target: (role logical id, topic ARN), when
    /// enabled.
    pub notification: Option<(String, String)>,
}

/// A topic rule's SQS error action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleErrorAction {
    /// The queue's URL.
    pub queue_url: String,
    /// The role the rules engine assumes to send (logical id).
    pub role: String,
}

/// One CloudWatch alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmDef {
    /// Its logical id.
    pub logical_id: String,
    /// Its name.
    pub name: String,
    /// Its ARN (`aws:SourceArn` of its notifications).
    pub arn: String,
    /// The ARNs its `AlarmActions` and `OKActions` notify.
    pub actions: Vec<String>,
}

/// Everything around the functions that AWS checks on each call.
#[derive(Debug, Clone, Default)]
pub struct Wiring {
    /// Roles by logical id.
    pub roles: BTreeMap<String, RoleDef>,
    /// fleetcert's functions.
    pub functions: BTreeMap<Function, FunctionDef>,
    /// Every `AWS::Lambda::Permission`.
    pub permissions: Vec<PermissionDef>,
    /// SQS event-source mappings: (queue ARN, function), enabled ones.
    pub event_sources: Vec<(String, Function)>,
    /// SNS subscriptions of protocol `lambda`: (topic ARN, function).
    pub subscriptions: Vec<(String, Function)>,
    /// EventBridge rules: (rule ARN, target function).
    pub schedules: Vec<(String, Function)>,
    /// The audit configuration, if deployed.
    pub audit: Option<AuditDef>,
    /// Each topic rule's error action, by rule name.
    pub rule_errors: BTreeMap<String, RuleErrorAction>,
    /// KMS keys by logical id.
    pub keys: BTreeMap<String, KeyDef>,
    /// How each SNS topic (by ARN) is encrypted.
    pub topic_keys: BTreeMap<String, TopicKey>,
    /// CloudWatch alarms.
    pub alarms: Vec<AlarmDef>,
}

fn shape(resource: &str, field: &str, reason: &str) -> TemplateError {
    TemplateError::Shape {
        resource: resource.to_owned(),
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

fn string(r: &Resolver<'_>, id: &str, v: &Value) -> Result<String, TemplateError> {
    match r.resolve(id, v)? {
        Value::String(s) => Ok(s),
        other => Err(shape(id, "value", &format!("{other} is not a string"))),
    }
}

/// The logical id of a `Fn::GetAtt` (list or `Logical.Attribute` form).
fn getatt_logical_id(value: &Value) -> Option<String> {
    match value.get("Fn::GetAtt")? {
        Value::Array(a) => a.first()?.as_str().map(str::to_owned),
        Value::String(s) => s.split('.').next().map(str::to_owned),
        _ => None,
    }
}

/// The function an ARN, name or `Ref`/`GetAtt` of a function names.
fn function_named(text: &str) -> Option<Function> {
    let name = text.rsplit(':').next().unwrap_or(text);
    Function::ALL
        .into_iter()
        .find(|f| function_logical_id(*f) == name || f.name() == name)
}

impl Wiring {
    /// Reads the wiring of `template`.
    ///
    /// # Errors
    /// A [`TemplateError`] naming the resource that cannot be read (a
    /// managed policy the emulator has no data for included).
    pub fn from_template(template: &Value, r: &Resolver<'_>) -> Result<Wiring, TemplateError> {
        let mut w = Wiring::default();
        let Some(resources) = template.get("Resources").and_then(Value::as_object) else {
            return Ok(w);
        };
        for (id, resource) in resources {
            let props = resource.get("Properties").cloned().unwrap_or(Value::Null);
            let get = |k: &str| props.get(k);
            match resource.get("Type").and_then(Value::as_str) {
                Some("AWS::IAM::Role") => {
                    w.roles.insert(id.clone(), role(r, id, &props)?);
                }
                Some("AWS::Lambda::Function") => {
                    let Some(function) = Function::ALL
                        .into_iter()
                        .find(|f| function_logical_id(*f) == *id)
                    else {
                        continue;
                    };
                    let role = get("Role")
                        .and_then(getatt_logical_id)
                        .ok_or_else(|| shape(id, "Properties.Role", "not a GetAtt of a role"))?;
                    let mut environment = BTreeMap::new();
                    if let Some(Value::Object(vars)) =
                        get("Environment").and_then(|e| e.get("Variables"))
                    {
                        for (k, v) in vars {
                            environment.insert(k.clone(), string(r, id, v)?);
                        }
                    }
                    let dead_letter_arn = get("DeadLetterConfig")
                        .and_then(|d| d.get("TargetArn"))
                        .map(|v| string(r, id, v))
                        .transpose()?;
                    let log_group = get("LoggingConfig")
                        .and_then(|l| l.get("LogGroup"))
                        .map(|v| string(r, id, v))
                        .transpose()?;
                    let arn = string(r, id, &serde_json::json!({"Fn::GetAtt": [id, "Arn"]}))?;
                    w.functions.insert(
                        function,
                        FunctionDef {
                            logical_id: id.clone(),
                            arn,
                            role,
                            environment,
                            dead_letter_arn,
                            log_group,
                        },
                    );
                }
                Some("AWS::Lambda::Permission") => {
                    let target = get("FunctionName")
                        .map(|v| string(r, id, v))
                        .transpose()?
                        .unwrap_or_default();
                    let Some(function) = function_named(&target) else {
                        continue;
                    };
                    w.permissions.push(PermissionDef {
                        logical_id: id.clone(),
                        function,
                        action: get("Action")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        principal: get("Principal")
                            .map(|v| string(r, id, v))
                            .transpose()?
                            .unwrap_or_default(),
                        source_arn: get("SourceArn").map(|v| string(r, id, v)).transpose()?,
                        source_account: get("SourceAccount")
                            .map(|v| string(r, id, v))
                            .transpose()?,
                    });
                }
                Some("AWS::Lambda::EventSourceMapping") => {
                    if get("Enabled").and_then(Value::as_bool) == Some(false) {
                        continue;
                    }
                    let (Some(source), Some(target)) = (get("EventSourceArn"), get("FunctionName"))
                    else {
                        continue;
                    };
                    if let Some(f) = function_named(&string(r, id, target)?) {
                        w.event_sources.push((string(r, id, source)?, f));
                    }
                }
                Some("AWS::SNS::Topic") => {
                    let topic_arn = string(r, id, &serde_json::json!({"Ref": id}))?;
                    w.topic_keys.insert(
                        topic_arn.clone(),
                        topic_key(r, id, resources, get("KmsMasterKeyId"))?,
                    );
                    for s in get("Subscription")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if s.get("Protocol").and_then(Value::as_str) != Some("lambda") {
                            continue;
                        }
                        let endpoint = s
                            .get("Endpoint")
                            .map(|v| string(r, id, v))
                            .transpose()?
                            .unwrap_or_default();
                        if let Some(f) = function_named(&endpoint) {
                            w.subscriptions.push((topic_arn.clone(), f));
                        }
                    }
                }
                Some("AWS::Events::Rule") => {
                    let rule_arn = string(r, id, &serde_json::json!({"Fn::GetAtt": [id, "Arn"]}))?;
                    for t in get("Targets")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let target = t
                            .get("Arn")
                            .map(|v| string(r, id, v))
                            .transpose()?
                            .unwrap_or_default();
                        if let Some(f) = function_named(&target) {
                            w.schedules.push((rule_arn.clone(), f));
                        }
                    }
                }
                Some("AWS::IoT::AccountAuditConfiguration") => {
                    let role_of = |v: Option<&Value>| v.and_then(getatt_logical_id);
                    let role = role_of(get("RoleArn"))
                        .ok_or_else(|| shape(id, "Properties.RoleArn", "not a GetAtt of a role"))?;
                    let check = get("AuditCheckConfigurations")
                        .and_then(|c| c.get("DeviceCertificateExpiringCheck"));
                    let enabled = check
                        .and_then(|c| c.get("Enabled"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    let days = |v: &Value| match v {
                        Value::String(s) => s.parse().ok(),
                        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                        _ => None,
                    };
                    let threshold = check
                        .and_then(|c| c.get("Configuration"))
                        .and_then(|c| c.get("CertExpirationThresholdInDays"))
                        .and_then(days);
                    // AWS's default threshold for the age check is 365 days
                    let age = get("AuditCheckConfigurations")
                        .and_then(|c| c.get("DeviceCertificateAgeCheck"))
                        .filter(|c| c.get("Enabled").and_then(Value::as_bool) == Some(true))
                        .map(|c| {
                            c.get("Configuration")
                                .and_then(|c| c.get("CertAgeThresholdInDays"))
                                .and_then(days)
                                .unwrap_or(365)
                        });
                    let sns =
                        get("AuditNotificationTargetConfigurations").and_then(|c| c.get("Sns"));
                    let notification = match sns {
                        Some(sns) if sns.get("Enabled").and_then(Value::as_bool) == Some(true) => {
                            let role = role_of(sns.get("RoleArn")).ok_or_else(|| {
                                shape(id, "Sns.RoleArn", "not a GetAtt of a role")
                            })?;
                            let target = sns
                                .get("TargetArn")
                                .map(|v| string(r, id, v))
                                .transpose()?
                                .ok_or_else(|| shape(id, "Sns.TargetArn", "missing"))?;
                            Some((role, target))
                        }
                        _ => None,
                    };
                    w.audit = Some(AuditDef {
                        role,
                        expiring_check_enabled: enabled,
                        expiring_threshold_days: threshold,
                        age_threshold_days: age,
                        notification,
                    });
                }
                Some("AWS::KMS::Key") => {
                    let policy = get("KeyPolicy")
                        .map(|p| r.resolve(id, p))
                        .transpose()?
                        .ok_or_else(|| {
                            shape(
                                id,
                                "Properties.KeyPolicy",
                                "missing: the emulator has no default key policy",
                            )
                        })?;
                    let bypass = get("BypassPolicyLockoutSafetyCheck").and_then(Value::as_bool)
                        == Some(true);
                    if !bypass && !crate::kms::passes_lockout_check(&policy, &r.scope().account) {
                        return Err(shape(
                            id,
                            "Properties.KeyPolicy",
                            "KMS refuses a key policy that does not let the account call kms:PutKeyPolicy again (the lockout safety check)",
                        ));
                    }
                    let arn = string(r, id, &serde_json::json!({"Fn::GetAtt": [id, "Arn"]}))?;
                    w.keys.insert(
                        id.clone(),
                        KeyDef {
                            logical_id: id.clone(),
                            arn,
                            policy,
                        },
                    );
                }
                Some("AWS::CloudWatch::Alarm") => {
                    let name = get("AlarmName")
                        .map(|v| string(r, id, v))
                        .transpose()?
                        .unwrap_or_else(|| id.clone());
                    let mut actions = Vec::new();
                    for key in ["AlarmActions", "OKActions"] {
                        for a in get(key).and_then(Value::as_array).into_iter().flatten() {
                            let a = string(r, id, a)?;
                            if !actions.contains(&a) {
                                actions.push(a);
                            }
                        }
                    }
                    let s = r.scope();
                    w.alarms.push(AlarmDef {
                        logical_id: id.clone(),
                        arn: format!(
                            "arn:{}:cloudwatch:{}:{}:alarm:{name}",
                            s.partition, s.region, s.account
                        ),
                        name,
                        actions,
                    });
                }
                Some("AWS::IoT::TopicRule") => {
                    let name = get("RuleName")
                        .map(|v| string(r, id, v))
                        .transpose()?
                        .unwrap_or_else(|| id.clone());
                    let sqs = get("TopicRulePayload")
                        .and_then(|p| p.get("ErrorAction"))
                        .and_then(|a| a.get("Sqs"));
                    if let Some(sqs) = sqs {
                        let role = sqs
                            .get("RoleArn")
                            .and_then(getatt_logical_id)
                            .ok_or_else(|| shape(id, "ErrorAction.Sqs.RoleArn", "not a GetAtt"))?;
                        let queue_url = sqs
                            .get("QueueUrl")
                            .map(|v| string(r, id, v))
                            .transpose()?
                            .ok_or_else(|| shape(id, "ErrorAction.Sqs.QueueUrl", "missing"))?;
                        w.rule_errors
                            .insert(name, RuleErrorAction { queue_url, role });
                    }
                }
                _ => {}
            }
        }
        Ok(w)
    }

    /// The role of `function`, if it is deployed with one.
    pub fn role_of(&self, function: Function) -> Option<&RoleDef> {
        self.roles.get(&self.functions.get(&function)?.role)
    }
}

/// How a topic's `KmsMasterKeyId` encrypts it: a `Ref`/`GetAtt` of a key
/// of the template, SNS's AWS managed key (by alias or alias ARN), or
/// another key.
fn topic_key(
    r: &Resolver<'_>,
    id: &str,
    resources: &serde_json::Map<String, Value>,
    value: Option<&Value>,
) -> Result<TopicKey, TemplateError> {
    let Some(value) = value else {
        return Ok(TopicKey::None);
    };
    let logical = getatt_logical_id(value)
        .or_else(|| value.get("Ref").and_then(Value::as_str).map(str::to_owned));
    if let Some(logical) = logical
        && resources
            .get(&logical)
            .and_then(|k| k.get("Type"))
            .and_then(Value::as_str)
            == Some("AWS::KMS::Key")
    {
        return Ok(TopicKey::Customer(logical));
    }
    let text = string(r, id, value)?;
    Ok(
        if text == crate::kms::SNS_AWS_MANAGED_ALIAS
            || text.ends_with(&format!(":{}", crate::kms::SNS_AWS_MANAGED_ALIAS))
        {
            TopicKey::AwsManaged
        } else {
            TopicKey::Unknown(text)
        },
    )
}

fn role(r: &Resolver<'_>, id: &str, props: &Value) -> Result<RoleDef, TemplateError> {
    let name = props
        .get("RoleName")
        .and_then(Value::as_str)
        .unwrap_or(id)
        .to_owned();
    let arn = string(r, id, &serde_json::json!({"Fn::GetAtt": [id, "Arn"]}))?;
    let mut trusted_services = Vec::new();
    for s in props
        .get("AssumeRolePolicyDocument")
        .and_then(|d| d.get("Statement"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match s.get("Principal").and_then(|p| p.get("Service")) {
            Some(Value::String(svc)) => trusted_services.push(svc.clone()),
            Some(Value::Array(list)) => {
                trusted_services.extend(list.iter().filter_map(Value::as_str).map(str::to_owned))
            }
            _ => {}
        }
    }
    let mut policies = Vec::new();
    for (i, p) in props
        .get("Policies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let policy_name = p
            .get("PolicyName")
            .map(|v| string(r, id, v))
            .transpose()?
            .unwrap_or_else(|| format!("Policies[{i}]"));
        let doc = p
            .get("PolicyDocument")
            .ok_or_else(|| shape(id, &format!("Policies[{i}].PolicyDocument"), "missing"))?;
        let doc = r.resolve(id, doc)?;
        policies.push(
            IamPolicy::from_value(&format!("{name}/{policy_name}"), &doc)
                .map_err(|e| shape(id, &format!("Policies[{i}]"), &e.to_string()))?,
        );
    }
    for (i, v) in props
        .get("ManagedPolicyArns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let arn = string(r, id, v)?;
        let managed = AwsIamData::get()
            .managed_policy(&arn)
            .map_err(|e| shape(id, &format!("ManagedPolicyArns[{i}]"), &e.to_string()))?;
        policies.push(
            IamPolicy::from_value(&arn, &managed.document)
                .map_err(|e| shape(id, &format!("ManagedPolicyArns[{i}]"), &e.to_string()))?,
        );
    }
    Ok(RoleDef {
        logical_id: id.to_owned(),
        arn,
        trusted_services,
        policies,
    })
}
