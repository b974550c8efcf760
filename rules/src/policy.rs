//! AWS IoT Core policy documents and their evaluation (fleetcert's own
//! device policy is [`crate::device_policy`]).
//!
//! The evaluator implements the subset of AWS IoT policy semantics that
//! fleetcert's device policy and the emulator need:
//!
//! - documents with `Version` `"2012-10-17"`, a `Statement` object or list,
//!   each statement with `Effect`, `Action` and `Resource` (a string or a
//!   list) and an optional `Condition` using `Bool`, `StringEquals` or
//!   `StringLike`; anything else is a [`PolicyError`] naming it, never
//!   silently ignored;
//! - `*` (any run of characters, `/` included) and `?` (exactly one
//!   character) wildcards in actions (matched case-insensitively) and in
//!   resources (matched case-sensitively). MQTT wildcards `+` and `#` are
//!   plain characters in a policy, as in AWS IoT: a policy granting
//!   `topicfilter/a/+` does not grant `topicfilter/a/b`;
//! - the policy variables of [`ContextKey`] in resources and condition
//!   values, plus the escapes `${*}`, `${?}` and `${$}`. A substituted value
//!   is always literal: a client id `*` does not become a wildcard;
//! - explicit `Deny` wins over any `Allow`; without a matching `Allow` the
//!   request is implicitly denied.
//!
//! **Undefined variables.** A statement that refers to a variable (or
//! condition key) the context does not define — for example
//! `${iot:Connection.Thing.ThingName}` on a connection with no thing — does
//! not match, whatever its effect. This is AWS's behaviour: such an `Allow`
//! grants nothing and such a `Deny` denies nothing.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only policy language version accepted; policy variables need it.
pub const POLICY_VERSION: &str = "2012-10-17";

/// AWS IoT's limit on a policy document, in characters excluding white
/// space.
pub const MAX_POLICY_CHARS: usize = 2048;

/// Why a policy document was rejected. `path` names the offending field,
/// e.g. `Statement[1].Action[0]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not JSON.
    #[error("policy is not valid JSON at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// serde_json's description.
        message: String,
    },
    /// The document is longer than AWS IoT accepts.
    #[error(
        "policy has {chars} characters excluding white space, more than the {max} AWS IoT accepts"
    )]
    TooLarge {
        /// Characters excluding white space.
        chars: usize,
        /// The limit, [`MAX_POLICY_CHARS`].
        max: usize,
    },
    /// A required field is absent.
    #[error("{path}: missing field `{field}`")]
    MissingField {
        /// Where the field was expected.
        path: String,
        /// The missing field.
        field: &'static str,
    },
    /// A field the evaluator does not support (e.g. `NotAction`, `Principal`)
    /// or a misspelt one.
    #[error("{path}: unsupported field `{field}`")]
    UnknownField {
        /// The object holding the field.
        path: String,
        /// The field's name.
        field: String,
    },
    /// A field has the wrong JSON type.
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        /// The field.
        path: String,
        /// What was expected.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// A list that must not be empty is.
    #[error("{path}: must not be empty")]
    Empty {
        /// The list.
        path: String,
    },
    /// `Version` is not `2012-10-17`.
    #[error("Version: unsupported policy version `{version}`, expected `2012-10-17`")]
    UnsupportedVersion {
        /// The version given.
        version: String,
    },
    /// `Effect` is neither `Allow` nor `Deny`.
    #[error("{path}: effect must be `Allow` or `Deny`, found `{effect}`")]
    InvalidEffect {
        /// The field.
        path: String,
        /// The value given.
        effect: String,
    },
    /// An action is not `*` nor `service:name`.
    #[error(
        "{path}: invalid action `{action}`, expected `*` or `service:Name` such as `iot:Publish`"
    )]
    InvalidAction {
        /// The field.
        path: String,
        /// The value given.
        action: String,
    },
    /// A resource is not `*` nor an ARN.
    #[error("{path}: invalid resource `{resource}`, expected `*` or an ARN starting with `arn:`")]
    InvalidResource {
        /// The field.
        path: String,
        /// The value given.
        resource: String,
    },
    /// A `${` without its closing `}`.
    #[error("{path}: unterminated policy variable in `{value}`")]
    UnterminatedVariable {
        /// The field.
        path: String,
        /// The value holding it.
        value: String,
    },
    /// A policy variable the evaluator does not know.
    #[error("{path}: unsupported policy variable `${{{variable}}}`")]
    UnknownVariable {
        /// The field.
        path: String,
        /// The variable's name, without `${}`.
        variable: String,
    },
    /// A condition operator other than `Bool`, `StringEquals`, `StringLike`.
    #[error(
        "{path}: unsupported condition operator `{operator}`, expected one of Bool, StringEquals, StringLike"
    )]
    UnsupportedOperator {
        /// The condition.
        path: String,
        /// The operator given.
        operator: String,
    },
    /// A condition key the evaluator does not know.
    #[error("{path}: unsupported condition key `{key}`")]
    UnknownConditionKey {
        /// The operator block.
        path: String,
        /// The key given.
        key: String,
    },
    /// A `Bool` condition value other than `true` or `false`.
    #[error("{path}: Bool condition value must be `true` or `false`, found `{value}`")]
    InvalidBool {
        /// The field.
        path: String,
        /// The value given.
        value: String,
    },
}

