//! The deployment the emulator enforces, read from the synthesized
//! CloudFormation template (`cdk.out/FleetcertStack.template.json`): every
//! `AWS::IoT::Policy` document and every `AWS::IoT::TopicRule` with a
//! Lambda action, with `Fn::Sub` resolved for one partition, region and
//! account.

use std::collections::BTreeMap;
use std::path::Path;

use rules::functions::Function;
use rules::policy::{ArnScope, PolicyDocument, PolicyError};
use rules::routes::{DeployedRule, Router};
use rules::sql::SqlError;
use serde_json::Value;

/// The SQL version fleetcert's rules use, the only one the emulator runs.
pub const SQL_VERSION: &str = "2016-03-23";

/// The account id the emulator pretends to be.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// The region the emulator pretends to be in.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Why a template cannot be enforced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The file cannot be read.
    #[error("cannot read template {path}: {reason}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not JSON.
    #[error("template {path} is not json: {reason}")]
    Json {
        /// The path.
        path: String,
        /// serde_json's message.
        reason: String,
    },
    /// A value the template must have is missing or of the wrong type.
    #[error("{resource}: {field}: {reason}")]
    Shape {
        /// The resource's logical id (or `Resources`).
        resource: String,
        /// The field path.
        field: String,
        /// What was wrong.
        reason: String,
    },
    /// An intrinsic function or `${...}` variable the emulator cannot
    /// resolve.
    #[error("{resource}: cannot resolve {what}")]
    Unresolvable {
        /// The resource's logical id.
        resource: String,
        /// The intrinsic or variable.
        what: String,
    },
    /// A policy document the evaluator rejects.
    #[error("{resource}: {source}")]
    Policy {
        /// The resource's logical id.
        resource: String,
        /// The evaluator's error.
        source: PolicyError,
    },
    /// A rule statement outside the supported IoT SQL subset.
    #[error("{resource}: {source}")]
    Sql {
        /// The resource's logical id.
        resource: String,
        /// The parser's error.
        source: SqlError,
    },
    /// A Lambda action names a function that is not one of fleetcert's.
    #[error("{resource}: lambda action targets {target}, which is not a fleetcert function")]
    UnknownFunction {
        /// The rule's logical id.
        resource: String,
        /// What the action targets.
        target: String,
    },
}

/// What the emulator enforces: the policies by name and the topic rules.
#[derive(Debug, Clone)]
pub struct Deployment {
    scope: ArnScope,
    policies: BTreeMap<String, PolicyDocument>,
    /// The template's policy documents as JSON text (`GetPolicy`).
    policy_texts: BTreeMap<String, String>,
    rules: Vec<DeployedRule>,
    router: Router,
    wiring: crate::wiring::Wiring,
}

impl Deployment {
    /// Reads a synthesized template file with the default account and
    /// region.
    ///
    /// # Errors
    /// A [`TemplateError`] naming what cannot be read or enforced.
    pub fn from_file(path: &Path) -> Result<Deployment, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|e| TemplateError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| TemplateError::Json {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Deployment::from_template(&value, &Deployment::default_scope())
    }

    /// The scope the emulator pretends to run in: partition `aws`, region
    /// `us-east-1`, account `123456789012`.
    pub fn default_scope() -> ArnScope {
        ArnScope {
            partition: "aws".into(),
            region: DEFAULT_REGION.into(),
            account: DEFAULT_ACCOUNT.into(),
        }
    }

