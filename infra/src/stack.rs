//! A CloudFormation stack of typed resources, and its template.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

use serde_json::{Map, Value as Json, json};

use crate::intrinsics::{Intrinsic, Pseudo, Value};
use crate::resource::Resource;

/// Why a stack cannot become a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    /// A logical id that CloudFormation rejects.
    #[error("logical id {logical_id:?} must be 1 to 255 ASCII letters and digits")]
    InvalidLogicalId {
        /// The id.
        logical_id: String,
    },
    /// Two resources with one logical id.
    #[error("logical id {logical_id} is used twice")]
    DuplicateLogicalId {
        /// The id.
        logical_id: String,
    },
    /// A `Ref`, `Fn::GetAtt`, `Fn::Sub` variable or `DependsOn` naming
    /// nothing in the stack.
    #[error("{from} refers to {target}, which is not a resource or parameter of the stack")]
    DanglingReference {
        /// The resource (or output) holding the reference.
        from: String,
        /// The missing name.
        target: String,
    },
    /// `Fn::GetAtt` of an attribute the resource type does not have.
    #[error(
        "{from} reads attribute {attribute} of {target} ({type_name}), which has only: {known}"
    )]
    UnknownAttribute {
        /// The resource holding the reference.
        from: String,
        /// The referenced resource.
        target: String,
        /// Its type.
        type_name: String,
        /// The attribute asked for.
        attribute: String,
        /// The attributes it has.
        known: String,
    },
    /// A resource that does not serialize to a JSON object.
    #[error("resource {logical_id} does not serialize to an object: {reason}")]
    Serialize {
        /// The resource.
        logical_id: String,
        /// Why.
        reason: String,
    },
}

/// A resource added to a [`Stack`], for references to it. Generated code
/// adds one typed accessor per `Fn::GetAtt` attribute.
#[derive(Debug)]
pub struct Handle<R> {
    logical_id: String,
    _resource: PhantomData<fn() -> R>,
}

impl<R> Clone for Handle<R> {
    fn clone(&self) -> Self {
        Handle {
            logical_id: self.logical_id.clone(),
            _resource: PhantomData,
        }
    }
}

impl<R: Resource> Handle<R> {
    /// Its logical id.
    pub fn logical_id(&self) -> &str {
        &self.logical_id
    }

    /// `Ref` (the resource's primary identifier).
    pub fn r#ref(&self) -> Value<String> {
        Value::Intrinsic(Intrinsic::Ref(self.logical_id.clone()))
    }

    /// `Fn::GetAtt`; generated accessors call this with the schema's names.
    pub(crate) fn get_att(&self, attribute: &str) -> Value<String> {
        Value::Intrinsic(Intrinsic::GetAtt {
            logical_id: self.logical_id.clone(),
            attribute: attribute.to_owned(),
        })
    }
}

/// Resource-level options beside the properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// `DependsOn`, as logical ids.
    pub depends_on: Vec<String>,
    /// `Metadata` (e.g. checkov suppressions with their reasons).
    pub metadata: Option<Json>,
    /// `DeletionPolicy` and `UpdateReplacePolicy` (`Retain`, `Delete`, …).
    pub deletion_policy: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct Entry {
    type_name: &'static str,
    attributes: &'static [&'static str],
    properties: Json,
    options: Options,
}

/// A stack under construction.
#[derive(Debug, Clone, Default)]
pub struct Stack {
    description: String,
    parameters: BTreeMap<String, Json>,
    rules: BTreeMap<String, Json>,
    resources: BTreeMap<String, Entry>,
    outputs: BTreeMap<String, Json>,
    errors: Vec<SynthError>,
}

impl Stack {
    /// An empty stack.
    pub fn new(description: impl Into<String>) -> Stack {
        Stack {
            description: description.into(),
            ..Stack::default()
        }
    }

    /// Adds a resource.
    pub fn add<R: Resource>(&mut self, logical_id: &str, resource: R) -> Handle<R> {
        self.add_with(logical_id, resource, Options::default())
    }

    /// Adds a resource with options; problems are reported by [`Stack::template`].
    pub fn add_with<R: Resource>(
        &mut self,
        logical_id: &str,
        resource: R,
        options: Options,
    ) -> Handle<R> {
        if !valid_logical_id(logical_id) {
            self.errors.push(SynthError::InvalidLogicalId {
                logical_id: logical_id.to_owned(),
            });
        } else if self.resources.contains_key(logical_id)
            || self.parameters.contains_key(logical_id)
        {
            self.errors.push(SynthError::DuplicateLogicalId {
                logical_id: logical_id.to_owned(),
            });
        } else {
            match serde_json::to_value(&resource) {
                Ok(properties @ Json::Object(_)) => {
                    self.resources.insert(
                        logical_id.to_owned(),
                        Entry {
                            type_name: R::TYPE_NAME,
                            attributes: R::ATTRIBUTES,
                            properties,
                            options,
                        },
                    );
                }
                Ok(other) => self.errors.push(SynthError::Serialize {
                    logical_id: logical_id.to_owned(),
                    reason: format!("got {other}"),
                }),
                Err(e) => self.errors.push(SynthError::Serialize {
                    logical_id: logical_id.to_owned(),
                    reason: e.to_string(),
                }),
            }
        }
        Handle {
            logical_id: logical_id.to_owned(),
            _resource: PhantomData,
        }
    }