/// Values of the request's context a policy can refer to, both as policy
/// variables (`${iot:ClientId}`) and as condition keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ContextKey {
    /// `iot:ClientId`: the MQTT client id.
    ClientId,
    /// `iot:Connection.Thing.ThingName`: the thing the connection's
    /// principal is attached to, named by the client id; undefined when none.
    ThingName,
    /// `iot:Connection.Thing.IsAttached`: `true` when the principal is
    /// attached to the thing named by the client id; always defined.
    IsAttached,
    /// `iot:Certificate.Subject.CommonName`: the certificate subject's CN;
    /// undefined when absent.
    CertificateCommonName,
}

impl ContextKey {
    /// Every key.
    pub const ALL: [ContextKey; 4] = [
        ContextKey::ClientId,
        ContextKey::ThingName,
        ContextKey::IsAttached,
        ContextKey::CertificateCommonName,
    ];

    /// The key's name as AWS spells it, e.g. `iot:ClientId`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ContextKey::ClientId => "iot:ClientId",
            ContextKey::ThingName => "iot:Connection.Thing.ThingName",
            ContextKey::IsAttached => "iot:Connection.Thing.IsAttached",
            ContextKey::CertificateCommonName => "iot:Certificate.Subject.CommonName",
        }
    }

    /// The key named `name` (case-sensitive).
    pub fn from_name(name: &str) -> Option<ContextKey> {
        ContextKey::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The policy variable for this key, e.g. `${iot:ClientId}`.
    pub fn variable(self) -> String {
        format!("${{{}}}", self.as_str())
    }
}

impl fmt::Display for ContextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The context a request is evaluated in: who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyContext<'a> {
    /// The MQTT client id.
    pub client_id: &'a str,
    /// The thing named by the client id, when the registry has one.
    pub thing_name: Option<&'a str>,
    /// Whether the connection's principal is attached to that thing.
    pub is_attached: bool,
    /// The certificate subject's common name, when it has one.
    pub certificate_cn: Option<&'a str>,
}

impl PolicyContext<'_> {
    /// The value of `key`, or `None` when it is undefined in this context.
    pub fn get(&self, key: ContextKey) -> Option<&str> {
        match key {
            ContextKey::ClientId => Some(self.client_id),
            ContextKey::ThingName => self.thing_name,
            ContextKey::IsAttached => Some(if self.is_attached { "true" } else { "false" }),
            ContextKey::CertificateCommonName => self.certificate_cn,
        }
    }
}

