//! KMS as SNS uses it for an encrypted topic, as AWS authorizes it.
//!
//! A publish to a topic encrypted with a KMS key makes SNS call
//! `kms:GenerateDataKey` and `kms:Decrypt` on that key **with the
//! publisher's credentials** (SNS's key management page). Who may:
//!
//! - **An AWS managed key** (`alias/aws/sns`): its key policy, written by
//!   AWS and unchangeable, allows every principal of the account through SNS
//!   (`kms:CallerAccount`, `kms:ViaService`) and nobody else. A role of the
//!   account may publish; a service principal such as CloudWatch alarms'
//!   `cloudwatch.amazonaws.com` never can, and the alarm's notification is
//!   lost (the alarm history says so).
//! - **A customer managed key of the template**: its key policy decides. A
//!   statement naming the caller (the role's ARN, or the service with its
//!   `aws:SourceAccount`/`aws:SourceArn` conditions) allows it directly; a
//!   statement naming the account (`…:root`) hands the decision to the
//!   caller's IAM policies, which must then allow the action on the key's
//!   ARN. An explicit deny in either wins.
//!
//! [`Kms::authorize_publish`] applies this to one publish; every refusal is
//! recorded in the shared [`AccessLog`] like an IAM denial.

use std::collections::BTreeMap;

use rules::iam::{Decision, IamPolicy, Request, evaluate};
use rules::policy::ArnScope;
use serde_json::Value;

use crate::iam::{AccessLog, Denial, Principal};

/// The actions SNS performs with a publisher's credentials on an encrypted
/// topic's key.
pub const SNS_PUBLISH_KMS_ACTIONS: [&str; 2] = ["kms:GenerateDataKey", "kms:Decrypt"];

/// The alias of SNS's AWS managed key.
pub const SNS_AWS_MANAGED_ALIAS: &str = "alias/aws/sns";

/// One `AWS::KMS::Key` of the template.
#[derive(Debug, Clone)]
pub struct KeyDef {
    /// Its logical id.
    pub logical_id: String,
    /// Its ARN.
    pub arn: String,
    /// Its key policy, intrinsics resolved.
    pub policy: Value,
}

/// How a topic is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicKey {
    /// Not encrypted.
    None,
    /// SNS's AWS managed key, `alias/aws/sns`.
    AwsManaged,
    /// A customer managed key of the template (its logical id).
    Customer(String),
    /// A key the template does not define (its id, ARN or alias): its
    /// policy cannot be read, so no publish is authorized.
    Unknown(String),
}

/// Who publishes.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// A role of the account (a function's, the audit notification's).
    Role(&'a Principal),
    /// A service principal acting for one of its resources.
    Service {
        /// e.g. `cloudwatch.amazonaws.com`.
        service: &'a str,
        /// The resource it acts for (`aws:SourceArn`), e.g. an alarm.
        source_arn: &'a str,
    },
}

/// The keys of the template and the topics they encrypt.
#[derive(Debug, Clone, Default)]
pub struct Kms {
    scope: Option<ArnScope>,
    keys: BTreeMap<String, KeyDef>,
    topics: BTreeMap<String, TopicKey>,
    log: AccessLog,
}

/// One key-policy statement's principals.
enum Named {
    /// The account (`arn:…:iam::<account>:root` or the bare account id):
    /// IAM policies decide.
    Account,
    /// These principals directly.
    Principals(Vec<String>),
}

