//! What the stack takes from `rules`, behind one seam.
//!
//! `rules::routes` and `rules::policy` land from their own branches; until
//! then these mirror their agreed signatures (`deployed_rules`,
//! `device_policy`). After merging, replace the bodies with calls to
//! `rules::routes::deployed_rules` and `rules::policy::device_policy`.

use rules::functions::Function;
use serde_json::{Value as Json, json};

/// A topic rule fleetcert deploys (mirror of `rules::routes::DeployedRule`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedRule {
    /// Rule name (letters, digits, underscores).
    pub name: String,
    /// IoT SQL, version 2016-03-23.
    pub sql: String,
    /// The function the rule invokes.
    pub function: Function,
    /// What it is for.
    pub description: String,
}

/// The topic rules: `csr_res`, `crt_ack`, `crt_err`, one JITR rule per CA.
pub fn deployed_rules(jitr_ca_certificate_ids: &[&str]) -> Vec<DeployedRule> {
    let mut rules = vec![
        DeployedRule {
            name: "fleetcert_csr_res".into(),
            sql: "SELECT clientid() as clientid, * FROM 'management/topic/+/csr_res' WHERE topic(3) = clientid()".into(),
            function: Function::CsrIssuer,
            description: "device CSR for a rotation → issue the new certificate".into(),
        },
        DeployedRule {
            name: "fleetcert_crt_ack".into(),
            sql: "SELECT clientid() as clientid, principal() as principal, * FROM 'management/topic/+/crt_ack' WHERE topic(3) = clientid()".into(),
            function: Function::Commit,
            description: "ack on the new certificate → retire the old one".into(),
        },
        DeployedRule {
            name: "fleetcert_crt_err".into(),
            sql: "SELECT clientid() as clientid, * FROM 'management/topic/+/crt_err' WHERE topic(3) = clientid()".into(),
            function: Function::ErrorHandler,
            description: "device could not install the certificate → clean up, notify support".into(),
        },
    ];
    for (i, id) in jitr_ca_certificate_ids.iter().enumerate() {
        rules.push(DeployedRule {
            name: format!("fleetcert_jitr_{i}"),
            sql: format!("SELECT * FROM '$aws/events/certificates/registered/{id}'"),
            function: Function::JitrActivator,
            description: "JITR registration event → check, attach, activate".into(),
        });
    }
    rules
}

/// The device policy as AWS policy JSON, with the given partition, region
/// and account strings (mirror of `rules::policy::device_policy`).
pub fn device_policy(partition: &str, region: &str, account: &str) -> Json {
    let arn =
        |kind: &str, rest: &str| format!("arn:{partition}:iot:{region}:{account}:{kind}/{rest}");
    let thing = "${iot:Connection.Thing.ThingName}";
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": arn("client", thing),
                "Condition": { "Bool": { "iot:Connection.Thing.IsAttached": "true" } }
            },
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": [
                    arn("topic", &format!("management/topic/{thing}/csr_res")),
                    arn("topic", &format!("management/topic/{thing}/crt_ack")),
                    arn("topic", &format!("management/topic/{thing}/crt_err")),
                ]
            },
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": arn("topicfilter", &format!("management/topic/{thing}/*"))
            },
            {
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": arn("topic", &format!("management/topic/{thing}/*"))
            }
        ]
    })
}
