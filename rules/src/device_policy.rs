//! fleetcert's device policy: what a device may do over MQTT, written in
//! the policy language [`crate::policy`] evaluates.

use crate::policy::{Action, ArnScope, Condition, ContextKey, Effect, PolicyDocument, Statement};
use crate::topic::{MANAGEMENT_PREFIX, MessageKind};

/// The messages a device publishes.
const DEVICE_PUBLISHES: [MessageKind; 3] = [
    MessageKind::CsrRes,
    MessageKind::CrtAck,
    MessageKind::CrtErr,
];

/// The messages a device subscribes to and receives.
const DEVICE_RECEIVES: [MessageKind; 2] = [MessageKind::CsrReq, MessageKind::Crt];

/// fleetcert's device policy, the one attached to every device certificate.
///
/// Least privilege: a device may connect only with its own thing name as
/// client id, publish only its own `csr_res`, `crt_ack`, `crt_err`,
/// subscribe to and receive only its own `csr_req` and `crt`, and nothing at
/// all unless its certificate is attached to that thing. Infra synthesizes
/// it with [`ArnScope::cloudformation`]; the only `${` in it are that
/// scope's and the `${iot:…}` policy variables, which `Fn::Sub` needs
/// escaped as `${!iot:…}`.
pub fn device_policy(scope: &ArnScope) -> PolicyDocument {
    let thing = ContextKey::ThingName.variable();
    let own = |kind: MessageKind| format!("{MANAGEMENT_PREFIX}{thing}/{}", kind.suffix());
    let attached = Condition::bool(ContextKey::IsAttached, true);
    let statement = |sid: &str, action: Action, resources: Vec<String>| Statement {
        sid: Some(sid.to_owned()),
        effect: Effect::Allow,
        actions: vec![action.as_str().to_owned()],
        resources,
        conditions: vec![attached.clone()],
    };
    PolicyDocument::new(vec![
        statement(
            "ConnectAsOwnThing",
            Action::Connect,
            vec![scope.client_arn(&thing)],
        ),
        statement(
            "PublishOwnReplies",
            Action::Publish,
            DEVICE_PUBLISHES
                .iter()
                .map(|k| scope.topic_arn(&own(*k)))
                .collect(),
        ),
        statement(
            "SubscribeOwnRequests",
            Action::Subscribe,
            DEVICE_RECEIVES
                .iter()
                .map(|k| scope.topicfilter_arn(&own(*k)))
                .collect(),
        ),
        statement(
            "ReceiveOwnRequests",
            Action::Receive,
            DEVICE_RECEIVES
                .iter()
                .map(|k| scope.topic_arn(&own(*k)))
                .collect(),
        ),
    ])
}
