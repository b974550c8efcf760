//! `fleetcert check-policy` on the three policies a fleet brings: fleetcert's
//! own device policy, a customer policy with a `#` subscription, and one that
//! blocks `crt_ack`. Runs the binary (default build).

use std::process::Command;

use serde_json::{Value, json};

fn check(policy: &Value, extra: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.json");
    std::fs::write(&file, policy.to_string()).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetcert"))
        .arg("check-policy")
        .arg(&file)
        .args(["--thing", "pump-7"])
        .args(extra)
        .output()
        .expect("run fleetcert");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fleetcert_policy() -> Value {
    infra::from_rules::device_policy("aws", "eu-west-1", "111122223333")
}

#[test]
fn fleetcerts_own_policy_allows_a_rotation() {
    let (code, out, err) = check(&fleetcert_policy(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("every step of a rotation is allowed for pump-7"),
        "{out}"
    );
    assert_eq!(out.matches("allowed").count(), 9, "{out}");
}

#[test]
fn fleetcerts_own_policy_refuses_a_wildcard_subscription() {
    let (code, out, err) = check(&fleetcert_policy(), &["--wildcard-subscription"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("blocks: subscribe to management/topic/pump-7/#"),
        "{err}"
    );
}

#[test]
fn a_customer_policy_with_a_wildcard_subscription_allows_a_rotation() {
    let arn = "arn:aws:iot:eu-west-1:111122223333";
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect",
         "Resource": format!("{arn}:client/${{iot:Connection.Thing.ThingName}}")},
        {"Effect": "Allow", "Action": "iot:Subscribe",
         "Resource": format!("{arn}:topicfilter/management/topic/${{iot:Connection.Thing.ThingName}}/#")},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
         "Resource": format!("{arn}:topic/management/topic/${{iot:Connection.Thing.ThingName}}/*")}
    ]});
    let (code, out, err) = check(&policy, &["--wildcard-subscription", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let verdicts: Vec<Value> = serde_json::from_str(&out).expect("json");
    assert_eq!(verdicts.len(), 7);
    assert!(verdicts.iter().all(|v| v["allowed"] == true), "{out}");
}

#[test]
fn a_policy_that_blocks_crt_ack_is_reported_with_the_statement() {
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "iot:Publish",
         "Resource": "arn:aws:iot:eu-west-1:111122223333:topic/management/topic/*/crt_ack"}
    ]});
    let (code, out, err) = check(&policy, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("publish crt_ack"), "{out}");
    assert!(
        out.contains("BLOCKED (denied by policy 0 statement 1)"),
        "{out}"
    );
    assert!(err.contains("blocks: publish crt_ack"), "{err}");
}

#[test]
fn a_file_that_is_not_a_policy_is_a_clear_error() {
    let (code, _, err) = check(&json!({"Statement": "nope"}), &[]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("is not an IoT policy"), "{err}");
}