    /// Reads a template already parsed, resolving `Fn::Sub` in `scope`.
    ///
    /// # Errors
    /// A [`TemplateError`] naming what cannot be enforced.
    pub fn from_template(template: &Value, scope: &ArnScope) -> Result<Deployment, TemplateError> {
        let resources = template
            .get("Resources")
            .and_then(Value::as_object)
            .ok_or_else(|| TemplateError::Shape {
                resource: "Resources".into(),
                field: "Resources".into(),
                reason: "missing or not an object".into(),
            })?;
        let resolver = Resolver::new(scope, template);
        let r = &resolver;
        let mut policies = BTreeMap::new();
        let mut policy_texts = BTreeMap::new();
        let mut rules = Vec::new();
        for (id, resource) in resources {
            match resource.get("Type").and_then(Value::as_str) {
                Some("AWS::IoT::Policy") => {
                    let props = properties(id, resource)?;
                    let name = props
                        .get("PolicyName")
                        .map(|v| resolve_string(id, v, r))
                        .transpose()?
                        .unwrap_or_else(|| id.clone());
                    let doc = props
                        .get("PolicyDocument")
                        .ok_or_else(|| shape(id, "Properties.PolicyDocument", "missing"))?;
                    let doc = r.resolve(id, doc)?;
                    policy_texts.insert(name.clone(), doc.to_string());
                    let doc = PolicyDocument::from_value(&doc).map_err(|source| {
                        TemplateError::Policy {
                            resource: id.clone(),
                            source,
                        }
                    })?;
                    policies.insert(name, doc);
                }
                Some("AWS::IoT::TopicRule") => rules.extend(topic_rule(id, resource, r)?),
                _ => {}
            }
        }
        let router = Router::new(&rules).map_err(|source| TemplateError::Sql {
            resource: "TopicRule".into(),
            source,
        })?;
        let wiring = crate::wiring::Wiring::from_template(template, r)?;
        Ok(Deployment {
            scope: scope.clone(),
            policies,
            policy_texts,
            rules,
            router,
            wiring,
        })
    }

    /// The scope ARNs are built in.
    pub fn scope(&self) -> &ArnScope {
        &self.scope
    }

    /// The policy with this name (`PolicyName`, else the logical id).
    pub fn policy(&self, name: &str) -> Option<&PolicyDocument> {
        self.policies.get(name)
    }

    /// The template's document of policy `name`, as JSON text.
    pub fn policy_json(&self, name: &str) -> Option<String> {
        self.policy_texts.get(name).cloned()
    }

    /// The deployment plus an IoT policy created outside the stack (a
    /// customer's own device policy, as `CreatePolicy` would make it).
    #[must_use]
    pub fn with_policy(mut self, name: &str, document: PolicyDocument) -> Self {
        self.policies.insert(name.to_owned(), document);
        self
    }

    /// Every policy name.
    pub fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }

    /// The enabled topic rules with a Lambda action, one per action.
    pub fn rules(&self) -> &[DeployedRule] {
        &self.rules
    }

    /// The compiled rules.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The roles, functions, permissions and event sources around the
    /// functions (what IAM and the Lambda service check).
    pub fn wiring(&self) -> &crate::wiring::Wiring {
        &self.wiring
    }
}

fn shape(resource: &str, field: &str, reason: &str) -> TemplateError {
    TemplateError::Shape {
        resource: resource.to_owned(),
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

fn properties<'a>(
    id: &str,
    resource: &'a Value,
) -> Result<&'a serde_json::Map<String, Value>, TemplateError> {
    resource
        .get("Properties")
        .and_then(Value::as_object)
        .ok_or_else(|| shape(id, "Properties", "missing or not an object"))
}