/// An AWS IoT data-plane action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Action {
    /// `iot:Connect`, on `client/<clientId>`.
    Connect,
    /// `iot:Publish`, on `topic/<topic>`.
    Publish,
    /// `iot:Subscribe`, on `topicfilter/<filter>`.
    Subscribe,
    /// `iot:Receive`, on `topic/<topic>`.
    Receive,
    /// `iot:RetainPublish`, on `topic/<topic>`.
    RetainPublish,
    /// `iot:DeleteRetainedMessage`, on `topic/<topic>`.
    DeleteRetainedMessage,
    /// `iot:GetRetainedMessage`, on `topic/<topic>`.
    GetRetainedMessage,
    /// `iot:ListRetainedMessages`, on `*`.
    ListRetainedMessages,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 8] = [
        Action::Connect,
        Action::Publish,
        Action::Subscribe,
        Action::Receive,
        Action::RetainPublish,
        Action::DeleteRetainedMessage,
        Action::GetRetainedMessage,
        Action::ListRetainedMessages,
    ];

    /// The action's name as AWS spells it, e.g. `iot:Connect`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Connect => "iot:Connect",
            Action::Publish => "iot:Publish",
            Action::Subscribe => "iot:Subscribe",
            Action::Receive => "iot:Receive",
            Action::RetainPublish => "iot:RetainPublish",
            Action::DeleteRetainedMessage => "iot:DeleteRetainedMessage",
            Action::GetRetainedMessage => "iot:GetRetainedMessage",
            Action::ListRetainedMessages => "iot:ListRetainedMessages",
        }
    }

    /// The action named `name`, case-insensitively as AWS does.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request to authorize: an action on a resource ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// What is asked.
    pub action: Action,
    /// The full resource ARN, e.g. from [`ArnScope::topic_arn`].
    pub resource: &'a str,
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Decision {
    /// A statement allows the request and none denies it.
    Allow,
    /// A `Deny` statement matches: it wins over every `Allow`.
    ExplicitDeny {
        /// Index of the denying policy in the slice given to [`evaluate`].
        policy: usize,
        /// Index of the denying statement in that policy's `Statement`.
        statement: usize,
    },
    /// No statement allows the request.
    ImplicitDeny,
}

impl Decision {
    /// Whether the request is allowed.
    pub const fn is_allowed(self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// A statement's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Effect {
    /// Grants the matching requests.
    Allow,
    /// Denies the matching requests, whatever else allows them.
    Deny,
}

/// A condition operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ConditionOperator {
    /// `Bool`: `true`/`false`, compared case-insensitively.
    Bool,
    /// `StringEquals`: exact, case-sensitive.
    StringEquals,
    /// `StringLike`: case-sensitive with `*` and `?` wildcards.
    StringLike,
}

impl ConditionOperator {
    /// The operator's name as AWS spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConditionOperator::Bool => "Bool",
            ConditionOperator::StringEquals => "StringEquals",
            ConditionOperator::StringLike => "StringLike",
        }
    }

    fn from_name(name: &str) -> Option<ConditionOperator> {
        [
            ConditionOperator::Bool,
            ConditionOperator::StringEquals,
            ConditionOperator::StringLike,
        ]
        .into_iter()
        .find(|o| o.as_str() == name)
    }
}

/// One `operator: { key: values }` test of a statement's `Condition`. It
/// holds when the key is defined and equals (or is like) any of the values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    operator: ConditionOperator,
    key: ContextKey,
    values: Vec<String>,
}

impl Condition {
    /// `Bool: { key: value }`.
    pub fn bool(key: ContextKey, value: bool) -> Condition {
        Condition {
            operator: ConditionOperator::Bool,
            key,
            values: vec![value.to_string()],
        }
    }

    /// The operator.
    pub fn operator(&self) -> ConditionOperator {
        self.operator
    }

    /// The context key tested.
    pub fn key(&self) -> ContextKey {
        self.key
    }

    /// The values (any of which may match), policy variables unsubstituted.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn holds(&self, ctx: &PolicyContext<'_>) -> bool {
        let Some(actual) = ctx.get(self.key) else {
            return false;
        };
        let chars: Vec<char> = actual.chars().collect();
        self.values.iter().any(|value| match self.operator {
            ConditionOperator::Bool => value.eq_ignore_ascii_case(actual),
            ConditionOperator::StringEquals => {
                compile(value, Some(ctx), false).is_ok_and(|p| glob(&p, &chars))
            }
            ConditionOperator::StringLike => {
                compile(value, Some(ctx), true).is_ok_and(|p| glob(&p, &chars))
            }
        })
    }
}

