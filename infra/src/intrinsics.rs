//! CloudFormation intrinsic functions and pseudo parameters as typed values.
//!
//! A property typed `Value<T>` holds either a literal `T` or an intrinsic.
//! References are made from [`crate::stack::Handle`]s, so they name a
//! resource that was added to a stack; [`crate::stack::Stack::template`]
//! still checks every `Ref`, `Fn::GetAtt` and `Fn::Sub` variable in the
//! finished template and fails with the dangling name.

use serde::{Serialize, Serializer};
use serde_json::json;

/// A property value: a literal or an intrinsic function.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<T> {
    /// A plain value.
    Literal(T),
    /// An intrinsic function, resolved by CloudFormation.
    Intrinsic(Intrinsic),
}

/// The intrinsic functions fleetcert uses.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Intrinsic {
    /// `Ref` to a resource or parameter (by logical id).
    Ref(String),
    /// `Fn::GetAtt [logical id, attribute]`.
    GetAtt {
        /// The resource.
        logical_id: String,
        /// The attribute, e.g. `Arn`.
        attribute: String,
    },
    /// `Fn::Sub` with `${Name}`, `${Name.Attr}` and `${AWS::…}` variables;
    /// `${!…}` is a literal `${…}`.
    Sub(String),
    /// `Fn::Join [delimiter, values]`.
    Join {
        /// The delimiter.
        delimiter: String,
        /// The parts.
        values: Vec<Value<String>>,
    },
    /// A pseudo parameter (`Ref AWS::Region`, …).
    Pseudo(Pseudo),
}

/// CloudFormation pseudo parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pseudo {
    /// `AWS::AccountId`.
    AccountId,
    /// `AWS::Region`.
    Region,
    /// `AWS::Partition`.
    Partition,
    /// `AWS::StackName`.
    StackName,
    /// `AWS::StackId`.
    StackId,
    /// `AWS::URLSuffix`.
    UrlSuffix,
    /// `AWS::NoValue`.
    NoValue,
}

impl Pseudo {
    /// Every pseudo parameter.
    pub const ALL: [Pseudo; 7] = [
        Pseudo::AccountId,
        Pseudo::Region,
        Pseudo::Partition,
        Pseudo::StackName,
        Pseudo::StackId,
        Pseudo::UrlSuffix,
        Pseudo::NoValue,
    ];

    /// Its name, e.g. `AWS::Region`.
    pub const fn name(self) -> &'static str {
        match self {
            Pseudo::AccountId => "AWS::AccountId",
            Pseudo::Region => "AWS::Region",
            Pseudo::Partition => "AWS::Partition",
            Pseudo::StackName => "AWS::StackName",
            Pseudo::StackId => "AWS::StackId",
            Pseudo::UrlSuffix => "AWS::URLSuffix",
            Pseudo::NoValue => "AWS::NoValue",
        }
    }

    /// The pseudo parameter called `name`, if any.
    pub fn from_name(name: &str) -> Option<Pseudo> {
        Pseudo::ALL.into_iter().find(|p| p.name() == name)
    }

    /// As a string value.
    pub fn value(self) -> Value<String> {
        Value::Intrinsic(Intrinsic::Pseudo(self))
    }
}

/// `Fn::Sub` of a template string.
pub fn sub(template: impl Into<String>) -> Value<String> {
    Value::Intrinsic(Intrinsic::Sub(template.into()))
}

/// `Fn::Join`.
pub fn join(delimiter: impl Into<String>, values: Vec<Value<String>>) -> Value<String> {
    Value::Intrinsic(Intrinsic::Join {
        delimiter: delimiter.into(),
        values,
    })
}

/// A string that may contain CloudFormation `${…}` variables and IoT policy
/// variables (`${iot:…}`): `Fn::Sub` with the IoT ones escaped (`${!iot:…}`)
/// so that CloudFormation leaves them for IoT; a plain string otherwise.
pub fn sub_if_needed(text: &str) -> Value<String> {
    let mut out = String::with_capacity(text.len() + 8);
    let mut needs_sub = false;
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let var = after.split('}').next().unwrap_or("");
        let is_policy_variable =
            !var.starts_with('!') && !var.starts_with("AWS::") && var.contains(':');
        if is_policy_variable {
            out.push_str("${!");
        } else {
            needs_sub |= !var.starts_with('!');
            out.push_str("${");
        }
        rest = after;
    }
    out.push_str(rest);
    if needs_sub {
        sub(out)
    } else {
        Value::Literal(text.to_owned())
    }
}

