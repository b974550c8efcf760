//! The emulator as devices see it: rumqttc clients over mutual TLS against
//! the synthesized device policy and topic rules.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{DeviceId, Harness, Logs, TestCa, connected, until, until_closed};
use emulator::registry::Registry;
use emulator::sink::BoxFuture;
use emulator::{CertificateStatus, Limit, MqttLimits, RuleSink};
use rstest::rstest;
use rules::functions::Function;
use rumqttc::{
    ConnectReturnCode, ConnectionError, Packet, Publish, QoS, Subscribe, SubscribeFilter,
    SubscribeReasonCode,
};
use serde_json::json;

#[tokio::test]
async fn active_device_publishes_its_csr_res_and_the_rule_invokes_the_issuer() {
    let mut h = Harness::start().await;
    let device = h.provision("thing-1");
    let (client, mut ev) = h.client("thing-1", &device);
    connected(&mut ev).await;
    client
        .publish(
            "management/topic/thing-1/csr_res",
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(
                &json!({"CSR": "-----BEGIN CERTIFICATE REQUEST-----", "rotationId": "r1"}),
            )
            .expect("json"),
        )
        .await
        .expect("publish");
    until(&mut ev, |p| matches!(p, Packet::PubAck(_)))
        .await
        .unwrap_or_else(|e| panic!("no puback: {e}"));
    let got = h.next_invocation().await.expect("an invocation");
    assert_eq!(got.function, Function::CsrIssuer);
    assert_eq!(
        got.event,
        json!({
            "clientid": "thing-1",
            "topicClientId": "thing-1",
            "CSR": "-----BEGIN CERTIFICATE REQUEST-----",
            "rotationId": "r1",
        })
    );
}

#[tokio::test]
async fn crt_ack_carries_the_principal_it_arrived_on() {
    let mut h = Harness::start().await;
    let device = h.provision("thing-1");
    let (client, mut ev) = h.client("thing-1", &device);
    connected(&mut ev).await;
    client
        .publish(
            "management/topic/thing-1/crt_ack",
            QoS::AtMostOnce,
            false,
            b"{}".to_vec(),
        )
        .await
        .expect("publish");
    // drive the event loop until the sink has the invocation
    let poll = tokio::spawn(async move {
        loop {
            if ev.poll().await.is_err() {
                return;
            }
        }
    });
    let got = h.next_invocation().await.expect("an invocation");
    poll.abort();
    assert_eq!(got.function, Function::Commit);
    assert_eq!(got.event["principal"], json!(device.id()));
    assert_eq!(got.event["clientid"], json!("thing-1"));
}

#[tokio::test]
async fn spoofing_another_things_topic_is_denied_and_closes_the_connection() {
    let mut h = Harness::start().await;
    let device = h.provision("thing-1");
    h.provision("thing-2");
    let (client, mut ev) = h.client("thing-1", &device);
    connected(&mut ev).await;
    client
        .subscribe_many([
            rumqttc::SubscribeFilter::new(
                "management/topic/thing-1/csr_req".into(),
                QoS::AtLeastOnce,
            ),
            rumqttc::SubscribeFilter::new(
                "management/topic/thing-2/csr_req".into(),
                QoS::AtLeastOnce,
            ),
            rumqttc::SubscribeFilter::new("management/topic/#".into(), QoS::AtMostOnce),
        ])
        .await
        .expect("subscribe");
    let Packet::SubAck(ack) = until(&mut ev, |p| matches!(p, Packet::SubAck(_)))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    else {
        unreachable!()
    };
    assert_eq!(
        ack.return_codes,
        [
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure,
        ]
    );
    client
        .publish(
            "management/topic/thing-2/csr_res",
            QoS::AtLeastOnce,
            false,
            br#"{"CSR":"x"}"#.to_vec(),
        )
        .await
        .expect("publish");
    until_closed(&mut ev).await;
    assert!(
        h.no_invocation_within(300).await,
        "a spoofed csr_res reached a rule"
    );
    assert_eq!(h.emulator.stats().publishes_denied, 1);
}