    /// Adds a template parameter (its JSON declaration).
    pub fn parameter(&mut self, name: &str, declaration: Json) {
        if !valid_logical_id(name) {
            self.errors.push(SynthError::InvalidLogicalId {
                logical_id: name.to_owned(),
            });
        } else if self
            .parameters
            .insert(name.to_owned(), declaration)
            .is_some()
        {
            self.errors.push(SynthError::DuplicateLogicalId {
                logical_id: name.to_owned(),
            });
        }
    }

    /// Adds a template rule (its JSON declaration).
    pub fn rule(&mut self, name: &str, declaration: Json) {
        self.rules.insert(name.to_owned(), declaration);
    }

    /// Adds an output.
    pub fn output(&mut self, name: &str, value: Value<String>, description: &str) {
        self.outputs.insert(
            name.to_owned(),
            json!({ "Description": description, "Value": value.to_json() }),
        );
    }

    /// Logical ids of the resources of one type, sorted.
    pub fn logical_ids_of<R: Resource>(&self) -> Vec<&str> {
        self.resources
            .iter()
            .filter(|(_, e)| e.type_name == R::TYPE_NAME)
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// The template, after checking every reference in it.
    pub fn template(&self) -> Result<Json, SynthError> {
        if let Some(e) = self.errors.first() {
            return Err(e.clone());
        }
        let mut resources = Map::new();
        for (id, entry) in &self.resources {
            let mut r = Map::new();
            r.insert("Type".into(), Json::String(entry.type_name.to_owned()));
            if entry.properties.as_object().is_some_and(|p| !p.is_empty()) {
                r.insert("Properties".into(), entry.properties.clone());
            }
            if !entry.options.depends_on.is_empty() {
                for dep in &entry.options.depends_on {
                    if !self.resources.contains_key(dep) {
                        return Err(SynthError::DanglingReference {
                            from: id.clone(),
                            target: dep.clone(),
                        });
                    }
                }
                r.insert("DependsOn".into(), json!(entry.options.depends_on));
            }
            if let Some(m) = &entry.options.metadata {
                r.insert("Metadata".into(), m.clone());
            }
            if let Some(p) = entry.options.deletion_policy {
                r.insert("DeletionPolicy".into(), json!(p));
                r.insert("UpdateReplacePolicy".into(), json!(p));
            }
            self.check_references(id, &entry.properties, &BTreeSet::new())?;
            resources.insert(id.clone(), Json::Object(r));
        }
        for (name, output) in &self.outputs {
            self.check_references(&format!("output {name}"), output, &BTreeSet::new())?;
        }
        let mut t = Map::new();
        t.insert("AWSTemplateFormatVersion".into(), json!("2010-09-09"));
        t.insert("Description".into(), json!(self.description));
        if !self.parameters.is_empty() {
            t.insert("Parameters".into(), json!(self.parameters));
        }
        if !self.rules.is_empty() {
            t.insert("Rules".into(), json!(self.rules));
        }
        t.insert("Resources".into(), Json::Object(resources));
        if !self.outputs.is_empty() {
            t.insert("Outputs".into(), json!(self.outputs));
        }
        Ok(Json::Object(t))
    }

    fn check_name(
        &self,
        from: &str,
        name: &str,
        local: &BTreeSet<String>,
    ) -> Result<(), SynthError> {
        let (target, attribute) = match name.split_once('.') {
            Some((t, a)) => (t, Some(a)),
            None => (name, None),
        };
        if local.contains(target) || Pseudo::from_name(target).is_some() {
            return Ok(());
        }
        if self.parameters.contains_key(target) && attribute.is_none() {
            return Ok(());
        }
        let Some(entry) = self.resources.get(target) else {
            return Err(SynthError::DanglingReference {
                from: from.to_owned(),
                target: target.to_owned(),
            });
        };
        match attribute {
            Some(a) if !entry.attributes.contains(&a) => Err(SynthError::UnknownAttribute {
                from: from.to_owned(),
                target: target.to_owned(),
                type_name: entry.type_name.to_owned(),
                attribute: a.to_owned(),
                known: entry.attributes.join(", "),
            }),
            _ => Ok(()),
        }
    }

    fn check_references(
        &self,
        from: &str,
        v: &Json,
        local: &BTreeSet<String>,
    ) -> Result<(), SynthError> {
        match v {
            Json::Object(m) if m.len() == 1 => {
                if let Some(Json::String(name)) = m.get("Ref") {
                    return self.check_name(from, name, local);
                }
                if let Some(Json::Array(a)) = m.get("Fn::GetAtt")
                    && let [Json::String(t), Json::String(attr)] = &a[..]
                {
                    return self.check_name(from, &format!("{t}.{attr}"), local);
                }
                if let Some(sub) = m.get("Fn::Sub") {
                    let (text, vars) = match sub {
                        Json::String(s) => (s.as_str(), None),
                        Json::Array(a) => match &a[..] {
                            [Json::String(s), Json::Object(vars)] => (s.as_str(), Some(vars)),
                            _ => ("", None),
                        },
                        _ => ("", None),
                    };
                    let mut local = local.clone();
                    if let Some(vars) = vars {
                        for (k, val) in vars {
                            self.check_references(from, val, &BTreeSet::new())?;
                            local.insert(k.clone());
                        }
                    }
                    for name in sub_variables(text) {
                        self.check_name(from, name, &local)?;
                    }
                    return Ok(());
                }
                m.values()
                    .try_for_each(|x| self.check_references(from, x, local))
            }
            Json::Object(m) => m
                .values()
                .try_for_each(|x| self.check_references(from, x, local)),
            Json::Array(a) => a
                .iter()
                .try_for_each(|x| self.check_references(from, x, local)),
            _ => Ok(()),
        }
    }
}

/// The `${…}` variables of an `Fn::Sub` string, without the `${!…}` literals.
pub fn sub_variables(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let var = &after[..end];
        if !var.starts_with('!') {
            out.push(var.trim());
        }
        rest = &after[end + 1..];
    }
    out
}