impl<T: Serialize> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Literal(v) => v.serialize(s),
            Value::Intrinsic(i) => i.serialize(s),
        }
    }
}

impl Serialize for Intrinsic {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = match self {
            Intrinsic::Ref(id) => json!({ "Ref": id }),
            Intrinsic::GetAtt {
                logical_id,
                attribute,
            } => json!({ "Fn::GetAtt": [logical_id, attribute] }),
            Intrinsic::Sub(t) => json!({ "Fn::Sub": t }),
            Intrinsic::Join { delimiter, values } => {
                json!({ "Fn::Join": [delimiter, values] })
            }
            Intrinsic::Pseudo(p) => json!({ "Ref": p.name() }),
        };
        v.serialize(s)
    }
}

impl<T> From<Intrinsic> for Value<T> {
    fn from(i: Intrinsic) -> Self {
        Value::Intrinsic(i)
    }
}

impl From<&str> for Value<String> {
    fn from(s: &str) -> Self {
        Value::Literal(s.to_owned())
    }
}

impl From<String> for Value<String> {
    fn from(s: String) -> Self {
        Value::Literal(s)
    }
}

impl From<&String> for Value<String> {
    fn from(s: &String) -> Self {
        Value::Literal(s.clone())
    }
}

impl From<i64> for Value<i64> {
    fn from(v: i64) -> Self {
        Value::Literal(v)
    }
}

impl From<u32> for Value<i64> {
    fn from(v: u32) -> Self {
        Value::Literal(i64::from(v))
    }
}

impl From<bool> for Value<bool> {
    fn from(v: bool) -> Self {
        Value::Literal(v)
    }
}

impl From<f64> for Value<f64> {
    fn from(v: f64) -> Self {
        Value::Literal(v)
    }
}

impl Value<String> {
    /// As JSON, for free-form properties (policy documents).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Literal(s) => serde_json::Value::String(s.clone()),
            Value::Intrinsic(i) => serde_json::to_value(i).unwrap_or(serde_json::Value::Null),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::plain("arn:aws:iot:eu-west-1:1:topic/a", json!("arn:aws:iot:eu-west-1:1:topic/a"))]
    #[case::cfn_only(
        "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:client/*",
        json!({"Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:client/*"})
    )]
    #[case::iot_variable_escaped(
        "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:client/${iot:Connection.Thing.ThingName}",
        json!({"Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:client/${!iot:Connection.Thing.ThingName}"})
    )]
    #[case::iot_variable_only(
        "management/topic/${iot:Connection.Thing.ThingName}/csr_res",
        json!("management/topic/${iot:Connection.Thing.ThingName}/csr_res")
    )]
    fn sub_if_needed_escapes_iot_variables(
        #[case] text: &str,
        #[case] expected: serde_json::Value,
    ) {
        assert_eq!(sub_if_needed(text).to_json(), expected);
    }

    #[test]
    fn intrinsics_serialize_as_cloudformation_json() {
        let v: Value<String> = join(
            ",",
            vec![
                "a".into(),
                Pseudo::Region.value(),
                Intrinsic::GetAtt {
                    logical_id: "Q".into(),
                    attribute: "Arn".into(),
                }
                .into(),
            ],
        );
        assert_eq!(
            serde_json::to_value(&v).ok(),
            Some(
                json!({"Fn::Join": [",", ["a", {"Ref": "AWS::Region"}, {"Fn::GetAtt": ["Q", "Arn"]}]]})
            )
        );
    }

    #[test]
    fn pseudo_names_round_trip() {
        for p in Pseudo::ALL {
            assert_eq!(Pseudo::from_name(p.name()), Some(p));
        }
        assert_eq!(Pseudo::from_name("AWS::Nope"), None);
    }
}
