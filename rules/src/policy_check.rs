//! Which steps of the rotation protocol a device's IoT policies allow: each
//! MQTT operation the device makes in a rotation (connect as its thing,
//! subscribe to and receive `csr_req` and `crt`, publish `csr_res`,
//! `crt_ack` and `crt_err`), evaluated with [`crate::policy::evaluate`] as
//! AWS IoT Core would for a certificate attached to the thing.
//!
//! A fleet that keeps its own IoT policies (instead of fleetcert's device
//! policy) runs this on them before it rotates: `fleetcert check-policy`.

use serde::Serialize;

use crate::policy::{Action, ArnScope, Decision, PolicyContext, PolicyDocument, Request, evaluate};
use crate::topic::{MANAGEMENT_PREFIX, MessageKind};

/// One MQTT operation of the protocol and whether the policies allow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepVerdict {
    /// What the device does, in the protocol's words.
    pub step: String,
    /// The IoT action.
    pub action: &'static str,
    /// The resource it is authorized on.
    pub resource: String,
    /// Whether it is allowed.
    pub allowed: bool,
    /// How it was decided (`allow`, `implicit deny`, the denying statement).
    pub decision: String,
}

/// How the device subscribes to the messages the cloud sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// One filter per message (`…/csr_req`, `…/crt`), as fleetcert's agent does.
    Exact,
    /// One filter for all of its management topics (`…/{thing}/#`).
    Wildcard,
}

/// Every step of the protocol for `thing`, in order, evaluated against
/// `policies` (the policies attached to the device's certificate) in
/// `scope`, for a certificate attached to the thing whose subject CN is
/// `certificate_cn`.
pub fn check_protocol(
    policies: &[PolicyDocument],
    scope: &ArnScope,
    thing: &str,
    certificate_cn: Option<&str>,
    subscription: Subscription,
) -> Vec<StepVerdict> {
    let ctx = PolicyContext {
        client_id: thing,
        thing_name: Some(thing),
        is_attached: true,
        certificate_cn,
    };
    let topic = |kind: MessageKind| format!("{MANAGEMENT_PREFIX}{thing}/{}", kind.suffix());
    let mut steps: Vec<(String, Action, String)> = vec![(
        format!("connect as client id {thing}"),
        Action::Connect,
        scope.client_arn(thing),
    )];
    match subscription {
        Subscription::Exact => {
            for kind in [MessageKind::CsrReq, MessageKind::Crt] {
                steps.push((
                    format!("subscribe to {}", topic(kind)),
                    Action::Subscribe,
                    scope.topicfilter_arn(&topic(kind)),
                ));
            }
        }
        Subscription::Wildcard => {
            let filter = format!("{MANAGEMENT_PREFIX}{thing}/#");
            steps.push((
                format!("subscribe to {filter}"),
                Action::Subscribe,
                scope.topicfilter_arn(&filter),
            ));
        }
    }
    for kind in [MessageKind::CsrReq, MessageKind::Crt] {
        steps.push((
            format!("receive {}", kind.suffix()),
            Action::Receive,
            scope.topic_arn(&topic(kind)),
        ));
    }
    for kind in [
        MessageKind::CsrRes,
        MessageKind::CrtAck,
        MessageKind::CrtErr,
    ] {
        steps.push((
            format!("publish {}", kind.suffix()),
            Action::Publish,
            scope.topic_arn(&topic(kind)),
        ));
    }
    steps
        .into_iter()
        .map(|(step, action, resource)| {
            let decision = evaluate(
                policies,
                &Request {
                    action,
                    resource: &resource,
                },
                &ctx,
            );
            StepVerdict {
                step,
                action: action.as_str(),
                allowed: decision.is_allowed(),
                decision: match decision {
                    Decision::Allow => "allow".to_owned(),
                    Decision::ImplicitDeny => "no statement allows it".to_owned(),
                    Decision::ExplicitDeny { policy, statement } => {
                        format!("denied by policy {policy} statement {statement}")
                    }
                },
                resource,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::device_policy;
    use serde_json::json;

    fn scope() -> ArnScope {
        ArnScope {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
        }
    }

    fn blocked(verdicts: &[StepVerdict]) -> Vec<&str> {
        verdicts
            .iter()
            .filter(|v| !v.allowed)
            .map(|v| v.step.as_str())
            .collect()
    }

    #[test]
    fn fleetcerts_own_policy_allows_every_step_with_exact_filters_only() {
        let policy = device_policy(&scope());
        let exact = check_protocol(
            std::slice::from_ref(&policy),
            &scope(),
            "thing-1",
            None,
            Subscription::Exact,
        );
        assert_eq!(exact.len(), 8);
        assert!(blocked(&exact).is_empty(), "{exact:#?}");
        let wildcard = check_protocol(&[policy], &scope(), "thing-1", None, Subscription::Wildcard);
        assert_eq!(
            blocked(&wildcard),
            ["subscribe to management/topic/thing-1/#"]
        );
    }

    #[test]
    fn a_customer_policy_with_a_wildcard_subscription_allows_every_step() {
        let doc = PolicyDocument::from_value(&json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect",
             "Resource": "arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}"},
            {"Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": "arn:aws:iot:us-east-1:123456789012:topicfilter/management/topic/${iot:Connection.Thing.ThingName}/#"},
            {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
             "Resource": "arn:aws:iot:us-east-1:123456789012:topic/management/topic/${iot:Connection.Thing.ThingName}/*"}
        ]}))
        .unwrap_or_else(|e| panic!("{e}"));
        let v = check_protocol(&[doc], &scope(), "pump-7", None, Subscription::Wildcard);
        assert!(blocked(&v).is_empty(), "{v:#?}");
    }

    #[test]
    fn a_policy_that_blocks_crt_ack_says_so() {
        let doc = PolicyDocument::from_value(&json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["iot:*"], "Resource": "*"},
            {"Effect": "Deny", "Action": "iot:Publish",
             "Resource": "arn:aws:iot:us-east-1:123456789012:topic/management/topic/*/crt_ack"}
        ]}))
        .unwrap_or_else(|e| panic!("{e}"));
        let v = check_protocol(&[doc], &scope(), "pump-7", None, Subscription::Exact);
        assert_eq!(blocked(&v), ["publish crt_ack"]);
        let ack = v
            .iter()
            .find(|s| s.step == "publish crt_ack")
            .expect("step");
        assert_eq!(ack.decision, "denied by policy 0 statement 1");
    }
}