/// One statement of a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub(crate) sid: Option<String>,
    pub(crate) effect: Effect,
    pub(crate) actions: Vec<String>,
    pub(crate) resources: Vec<String>,
    pub(crate) conditions: Vec<Condition>,
}

impl Statement {
    /// A statement of `effect` on `actions` and `resources`, validated as
    /// [`PolicyDocument::parse`] would.
    pub fn new(
        effect: Effect,
        actions: impl IntoIterator<Item = impl Into<String>>,
        resources: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Statement, PolicyError> {
        let statement = Statement {
            sid: None,
            effect,
            actions: actions.into_iter().map(Into::into).collect(),
            resources: resources.into_iter().map(Into::into).collect(),
            conditions: Vec::new(),
        };
        statement.validate("Statement")?;
        Ok(statement)
    }

    /// This statement, also requiring `condition`.
    pub fn with_condition(mut self, condition: Condition) -> Statement {
        self.conditions.push(condition);
        self
    }

    /// This statement with a `Sid`.
    pub fn with_sid(mut self, sid: impl Into<String>) -> Statement {
        self.sid = Some(sid.into());
        self
    }

    /// The optional statement id.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// `Allow` or `Deny`.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// The action patterns.
    pub fn actions(&self) -> &[String] {
        &self.actions
    }

    /// The resource patterns, policy variables unsubstituted.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// The conditions, all of which must hold.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// Whether this statement applies to `req` in `ctx` (whatever its
    /// effect). A statement referring to an undefined variable never does.
    pub fn matches(&self, req: &Request<'_>, ctx: &PolicyContext<'_>) -> bool {
        let action: Vec<char> = req.action.as_str().to_ascii_lowercase().chars().collect();
        let action_matches = self.actions.iter().any(|pattern| {
            compile(&pattern.to_ascii_lowercase(), None, true).is_ok_and(|p| glob(&p, &action))
        });
        if !action_matches {
            return false;
        }
        let resource: Vec<char> = req.resource.chars().collect();
        let resource_matches = self
            .resources
            .iter()
            .any(|pattern| compile(pattern, Some(ctx), true).is_ok_and(|p| glob(&p, &resource)));
        resource_matches && self.conditions.iter().all(|c| c.holds(ctx))
    }

    fn validate(&self, path: &str) -> Result<(), PolicyError> {
        if self.actions.is_empty() {
            return Err(PolicyError::Empty {
                path: format!("{path}.Action"),
            });
        }
        if self.resources.is_empty() {
            return Err(PolicyError::Empty {
                path: format!("{path}.Resource"),
            });
        }
        for (i, action) in self.actions.iter().enumerate() {
            if !valid_action(action) {
                return Err(PolicyError::InvalidAction {
                    path: format!("{path}.Action[{i}]"),
                    action: action.clone(),
                });
            }
        }
        for (i, resource) in self.resources.iter().enumerate() {
            let field = format!("{path}.Resource[{i}]");
            if resource != "*" && !resource.starts_with("arn:") {
                return Err(PolicyError::InvalidResource {
                    path: field,
                    resource: resource.clone(),
                });
            }
            check_template(resource, &field)?;
        }
        Ok(())
    }
}

fn valid_action(action: &str) -> bool {
    if action == "*" {
        return true;
    }
    let Some((service, name)) = action.split_once(':') else {
        return false;
    };
    let ok = |s: &str, extra: &[char]| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?' || extra.contains(&c))
    };
    ok(service, &['-']) && ok(name, &[])
}

/// An AWS IoT policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    statements: Vec<Statement>,
}

impl PolicyDocument {
    /// A document of `statements` (version `2012-10-17`).
    pub fn new(statements: Vec<Statement>) -> PolicyDocument {
        PolicyDocument { statements }
    }

