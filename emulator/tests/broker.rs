//! The emulator as devices see it: rumqttc clients over mutual TLS against
//! the synthesized device policy and topic rules.

mod common;

use common::{Harness, TestCa, connected, until, until_closed};
use emulator::CertificateStatus;
use emulator::registry::Registry;
use rules::functions::Function;
use rumqttc::{ConnectReturnCode, ConnectionError, Packet, QoS, SubscribeReasonCode};
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
    let stranger = TestCa::new("someone else").device("thing-1");
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
    let jitr_ca = TestCa::new("customer JITR CA");
    let ca_id = rules::csr::certificate_id(&jitr_ca.pem).unwrap_or_else(|e| panic!("{e}"));
    let mut h = Harness::start_with_jitr(std::slice::from_ref(&ca_id)).await;
    h.registry
        .register_ca(&jitr_ca.pem, true)
        .unwrap_or_else(|e| panic!("{e}"));
    let device = jitr_ca.device("jitr-thing-1");

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
    let jitr_ca = TestCa::new("customer CA, no auto-registration");
    let mut h = Harness::start().await;
    h.registry
        .register_ca(&jitr_ca.pem, false)
        .unwrap_or_else(|e| panic!("{e}"));
    let device = jitr_ca.device("thing-9");
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
        std::sync::Arc::new(emulator::MemRegistry::new()),
        std::sync::Arc::new(sink),
    )
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    let written = std::fs::read_to_string(&path).expect("root ca file");
    assert_eq!(written, e.root_ca_pem());
    assert!(written.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(e.local_addr().ip().is_loopback());
}
