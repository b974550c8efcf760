//! The agent against Debian's mosquitto with mutual TLS, a test-side cloud
//! playing the Lambdas.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Broker, Ca, Cloud, Device, Running};
use device::{Agent, AgentError, AgentEvent};
use rules::csr::KeyAlgorithm as CsrKey;
use serde_json::{Value, json};

/// Cloud side of steps 2–4: csr_req → csr_res (checked) → crt. Returns the
/// new certificate and its id.
async fn issue(cloud: &mut Cloud, ca: &Ca, thing: &str, csr_req: Value) -> (String, String, Value) {
    cloud.send(thing, "csr_req", csr_req.to_string()).await;
    let res = cloud.expect(thing, "csr_res").await;
    let csr = res["CSR"].as_str().expect("csr_res has CSR");
    let info = rules::csr::inspect_csr(csr).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.subject_cn.as_deref(), Some(thing));
    let cert = ca.sign_csr(csr);
    let id = rules::csr::certificate_id(&cert).expect("id");
    (cert, id, json!({"res": res, "key": info.key}))
}

async fn rotate(key_request: Option<&str>, expected: CsrKey) {
    let ca = Ca::new("fleet ca");
    let broker = Broker::start(&ca);
    let device = Device::provision(&ca, "thing-1");
    let mut cloud = Cloud::connect(&ca, broker.port).await;
    let mut agent = Running::start(Agent::new(device.config(&ca, broker.port)).expect("agent"));
    agent
        .wait_for("connected", |e| matches!(e, AgentEvent::Connected { .. }))
        .await;

    let mut req = json!({"rotationId": "rot-1"});
    if let Some(k) = key_request {
        req["keyAlgorithm"] = json!(k);
    }
    let (cert, id, seen) = issue(&mut cloud, &ca, "thing-1", req).await;
    assert_eq!(seen["res"]["rotationId"], "rot-1");
    assert_eq!(seen["key"], serde_json::to_value(&expected).expect("json"));
    let crt = json!({"rotationId": "rot-1", "certificateId": id, "certificatePem": cert});
    cloud.send("thing-1", "crt", crt.to_string()).await;
    let ack = cloud.expect("thing-1", "crt_ack").await;
    assert_eq!(ack, json!({"rotationId": "rot-1", "certificateId": id}));
    let rotated = agent
        .wait_for("rotated", |e| matches!(e, AgentEvent::Rotated { .. }))
        .await;
    match &rotated {
        AgentEvent::Rotated {
            certificate_id,
            latency: Some(latency),
            ..
        } => {
            assert_eq!(*certificate_id, id);
            eprintln!("rotation latency ({expected}): {latency:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(device.current_certificate(), cert);
    // The agent is connected and subscribed again, with the new certificate.
    agent
        .wait_for(
            "reconnected",
            |e| matches!(e, AgentEvent::Connected { certificate_id, .. } if *certificate_id == id),
        )
        .await;
    // The same csr_req again (a duplicate, or the sweeper's re-send crossing
    // the ack): the rotation is finished here, so no new key and no answer.
    cloud
        .send(
            "thing-1",
            "csr_req",
            json!({"rotationId": "rot-1"}).to_string(),
        )
        .await;
    match agent
        .wait_for("repeat refused", |e| {
            matches!(e, AgentEvent::MessageRejected { .. })
        })
        .await
    {
        AgentEvent::MessageRejected { reason, .. } => {
            assert!(reason.contains("rot-1 already finished"), "{reason}");
        }
        _ => unreachable!(),
    }
    let silence = cloud.drain(Duration::from_millis(300)).await;
    assert!(
        silence.is_empty(),
        "answered a finished rotation: {silence:?}"
    );
    agent.stop().await.unwrap_or_else(|e| panic!("{e}"));
    let state = device::Slots::open(device.dir.path())
        .expect("slots")
        .load()
        .expect("load");
    assert!(state.next.is_none(), "next slot left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_to_a_p256_certificate() {
    rotate(None, CsrKey::EcP256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_to_an_rsa_2048_certificate_on_request() {
    rotate(Some("RSA_2048"), CsrKey::Rsa { bits: 2048 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_an_empty_csr_req_from_the_original_protocol() {
    let ca = Ca::new("fleet ca");
    let broker = Broker::start(&ca);
    let device = Device::provision(&ca, "legacy");
    let mut cloud = Cloud::connect(&ca, broker.port).await;
    let mut agent = Running::start(Agent::new(device.config(&ca, broker.port)).expect("agent"));
    agent
        .wait_for("connected", |e| matches!(e, AgentEvent::Connected { .. }))
        .await;
    let (cert, id, seen) = issue(&mut cloud, &ca, "legacy", json!({})).await;
    assert!(seen["res"].get("rotationId").is_none(), "{seen}");
    let crt = json!({"rotationId": "r", "certificateId": id, "certificatePem": cert});
    cloud.send("legacy", "crt", crt.to_string()).await;
    let ack = cloud.expect("legacy", "crt_ack").await;
    assert_eq!(ack["certificateId"], id.as_str());
    agent
        .wait_for("rotated", |e| matches!(e, AgentEvent::Rotated { .. }))
        .await;
    assert_eq!(device.current_certificate(), cert);
    agent.stop().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_unknown_ca_rolls_back_with_crt_err() {
    let ca = Ca::new("fleet ca");
    let rogue = Ca::new("rogue ca");
    let broker = Broker::start(&ca);
    let device = Device::provision(&ca, "thing-2");
    let old = device.current_certificate();
    let mut cloud = Cloud::connect(&ca, broker.port).await;
    let mut agent = Running::start(Agent::new(device.config(&ca, broker.port)).expect("agent"));
    agent
        .wait_for("connected", |e| matches!(e, AgentEvent::Connected { .. }))
        .await;

    cloud
        .send(
            "thing-2",
            "csr_req",
            json!({"rotationId": "bad-1"}).to_string(),
        )
        .await;
    let res = cloud.expect("thing-2", "csr_res").await;
    let cert = rogue.sign_csr(res["CSR"].as_str().expect("CSR"));
    let id = rules::csr::certificate_id(&cert).expect("id");
    let crt = json!({"rotationId": "bad-1", "certificateId": id, "certificatePem": cert});
    cloud.send("thing-2", "crt", crt.to_string()).await;

    let err = cloud.expect("thing-2", "crt_err").await;
    assert_eq!(err["rotationId"], "bad-1");
    assert!(
        !err["error"].as_str().unwrap_or_default().is_empty(),
        "{err}"
    );
    agent
        .wait_for("rolled back", |e| {
            matches!(e, AgentEvent::RolledBack { .. })
        })
        .await;
    assert_eq!(
        device.current_certificate(),
        old,
        "current certificate kept"
    );
    let state = device::Slots::open(device.dir.path())
        .expect("slots")
        .load()
        .expect("load");
    assert!(state.next.is_none(), "next slot discarded");

    // Still in service on the old certificate: a new rotation works.
    let (cert, id, _) = issue(&mut cloud, &ca, "thing-2", json!({"rotationId": "good-2"})).await;
    let crt = json!({"rotationId": "good-2", "certificateId": id, "certificatePem": cert});
    cloud.send("thing-2", "crt", crt.to_string()).await;
    assert_eq!(
        cloud.expect("thing-2", "crt_ack").await["rotationId"],
        "good-2"
    );
    agent.stop().await.unwrap_or_else(|e| panic!("{e}"));
}

async fn crash_then_resume(point: &'static str) {
    let ca = Ca::new("fleet ca");
    let broker = Broker::start(&ca);
    let device = Device::provision(&ca, "thing-3");
    let mut cloud = Cloud::connect(&ca, broker.port).await;
    let agent = Agent::new(device.config(&ca, broker.port))
        .expect("agent")
        .with_fault_hook(Arc::new(move |step| step == point));
    let mut running = Running::start(agent);
    running
        .wait_for("connected", |e| matches!(e, AgentEvent::Connected { .. }))
        .await;
    let (cert, id, _) = issue(&mut cloud, &ca, "thing-3", json!({"rotationId": "crash-1"})).await;
    let crt = json!({"rotationId": "crash-1", "certificateId": id, "certificatePem": cert});
    cloud.send("thing-3", "crt", crt.to_string()).await;
    match running.finish().await {
        Err(AgentError::Crashed { point: p }) => assert_eq!(p, point),
        other => panic!("expected a crash at {point}, got {other:?}"),
    }

    // Restart: the certificate in next/ is tried, acknowledged, promoted.
    let mut running = Running::start(Agent::new(device.config(&ca, broker.port)).expect("agent"));
    running
        .wait_for("resuming", |e| matches!(e, AgentEvent::Resuming { .. }))
        .await;
    let ack = cloud.expect("thing-3", "crt_ack").await;
    assert_eq!(ack, json!({"rotationId": "crash-1", "certificateId": id}));
    running
        .wait_for("rotated", |e| matches!(e, AgentEvent::Rotated { .. }))
        .await;
    assert_eq!(device.current_certificate(), cert);
    running.stop().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_a_crash_before_the_new_connection() {
    crash_then_resume("agent: next stored").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_a_crash_between_ack_and_promotion() {
    crash_then_resume("agent: ack sent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_crt_err_rolls_back_again_after_restart() {
    let ca = Ca::new("fleet ca");
    let rogue = Ca::new("rogue ca");
    let broker = Broker::start(&ca);
    let device = Device::provision(&ca, "thing-4");
    let old = device.current_certificate();
    let mut cloud = Cloud::connect(&ca, broker.port).await;
    let agent = Agent::new(device.config(&ca, broker.port))
        .expect("agent")
        .with_fault_hook(Arc::new(|step| step == "agent: next stored"));
    let mut running = Running::start(agent);
    running
        .wait_for("connected", |e| matches!(e, AgentEvent::Connected { .. }))
        .await;
    cloud
        .send(
            "thing-4",
            "csr_req",
            json!({"rotationId": "x-1"}).to_string(),
        )
        .await;
    let res = cloud.expect("thing-4", "csr_res").await;
    let cert = rogue.sign_csr(res["CSR"].as_str().expect("CSR"));
    let id = rules::csr::certificate_id(&cert).expect("id");
    let crt = json!({"rotationId": "x-1", "certificateId": id, "certificatePem": cert});
    cloud.send("thing-4", "crt", crt.to_string()).await;
    assert!(matches!(
        running.finish().await,
        Err(AgentError::Crashed { .. })
    ));

    let mut running = Running::start(Agent::new(device.config(&ca, broker.port)).expect("agent"));
    let err = cloud.expect("thing-4", "crt_err").await;
    assert_eq!(err["rotationId"], "x-1");
    running
        .wait_for("rolled back", |e| {
            matches!(e, AgentEvent::RolledBack { .. })
        })
        .await;
    assert_eq!(device.current_certificate(), old);
    running.stop().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_connect_backs_off_until_the_broker_accepts() {
    let ca = Ca::new("fleet ca");
    let port = common::free_port();
    let device = Device::provision(&ca, "jitr-1");
    let mut config = device.config(&ca, port);
    config.backoff.max_attempts = 100;
    config.backoff.max_total = Duration::from_secs(20);
    let mut running = Running::start(Agent::new(config).expect("agent"));
    // Refused until the broker comes up (as while a JITR certificate is
    // pending activation).
    running
        .wait_for("connect failed", |e| {
            matches!(
                e,
                AgentEvent::ConnectFailed {
                    retry_in: Some(_),
                    ..
                }
            )
        })
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let _broker = Broker::start_on(&ca, port);
    let connected = running
        .wait_for("connected", |e| matches!(e, AgentEvent::Connected { .. }))
        .await;
    match connected {
        AgentEvent::Connected { attempts, .. } => assert!(attempts > 1, "{attempts}"),
        _ => unreachable!(),
    }
    running.stop().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_connect_gives_up_after_the_configured_attempts() {
    let ca = Ca::new("fleet ca");
    let device = Device::provision(&ca, "jitr-2");
    let mut config = device.config(&ca, common::free_port());
    config.backoff.max_attempts = 3;
    let mut running = Running::start(Agent::new(config).expect("agent"));
    let last = running
        .wait_for("last attempt", |e| {
            matches!(e, AgentEvent::ConnectFailed { retry_in: None, .. })
        })
        .await;
    assert!(
        matches!(last, AgentEvent::ConnectFailed { attempt: 3, .. }),
        "{last:?}"
    );
    match running.finish().await {
        Err(AgentError::GaveUp { attempts, .. }) => assert_eq!(attempts, 3),
        other => panic!("expected GaveUp, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_are_ignored_with_a_reason() {
    let ca = Ca::new("fleet ca");
    let broker = Broker::start(&ca);
    let device = Device::provision(&ca, "thing-5");
    let old = device.current_certificate();
    let mut cloud = Cloud::connect(&ca, broker.port).await;
    let mut running = Running::start(Agent::new(device.config(&ca, broker.port)).expect("agent"));
    running
        .wait_for("connected", |e| matches!(e, AgentEvent::Connected { .. }))
        .await;

    for (suffix, payload, needle) in [
        ("csr_req", "not json", "not valid JSON"),
        ("csr_req", r#"{"rotationId": 5}"#, "rotationId"),
        (
            "csr_req",
            r#"{"rotationId": "r", "surprise": true}"#,
            "surprise",
        ),
        (
            "csr_req",
            r#"{"rotationId": "r", "deadline": 1}"#,
            "deadline",
        ),
        ("crt", r#"{"rotationId": "r"}"#, "certificateId"),
    ] {
        cloud.send("thing-5", suffix, payload).await;
        let rejected = running
            .wait_for("rejected", |e| {
                matches!(e, AgentEvent::MessageRejected { .. })
            })
            .await;
        match rejected {
            AgentEvent::MessageRejected { reason, .. } => {
                assert!(reason.contains(needle), "{payload}: {reason}");
            }
            _ => unreachable!(),
        }
    }

    // A well-formed crt for a key the device does not hold is refused with crt_err.
    let (cert, _) = ca.client("thing-5");
    let id = rules::csr::certificate_id(&cert).expect("id");
    let crt = json!({"rotationId": "r-9", "certificateId": id, "certificatePem": cert});
    cloud.send("thing-5", "crt", crt.to_string()).await;
    let err = cloud.expect("thing-5", "crt_err").await;
    assert_eq!(err["rotationId"], "r-9");
    running
        .wait_for("refused", |e| {
            matches!(e, AgentEvent::CertificateRefused { .. })
        })
        .await;

    let silence = cloud.drain(Duration::from_millis(300)).await;
    assert!(
        silence.is_empty(),
        "device answered bad payloads: {silence:?}"
    );
    assert_eq!(device.current_certificate(), old);
    running.stop().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_csr_req_gets_a_csr_for_the_same_key() {
    let ca = Ca::new("fleet ca");
    let broker = Broker::start(&ca);
    let device = Device::provision(&ca, "thing-6");
    let mut cloud = Cloud::connect(&ca, broker.port).await;
    let mut running = Running::start(Agent::new(device.config(&ca, broker.port)).expect("agent"));
    running
        .wait_for("connected", |e| matches!(e, AgentEvent::Connected { .. }))
        .await;
    let req = json!({"rotationId": "dup-1"}).to_string();
    let mut fingerprints = Vec::new();
    for _ in 0..2 {
        cloud.send("thing-6", "csr_req", req.clone()).await;
        let res = cloud.expect("thing-6", "csr_res").await;
        let info = rules::csr::inspect_csr(res["CSR"].as_str().expect("CSR"))
            .unwrap_or_else(|e| panic!("{e}"));
        fingerprints.push(info.public_key_fingerprint);
    }
    assert_eq!(fingerprints[0], fingerprints[1]);
    // A new rotation gets a new key.
    cloud
        .send(
            "thing-6",
            "csr_req",
            json!({"rotationId": "dup-2"}).to_string(),
        )
        .await;
    let res = cloud.expect("thing-6", "csr_res").await;
    let info = rules::csr::inspect_csr(res["CSR"].as_str().expect("CSR"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(info.public_key_fingerprint, fingerprints[0]);
    running.stop().await.unwrap_or_else(|e| panic!("{e}"));
}