    /// Parses AWS policy JSON; every unsupported field, operator, key or
    /// variable is an error naming it.
    pub fn parse(text: &str) -> Result<PolicyDocument, PolicyError> {
        let chars = text.chars().filter(|c| !c.is_whitespace()).count();
        if chars > MAX_POLICY_CHARS {
            return Err(PolicyError::TooLarge {
                chars,
                max: MAX_POLICY_CHARS,
            });
        }
        let value: Value = serde_json::from_str(text).map_err(|e| PolicyError::Json {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        PolicyDocument::from_value(&value)
    }

    /// Converts already parsed JSON, as [`PolicyDocument::parse`] does.
    pub fn from_value(value: &Value) -> Result<PolicyDocument, PolicyError> {
        let doc = object(value, "policy")?;
        for field in doc.keys() {
            if !matches!(field.as_str(), "Version" | "Statement" | "Id") {
                return Err(PolicyError::UnknownField {
                    path: "policy".into(),
                    field: field.clone(),
                });
            }
        }
        let version = doc.get("Version").ok_or(PolicyError::MissingField {
            path: "policy".into(),
            field: "Version",
        })?;
        let version = string(version, "Version")?;
        if version != POLICY_VERSION {
            return Err(PolicyError::UnsupportedVersion {
                version: version.to_owned(),
            });
        }
        let statements = doc.get("Statement").ok_or(PolicyError::MissingField {
            path: "policy".into(),
            field: "Statement",
        })?;
        let statements: Vec<(String, &Value)> = match statements {
            Value::Array(list) => list
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("Statement[{i}]"), s))
                .collect(),
            other => vec![("Statement".to_owned(), other)],
        };
        if statements.is_empty() {
            return Err(PolicyError::Empty {
                path: "Statement".into(),
            });
        }
        let statements = statements
            .into_iter()
            .map(|(path, s)| parse_statement(s, &path))
            .collect::<Result<_, _>>()?;
        Ok(PolicyDocument { statements })
    }

    /// The statements, in order.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// Length in characters excluding white space, the measure of AWS IoT's
    /// [`MAX_POLICY_CHARS`] limit.
    pub fn size(&self) -> usize {
        serde_json::to_string(self)
            .map(|s| s.chars().filter(|c| !c.is_whitespace()).count())
            .unwrap_or(usize::MAX)
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn object<'v>(
    value: &'v Value,
    path: &str,
) -> Result<&'v serde_json::Map<String, Value>, PolicyError> {
    value.as_object().ok_or_else(|| PolicyError::WrongType {
        path: path.to_owned(),
        expected: "an object",
        found: json_type(value),
    })
}

fn string<'v>(value: &'v Value, path: &str) -> Result<&'v str, PolicyError> {
    value.as_str().ok_or_else(|| PolicyError::WrongType {
        path: path.to_owned(),
        expected: "a string",
        found: json_type(value),
    })
}

