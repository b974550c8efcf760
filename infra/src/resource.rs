//! What every generated resource type implements.

/// A CloudFormation resource type generated from its provider schema.
pub trait Resource: serde::Serialize {
    /// `AWS::Service::Resource`.
    const TYPE_NAME: &'static str;
    /// The attributes `Fn::GetAtt` accepts (the schema's read-only properties).
    const ATTRIBUTES: &'static [&'static str];
}