fn topic_rule(
    id: &str,
    resource: &Value,
    r: &Resolver<'_>,
) -> Result<Vec<DeployedRule>, TemplateError> {
    let props = properties(id, resource)?;
    let name = props
        .get("RuleName")
        .map(|v| resolve_string(id, v, r))
        .transpose()?
        .unwrap_or_else(|| id.to_owned());
    let payload = props
        .get("TopicRulePayload")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            shape(
                id,
                "Properties.TopicRulePayload",
                "missing or not an object",
            )
        })?;
    if payload.get("RuleDisabled").and_then(Value::as_bool) == Some(true) {
        return Ok(Vec::new());
    }
    let version = payload
        .get("AwsIotSqlVersion")
        .and_then(Value::as_str)
        .unwrap_or("2015-10-08");
    if version != SQL_VERSION {
        return Err(shape(
            id,
            "Properties.TopicRulePayload.AwsIotSqlVersion",
            &format!("{version:?} is not {SQL_VERSION}, the only version the emulator runs"),
        ));
    }
    let sql = payload
        .get("Sql")
        .ok_or_else(|| shape(id, "Properties.TopicRulePayload.Sql", "missing"))?;
    let sql = resolve_string(id, sql, r)?;
    let description = payload
        .get("Description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let actions = payload
        .get("Actions")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            shape(
                id,
                "Properties.TopicRulePayload.Actions",
                "missing or not a list",
            )
        })?;
    let mut out = Vec::new();
    for action in actions {
        let Some(lambda) = action.get("Lambda") else {
            // other actions (republish, S3, ...) are not emulated
            continue;
        };
        let arn = lambda
            .get("FunctionArn")
            .ok_or_else(|| shape(id, "Actions[].Lambda.FunctionArn", "missing"))?;
        let function = function_of(id, arn)?;
        out.push(DeployedRule {
            name: name.clone(),
            sql: sql.clone(),
            function,
            description: description.clone(),
        });
    }
    // compile each statement here, so the error names the resource
    for r in &out {
        rules::sql::parse(&r.sql).map_err(|source| TemplateError::Sql {
            resource: id.to_owned(),
            source,
        })?;
    }
    Ok(out)
}

/// The logical id infra gives a function's resource: its binary name in
/// PascalCase (`csr-issuer` → `CsrIssuer`).
pub fn function_logical_id(function: Function) -> String {
    function
        .name()
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn function_of(id: &str, arn: &Value) -> Result<Function, TemplateError> {
    let logical = match arn {
        Value::Object(o) => match (o.get("Fn::GetAtt"), o.get("Ref")) {
            (Some(Value::Array(a)), _) => a.first().and_then(Value::as_str),
            (Some(Value::String(s)), _) => s.split('.').next(),
            (_, Some(Value::String(s))) => Some(s.as_str()),
            _ => None,
        },
        // a literal ARN ends with `function:<name>`
        Value::String(s) => s.rsplit(':').next(),
        _ => None,
    };
    let target = logical.unwrap_or_default();
    Function::ALL
        .into_iter()
        .find(|f| function_logical_id(*f) == target || f.name() == target)
        .ok_or_else(|| TemplateError::UnknownFunction {
            resource: id.to_owned(),
            target: arn.to_string(),
        })
}

fn resolve_string(id: &str, value: &Value, r: &Resolver<'_>) -> Result<String, TemplateError> {
    match r.resolve(id, value)? {
        Value::String(s) => Ok(s),
        other => Err(TemplateError::Unresolvable {
            resource: id.to_owned(),
            what: format!("{other} (expected a string)"),
        }),
    }
}

/// Resolves CloudFormation intrinsics as a deployment would, each resource
/// named by its name property or else by its logical id (CloudFormation
/// would add a random suffix; the ARNs keep the shape AWS gives them):
/// `Ref`, `Fn::GetAtt`, `Fn::Sub`
/// (string and list forms, `${Logical}` and `${Logical.Attribute}`),
/// `Fn::Join`; anything else intrinsic is an error.
#[derive(Debug, Clone, Copy)]
pub struct Resolver<'t> {
    scope: &'t ArnScope,
    resources: Option<&'t serde_json::Map<String, Value>>,
}