#[tokio::test]
async fn connecting_as_another_thing_is_refused() {
    let h = Harness::start().await;
    let device = h.provision("thing-1");
    h.provision("thing-2");
    let (_client, mut ev) = h.client("thing-2", &device);
    assert!(matches!(
        until_closed(&mut ev).await,
        ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)
    ));
}

#[tokio::test]
async fn unknown_certificate_is_refused() {
    let h = Harness::start().await;
    let stranger = TestCa::new("someone else")
        .expect("ca")
        .device("thing-1")
        .expect("device");
    let (_client, mut ev) = h.client("thing-1", &stranger);
    assert!(matches!(
        until_closed(&mut ev).await,
        ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)
    ));
    assert_eq!(h.emulator.stats().connections_accepted, 0);
}

#[tokio::test]
async fn inactive_certificate_is_refused_and_deactivation_closes_open_connections() {
    let h = Harness::start().await;
    let device = h.provision("thing-1");
    let (_client, mut ev) = h.client("thing-1", &device);
    connected(&mut ev).await;
    h.registry
        .set_status(&device.id(), CertificateStatus::Inactive)
        .unwrap_or_else(|e| panic!("{e}"));
    until_closed(&mut ev).await;
    assert_eq!(h.emulator.stats().closed_not_active, 1);

    let (_client, mut ev) = h.client("thing-1", &device);
    assert!(matches!(
        until_closed(&mut ev).await,
        ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)
    ));
}

#[tokio::test]
async fn revoking_closes_and_reactivating_lets_it_back_in() {
    let h = Harness::start().await;
    let device = h.provision("thing-1");
    let (_c, mut ev) = h.client("thing-1", &device);
    connected(&mut ev).await;
    h.registry
        .set_status(&device.id(), CertificateStatus::Revoked)
        .unwrap_or_else(|e| panic!("{e}"));
    until_closed(&mut ev).await;
    h.registry
        .set_status(&device.id(), CertificateStatus::Active)
        .unwrap_or_else(|e| panic!("{e}"));
    let (_c, mut ev) = h.client("thing-1", &device);
    connected(&mut ev).await;
}

#[tokio::test]
async fn jitr_registers_pending_emits_the_event_and_closes_each_time() {
    let jitr_ca = TestCa::new("customer JITR CA").expect("ca");
    let ca_id = rules::csr::certificate_id(&jitr_ca.pem).unwrap_or_else(|e| panic!("{e}"));
    let mut h = Harness::start_with_jitr(std::slice::from_ref(&ca_id)).await;
    h.registry
        .register_ca(&jitr_ca.pem, true)
        .unwrap_or_else(|e| panic!("{e}"));
    let device = jitr_ca.device("jitr-thing-1").expect("device");

    let mut registration = None;
    for attempt in 0..2 {
        let (_c, mut ev) = h.client("jitr-thing-1", &device);
        let closed = until_closed(&mut ev).await;
        assert!(
            !matches!(closed, ConnectionError::ConnectionRefused(_)),
            "attempt {attempt}: closed without CONNACK expected, got {closed:?}"
        );
        let got = h.next_invocation().await.expect("a jitr invocation");
        assert_eq!(got.function, Function::JitrActivator);
        let e = &got.event;
        assert_eq!(e["certificateId"], json!(device.id()));
        assert_eq!(e["caCertificateId"], json!(ca_id));
        assert_eq!(e["certificateStatus"], json!("PENDING_ACTIVATION"));
        assert_eq!(e["awsAccountId"], json!("123456789012"));
        assert!(e["timestamp"].as_u64().is_some_and(|t| t > 0));
        // the registration time is the first attempt's, on every event
        let reg = e["certificateRegistrationTimestamp"]
            .as_u64()
            .expect("registered at");
        assert_eq!(*registration.get_or_insert(reg), reg);
        serde_json::from_value::<rules::contracts::JitrRegistrationEvent>(e.clone())
            .unwrap_or_else(|err| panic!("event does not match the contract: {err}"));
    }
    let cert = h.registry.certificate(&device.id()).expect("registered");
    assert_eq!(cert.status, CertificateStatus::PendingActivation);
    assert_eq!(cert.ca_certificate_id.as_deref(), Some(ca_id.as_str()));
    assert_eq!(h.emulator.stats().jitr_events, 2);

    // once activated, attached and given the policy (what the JITR handler does), it connects
    h.registry
        .attach_thing("jitr-thing-1", &device.id())
        .expect("attach");
    h.registry
        .attach_policy(common::DEVICE_POLICY, &device.id())
        .expect("policy");
    h.registry
        .set_status(&device.id(), CertificateStatus::Active)
        .expect("activate");
    let (_c, mut ev) = h.client("jitr-thing-1", &device);
    connected(&mut ev).await;
}