fn principals(statement: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match statement.get("Principal") {
        Some(Value::String(s)) => out.push(s.clone()),
        Some(Value::Object(m)) => {
            for v in m.values() {
                match v {
                    Value::String(s) => out.push(s.clone()),
                    Value::Array(a) => {
                        out.extend(a.iter().filter_map(Value::as_str).map(str::to_owned));
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    out
}

impl Kms {
    /// From the template's keys and topics, in `scope`; refusals go to
    /// `log`.
    pub fn new(
        scope: &ArnScope,
        keys: BTreeMap<String, KeyDef>,
        topics: BTreeMap<String, TopicKey>,
        log: AccessLog,
    ) -> Kms {
        Kms {
            scope: Some(scope.clone()),
            keys,
            topics,
            log,
        }
    }

    /// How the topic `topic_arn` is encrypted.
    pub fn topic_key(&self, topic_arn: &str) -> TopicKey {
        self.topics
            .get(topic_arn)
            .cloned()
            .unwrap_or(TopicKey::None)
    }

    fn account(&self) -> &str {
        self.scope.as_ref().map_or("", |s| s.account.as_str())
    }

    fn classify(&self, principal: &str) -> Named {
        let account = self.account();
        let root_suffix = format!(":iam::{account}:root");
        if principal == account || principal.ends_with(&root_suffix) {
            Named::Account
        } else {
            Named::Principals(vec![principal.to_owned()])
        }
    }

    /// The key-policy statements (as one policy, `Principal` dropped) that
    /// name the caller directly, and those that name the account.
    fn split_policy(
        &self,
        key: &KeyDef,
        caller: Caller<'_>,
    ) -> Result<(IamPolicy, IamPolicy), String> {
        let statements = match key.policy.get("Statement") {
            Some(Value::Array(a)) => a.clone(),
            Some(one @ Value::Object(_)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let mut direct = Vec::new();
        let mut account = Vec::new();
        for s in statements {
            let names = principals(&s);
            let mut body = s.clone();
            if let Some(m) = body.as_object_mut() {
                m.remove("Principal");
            }
            for p in names {
                match self.classify(&p) {
                    Named::Account => account.push(body.clone()),
                    Named::Principals(list) => {
                        let hit = list.iter().any(|p| match caller {
                            Caller::Role(r) => p == "*" || *p == r.arn,
                            Caller::Service { service, .. } => p == service,
                        });
                        if hit {
                            direct.push(body.clone());
                        }
                    }
                }
            }
        }
        let parse = |name: &str, list: Vec<Value>| {
            IamPolicy::from_value(
                &format!("{} key policy ({name})", key.logical_id),
                &serde_json::json!({"Statement": list}),
            )
            .map_err(|e| e.to_string())
        };
        Ok((parse("caller", direct)?, parse("account", account)?))
    }

    /// Whether SNS may use the topic's key for a publish by `caller`:
    /// every action of [`SNS_PUBLISH_KMS_ACTIONS`], as the module
    /// documentation says.
    ///
    /// # Errors
    /// The first refusal (also recorded in the access log).
    pub fn authorize_publish(&self, caller: Caller<'_>, topic_arn: &str) -> Result<(), Denial> {
        let (who, role) = match caller {
            Caller::Role(p) => (p.caller.clone(), p.role.clone()),
            Caller::Service {
                service,
                source_arn,
            } => (source_arn.to_owned(), service.to_owned()),
        };
        let deny = |action: &str, resource: &str, reason: String| {
            let d = Denial {
                caller: who.clone(),
                role: role.clone(),
                action: action.to_owned(),
                resource: resource.to_owned(),
                reason,
            };
            self.log.record(d.clone());
            d
        };
        let first = SNS_PUBLISH_KMS_ACTIONS[0];
        let key = match self.topic_key(topic_arn) {
            TopicKey::None => return Ok(()),
            TopicKey::AwsManaged => {
                return match caller {
                    Caller::Role(_) => Ok(()),
                    Caller::Service { service, .. } => Err(deny(
                        first,
                        SNS_AWS_MANAGED_ALIAS,
                        format!(
                            "{topic_arn} is encrypted with the AWS managed key {SNS_AWS_MANAGED_ALIAS}, whose key policy (AWS's, unchangeable) lets only principals of the account use it through SNS, never {service}"
                        ),
                    )),
                };
            }
            TopicKey::Unknown(id) => {
                return Err(deny(
                    first,
                    &id,
                    format!(
                        "{topic_arn} is encrypted with {id}, a key the template does not define"
                    ),
                ));
            }
            TopicKey::Customer(logical) => match self.keys.get(&logical) {
                Some(k) => k,
                None => {
                    return Err(deny(
                        first,
                        &logical,
                        format!("no key {logical} in the template"),
                    ));
                }
            },
        };
        let (direct, account) = self
            .split_policy(key, caller)
            .map_err(|e| deny(first, &key.arn, e))?;
        let scope = self.scope.clone().unwrap_or_else(|| ArnScope {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account: String::new(),
        });
        for action in SNS_PUBLISH_KMS_ACTIONS {
            let mut context = BTreeMap::new();
            context.insert(
                "kms:ViaService".to_owned(),
                format!("sns.{}.amazonaws.com", scope.region),
            );
            match caller {
                Caller::Role(_) => {
                    context.insert("kms:CallerAccount".to_owned(), scope.account.clone());
                }
                Caller::Service { source_arn, .. } => {
                    context.insert("aws:SourceAccount".to_owned(), scope.account.clone());
                    context.insert("aws:SourceArn".to_owned(), source_arn.to_owned());
                }
            }
            let request = Request {
                action: action.to_owned(),
                resources: vec![key.arn.clone()],
                context,
            };
            let key_policy = [direct.clone(), account.clone()];
            if let Decision::ExplicitDeny { statement, .. } = evaluate(&key_policy, &request) {
                return Err(deny(
                    action,
                    &key.arn,
                    format!(
                        "explicit deny in the key policy of {} statement {statement}",
                        key.logical_id
                    ),
                ));
            }
            if evaluate(std::slice::from_ref(&direct), &request) == Decision::Allowed {
                continue;
            }
            let Caller::Role(principal) = caller else {
                return Err(deny(
                    action,
                    &key.arn,
                    format!(
                        "the key policy of {} does not allow the caller",
                        key.logical_id
                    ),
                ));
            };
            if evaluate(std::slice::from_ref(&account), &request) != Decision::Allowed {
                return Err(deny(
                    action,
                    &key.arn,
                    format!(
                        "the key policy of {} neither names the role nor lets IAM policies grant {action}",
                        key.logical_id
                    ),
                ));
            }
            match evaluate(&principal.policies, &request) {
                Decision::Allowed => {}
                Decision::ImplicitDeny { .. } => {
                    return Err(deny(
                        action,
                        &key.arn,
                        format!("no identity-based policy allows the {action} action"),
                    ));
                }
                Decision::ExplicitDeny {
                    policy, statement, ..
                } => {
                    return Err(deny(
                        action,
                        &key.arn,
                        format!("explicit deny in {policy} statement {statement}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// KMS's lockout safety check on a new key (`CreateKey`, and
/// CloudFormation's `AWS::KMS::Key`): the policy must let the account
/// call `kms:PutKeyPolicy` again, unless `BypassPolicyLockoutSafetyCheck`.
/// Only a statement naming the account (IAM then decides who) is taken as
/// letting the deploying principal do so.
pub fn passes_lockout_check(policy: &Value, account: &str) -> bool {
    let Ok(p) = IamPolicy::from_value(
        "key policy",
        &serde_json::json!({"Statement": policy
            .get("Statement")
            .and_then(Value::as_array)
            .map(|a| a
                .iter()
                .filter(|s| principals(s).iter().any(|p| p == account
                    || p.ends_with(&format!(":iam::{account}:root"))))
                .map(|s| {
                    let mut s = s.clone();
                    if let Some(m) = s.as_object_mut() {
                        m.remove("Principal");
                    }
                    s
                })
                .collect::<Vec<_>>())
            .unwrap_or_default()}),
    ) else {
        return false;
    };
    evaluate(
        &[p],
        &Request {
            action: "kms:PutKeyPolicy".into(),
            resources: vec!["*".into()],
            context: BTreeMap::new(),
        },
    ) == Decision::Allowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:Support";
    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/Key";
    const ROLE: &str = "arn:aws:iam::123456789012:role/Publisher";
    const ALARM: &str = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:FleetcertStack-X";

    fn scope() -> ArnScope {
        ArnScope {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
        }
    }

    fn key_policy() -> Value {
        json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
             "Action": ["kms:Put*"], "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
             "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": "*",
             "Condition": {"StringEquals": {"kms:ViaService": "sns.us-east-1.amazonaws.com"}}},
            {"Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
             "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
             "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"},
                           "ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:FleetcertStack-*"}}}
        ]})
    }

    fn kms(topic: TopicKey) -> Kms {
        let keys = BTreeMap::from([(
            "Key".to_owned(),
            KeyDef {
                logical_id: "Key".into(),
                arn: KEY.into(),
                policy: key_policy(),
            },
        )]);
        Kms::new(
            &scope(),
            keys,
            BTreeMap::from([(TOPIC.to_owned(), topic)]),
            AccessLog::default(),
        )
    }

    fn role(actions: &[&str]) -> Principal {
        Principal {
            caller: "publisher".into(),
            role: "Publisher".into(),
            arn: ROLE.into(),
            policies: vec![
                IamPolicy::from_value(
                    "p",
                    &json!({"Statement": [{"Effect": "Allow", "Action": actions, "Resource": KEY}]}),
                )
                .expect("policy"),
            ],
            log: AccessLog::default(),
        }
    }

    fn alarm(source_arn: &str) -> Caller<'_> {
        Caller::Service {
            service: "cloudwatch.amazonaws.com",
            source_arn,
        }
    }

    #[test]
    fn an_aws_managed_key_serves_the_accounts_roles_and_never_a_service() {
        let k = kms(TopicKey::AwsManaged);
        assert!(k.authorize_publish(Caller::Role(&role(&[])), TOPIC).is_ok());
        let d = k
            .authorize_publish(alarm(ALARM), TOPIC)
            .expect_err("refused");
        assert!(d.reason.contains("AWS managed key"), "{d}");
    }

    #[test]
    fn a_customer_key_serves_a_role_its_iam_policy_lets_use_it() {
        let k = kms(TopicKey::Customer("Key".into()));
        let both = role(&["kms:GenerateDataKey", "kms:Decrypt"]);
        assert!(k.authorize_publish(Caller::Role(&both), TOPIC).is_ok());
        let d = k
            .authorize_publish(Caller::Role(&role(&["kms:GenerateDataKey"])), TOPIC)
            .expect_err("no kms:Decrypt");
        assert_eq!(d.action, "kms:Decrypt");
    }

    #[test]
    fn a_customer_key_serves_the_alarms_its_policy_names_only() {
        let k = kms(TopicKey::Customer("Key".into()));
        assert!(k.authorize_publish(alarm(ALARM), TOPIC).is_ok());
        let other = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:OtherStack-X";
        assert!(k.authorize_publish(alarm(other), TOPIC).is_err());
        let events = Caller::Service {
            service: "events.amazonaws.com",
            source_arn: "arn:aws:events:us-east-1:123456789012:rule/r",
        };
        assert!(k.authorize_publish(events, TOPIC).is_err());
    }

    #[test]
    fn an_unencrypted_topic_needs_no_key_and_an_unknown_key_serves_nobody() {
        assert!(
            kms(TopicKey::None)
                .authorize_publish(alarm(ALARM), TOPIC)
                .is_ok()
        );
        let k = kms(TopicKey::Unknown("alias/other".into()));
        assert!(
            k.authorize_publish(Caller::Role(&role(&["kms:*"])), TOPIC)
                .is_err()
        );
    }

    #[test]
    fn the_lockout_check_wants_the_account_to_keep_put_key_policy() {
        assert!(passes_lockout_check(&key_policy(), "123456789012"));
        let mut p = key_policy();
        p["Statement"][0]["Action"] = json!(["kms:GenerateDataKey"]);
        assert!(!passes_lockout_check(&p, "123456789012"));
    }
}
