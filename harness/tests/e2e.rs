//! End to end on one machine: device agents (the `device` library, P-256)
//! over mutual TLS against the emulated cloud (`emulator::Cloud`: the
//! broker, the synthesized policy and rules, the Lambda handlers in
//! process). Bounded in devices and seconds; 127.0.0.1 only.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use device::AgentEvent;
use emulator::cloud::DEVICE_POLICY;
use emulator::{Cloud, CloudConfig};
use harness::simulate::{AgentSettings, Fleet, FleetDevice, FleetEvent, TestCa};
use lambdas::memory::Published;
use lambdas::ports::CertificateStatus;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

const BOUND: Duration = Duration::from_secs(180);

async fn cloud(jitr_ca_ids: &[String]) -> Cloud {
    let (deployment, _) =
        harness::simulate::synthesized_deployment(jitr_ca_ids).expect("synthesized template");
    let mut config = CloudConfig::new(deployment);
    config.sweep_every = Some(Duration::from_millis(500));
    Cloud::start(config).await.expect("cloud starts")
}

async fn provision(cloud: &Cloud, prefix: &str, n: usize, days: u32) -> Fleet {
    let mut installs = Vec::new();
    for i in 0..n {
        let thing = format!("{prefix}-{i:03}");
        let c = cloud.register_device(&thing, days).await.expect("device");
        installs.push((
            FleetDevice::new(thing, c.certificate_id, false),
            c.certificate_pem,
            c.private_key_pem,
        ));
    }
    Fleet::install(None, installs).expect("slots")
}

/// Waits for events until `done` says so; panics after [`BOUND`].
async fn until(
    rx: &mut UnboundedReceiver<FleetEvent>,
    what: &str,
    mut done: impl FnMut(&FleetEvent) -> bool,
) {
    let deadline = Instant::now() + BOUND;
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("event channel closed waiting for {what}"));
        if done(&ev) {
            return;
        }
    }
}