impl<'t> Resolver<'t> {
    /// A resolver for `template`'s resources in `scope`.
    pub fn new(scope: &'t ArnScope, template: &'t Value) -> Resolver<'t> {
        Resolver {
            scope,
            resources: template.get("Resources").and_then(Value::as_object),
        }
    }

    /// The partition, region and account it resolves in.
    pub fn scope(&self) -> &ArnScope {
        self.scope
    }

    /// Resolves every intrinsic in `value`; `id` names the resource it
    /// belongs to in errors.
    ///
    /// # Errors
    /// [`TemplateError::Unresolvable`].
    pub fn resolve(&self, id: &str, value: &Value) -> Result<Value, TemplateError> {
        match value {
            Value::Array(items) => items
                .iter()
                .map(|v| self.resolve(id, v))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Value::Object(o)
                if o.len() == 1 && o.keys().all(|k| k.starts_with("Fn::") || k == "Ref") =>
            {
                let (k, v) = o
                    .iter()
                    .next()
                    .ok_or_else(|| unresolvable(id, "empty intrinsic"))?;
                match (k.as_str(), v) {
                    ("Fn::Sub", Value::String(text)) => self.sub(id, text, &BTreeMap::new()),
                    ("Fn::Sub", Value::Array(parts)) => {
                        let (Some(Value::String(text)), Some(Value::Object(vars))) =
                            (parts.first(), parts.get(1))
                        else {
                            return Err(unresolvable(id, &value.to_string()));
                        };
                        let mut resolved = BTreeMap::new();
                        for (name, v) in vars {
                            resolved.insert(name.clone(), resolve_string(id, v, self)?);
                        }
                        self.sub(id, text, &resolved)
                    }
                    ("Ref", Value::String(name)) => self.reference(id, name).map(Value::String),
                    ("Fn::GetAtt", Value::Array(parts)) => {
                        let (Some(Value::String(logical)), Some(Value::String(attr))) =
                            (parts.first(), parts.get(1))
                        else {
                            return Err(unresolvable(id, &value.to_string()));
                        };
                        self.attribute(id, logical, attr).map(Value::String)
                    }
                    ("Fn::GetAtt", Value::String(path)) => {
                        let (logical, attr) = path
                            .split_once('.')
                            .ok_or_else(|| unresolvable(id, &value.to_string()))?;
                        self.attribute(id, logical, attr).map(Value::String)
                    }
                    ("Fn::Join", Value::Array(parts)) => {
                        let (Some(Value::String(sep)), Some(Value::Array(items))) =
                            (parts.first(), parts.get(1))
                        else {
                            return Err(unresolvable(id, &value.to_string()));
                        };
                        let items = items
                            .iter()
                            .map(|v| resolve_string(id, v, self))
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok(Value::String(items.join(sep)))
                    }
                    _ => Err(unresolvable(id, &value.to_string())),
                }
            }
            Value::Object(o) => o
                .iter()
                .map(|(k, v)| self.resolve(id, v).map(|v| (k.clone(), v)))
                .collect::<Result<serde_json::Map<_, _>, _>>()
                .map(Value::Object),
            other => Ok(other.clone()),
        }
    }

    fn resource(&self, id: &str, logical: &str) -> Result<(&'t str, &'t Value), TemplateError> {
        let r = self
            .resources
            .and_then(|m| m.get(logical))
            .ok_or_else(|| unresolvable(id, &format!("{logical} (no such resource)")))?;
        let kind = r.get("Type").and_then(Value::as_str).unwrap_or_default();
        Ok((kind, r))
    }

    /// The physical name of `logical`: its name property when the template
    /// sets one to a literal, else the logical id.
    fn name(&self, logical: &str, resource: &Value, property: &str) -> String {
        resource
            .get("Properties")
            .and_then(|p| p.get(property))
            .and_then(Value::as_str)
            .map_or_else(|| logical.to_owned(), str::to_owned)
    }

    fn arn(&self, service: &str, rest: &str) -> String {
        let s = self.scope;
        format!(
            "arn:{}:{service}:{}:{}:{rest}",
            s.partition, s.region, s.account
        )
    }

    fn reference(&self, id: &str, name: &str) -> Result<String, TemplateError> {
        if let Some(v) = pseudo(name, self.scope) {
            return Ok(v);
        }
        let (kind, r) = self.resource(id, name)?;
        let s = self.scope;
        Ok(match kind {
            "AWS::DynamoDB::Table" => self.name(name, r, "TableName"),
            "AWS::SQS::Queue" => format!(
                "https://sqs.{}.amazonaws.com/{}/{}",
                s.region,
                s.account,
                self.name(name, r, "QueueName")
            ),
            "AWS::SNS::Topic" => self.arn("sns", &self.name(name, r, "TopicName")),
            "AWS::Logs::LogGroup" => self.name(name, r, "LogGroupName"),
            "AWS::Lambda::Function" => self.name(name, r, "FunctionName"),
            "AWS::IAM::Role" => self.name(name, r, "RoleName"),
            "AWS::IoT::Policy" => self.name(name, r, "PolicyName"),
            "AWS::IoT::TopicRule" => self.name(name, r, "RuleName"),
            "AWS::Events::Rule" => self.name(name, r, "Name"),
            "AWS::IoT::CACertificate" => self.attribute(id, name, "Id")?,
            // the key id: the emulator's keys are named by their logical id
            "AWS::KMS::Key" => name.to_owned(),
            _ => return Err(unresolvable(id, &format!("Ref {name} ({kind})"))),
        })
    }

    fn attribute(&self, id: &str, logical: &str, attr: &str) -> Result<String, TemplateError> {
        let (kind, r) = self.resource(id, logical)?;
        let s = self.scope;
        let unknown = || unresolvable(id, &format!("Fn::GetAtt {logical}.{attr} ({kind})"));
        Ok(match (kind, attr) {
            ("AWS::DynamoDB::Table", "Arn") => self.arn(
                "dynamodb",
                &format!("table/{}", self.name(logical, r, "TableName")),
            ),
            ("AWS::SQS::Queue", "Arn") => self.arn("sqs", &self.name(logical, r, "QueueName")),
            ("AWS::SQS::Queue", "QueueName") => self.name(logical, r, "QueueName"),
            ("AWS::SQS::Queue", "QueueUrl") => self.reference(id, logical)?,
            ("AWS::SNS::Topic", "TopicArn") => self.reference(id, logical)?,
            ("AWS::SNS::Topic", "TopicName") => self.name(logical, r, "TopicName"),
            ("AWS::Logs::LogGroup", "Arn") => self.arn(
                "logs",
                &format!("log-group:{}:*", self.name(logical, r, "LogGroupName")),
            ),
            ("AWS::Lambda::Function", "Arn") => self.arn(
                "lambda",
                &format!("function:{}", self.name(logical, r, "FunctionName")),
            ),
            ("AWS::IAM::Role", "Arn") => format!(
                "arn:{}:iam::{}:role/{}",
                s.partition,
                s.account,
                self.name(logical, r, "RoleName")
            ),
            ("AWS::IoT::Policy", "Arn") => self.arn(
                "iot",
                &format!("policy/{}", self.name(logical, r, "PolicyName")),
            ),
            ("AWS::IoT::TopicRule", "Arn") => self.arn(
                "iot",
                &format!("rule/{}", self.name(logical, r, "RuleName")),
            ),
            ("AWS::Events::Rule", "Arn") => {
                self.arn("events", &format!("rule/{}", self.name(logical, r, "Name")))
            }
            ("AWS::KMS::Key", "Arn") => self.arn("kms", &format!("key/{logical}")),
            ("AWS::KMS::Key", "KeyId") => logical.to_owned(),
            ("AWS::IoT::CACertificate", "Id") => ca_certificate_id(r).ok_or_else(unknown)?,
            ("AWS::IoT::CACertificate", "Arn") => self.arn(
                "iot",
                &format!("cacert/{}", ca_certificate_id(r).ok_or_else(unknown)?),
            ),
            _ => return Err(unknown()),
        })
    }

    fn sub(
        &self,
        id: &str,
        text: &str,
        vars: &BTreeMap<String, String>,
    ) -> Result<Value, TemplateError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| unresolvable(id, &format!("unterminated ${{ in {text:?}")))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(v);
            } else if let Some(v) = pseudo(name, self.scope) {
                out.push_str(&v);
            } else if let Some((logical, attr)) = name.split_once('.') {
                out.push_str(&self.attribute(id, logical, attr)?);
            } else if self.resources.is_some_and(|m| m.contains_key(name)) {
                out.push_str(&self.reference(id, name)?);
            } else {
                return Err(unresolvable(id, &format!("${{{name}}}")));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(Value::String(out))
    }
}

