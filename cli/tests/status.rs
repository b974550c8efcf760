//! `fleetcert status` end to end: a rotation table created as the stack
//! creates it, in moto (a local AWS API on 127.0.0.1), filled by the real
//! handlers on the DynamoDB adapter (`lambdas::aws::DynamoStore`; the
//! registry and the publisher are the in-memory adapters, with real X.509
//! issuance), then the real binary's counts, by state and by age, from the
//! due index (paged), from a Scan, and for one thing.

use std::process::{Command, Output, Stdio};

mod common;

use common::*;
use lambdas::aws::DynamoStore;
use lambdas::config::Config;
use lambdas::handlers::{Outcome, commit, csr_issuer, error_handler, rotation_starter};
use lambdas::memory::MemoryPorts;
use lambdas::ports::{IotRegistry, PortSet};
use rcgen::{CertificateParams, DnType, KeyPair};
use serde_json::{Value, json};
use test_support::{IsolatedAws, Moto};

const POLICY: &str = "fleetcert-device";
const HOUR: i64 = 3_600_000;

fn csr(thing: &str) -> String {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, thing);
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn payload(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// A thing with an ACTIVE certificate and the device policy; its id.
async fn provision(p: &Ports, thing: &str) -> String {
    p.registry.add_thing(thing);
    let cert = p
        .registry
        .create_certificate_from_csr(&csr(thing), true)
        .await
        .expect("certificate");
    p.registry
        .attach_policy(POLICY, &cert.certificate_arn)
        .await
        .expect("policy");
    p.registry
        .attach_thing_principal(thing, &cert.certificate_arn)
        .await
        .expect("thing");
    cert.certificate_id
}

/// Starts the thing's rotation at `at`; its rotation id.
async fn start(p: &Ports, cfg: &Config, thing: &str, cert: &str, at: i64) -> String {
    let body = json!({
        "certificateId": cert, "taskId": "task-1",
        "checkName": "DEVICE_CERTIFICATE_EXPIRING_CHECK",
        "expirationTimeMs": at + 20 * 24 * HOUR, "pastExpiration": false
    });
    let event = json!({ "Records": [{
        "messageId": "m-1", "receiptHandle": "rh", "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
        "md5OfBody": "x", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:rotations", "awsRegion": REGION
    }]});
    let batch = rotation_starter::handle(p, cfg, &payload(&event), at).await;
    assert!(
        batch.response.batch_item_failures.is_empty(),
        "{:?}",
        batch.outcomes
    );
    let topic = format!("management/topic/{thing}/csr_req");
    let sent = p.publisher.published_to(&topic).pop().expect("csr_req");
    let req: Value = serde_json::from_slice(&sent.payload).expect("json");
    req["rotationId"].as_str().expect("id").to_owned()
}

/// Sends the CSR; the new certificate's id.
async fn issue(p: &Ports, cfg: &Config, thing: &str, id: &str, at: i64) -> String {
    let res =
        json!({"clientid": thing, "topicClientId": thing, "CSR": csr(thing), "rotationId": id});
    let out = csr_issuer::handle(p, cfg, &payload(&res), at)
        .await
        .expect("csr_res");
    assert!(matches!(out, Outcome::Done { .. }), "{out:?}");
    let topic = format!("management/topic/{thing}/crt");
    let sent = p.publisher.published_to(&topic).pop().expect("crt");
    let crt: Value = serde_json::from_slice(&sent.payload).expect("json");
    crt["certificateId"].as_str().expect("id").to_owned()
}

fn fleetcert(moto: &Moto, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetcert"))
        .arg("status")
        .args(args)
        .args([
            "--table",
            TABLE,
            "--endpoint-url",
            &moto.endpoint,
            "--region",
            REGION,
        ])
        .isolated_aws()
        .env_remove("FLEETCERT_TABLE")
        .stdin(Stdio::null())
        .output()
        .expect("run fleetcert");
    eprintln!(
        "$ fleetcert status {}\n-> {:?}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    out
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

#[test]
fn status_counts_what_the_handlers_wrote() {
    let moto = Moto::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let now = now_ms();
    runtime.block_on(async {
        let sdk = sdk(&moto).await;
        create_rotation_table(&sdk).await;
        let memory = MemoryPorts::new();
        let p: Ports = PortSet {
            registry: memory.ports.registry.clone(),
            publisher: memory.ports.publisher.clone(),
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), TABLE),
            notifier: memory.ports.notifier.clone(),
            queue: memory.ports.queue.clone(),
            private_ca: memory.ports.private_ca.clone(),
        };
        p.registry.create_policy(POLICY);
        p.registry.set_now_ms(now - 300 * 24 * HOUR);
        let mut cfg = Config::local(POLICY);
        cfg.rotation_table = TABLE.to_owned();

        // requested just now
        let c = provision(&p, "thing-requested").await;
        start(&p, &cfg, "thing-requested", &c, now).await;
        // requested 50 h ago
        let c = provision(&p, "thing-waiting").await;
        start(&p, &cfg, "thing-waiting", &c, now - 50 * HOUR).await;
        // requested 200 h ago: past the 168 h deadline, not yet swept
        let c = provision(&p, "thing-stuck").await;
        start(&p, &cfg, "thing-stuck", &c, now - 200 * HOUR).await;
        // issued 2 h ago
        let c = provision(&p, "thing-issued").await;
        let id = start(&p, &cfg, "thing-issued", &c, now - 2 * HOUR).await;
        issue(&p, &cfg, "thing-issued", &id, now - 2 * HOUR).await;
        // committed
        let c = provision(&p, "thing-done").await;
        let id = start(&p, &cfg, "thing-done", &c, now - 3 * HOUR).await;
        let new = issue(&p, &cfg, "thing-done", &id, now - 3 * HOUR).await;
        let ack = json!({"clientid": "thing-done", "topicClientId": "thing-done",
                         "principal": new, "rotationId": id});
        let out = commit::handle(&p, &cfg, &payload(&ack), now - HOUR)
            .await
            .expect("ack");
        assert!(matches!(out, Outcome::Done { .. }), "{out:?}");
        // failed by the device before a certificate was issued
        let c = provision(&p, "thing-failed").await;
        let id = start(&p, &cfg, "thing-failed", &c, now - 4 * HOUR).await;
        let err = json!({"clientid": "thing-failed", "topicClientId": "thing-failed",
                         "principal": c, "error": "no space", "rotationId": id});
        let out = error_handler::handle(&p, &cfg, &payload(&err), now - 4 * HOUR)
            .await
            .expect("crt_err");
        assert!(matches!(out, Outcome::Done { .. }), "{out:?}");
    });

    // the due index, two rows a page: open rows only
    let due = json_of(&fleetcert(&moto, &["--json", "--page-size", "2"]));
    assert_eq!(due["source"], "due-index");
    assert_eq!(due["rows"], 4);
    assert_eq!(due["byState"], json!({ "ISSUED": 1, "REQUESTED": 3 }));
    assert_eq!(due["open"], 4);
    assert_eq!(due["cleanupOwed"], 0);
    assert_eq!(due["pastDeadline"], 1);
    assert_eq!(
        due["openByAge"],
        json!([
            ["under 1 h", 1],
            ["1 h to 1 day", 1],
            ["1 to 3 days", 1],
            ["3 to 7 days", 0],
            ["7 days or more", 1]
        ])
    );
    let oldest: Vec<(&str, &str)> = due["oldest"]
        .as_array()
        .expect("oldest")
        .iter()
        .map(|l| {
            (
                l["thingName"].as_str().unwrap(),
                l["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        oldest,
        vec![
            ("thing-stuck", "REQUESTED"),
            ("thing-waiting", "REQUESTED"),
            ("thing-issued", "ISSUED"),
            ("thing-requested", "REQUESTED"),
        ]
    );

    // the text report says the same
    let text = String::from_utf8(fleetcert(&moto, &["--oldest", "1"]).stdout).expect("utf-8");
    assert!(text.contains("open rotations: 4"), "{text}");
    assert!(text.contains("thing-stuck"), "{text}");
    assert!(!text.contains("thing-waiting"), "one listed: {text}");

    // a Scan, asked for, counts the finished rows too
    let all = json_of(&fleetcert(&moto, &["--json", "--scan", "--page-size", "3"]));
    assert_eq!(all["source"], "scan");
    assert_eq!(all["rows"], 6);
    assert_eq!(
        all["byState"],
        json!({ "COMMITTED": 1, "FAILED": 1, "ISSUED": 1, "REQUESTED": 3 })
    );

    // one thing: its pointer and the row it names
    let done = json_of(&fleetcert(&moto, &["--json", "--thing", "thing-done"]));
    assert_eq!(done["open"], false);
    assert_eq!(done["rotation"]["state"], "COMMITTED");
    assert_eq!(done["rotation"]["thingName"], "thing-done");
    let unknown = json_of(&fleetcert(&moto, &["--json", "--thing", "thing-never"]));
    assert_eq!(unknown["latest"], Value::Null);
    let text =
        String::from_utf8(fleetcert(&moto, &["--thing", "thing-failed"]).stdout).expect("utf-8");
    assert!(
        text.contains("FAILED") && text.contains("no space"),
        "{text}"
    );
}