async fn all_connected(rx: &mut UnboundedReceiver<FleetEvent>, n: usize) {
    let mut seen = HashSet::new();
    until(rx, "every device to connect", |ev| {
        if matches!(ev.event, AgentEvent::Connected { .. }) {
            seen.insert(ev.device);
        }
        seen.len() == n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_devices_rotate_to_the_end() {
    let cloud = cloud(&[]).await;
    let n = 100;
    let mut fleet = provision(&cloud, "rot", n, 10).await;
    let mut rx = fleet
        .start(&cloud, &AgentSettings::default())
        .expect("agents");
    all_connected(&mut rx, n).await;
    assert_eq!(cloud.emulator().connected_clients(), n);

    let audit = cloud.audit_now(30).await.expect("audit");
    assert_eq!(audit.findings, n, "{audit:?}");

    // every device rotates, then reconnects (subscribes) with the new certificate
    let mut rotated = HashSet::new();
    let mut reconnected_with: Vec<Option<String>> = vec![None; n];
    until(&mut rx, "every device to rotate", |ev| {
        match &ev.event {
            AgentEvent::Rotated { .. } => {
                rotated.insert(ev.device);
            }
            AgentEvent::Connected { certificate_id, .. } if rotated.contains(&ev.device) => {
                reconnected_with[ev.device] = Some(certificate_id.clone());
            }
            _ => {}
        }
        reconnected_with.iter().all(Option::is_some)
    })
    .await;

    // the commit handler runs after the ack: give it a bounded moment
    let registry = cloud.registry();
    let deadline = Instant::now() + Duration::from_secs(30);
    while registry.certificates().len() != n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, d) in fleet.devices.iter().enumerate() {
        let current = fleet.current_certificate(i).expect("current slot");
        assert_ne!(
            current, d.initial_certificate_id,
            "{} did not rotate",
            d.thing
        );
        assert_eq!(reconnected_with[i].as_deref(), Some(current.as_str()));
        assert!(
            registry.certificate(&d.initial_certificate_id).is_none(),
            "old certificate of {} not deleted",
            d.thing
        );
        let certs = registry.certificates_of_thing(&d.thing);
        assert_eq!(certs.len(), 1, "{}: {certs:?}", d.thing);
        assert_eq!(certs[0].certificate_id, current);
        assert_eq!(certs[0].status, CertificateStatus::Active);
        assert!(certs[0].policies.contains(DEVICE_POLICY));
        // valid for a year now: the next audit finds nothing
        assert!(certs[0].not_after_ms > emulator::cloud::now_ms() + 300 * 86_400_000);
    }
    // no orphan: exactly the devices' certificates are left
    assert_eq!(registry.certificates().len(), n);
    let rows = cloud.ports().ports.store.rows();
    assert_eq!(rows.len(), n);
    assert!(rows.iter().all(|r| r.state.name() == "COMMITTED"));
    assert!(
        cloud.notifications().is_empty(),
        "{:?}",
        cloud.notifications()
    );
    assert_eq!(cloud.audit_now(30).await.expect("audit").findings, 0);
    // every call of every function and of the audit was authorized by the
    // roles of the synthesized template
    assert_eq!(cloud.lambda().access_log().denials(), []);
    // the broker holds one connection per device, each on its new certificate
    assert_eq!(cloud.emulator().connected_clients(), n);
    fleet.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_devices_come_in_by_jitr() {
    let ca = TestCa::new("customer CA").expect("ca");
    let ca_id = rules::csr::certificate_id(&ca.pem).expect("ca id");
    let cloud = cloud(std::slice::from_ref(&ca_id)).await;
    cloud.register_ca(&ca.pem).expect("register ca");
    let n = 20;
    let mut installs = Vec::new();
    for i in 0..n {
        let thing = format!("jitr-{i:03}");
        let device = ca.device(&thing).expect("device cert");
        let (cert, key) = (device.cert_pem, device.key_pem);
        installs.push((
            FleetDevice::new(thing, rules::csr::certificate_id(&cert).expect("id"), true),
            cert,
            key,
        ));
    }
    let mut fleet = Fleet::install(None, installs).expect("slots");
    let mut rx = fleet
        .start(&cloud, &AgentSettings::default())
        .expect("agents");
    let mut failed_first = HashSet::new();
    let mut connected = HashSet::new();
    until(&mut rx, "every JITR device to connect", |ev| {
        match &ev.event {
            AgentEvent::ConnectFailed { attempt: 1, .. } => {
                failed_first.insert(ev.device);
            }
            AgentEvent::Connected { .. } => {
                connected.insert(ev.device);
            }
            _ => {}
        }
        connected.len() == n
    })
    .await;
    // the first connection of each was dropped while it was registered
    assert_eq!(failed_first.len(), n);
    assert!(cloud.emulator().stats().jitr_events >= n as u64);
    assert_eq!(cloud.lambda().access_log().denials(), []);
    let registry = cloud.registry();
    for d in &fleet.devices {
        let c = registry
            .certificate(&d.initial_certificate_id)
            .expect("registered");
        assert_eq!(c.status, CertificateStatus::Active, "{}", d.thing);
        assert_eq!(c.ca_certificate_id.as_deref(), Some(ca_id.as_str()));
        assert!(c.things.contains(&d.thing), "{c:?}");
        assert!(c.policies.contains(DEVICE_POLICY), "{c:?}");
        assert!(registry.has_thing(&d.thing));
    }
    assert_eq!(cloud.emulator().connected_clients(), n);
    fleet.stop(Duration::from_secs(10)).await;
}

/// Re-signs a certificate with a CA the registry does not know, keeping
/// its public key: the device accepts it (its key, its id),
/// the broker refuses it.
fn rogue(crt: &Value, thing: &str, rogue_ca: &TestCa) -> Value {
    let pem = crt["certificatePem"].as_str().expect("pem");
    let der = pem::parse(pem).expect("pem").into_contents();
    let (_, x509) = x509_parser::parse_x509_certificate(&der).expect("x509");
    let spki = rcgen::SubjectPublicKeyInfo::from_der(x509.public_key().raw).expect("spki");
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, thing);
    let forged = rogue_ca.sign(&params, &spki);
    let mut out = crt.clone();
    out["certificateId"] = rules::csr::certificate_id(&forged).expect("id").into();
    out["certificatePem"] = forged.into();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_new_certificate_is_broken_rolls_back_and_support_is_notified() {
    let cloud = cloud(&[]).await;
    let mut fleet = provision(&cloud, "broken", 2, 10).await;
    let rogue_ca = Arc::new(TestCa::new("rogue CA").expect("ca"));
    let victim = fleet.devices[0].thing.clone();
    let crt_topic = format!("management/topic/{victim}/crt");
    let hook_ca = rogue_ca.clone();
    let hook_thing = victim.clone();
    cloud.set_publish_hook(Some(Arc::new(move |mut m: Published| {
        if m.topic == crt_topic
            && let Ok(v) = serde_json::from_slice::<Value>(&m.payload)
        {
            m.payload = serde_json::to_vec(&rogue(&v, &hook_thing, &hook_ca)).expect("json");
        }
        vec![m]
    })));
    let mut rx = fleet
        .start(&cloud, &AgentSettings::default())
        .expect("agents");
    all_connected(&mut rx, 2).await;
    assert_eq!(cloud.audit_now(30).await.expect("audit").findings, 2);

    let mut rolled_back = None;
    let mut other_rotated = false;
    until(
        &mut rx,
        "a rollback and the other device's rotation",
        |ev| {
            match &ev.event {
                AgentEvent::RolledBack { reason, .. } if ev.device == 0 => {
                    rolled_back = Some(reason.clone());
                }
                AgentEvent::Rotated { .. } if ev.device == 1 => other_rotated = true,
                _ => {}
            }
            rolled_back.is_some() && other_rotated
        },
    )
    .await;
    let d = &fleet.devices[0];
    // the device kept its old certificate
    assert_eq!(
        fleet.current_certificate(0).as_deref(),
        Some(d.initial_certificate_id.as_str())
    );
    // the error handler cleaned up the issued certificate and told support
    let registry = cloud.registry();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (registry.certificates_of_thing(&d.thing).len() != 1 || cloud.notifications().is_empty())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let certs = registry.certificates_of_thing(&d.thing);
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert_eq!(certs[0].certificate_id, d.initial_certificate_id);
    assert_eq!(certs[0].status, CertificateStatus::Active);
    let row = cloud
        .ports()
        .ports
        .store
        .row_for_thing(&d.thing)
        .expect("row");
    assert_eq!(row.state.name(), "FAILED");
    let notes = cloud.notifications();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let body: Value = serde_json::from_str(&notes[0].message).expect("json");
    assert_eq!(body["thingName"], d.thing.as_str());
    assert!(
        body["deviceError"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    // the other device rotated normally, and only the two held certificates remain
    assert_eq!(registry.certificates().len(), 2);
    fleet.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_spoofing_another_devices_topic_is_cut_off_by_the_policy() {
    let cloud = cloud(&[]).await;
    let a = cloud.register_device("spoof-a", 10).await.expect("a");
    cloud.register_device("spoof-b", 10).await.expect("b");
    let roots = device::keys::root_store(cloud.root_ca_pem()).expect("roots");
    let tls =
        device::keys::client_config(roots, &a.certificate_pem, &a.private_key_pem).expect("tls");
    let endpoint = cloud.endpoint();
    let mut options = MqttOptions::new("spoof-a", endpoint.ip().to_string(), endpoint.port());
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    let (client, mut ev) = AsyncClient::new(options, 10);
    let deadline = Instant::now() + Duration::from_secs(20);
    // connected as itself
    loop {
        match tokio::time::timeout_at(deadline.into(), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break,
            Ok(Ok(_)) => {}
            other => panic!("no connack: {other:?}"),
        }
    }
    client
        .publish(
            "management/topic/spoof-b/csr_res",
            QoS::AtLeastOnce,
            false,
            br#"{"CSR":"-----BEGIN CERTIFICATE REQUEST-----"}"#.to_vec(),
        )
        .await
        .expect("queued");
    // IoT Core closes the connection of a denied publish: no PUBACK comes
    let closed = loop {
        match tokio::time::timeout_at(deadline.into(), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => break false,
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break true,
            Err(_) => panic!("neither closed nor acknowledged"),
        }
    };
    assert!(closed, "the spoofed publish was acknowledged");
    let stats = cloud.emulator().stats();
    assert_eq!(stats.publishes_denied, 1);
    assert_eq!(stats.rule_invocations, 0);
    assert!(cloud.ports().ports.store.rows().is_empty());
}

/// The cloud committed a rotation but the device never promoted it: its
/// `crt_ack` arrived and the old certificate was retired, but the PUBACK was
/// lost with the connection, so the new certificate still waits in `next/`.
/// When the old certificate is refused, the agent must not stay locked out
/// (bricked): it connects with the committed one and promotes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_refused_on_its_old_certificate_promotes_the_committed_one() {
    use lambdas::ports::IotRegistry;

    let cloud = cloud(&[]).await;
    let mut fleet = provision(&cloud, "lost", 1, 10).await;
    let old_id = fleet.devices[0].initial_certificate_id.clone();
    let mut rx = fleet
        .start(&cloud, &AgentSettings::default())
        .expect("agents");
    all_connected(&mut rx, 1).await;

    // What the csr-issuer made for the device, and what the device stored.
    let new = cloud.register_device("lost-000", 365).await.expect("new");
    let key = device::keys::key_from_pem(&new.private_key_pem).expect("key");
    device::Slots::open(&fleet.devices[0].dir)
        .expect("slots")
        .write_next(&device::Slot {
            cert_pem: Some(new.certificate_pem.clone()),
            key_pem: new.private_key_pem.clone(),
            meta: device::SlotMeta {
                rotation_id: Some(rules::contracts::RotationId::new("lost-ack").expect("id")),
                certificate_id: Some(new.certificate_id.clone()),
                key_algorithm: Some(rules::contracts::KeyAlgorithm::EcP256),
                key_fingerprint: device::keys::key_fingerprint(&key),
            },
        })
        .expect("next stored");
    // The commit retires the old certificate: its connection is closed.
    cloud
        .registry()
        .update_certificate(&old_id, CertificateStatus::Inactive)
        .await
        .expect("deactivated");

    let mut rotated = false;
    until(&mut rx, "the committed certificate to be promoted", |ev| {
        match &ev.event {
            AgentEvent::Rotated { certificate_id, .. } => {
                assert_eq!(*certificate_id, new.certificate_id);
                rotated = true;
            }
            AgentEvent::RolledBack { .. } => panic!("rolled back: {:?}", ev.event),
            AgentEvent::Connected { certificate_id, .. } if rotated => {
                assert_eq!(*certificate_id, new.certificate_id);
                return true;
            }
            _ => {}
        }
        false
    })
    .await;
    assert_eq!(
        fleet.current_certificate(0).as_deref(),
        Some(new.certificate_id.as_str())
    );
    fleet.stop(Duration::from_secs(10)).await;
}