/// AWS IoT's certificate id of a CA certificate resource: the SHA-256 of
/// its DER, hex (as the registry computes it).
fn ca_certificate_id(resource: &Value) -> Option<String> {
    use sha2::Digest;
    let text = resource
        .get("Properties")?
        .get("CACertificatePem")?
        .as_str()?;
    let der = pem::parse(text).ok()?;
    Some(hex::encode(sha2::Sha256::digest(der.contents())))
}

fn unresolvable(id: &str, what: &str) -> TemplateError {
    TemplateError::Unresolvable {
        resource: id.to_owned(),
        what: what.to_owned(),
    }
}

/// The stack name the emulator deploys as (`AWS::StackName`), the default
/// of `fleetcert synth`.
pub const STACK_NAME: &str = "FleetcertStack";

fn pseudo(name: &str, scope: &ArnScope) -> Option<String> {
    match name {
        "AWS::Partition" => Some(scope.partition.clone()),
        "AWS::Region" => Some(scope.region.clone()),
        "AWS::AccountId" => Some(scope.account.clone()),
        "AWS::URLSuffix" => Some("amazonaws.com".into()),
        "AWS::StackName" => Some(STACK_NAME.into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> ArnScope {
        Deployment::default_scope()
    }

    #[test]
    fn sub_resolves_pseudo_parameters_and_keeps_escaped_variables() {
        let v = json!({"Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:client/${!iot:ClientId}"});
        assert_eq!(
            Resolver::new(&scope(), &json!({}))
                .resolve("P", &v)
                .unwrap_or_else(|e| panic!("{e}")),
            json!("arn:aws:iot:us-east-1:123456789012:client/${iot:ClientId}")
        );
    }

    #[test]
    fn unknown_variables_and_intrinsics_are_errors() {
        assert!(matches!(
            Resolver::new(&scope(), &json!({})).resolve("P", &json!({"Fn::Sub": "${Bucket}"})),
            Err(TemplateError::Unresolvable { .. })
        ));
        assert!(matches!(
            Resolver::new(&scope(), &json!({})).resolve("P", &json!({"Fn::ImportValue": "x"})),
            Err(TemplateError::Unresolvable { .. })
        ));
    }

    #[test]
    fn function_logical_ids_are_pascal_case_names() {
        assert_eq!(function_logical_id(Function::CsrIssuer), "CsrIssuer");
        assert_eq!(
            function_logical_id(Function::JitrActivator),
            "JitrActivator"
        );
        assert_eq!(function_logical_id(Function::Commit), "Commit");
    }

    #[test]
    fn rules_map_lambda_actions_to_functions_and_skip_disabled_ones() {
        let template = json!({"Resources": {
            "R1": {"Type": "AWS::IoT::TopicRule", "Properties": {"RuleName": "r1", "TopicRulePayload": {
                "AwsIotSqlVersion": "2016-03-23", "Sql": "SELECT * FROM 'a/+'",
                "Actions": [{"Lambda": {"FunctionArn": {"Fn::GetAtt": ["CsrIssuer", "Arn"]}}}]}}},
            "R2": {"Type": "AWS::IoT::TopicRule", "Properties": {"TopicRulePayload": {
                "AwsIotSqlVersion": "2016-03-23", "Sql": "SELECT * FROM 'b'", "RuleDisabled": true,
                "Actions": [{"Lambda": {"FunctionArn": {"Fn::GetAtt": ["Commit", "Arn"]}}}]}}},
        }});
        let d = Deployment::from_template(&template, &scope()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.rules().len(), 1);
        assert_eq!(d.rules()[0].function, Function::CsrIssuer);
        assert_eq!(d.rules()[0].name, "r1");
    }

    #[test]
    fn a_lambda_action_to_a_foreign_function_is_an_error() {
        let template = json!({"Resources": {
            "R1": {"Type": "AWS::IoT::TopicRule", "Properties": {"TopicRulePayload": {
                "AwsIotSqlVersion": "2016-03-23", "Sql": "SELECT * FROM 'a'",
                "Actions": [{"Lambda": {"FunctionArn": {"Fn::GetAtt": ["Other", "Arn"]}}}]}}},
        }});
        assert!(matches!(
            Deployment::from_template(&template, &scope()),
            Err(TemplateError::UnknownFunction { .. })
        ));
    }
}