fn valid_logical_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Checkov suppressions as resource `Metadata`, each with its reason.
pub fn checkov_skips(skips: &[(&str, &str)]) -> Json {
    json!({
        "checkov": {
            "skip": skips
                .iter()
                .map(|(id, reason)| json!({ "id": id, "comment": reason }))
                .collect::<Vec<_>>()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generated::sns_topic::Topic;
    use crate::generated::sqs_queue::Queue;
    use crate::intrinsics::sub;

    #[test]
    fn references_to_added_resources_synthesize() {
        let mut s = Stack::new("t");
        let q = s.add("Queue", Queue::default());
        s.add(
            "Topic",
            Topic {
                display_name: Some(q.arn()),
                topic_name: Some(sub("${Queue.QueueArn}-${AWS::Region}-${!Literal}")),
                ..Topic::default()
            },
        );
        let t = s.template();
        assert!(t.is_err(), "QueueArn is not an attribute of a queue");
        assert_eq!(
            t.err().map(|e| e.to_string()),
            Some(
                "Topic reads attribute QueueArn of Queue (AWS::SQS::Queue), which has only: Arn, QueueName, QueueUrl"
                    .to_owned()
            )
        );
    }

    #[test]
    fn a_handle_from_another_stack_dangles() {
        let mut other = Stack::new("other");
        let q = other.add("Elsewhere", Queue::default());
        let mut s = Stack::new("t");
        s.add(
            "Topic",
            Topic {
                display_name: Some(q.arn()),
                ..Topic::default()
            },
        );
        assert_eq!(
            s.template().err(),
            Some(SynthError::DanglingReference {
                from: "Topic".into(),
                target: "Elsewhere".into()
            })
        );
    }

    #[test]
    fn a_dangling_sub_variable_is_named() {
        let mut s = Stack::new("t");
        s.add(
            "Topic",
            Topic {
                display_name: Some(sub("arn:${AWS::Partition}:x:${Missing}")),
                ..Topic::default()
            },
        );
        assert_eq!(
            s.template().err().map(|e| e.to_string()),
            Some(
                "Topic refers to Missing, which is not a resource or parameter of the stack".into()
            )
        );
    }

    #[test]
    fn duplicate_and_invalid_ids_fail() {
        let mut s = Stack::new("t");
        s.add("Q", Queue::default());
        s.add("Q", Queue::default());
        assert_eq!(
            s.template().err(),
            Some(SynthError::DuplicateLogicalId {
                logical_id: "Q".into()
            })
        );
        let mut s = Stack::new("t");
        s.add("my-queue", Queue::default());
        assert!(matches!(
            s.template(),
            Err(SynthError::InvalidLogicalId { .. })
        ));
    }

    #[test]
    fn valid_references_pass_and_serialize() {
        let mut s = Stack::new("t");
        let q = s.add("Queue", Queue::default());
        s.add(
            "Topic",
            Topic {
                display_name: Some(q.r#ref()),
                topic_name: Some(sub("${Queue.Arn}-${AWS::Region}")),
                ..Topic::default()
            },
        );
        let t = s.template().ok();
        assert_eq!(
            t.as_ref()
                .map(|t| t["Resources"]["Topic"]["Properties"].clone()),
            Some(
                json!({"DisplayName": {"Ref": "Queue"}, "TopicName": {"Fn::Sub": "${Queue.Arn}-${AWS::Region}"}})
            )
        );
        assert_eq!(
            t.map(|t| t["Resources"]["Queue"].clone()),
            Some(json!({"Type": "AWS::SQS::Queue"}))
        );
    }

    #[test]
    fn sub_variables_skip_literals() {
        assert_eq!(sub_variables("a${X}b${!y}${ Z.Arn }"), vec!["X", "Z.Arn"]);
    }
}
