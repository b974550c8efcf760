//! `simulate --brownfield`: a fleet fleetcert did not provision. Its
//! devices run on customer IoT policies of three shapes (one of them
//! subscribing to `management/topic/<thing>/#`), most have thing names
//! that are not their certificates' CNs, a share has certificates attached
//! to two things, and JITR devices come from a customer CA. The handlers
//! copy the policies an allow-list names (`Customer-*` and fleetcert's
//! own) and the run checks each device ends with exactly the policies and
//! things it started with.

use emulator::Deployment;
use rules::policy::PolicyDocument;
use rules::policy_check::Subscription;
use rules::policy_copy::PolicyCopy;

/// Customer policy: exact topics, as fleetcert's own policy grants them.
pub const EXACT: &str = "Customer-Exact";
/// Customer policy: one subscription to `management/topic/<thing>/#`.
pub const WILDCARD: &str = "Customer-Wildcard";
/// Customer policy: every IoT action on the thing's management topics,
/// with the connect grant in a second policy.
pub const BROAD: &str = "Customer-Broad";
/// The second policy of [`BROAD`] devices: connect and telemetry.
pub const CONNECT: &str = "Customer-Connect";

const THING: &str = "${iot:Connection.Thing.ThingName}";

fn document(statements: &[(&[&str], &[String])]) -> PolicyDocument {
    let statements: Vec<serde_json::Value> = statements
        .iter()
        .map(|(actions, resources)| {
            serde_json::json!({"Effect": "Allow", "Action": actions, "Resource": resources})
        })
        .collect();
    let text = serde_json::json!({"Version": "2012-10-17", "Statement": statements}).to_string();
    PolicyDocument::parse(&text).expect("the brownfield policies are valid IoT policies")
}

fn arn(resource: &str) -> String {
    format!("arn:aws:iot:*:*:{resource}")
}

/// The customer policies, by name.
pub fn policies() -> Vec<(&'static str, PolicyDocument)> {
    let topic = |kind: &str| arn(&format!("topic/management/topic/{THING}/{kind}"));
    let filter = |kind: &str| arn(&format!("topicfilter/management/topic/{THING}/{kind}"));
    let connect = arn(&format!("client/{THING}"));
    vec![
        (
            EXACT,
            document(&[
                (&["iot:Connect"], std::slice::from_ref(&connect)),
                (&["iot:Subscribe"], &[filter("csr_req"), filter("crt")]),
                (&["iot:Receive"], &[topic("csr_req"), topic("crt")]),
                (
                    &["iot:Publish"],
                    &[topic("csr_res"), topic("crt_ack"), topic("crt_err")],
                ),
            ]),
        ),
        (
            WILDCARD,
            document(&[
                (&["iot:Connect"], std::slice::from_ref(&connect)),
                (&["iot:Subscribe"], &[filter("#")]),
                (&["iot:Publish", "iot:Receive"], &[topic("*")]),
            ]),
        ),
        (
            BROAD,
            document(&[(
                &["iot:Subscribe", "iot:Receive", "iot:Publish"],
                &[filter("*"), topic("*")],
            )]),
        ),
        (
            CONNECT,
            document(&[
                (&["iot:Connect"], std::slice::from_ref(&connect)),
                (
                    &["iot:Publish"],
                    &[arn(&format!("topic/telemetry/{THING}"))],
                ),
            ]),
        ),
    ]
}

/// The deployment with the customer policies created in the account.
pub fn with_policies(mut deployment: Deployment) -> Deployment {
    for (name, document) in policies() {
        deployment = deployment.with_policy(name, document);
    }
    deployment
}

/// What the handlers copy: fleetcert's device policy and the customer's.
pub fn copy_rule() -> PolicyCopy {
    PolicyCopy::new(
        &[emulator::cloud::DEVICE_POLICY, "Customer-*"],
        &[] as &[&str],
    )
    .expect("a valid allow-list")
}