#[tokio::test]
async fn ca_without_auto_registration_does_not_register() {
    let jitr_ca = TestCa::new("customer CA, no auto-registration").expect("ca");
    let mut h = Harness::start().await;
    h.registry
        .register_ca(&jitr_ca.pem, false)
        .unwrap_or_else(|e| panic!("{e}"));
    let device = jitr_ca.device("thing-9").expect("device");
    let (_c, mut ev) = h.client("thing-9", &device);
    until_closed(&mut ev).await;
    assert!(h.registry.certificate(&device.id()).is_none());
    assert!(h.no_invocation_within(200).await);
}

#[tokio::test]
async fn qos1_round_trip_between_the_cloud_and_a_device() {
    let mut h = Harness::start().await;
    let device = h.provision("thing-1");
    let other = h.provision("thing-2");
    let (client, mut ev) = h.client("thing-1", &device);
    connected(&mut ev).await;
    client
        .subscribe("management/topic/thing-1/csr_req", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    until(&mut ev, |p| matches!(p, Packet::SubAck(_)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // another device's request is not delivered here
    assert_eq!(
        h.emulator
            .publish("management/topic/thing-2/csr_req", br#"{}"#.to_vec())
            .expect("publish"),
        0
    );
    let body = json!({"rotationId": "r1", "keyAlgorithm": "EC_P256"}).to_string();
    assert_eq!(
        h.emulator
            .publish(
                "management/topic/thing-1/csr_req",
                body.clone().into_bytes()
            )
            .expect("publish"),
        1
    );
    let Packet::Publish(p) = until(&mut ev, |p| matches!(p, Packet::Publish(_)))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    else {
        unreachable!()
    };
    assert_eq!(p.topic, "management/topic/thing-1/csr_req");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert_eq!(p.payload.as_ref(), body.as_bytes());

    client
        .publish(
            "management/topic/thing-1/csr_res",
            QoS::AtLeastOnce,
            false,
            br#"{"CSR":"x","rotationId":"r1"}"#.to_vec(),
        )
        .await
        .expect("publish");
    until(&mut ev, |p| matches!(p, Packet::PubAck(_)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        h.next_invocation().await.expect("invocation").function,
        Function::CsrIssuer
    );
    drop(other);
}

#[tokio::test]
async fn a_second_connect_with_the_same_client_id_takes_over() {
    let h = Harness::start().await;
    let device = h.provision("thing-1");
    let (_c1, mut ev1) = h.client("thing-1", &device);
    connected(&mut ev1).await;
    let (c2, mut ev2) = h.client("thing-1", &device);
    connected(&mut ev2).await;
    until_closed(&mut ev1).await;
    assert_eq!(h.emulator.stats().takeovers, 1);
    // the newer connection still works
    c2.subscribe("management/topic/thing-1/crt", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let Packet::SubAck(ack) = until(&mut ev2, |p| matches!(p, Packet::SubAck(_)))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    else {
        unreachable!()
    };
    assert_eq!(
        ack.return_codes,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    assert_eq!(h.emulator.connected_clients(), 1);
}

#[tokio::test]
async fn the_root_ca_file_is_written_for_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("root-ca.pem");
    let (sink, _rx) = emulator::ChannelSink::new();
    let e = emulator::Emulator::start(
        emulator::EmulatorConfig {
            root_ca_file: Some(path.clone()),
            ..Default::default()
        },
        common::synthesized(&[]),
        std::sync::Arc::new(emulator::StandaloneRegistry::new()),
        std::sync::Arc::new(sink),
    )
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    let written = std::fs::read_to_string(&path).expect("root ca file");
    assert_eq!(written, e.root_ca_pem());
    assert!(written.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(e.local_addr().ip().is_loopback());
}

// ---- AWS IoT Core's MQTT limits, each provoked by a misbehaving client ----

const CSR_RES: &str = "management/topic/thing-1/csr_res";
const CRT_ERR: &str = "management/topic/thing-1/crt_err";
const CSR_REQ: &str = "management/topic/thing-1/csr_req";

/// A QoS 1 PUBLISH with packet id `pkid`.
fn publish(topic: &str, payload: Vec<u8>, pkid: u16) -> Packet {
    let mut p = Publish::new(topic, QoS::AtLeastOnce, payload);
    p.pkid = pkid;
    Packet::Publish(p)
}

/// A JSON `csr_res` payload of exactly `len` bytes.
fn csr_res_of_len(len: usize) -> Vec<u8> {
    let frame = br#"{"CSR":""}"#.len();
    let body = format!(r#"{{"CSR":"{}"}}"#, "A".repeat(len - frame));
    assert_eq!(body.len(), len);
    body.into_bytes()
}

fn pubacks(packets: &[Packet]) -> usize {
    packets
        .iter()
        .filter(|p| matches!(p, Packet::PubAck(_)))
        .count()
}

#[tokio::test]
async fn a_payload_over_128_kib_closes_the_connection_and_reaches_no_rule() {
    let (logs, _guard) = Logs::capture();
    let mut h = Harness::start().await;
    let device = h.provision("thing-1");

    // exactly 128 KiB is accepted
    let (mut c, code) = h.raw("thing-1", &device, 30).await;
    assert_eq!(code, Some(ConnectReturnCode::Success));
    c.send(publish(CSR_RES, csr_res_of_len(128 * 1024), 1))
        .await;
    let seen = c.sync().await.expect("still connected");
    assert_eq!(pubacks(&seen), 1, "{seen:?}");
    assert_eq!(
        h.next_invocation().await.map(|i| i.function),
        Some(Function::CsrIssuer)
    );

    // the 140 KiB csr_res of issue 14: no PUBACK, connection closed, no rule
    c.send(publish(CSR_RES, csr_res_of_len(140 * 1024), 2))
        .await;
    let before_close = c
        .until_closed(Duration::from_secs(5))
        .await
        .unwrap_or_else(|seen| panic!("still open, received {seen:?}"));
    assert_eq!(pubacks(&before_close), 0, "{before_close:?}");
    assert!(
        h.no_invocation_within(300).await,
        "an oversized payload reached a rule"
    );
    assert_eq!(h.emulator.limit_refusals(Limit::MessageSize), 1);
    let lines = logs.naming(Limit::MessageSize);
    assert_eq!(lines.len(), 1, "{}", logs.text());
    assert!(lines[0].contains("size=143360"), "{}", lines[0]);
}

#[tokio::test]
async fn publishes_over_100_per_second_are_dropped_and_the_connection_stays() {
    let (logs, _guard) = Logs::capture();
    let mut h = Harness::start().await;
    let device = h.provision("thing-1");
    let (mut c, _) = h.raw("thing-1", &device, 30).await;

    // 150 crt_err back to back: AWS's quota is 100 per second per connection
    let burst = (1..=150).map(|pkid| publish(CRT_ERR, br#"{"error":"boom"}"#.to_vec(), pkid));
    c.send_all(burst).await;
    let seen = c.sync().await.expect("the connection stays open");
    assert_eq!(pubacks(&seen), 100, "throttled publishes get no PUBACK");
    let mut invoked = 0;
    while h.next_invocation_within(300).await.is_some() {
        invoked += 1;
    }
    assert_eq!(
        invoked, 100,
        "only the publishes within the rate reach the rule"
    );
    let stats = h.emulator.stats();
    assert_eq!(stats.publishes_throttled, 50);
    assert_eq!(stats.publishes_denied, 0);
    assert_eq!(h.emulator.limit_refusals(Limit::PublishRate), 50);
    // one warning per throttled second, not one per message
    assert_eq!(logs.naming(Limit::PublishRate).len(), 1, "{}", logs.text());

    // the next second has a fresh allowance
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.send(publish(CRT_ERR, br#"{"error":"again"}"#.to_vec(), 151))
        .await;
    let seen = c.sync().await.expect("still connected");
    assert_eq!(pubacks(&seen), 1);
}

#[tokio::test]
async fn a_subscribe_with_more_than_8_filters_closes_the_connection() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::start().await;
    let device = h.provision("thing-1");
    let filters = |n: usize| {
        Subscribe::new_many((0..n).map(|i| {
            SubscribeFilter::new(format!("management/topic/thing-1/f{i}"), QoS::AtLeastOnce)
        }))
    };

    let (mut c, _) = h.raw("thing-1", &device, 30).await;
    let mut eight = filters(8);
    eight.pkid = 1;
    c.send(Packet::Subscribe(eight)).await;
    match c.next(Duration::from_secs(5)).await {
        Some(Packet::SubAck(ack)) => assert_eq!(ack.return_codes.len(), 8),
        other => panic!("expected a SUBACK for 8 filters, got {other:?}"),
    }

    let mut nine = filters(9);
    nine.pkid = 2;
    c.send(Packet::Subscribe(nine)).await;
    let seen = c
        .until_closed(Duration::from_secs(5))
        .await
        .unwrap_or_else(|seen| panic!("still open, received {seen:?}"));
    assert!(seen.is_empty(), "no SUBACK for 9 filters: {seen:?}");
    assert_eq!(h.emulator.limit_refusals(Limit::FiltersPerSubscribe), 1);
    assert_eq!(logs.naming(Limit::FiltersPerSubscribe).len(), 1);
}

#[tokio::test]
async fn a_subscription_past_the_per_connection_limit_gets_a_failure_code() {
    let (logs, _guard) = Logs::capture();
    // AWS's 50 cannot be reached under the device policy (it grants two
    // filters), so the limit is lowered to 1
    let mut limits = MqttLimits::default();
    limits.max_subscriptions_per_connection = 1;
    let h = Harness::start_with_limits(limits).await;
    let device = h.provision("thing-1");
    let (mut c, _) = h.raw("thing-1", &device, 30).await;
    let subscribe = |path: &str, pkid| {
        let mut s = Subscribe::new(path, QoS::AtLeastOnce);
        s.pkid = pkid;
        Packet::Subscribe(s)
    };
    c.send_all([
        subscribe(CSR_REQ, 1),
        subscribe("management/topic/thing-1/crt", 2),
        subscribe(CSR_REQ, 3),
    ])
    .await;
    let seen = c.sync().await.expect("the connection stays open");
    let codes: Vec<_> = seen
        .iter()
        .filter_map(|p| match p {
            Packet::SubAck(a) => Some((a.pkid, a.return_codes.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        [
            (1, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]),
            (2, vec![SubscribeReasonCode::Failure]),
            // the same filter again is not a second subscription
            (3, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]),
        ]
    );
    // the refused filter receives nothing
    assert_eq!(
        h.emulator
            .publish("management/topic/thing-1/crt", b"{}".to_vec())
            .expect("publish"),
        0
    );
    assert_eq!(
        h.emulator.limit_refusals(Limit::SubscriptionsPerConnection),
        1
    );
    assert_eq!(logs.naming(Limit::SubscriptionsPerConnection).len(), 1);
}

#[rstest]
#[case::eight_slashes("management/topic/thing-1/crt_err/a/b/c/d/e", Limit::TopicDepth)]
#[case::over_256_bytes(&format!("management/topic/thing-1/{}", "x".repeat(240)), Limit::TopicSize)]
#[tokio::test]
async fn a_publish_on_a_topic_over_aws_limits_closes_the_connection(
    #[case] topic: &str,
    #[case] limit: Limit,
) {
    let (logs, _guard) = Logs::capture();
    let mut h = Harness::start().await;
    let device = h.provision("thing-1");
    let (mut c, _) = h.raw("thing-1", &device, 30).await;
    c.send(publish(topic, br#"{"error":"x"}"#.to_vec(), 1))
        .await;
    let seen = c
        .until_closed(Duration::from_secs(5))
        .await
        .unwrap_or_else(|seen| panic!("still open, received {seen:?}"));
    assert_eq!(pubacks(&seen), 0);
    assert!(h.no_invocation_within(300).await);
    assert_eq!(h.emulator.limit_refusals(limit), 1);
    assert_eq!(logs.naming(limit).len(), 1, "{}", logs.text());
}

#[tokio::test]
async fn a_filter_over_the_topic_depth_gets_a_failure_code() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::start().await;
    let device = h.provision("thing-1");
    let (mut c, _) = h.raw("thing-1", &device, 30).await;
    let mut s = Subscribe::new("management/topic/thing-1/+/+/+/+/+/+", QoS::AtLeastOnce);
    s.pkid = 1;
    c.send(Packet::Subscribe(s)).await;
    let seen = c.sync().await.expect("the connection stays open");
    assert!(
        matches!(&seen[..], [Packet::SubAck(a)] if a.return_codes == [SubscribeReasonCode::Failure]),
        "{seen:?}"
    );
    assert_eq!(h.emulator.limit_refusals(Limit::TopicDepth), 1);
    assert_eq!(logs.naming(Limit::TopicDepth).len(), 1);
}

#[tokio::test]
async fn a_client_id_over_128_bytes_is_refused() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::start().await;
    let device = h.provision("thing-1");
    let (_c, code) = h.raw(&"x".repeat(129), &device, 30).await;
    assert_eq!(code, Some(ConnectReturnCode::BadClientId));
    assert_eq!(h.emulator.connected_clients(), 0);
    assert_eq!(h.emulator.limit_refusals(Limit::ClientIdSize), 1);
    assert_eq!(logs.naming(Limit::ClientIdSize).len(), 1);
}

/// The keep-alive range lowered to 2..=3 s (AWS: 30..=1200) so that a
/// silent client is dropped within seconds.
#[rstest]
#[case::zero_becomes_the_maximum(0, 3)]
#[case::below_the_minimum_becomes_the_minimum(1, 2)]
#[case::in_range(2, 2)]
#[case::above_the_maximum_becomes_the_maximum(60, 3)]
#[tokio::test]
async fn a_silent_client_is_dropped_after_one_and_a_half_granted_keep_alives(
    #[case] requested: u16,
    #[case] granted: u64,
) {
    let mut limits = MqttLimits::default();
    limits.min_keep_alive_seconds = 2;
    limits.max_keep_alive_seconds = 3;
    let h = Harness::start_with_limits(limits).await;
    let device = h.provision("thing-1");
    let (mut c, code) = h.raw("thing-1", &device, requested).await;
    assert_eq!(code, Some(ConnectReturnCode::Success));
    let started = tokio::time::Instant::now();
    c.until_closed(Duration::from_secs(10))
        .await
        .unwrap_or_else(|seen| panic!("still open, received {seen:?}"));
    let idle = Duration::from_millis(granted * 1500);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= idle - Duration::from_millis(100)
            && elapsed < idle + Duration::from_millis(1500),
        "closed after {elapsed:?}, expected {idle:?}"
    );
    assert_eq!(h.emulator.stats().keep_alive_timeouts, 1);
}

/// A raw client subscribed to its `csr_req` at QoS 0 that then never reads.
async fn a_subscriber_that_stops_reading(h: &Harness) -> common::RawClient {
    let device = h.provision("thing-1");
    let (mut c, _) = h.raw("thing-1", &device, 30).await;
    let mut s = Subscribe::new(CSR_REQ, QoS::AtMostOnce);
    s.pkid = 1;
    c.send(Packet::Subscribe(s)).await;
    assert!(matches!(
        c.next(Duration::from_secs(5)).await,
        Some(Packet::SubAck(_))
    ));
    c
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_the_write_timeout() {
    let (logs, _guard) = Logs::capture();
    let mut limits = MqttLimits::default();
    limits.write_timeout = Duration::from_millis(300);
    let h = Harness::start_with_limits(limits).await;
    let _c = a_subscriber_that_stops_reading(&h).await;
    let payload = vec![b'x'; 100 * 1024];
    // slower than the writer drains the queue: the socket's buffers fill,
    // then a write blocks for the timeout (bounded: 2,000 messages, 10 s)
    for _ in 0..2000 {
        if h.emulator.connected_clients() == 0 {
            break;
        }
        let _ = h.emulator.publish_with_qos(CSR_REQ, payload.clone(), 0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(h.emulator.connected_clients(), 0, "still connected");
    assert_eq!(h.emulator.limit_refusals(Limit::WriteTimeout), 1);
    assert_eq!(h.emulator.limit_refusals(Limit::SendQueue), 0);
    assert_eq!(logs.naming(Limit::WriteTimeout).len(), 1, "{}", logs.text());
}

#[tokio::test]
async fn a_subscriber_whose_send_queue_fills_is_disconnected() {
    let (logs, _guard) = Logs::capture();
    let mut limits = MqttLimits::default();
    limits.send_queue = 4;
    let h = Harness::start_with_limits(limits).await;
    let mut c = a_subscriber_that_stops_reading(&h).await;
    // nothing runs between these calls: the writer cannot drain the queue
    let delivered: Vec<usize> = (0..6)
        .map(|i| {
            h.emulator
                .publish_with_qos(CSR_REQ, format!("{{\"n\":{i}}}").into_bytes(), 0)
                .expect("publish")
        })
        .collect();
    assert_eq!(delivered, [1, 1, 1, 1, 0, 0]);
    c.until_closed(Duration::from_secs(5))
        .await
        .unwrap_or_else(|seen| panic!("still open, received {seen:?}"));
    assert_eq!(h.emulator.limit_refusals(Limit::SendQueue), 1);
    assert_eq!(logs.naming(Limit::SendQueue).len(), 1, "{}", logs.text());
}

/// A sink whose invocations, once running, wait until the test opens the
/// gate.
#[derive(Debug)]
struct GatedSink {
    started: Arc<AtomicU64>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl RuleSink for GatedSink {
    fn invoke(&self, _: &str, _: Function, _: serde_json::Value) -> BoxFuture {
        let started = self.started.clone();
        let gate = self.gate.clone();
        Box::pin(async move {
            started.fetch_add(1, Ordering::Relaxed);
            let _ = gate.acquire().await;
        })
    }
}

#[tokio::test]
async fn rule_actions_beyond_the_queue_are_dropped_without_blocking_the_reader() {
    let (logs, _guard) = Logs::capture();
    let mut limits = MqttLimits::default();
    limits.rule_queue = 2;
    limits.rule_concurrency = 1;
    let sink = Arc::new(GatedSink {
        started: Arc::default(),
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
    });
    let h = Harness::start_with_sink(
        limits,
        sink.clone(),
        tokio::sync::mpsc::unbounded_channel().1,
    )
    .await;
    let device = h.provision("thing-1");
    let (mut c, _) = h.raw("thing-1", &device, 30).await;
    c.send_all((1..=10).map(|pkid| publish(CRT_ERR, br#"{"error":"x"}"#.to_vec(), pkid)))
        .await;
    // every publish is acknowledged although the rule's function is stuck
    let seen = c.sync().await.expect("still connected");
    assert_eq!(pubacks(&seen), 10);
    let stats = h.emulator.stats();
    // one running, two queued, the other seven dropped, each logged
    assert_eq!(stats.rule_invocations, 3, "{stats:?}");
    assert_eq!(stats.rule_actions_dropped, 7, "{stats:?}");
    assert_eq!(h.emulator.limit_refusals(Limit::RuleActionQueue), 7);
    assert_eq!(logs.naming(Limit::RuleActionQueue).len(), 7);
    assert_eq!(sink.started.load(Ordering::Relaxed), 1, "one at a time");

    // once the function returns, the queued actions run, and only those
    sink.gate.add_permits(100);
    for _ in 0..100 {
        if sink.started.load(Ordering::Relaxed) == stats.rule_invocations {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sink.started.load(Ordering::Relaxed), stats.rule_invocations);
}
