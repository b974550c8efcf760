//! `fleetcert rotate` against moto: a thing group's ACTIVE certificates
//! (never an inactive one, never another thing's) are put on the rotation
//! queue as `rotation_work`, the message the audit sends, which
//! rotation-starter reads; `--dry-run` queues nothing; without a terminal
//! and without `--yes` it refuses. 127.0.0.1 only.

use std::process::{Command, Output, Stdio};

use aws_sdk_iot::config::{BehaviorVersion, Credentials, Region};
use lambdas::aws::AwsRegistry;
use lambdas::handlers::rotation_starter;
use lambdas::memory::MemoryPorts;
use lambdas::ports::PortSet;
use rules::contracts::RotationWork;
use serde_json::Value;
use test_support::{IsolatedAws, Moto};

const REGION: &str = "us-east-1";

fn credentials() -> Credentials {
    Credentials::new("testing", "testing", None, None, "test")
}

fn fleetcert(moto: &Moto, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetcert"))
        .arg("rotate")
        .args(args)
        .args(["--endpoint-url", &moto.endpoint, "--region", REGION])
        .isolated_aws()
        .stdin(Stdio::null())
        .output()
        .expect("run fleetcert rotate")
}

fn json_of(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thing_groups_active_certificates_go_on_the_rotation_queue_and_rotate_exactly_that_group()
{
    let moto = Moto::start();
    let iot = aws_sdk_iot::Client::from_conf(
        aws_sdk_iot::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&moto.endpoint)
            .credentials_provider(credentials())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new(REGION))
            .endpoint_url(&moto.endpoint)
            .credentials_provider(credentials())
            .build(),
    );
    let queue_url = sqs
        .create_queue()
        .queue_name("fleetcert-rotations")
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_owned();
    iot.create_thing_group()
        .thing_group_name("plant-7")
        .send()
        .await
        .expect("group");
    let mut active = std::collections::BTreeMap::new();
    for thing in ["pump-1", "pump-2", "pump-3"] {
        iot.create_thing()
            .thing_name(thing)
            .send()
            .await
            .expect("thing");
        let cert = iot
            .create_keys_and_certificate()
            .set_as_active(true)
            .send()
            .await
            .expect("certificate");
        iot.attach_thing_principal()
            .thing_name(thing)
            .principal(cert.certificate_arn().expect("arn"))
            .send()
            .await
            .expect("attach");
        active.insert(thing, cert.certificate_id().expect("id").to_owned());
        if thing != "pump-3" {
            iot.add_thing_to_thing_group()
                .thing_group_name("plant-7")
                .thing_name(thing)
                .send()
                .await
                .expect("group member");
        }
    }
    // an INACTIVE certificate of a group member is not rotated
    let inactive = iot
        .create_keys_and_certificate()
        .set_as_active(false)
        .send()
        .await
        .expect("inactive certificate");
    iot.attach_thing_principal()
        .thing_name("pump-1")
        .principal(inactive.certificate_arn().expect("arn"))
        .send()
        .await
        .expect("attach inactive");

    // --dry-run lists, queues nothing
    let dry = json_of(&fleetcert(
        &moto,
        &["--thing", "pump-3", "--dry-run", "--json"],
    ));
    assert_eq!(dry["queued"], 0);
    assert_eq!(
        dry["selected"][0]["certificateId"],
        active["pump-3"].as_str()
    );
    // no terminal, no --yes: refused, nothing queued
    let refused = fleetcert(
        &moto,
        &["--thing-group", "plant-7", "--queue-url", &queue_url],
    );
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--yes"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let out = json_of(&fleetcert(
        &moto,
        &[
            "--thing-group",
            "plant-7",
            "--queue-url",
            &queue_url,
            "--yes",
            "--json",
        ],
    ));
    let mut expected = vec![active["pump-1"].clone(), active["pump-2"].clone()];
    expected.sort();
    let selected: Vec<&str> = out["selected"]
        .as_array()
        .expect("selected")
        .iter()
        .map(|s| s["certificateId"].as_str().expect("id"))
        .collect();
    assert_eq!(selected, expected);
    assert_eq!(out["queued"], 2);
    let task = out["taskId"].as_str().expect("task").to_owned();

    let mut received = Vec::new();
    for _ in 0..5 {
        let msgs = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        for m in msgs.messages() {
            // the message rotation-starter reads, schema and all
            let body = m.body().expect("body");
            rules::contracts::validate(rules::contracts::Contract::RotationWork, body.as_bytes())
                .unwrap_or_else(|e| panic!("{e}: {body}"));
            let work: RotationWork = serde_json::from_str(body).expect("rotation_work");
            received.push(work);
        }
        if received.len() >= 2 {
            break;
        }
    }
    let mut ids: Vec<String> = received
        .iter()
        .map(|w| w.certificate_id.as_str().to_owned())
        .collect();
    ids.sort();
    assert_eq!(
        ids, expected,
        "exactly the group's active certificates, once each"
    );
    assert!(
        received
            .iter()
            .all(|w| w.task_id == task && !w.past_expiration)
    );

    // rotation-starter, reading the registry through the AWS adapter,
    // starts exactly the group's rotations: a csr_req to pump-1 and pump-2
    let memory = MemoryPorts::new();
    let ports = PortSet {
        registry: AwsRegistry::new(iot.clone()),
        publisher: memory.ports.publisher.clone(),
        store: memory.ports.store.clone(),
        notifier: memory.ports.notifier.clone(),
        queue: memory.ports.queue.clone(),
        private_ca: memory.ports.private_ca.clone(),
    };
    let cfg = lambdas::config::Config::local("fleetcert-device");
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    for work in &received {
        let body = serde_json::to_vec(work).expect("json");
        let outcome = rotation_starter::start_one(&ports, &cfg, &body, now_ms)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!outcome.is_rejected(), "{outcome:?}");
    }
    for thing in ["pump-1", "pump-2", "pump-3"] {
        let requests = memory
            .ports
            .publisher
            .published_to(&format!("management/topic/{thing}/csr_req"))
            .len();
        let rows = memory.ports.store.rows_for_thing(thing).len();
        let expected = usize::from(thing != "pump-3");
        assert_eq!((requests, rows), (expected, expected), "{thing}");
    }
}