/// A string or a list of strings; with `bools`, JSON booleans count as
/// their string form (AWS accepts `"Bool": {"k": true}`).
fn strings(value: &Value, path: &str, bools: bool) -> Result<Vec<String>, PolicyError> {
    let one = |v: &Value, path: String| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) if bools => Ok(b.to_string()),
        other => Err(PolicyError::WrongType {
            path,
            expected: "a string",
            found: json_type(other),
        }),
    };
    let list = match value {
        Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, v)| one(v, format!("{path}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?,
        other => vec![one(other, path.to_owned())?],
    };
    if list.is_empty() {
        return Err(PolicyError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(list)
}

fn parse_statement(value: &Value, path: &str) -> Result<Statement, PolicyError> {
    let st = object(value, path)?;
    for field in st.keys() {
        if !matches!(
            field.as_str(),
            "Sid" | "Effect" | "Action" | "Resource" | "Condition"
        ) {
            return Err(PolicyError::UnknownField {
                path: path.to_owned(),
                field: field.clone(),
            });
        }
    }
    let required = |field: &'static str| {
        st.get(field).ok_or_else(|| PolicyError::MissingField {
            path: path.to_owned(),
            field,
        })
    };
    let sid = st
        .get("Sid")
        .map(|v| string(v, &format!("{path}.Sid")).map(str::to_owned))
        .transpose()?;
    let effect_path = format!("{path}.Effect");
    let effect = match string(required("Effect")?, &effect_path)? {
        "Allow" => Effect::Allow,
        "Deny" => Effect::Deny,
        other => {
            return Err(PolicyError::InvalidEffect {
                path: effect_path,
                effect: other.to_owned(),
            });
        }
    };
    let actions = strings(required("Action")?, &format!("{path}.Action"), false)?;
    let resources = strings(required("Resource")?, &format!("{path}.Resource"), false)?;
    let conditions = match st.get("Condition") {
        Some(c) => parse_conditions(c, &format!("{path}.Condition"))?,
        None => Vec::new(),
    };
    let statement = Statement {
        sid,
        effect,
        actions,
        resources,
        conditions,
    };
    statement.validate(path)?;
    Ok(statement)
}

fn parse_conditions(value: &Value, path: &str) -> Result<Vec<Condition>, PolicyError> {
    let mut conditions = Vec::new();
    for (operator_name, block) in object(value, path)? {
        let operator = ConditionOperator::from_name(operator_name).ok_or_else(|| {
            PolicyError::UnsupportedOperator {
                path: path.to_owned(),
                operator: operator_name.clone(),
            }
        })?;
        let block_path = format!("{path}.{operator_name}");
        for (key_name, values) in object(block, &block_path)? {
            let key = ContextKey::from_name(key_name).ok_or_else(|| {
                PolicyError::UnknownConditionKey {
                    path: block_path.clone(),
                    key: key_name.clone(),
                }
            })?;
            let values_path = format!("{block_path}.{key_name}");
            let values = strings(values, &values_path, operator == ConditionOperator::Bool)?;
            for (i, v) in values.iter().enumerate() {
                let field = format!("{values_path}[{i}]");
                if operator == ConditionOperator::Bool {
                    if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                        return Err(PolicyError::InvalidBool {
                            path: field,
                            value: v.clone(),
                        });
                    }
                } else {
                    check_template(v, &field)?;
                }
            }
            conditions.push(Condition {
                operator,
                key,
                values,
            });
        }
    }
    // A Condition block is a conjunction: its order means nothing. Sorted,
    // a document parses to the same value whatever order its JSON object
    // kept (serde_json's `preserve_order`, on in builds with the AWS SDK).
    conditions.sort_by_key(|c| (c.operator, c.key));
    Ok(conditions)
}

/// A compiled pattern element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    Char(char),
    /// `*`: any run of characters.
    Star,
    /// `?`: exactly one character.
    Quest,
}

/// Why a template could not be compiled.
enum TemplateError {
    Unterminated,
    Unknown(String),
    Undefined,
}

fn check_template(value: &str, path: &str) -> Result<(), PolicyError> {
    match compile(value, None, true) {
        Ok(_) | Err(TemplateError::Undefined) => Ok(()),
        Err(TemplateError::Unterminated) => Err(PolicyError::UnterminatedVariable {
            path: path.to_owned(),
            value: value.to_owned(),
        }),
        Err(TemplateError::Unknown(variable)) => Err(PolicyError::UnknownVariable {
            path: path.to_owned(),
            variable,
        }),
    }
}

/// Compiles `template`, substituting policy variables from `ctx` as literal
/// text. Without a context, only the syntax and the variable names are
/// checked (variables compile to nothing). With `wildcards`, `*` and `?`
/// outside variables are wildcards; otherwise they are literal.
fn compile(
    template: &str,
    ctx: Option<&PolicyContext<'_>>,
    wildcards: bool,
) -> Result<Vec<Tok>, TemplateError> {
    let mut out = Vec::with_capacity(template.len());
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').ok_or(TemplateError::Unterminated)?;
            let name = &after[..end];
            rest = &after[end + 1..];
            match name {
                "*" => out.push(Tok::Char('*')),
                "?" => out.push(Tok::Char('?')),
                "$" => out.push(Tok::Char('$')),
                _ => {
                    let key = ContextKey::from_name(name)
                        .ok_or_else(|| TemplateError::Unknown(name.to_owned()))?;
                    if let Some(ctx) = ctx {
                        let value = ctx.get(key).ok_or(TemplateError::Undefined)?;
                        out.extend(value.chars().map(Tok::Char));
                    }
                }
            }
            continue;
        }
        out.push(match c {
            '*' if wildcards => Tok::Star,
            '?' if wildcards => Tok::Quest,
            c => Tok::Char(c),
        });
        rest = &rest[c.len_utf8()..];
    }
    Ok(out)
}