/// How one device of a brownfield fleet is provisioned and behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// The thing it connects as.
    pub thing: String,
    /// Its certificates' subject CN (the CSRs it sends carry it too).
    pub common_name: String,
    /// Its certificate's policies.
    pub policies: Vec<String>,
    /// Further things its certificate is attached to.
    pub other_things: Vec<String>,
    /// How it subscribes.
    pub subscription: Subscription,
}

/// The shape of device `i`, by `i % 10`: 3 in 10 on fleetcert's policy
/// with thing = CN; 2 on [`EXACT`] and 2 on [`WILDCARD`] (the `#`
/// firmware) with a serial number as CN; 1 on [`BROAD`] + [`CONNECT`]; 2
/// on [`WILDCARD`] with the certificate shared by a second thing.
pub fn shape(i: usize) -> Shape {
    let serial = format!("SN-{i:08}");
    let (thing, common_name, policies, other_things, subscription) = match i % 10 {
        0..=2 => {
            let thing = format!("sim-{i:06}");
            (
                thing.clone(),
                thing,
                vec![emulator::cloud::DEVICE_POLICY],
                vec![],
                Subscription::Exact,
            )
        }
        3 | 4 => (
            format!("plant-a-{i:06}"),
            serial,
            vec![EXACT],
            vec![],
            Subscription::Exact,
        ),
        5 | 6 => (
            format!("plant-b-{i:06}"),
            serial,
            vec![WILDCARD],
            vec![],
            Subscription::Wildcard,
        ),
        7 => {
            let thing = format!("meter-{i:06}");
            (
                thing.clone(),
                thing,
                vec![BROAD, CONNECT],
                vec![],
                Subscription::Exact,
            )
        }
        // the gateway's own thing sorts before the one it fronts, so the
        // rotation talks to it (rules::rotation::primary_thing)
        _ => {
            let thing = format!("gw-{i:06}");
            let fronted = format!("{thing}-sensor");
            (
                thing,
                serial,
                vec![WILDCARD],
                vec![fronted],
                Subscription::Wildcard,
            )
        }
    };
    Shape {
        thing,
        common_name,
        policies: policies.into_iter().map(str::to_owned).collect(),
        other_things,
        subscription,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rules::policy::ArnScope;
    use rules::policy_check::check_protocol;

    /// Every shape's policies allow every step of a rotation for the way
    /// its firmware subscribes, and fleetcert's policy refuses the `#`.
    #[test]
    fn every_shape_can_rotate_on_its_own_policies() {
        let all = policies();
        let scope = ArnScope {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
        };
        let fleetcert = rules::policy::device_policy(&scope);
        for i in 0..10 {
            let s = shape(i);
            let docs: Vec<PolicyDocument> = s
                .policies
                .iter()
                .map(|name| {
                    all.iter()
                        .find(|(n, _)| n == name)
                        .map_or_else(|| fleetcert.clone(), |(_, d)| d.clone())
                })
                .collect();
            let verdicts = check_protocol(
                &docs,
                &scope,
                &s.thing,
                Some(&s.common_name),
                s.subscription,
            );
            assert!(verdicts.iter().all(|v| v.allowed), "{s:?}: {verdicts:?}");
            assert!(s.policies.iter().all(|p| copy_rule().allows(p)));
        }
        let wildcard = check_protocol(&[fleetcert], &scope, "t", Some("t"), Subscription::Wildcard);
        assert!(wildcard.iter().any(|v| !v.allowed));
    }

    #[test]
    fn the_mix_has_every_shape() {
        let shapes: Vec<Shape> = (0..10).map(shape).collect();
        assert!(shapes.iter().any(|s| s.thing != s.common_name));
        assert!(shapes.iter().any(|s| !s.other_things.is_empty()));
        assert!(
            shapes
                .iter()
                .any(|s| s.subscription == Subscription::Wildcard)
        );
        assert!(shapes.iter().any(|s| s.policies.len() == 2));
        for s in shapes.iter().filter(|s| !s.other_things.is_empty()) {
            let mut things = vec![s.thing.clone()];
            things.extend(s.other_things.iter().cloned());
            assert_eq!(
                rules::rotation::primary_thing(&things, Some(&s.common_name)),
                Some(s.thing.as_str())
            );
        }
    }
}