/// Glob match with single-star backtracking: O(pattern × subject) at worst,
/// never exponential.
pub(crate) fn glob(pattern: &[Tok], subject: &[char]) -> bool {
    let (mut p, mut s) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while s < subject.len() {
        match pattern.get(p) {
            Some(Tok::Star) => {
                star = Some((p, s));
                p += 1;
            }
            Some(Tok::Quest) => {
                p += 1;
                s += 1;
            }
            Some(Tok::Char(c)) if *c == subject[s] => {
                p += 1;
                s += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    p = sp + 1;
                    s = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|t| *t == Tok::Star)
}

/// Evaluates `req` in `ctx` against every policy attached to the principal:
/// a matching `Deny` wins, else a matching `Allow` allows, else the request
/// is implicitly denied.
pub fn evaluate(
    policies: &[PolicyDocument],
    req: &Request<'_>,
    ctx: &PolicyContext<'_>,
) -> Decision {
    let mut allowed = false;
    for (p, policy) in policies.iter().enumerate() {
        for (s, statement) in policy.statements.iter().enumerate() {
            if statement.matches(req, ctx) {
                match statement.effect {
                    Effect::Deny => {
                        return Decision::ExplicitDeny {
                            policy: p,
                            statement: s,
                        };
                    }
                    Effect::Allow => allowed = true,
                }
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

struct OneOrMany<'a>(&'a [String]);

impl Serialize for OneOrMany<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            [one] => serializer.serialize_str(one),
            many => {
                let mut seq = serializer.serialize_seq(Some(many.len()))?;
                for v in many {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
        }
    }
}

impl Serialize for Statement {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(sid) = &self.sid {
            map.serialize_entry("Sid", sid)?;
        }
        map.serialize_entry("Effect", &self.effect)?;
        map.serialize_entry("Action", &OneOrMany(&self.actions))?;
        map.serialize_entry("Resource", &OneOrMany(&self.resources))?;
        if !self.conditions.is_empty() {
            let mut grouped: BTreeMap<&str, BTreeMap<&str, OneOrMany<'_>>> = BTreeMap::new();
            for c in &self.conditions {
                grouped
                    .entry(c.operator.as_str())
                    .or_default()
                    .insert(c.key.as_str(), OneOrMany(&c.values));
            }
            map.serialize_entry("Condition", &grouped)?;
        }
        map.end()
    }
}

impl Serialize for PolicyDocument {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("Version", POLICY_VERSION)?;
        map.serialize_entry("Statement", &self.statements)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for PolicyDocument {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        PolicyDocument::from_value(&value).map_err(serde::de::Error::custom)
    }
}

/// Where resource ARNs live: partition, region and account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArnScope {
    /// `aws`, `aws-cn`, `aws-us-gov`, or `${AWS::Partition}` in a template.
    pub partition: String,
    /// e.g. `eu-west-1`, or `${AWS::Region}`.
    pub region: String,
    /// The 12-digit account id, or `${AWS::AccountId}`.
    pub account: String,
}

impl ArnScope {
    /// The scope CloudFormation fills in with `Fn::Sub`.
    pub fn cloudformation() -> ArnScope {
        ArnScope {
            partition: "${AWS::Partition}".into(),
            region: "${AWS::Region}".into(),
            account: "${AWS::AccountId}".into(),
        }
    }

    fn arn(&self, kind: &str, name: &str) -> String {
        format!(
            "arn:{}:iot:{}:{}:{kind}/{name}",
            self.partition, self.region, self.account
        )
    }

    /// `arn:…:client/<clientId>`, the resource of `iot:Connect`.
    pub fn client_arn(&self, client_id: &str) -> String {
        self.arn("client", client_id)
    }

    /// `arn:…:topic/<topic>`, the resource of `iot:Publish` and
    /// `iot:Receive`.
    pub fn topic_arn(&self, topic: &str) -> String {
        self.arn("topic", topic)
    }

    /// `arn:…:topicfilter/<filter>`, the resource of `iot:Subscribe`.
    pub fn topicfilter_arn(&self, filter: &str) -> String {
        self.arn("topicfilter", filter)
    }
}

/// fleetcert's own device policy lives beside the evaluator
/// ([`crate::device_policy`]); re-exported where it always was.
pub use crate::device_policy::device_policy;

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
