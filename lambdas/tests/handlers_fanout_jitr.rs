//! Audit fan-out (both check spellings, every page, batches of ten) and the
//! JITR activator (activate, repeats, rejections).

mod common;

use common::*;
use lambdas::handlers::{audit_fanout, jitr_activator, rotation_starter};
use lambdas::memory::Fault;
use lambdas::ports::{CertificateStatus, Operation};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rstest::rstest;
use serde_json::{Value, json};

#[rstest]
#[case::documented_spelling("DEVICE_CERTIFICATE_EXPIRING_CHECK")]
#[case::other_spelling("DEVICE_CERT_APPROACHING_EXPIRATION_CHECK")]
fn fanout_follows_every_page_and_batches_by_ten(#[case] check: &str) {
    let w = World::new();
    w.registry().set_findings_page_size(7);
    let findings = (0..23)
        .map(|i| finding(&format!("{i:064x}"), TASK, check, NOW + i, i == 5))
        .collect();
    w.registry().set_audit_findings(TASK, check, findings);
    let out = run(audit_fanout::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sns_event(TASK, check, 23)),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    assert_eq!(
        w.calls(Operation::ListAuditFindings),
        4,
        "23 findings in pages of 7"
    );
    let queued = w.ports.ports.queue.drain();
    assert_eq!(queued.len(), 23);
    // pages of 7 → batches of 7,7,7,2: at most ten each
    assert_eq!(w.calls(Operation::SendMessageBatch), 4);
    let bodies: Vec<Value> = queued
        .iter()
        .map(|m| serde_json::from_str(&m.body).expect("json"))
        .collect();
    for b in &bodies {
        rules::contracts::validate(rules::contracts::Contract::RotationWork, &bytes(b))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b["checkName"], check);
    }
    assert_eq!(
        bodies
            .iter()
            .filter(|b| b["pastExpiration"] == true)
            .count(),
        1
    );
}

/// A full page (250, the adapter's page size) is 25 batches sent together
/// while the next page is read; every certificate is still queued once.
#[test]
fn fanout_sends_a_pages_batches_together_and_queues_each_certificate_once() {
    let w = World::new();
    w.registry().set_findings_page_size(250);
    let check = "DEVICE_CERTIFICATE_EXPIRING_CHECK";
    let findings = (0..612)
        .map(|i| finding(&format!("{i:064x}"), TASK, check, NOW + i, false))
        .collect();
    w.registry().set_audit_findings(TASK, check, findings);
    let out = run(audit_fanout::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sns_event(TASK, check, 612)),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    assert_eq!(w.calls(Operation::ListAuditFindings), 3, "pages of 250");
    // 250 → 25 batches, 250 → 25, 112 → 12
    assert_eq!(w.calls(Operation::SendMessageBatch), 62);
    let queued = w.ports.ports.queue.drain();
    let ids: std::collections::HashSet<String> = queued
        .iter()
        .map(|m| {
            let b: Value = serde_json::from_str(&m.body).expect("json");
            b["certificateId"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!((queued.len(), ids.len()), (612, 612));
}

/// Device Defender reports the check FAILED when the audit role may not
/// read the certificates: nothing will rotate, so support must hear of it
/// (before, the notification was ignored like a compliant one).
#[test]
fn fanout_tells_support_when_the_expiring_check_itself_failed() {
    let w = World::new();
    let check = "DEVICE_CERTIFICATE_EXPIRING_CHECK";
    let out = run(audit_fanout::handle(
        &w.ports,
        &w.cfg,
        &bytes(&failed_check_event(TASK, check)),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    let sent = w.ports.ports.notifier.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].message.contains("INSUFFICIENT_PERMISSIONS"),
        "{}",
        sent[0].message
    );
    assert!(
        sent[0].message.contains("audit_check_failed"),
        "{}",
        sent[0].message
    );
    assert_eq!(w.calls(Operation::ListAuditFindings), 0);
    assert!(w.ports.ports.queue.is_empty());
}

#[test]
fn fanout_ignores_notifications_without_a_non_compliant_expiring_check() {
    let w = World::new();
    let check = "DEVICE_CERTIFICATE_EXPIRING_CHECK";
    let out = run(audit_fanout::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sns_event(TASK, check, 0)),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.rejection_kind(), Some("nothing_to_rotate"));
    assert_eq!(w.calls(Operation::ListAuditFindings), 0);
    let mut bad = sns_event(TASK, check, 1);
    bad["Records"][0]["Sns"]["Message"] = json!("{\"taskId\": 3}");
    let out = run(audit_fanout::handle(&w.ports, &w.cfg, &bytes(&bad), w.now))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.rejection_kind(), Some("invalid_payload"));
    let out =
        run(audit_fanout::handle(&w.ports, &w.cfg, b"{}", w.now)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.rejection_kind(), Some("invalid_payload"));
    assert!(w.ports.ports.queue.is_empty());
}

#[test]
fn fanout_resends_failed_entries_and_fails_on_throttling() {
    let w = World::new();
    let check = "DEVICE_CERTIFICATE_EXPIRING_CHECK";
    w.registry().set_audit_findings(
        TASK,
        check,
        (0..3)
            .map(|i| finding(&format!("{i:064x}"), TASK, check, NOW, false))
            .collect(),
    );
    w.ports.ports.queue.fail_entry_once("m1");
    let out = run(audit_fanout::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sns_event(TASK, check, 3)),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected());
    assert_eq!(w.ports.ports.queue.drain().len(), 3);
    w.ports
        .instruments
        .fail_next(Operation::ListAuditFindings, 1, Fault::Throttled);
    let err = run(audit_fanout::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sns_event(TASK, check, 3)),
        w.now,
    ));
    assert!(matches!(&err, Err(e) if e.is_retryable()), "{err:?}");
}

#[test]
fn fanout_output_starts_rotations() {
    let w = World::new();
    let devices: Vec<Device> = (0..12)
        .map(|i| w.provision(&format!("thing-{i}")))
        .collect();
    let check = "DEVICE_CERTIFICATE_EXPIRING_CHECK";
    w.registry().set_audit_findings(
        TASK,
        check,
        devices
            .iter()
            .map(|d| finding(&d.cert_id, TASK, check, NOW + 1, false))
            .collect(),
    );
    run(audit_fanout::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sns_event(TASK, check, 12)),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let bodies: Vec<Value> = w
        .ports
        .ports
        .queue
        .drain()
        .iter()
        .map(|m| serde_json::from_str(&m.body).expect("json"))
        .collect();
    for chunk in bodies.chunks(10) {
        let batch = run(rotation_starter::handle(
            &w.ports,
            &w.cfg,
            &bytes(&sqs_event(chunk)),
            w.now,
        ));
        assert!(batch.response.batch_item_failures.is_empty());
    }
    assert_eq!(w.ports.ports.store.rows().len(), 12);
    for d in &devices {
        assert!(last_csr_req(&w, &d.thing).is_some());
        w.assert_invariants(d);
    }
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    id: String,
}

fn customer_ca(w: &World) -> Ca {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "customer ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("ca");
    let handle = w
        .registry()
        .register_ca_certificate(&cert.pem())
        .expect("register ca");
    Ca {
        issuer: Issuer::new(params, key),
        id: handle.ca_certificate_id,
    }
}

fn device_cert(ca: &Ca, cn: &str, not_after: Option<time::OffsetDateTime>) -> String {
    let key = p256_key();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before =
        time::OffsetDateTime::from_unix_timestamp(NOW / 1000 - 86_400).expect("time");
    params.not_after = not_after.unwrap_or(
        time::OffsetDateTime::from_unix_timestamp(NOW / 1000 + 365 * 86_400).expect("time"),
    );
    params
        .signed_by(&key, &ca.issuer)
        .expect("device cert")
        .pem()
}

fn jitr_event(cert_id: &str, ca_id: &str) -> Value {
    json!({
        "certificateId": cert_id, "caCertificateId": ca_id, "timestamp": NOW,
        "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": "123456789012",
        "certificateRegistrationTimestamp": null
    })
}

fn jitr(w: &World, event: &Value) -> lambdas::handlers::Outcome {
    run(jitr_activator::handle(
        &w.ports,
        &w.cfg,
        &bytes(event),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn jitr_activates_creates_the_thing_and_repeats_idempotently() {
    let w = World::new();
    let ca = customer_ca(&w);
    let cert_id = w
        .registry()
        .auto_register(&device_cert(&ca, "sensor-1", None))
        .expect("registered");
    assert_eq!(
        w.registry().certificate(&cert_id).expect("cert").status,
        CertificateStatus::PendingActivation
    );
    let out = jitr(&w, &jitr_event(&cert_id, &ca.id));
    assert!(!out.is_rejected(), "{out:?}");
    w.assert_calls_within(rules::functions::Function::JitrActivator);
    let cert = w.registry().certificate(&cert_id).expect("cert");
    assert_eq!(cert.status, CertificateStatus::Active);
    assert!(cert.policies.contains(POLICY));
    assert!(cert.things.contains("sensor-1"));
    // The event repeats: same state, no status change.
    let again = jitr(&w, &jitr_event(&cert_id, &ca.id));
    assert!(!again.is_rejected(), "{again:?}");
    assert_eq!(w.registry().certificate(&cert_id), Some(cert));
    assert!(w.ports.ports.notifier.sent().is_empty());
}

#[test]
fn jitr_from_an_inactive_ca_revokes_and_reports() {
    let w = World::new();
    let ca = customer_ca(&w);
    let cert_id = w
        .registry()
        .auto_register(&device_cert(&ca, "sensor-1", None))
        .expect("registered");
    w.registry().set_ca_status(&ca.id, "INACTIVE", "ENABLE");
    assert_eq!(
        jitr(&w, &jitr_event(&cert_id, &ca.id)).rejection_kind(),
        Some("ca_not_active")
    );
    let cert = w.registry().certificate(&cert_id).expect("cert");
    assert_eq!(cert.status, CertificateStatus::Revoked);
    assert!(cert.policies.is_empty() && cert.things.is_empty());
    assert_eq!(w.ports.ports.notifier.sent().len(), 1);
    // A repeat changes nothing more.
    assert_eq!(
        jitr(&w, &jitr_event(&cert_id, &ca.id)).rejection_kind(),
        Some("ca_not_active")
    );
    assert_eq!(w.ports.ports.notifier.sent().len(), 1);
}

#[test]
fn jitr_rejections_without_state_change() {
    let w = World::new();
    let ca = customer_ca(&w);
    let cert_id = w
        .registry()
        .auto_register(&device_cert(&ca, "sensor-1", None))
        .expect("registered");
    // unknown CA: the event is not trusted, nothing changes
    assert_eq!(
        jitr(&w, &jitr_event(&cert_id, &"e".repeat(64))).rejection_kind(),
        Some("unknown_ca")
    );
    // unknown certificate
    assert_eq!(
        jitr(&w, &jitr_event(&"d".repeat(64), &ca.id)).rejection_kind(),
        Some("unknown_certificate")
    );
    // malformed
    assert_eq!(
        jitr(&w, &json!({"certificateId": 1})).rejection_kind(),
        Some("invalid_payload")
    );
    assert_eq!(
        w.registry().certificate(&cert_id).expect("cert").status,
        CertificateStatus::PendingActivation
    );
    // thing creation off and thing absent
    let mut cfg = w.cfg.clone();
    cfg.jitr.create_thing = false;
    let out = run(jitr_activator::handle(
        &w.ports,
        &cfg,
        &bytes(&jitr_event(&cert_id, &ca.id)),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.rejection_kind(), Some("unknown_thing"));
    assert!(!w.registry().has_thing("sensor-1"));
    assert_eq!(
        w.registry().certificate(&cert_id).expect("cert").status,
        CertificateStatus::PendingActivation
    );
    assert!(w.ports.ports.notifier.sent().is_empty());
}

#[test]
fn jitr_expired_certificate_is_revoked() {
    let w = World::new();
    let ca = customer_ca(&w);
    let past = time::OffsetDateTime::from_unix_timestamp(NOW / 1000 - 3600).expect("time");
    let cert_id = w
        .registry()
        .auto_register(&device_cert(&ca, "sensor-1", Some(past)))
        .expect("registered");
    assert_eq!(
        jitr(&w, &jitr_event(&cert_id, &ca.id)).rejection_kind(),
        Some("expired")
    );
    assert_eq!(
        w.registry().certificate(&cert_id).expect("cert").status,
        CertificateStatus::Revoked
    );
}

#[test]
fn jitr_retry_after_throttling_completes() {
    let w = World::new();
    let ca = customer_ca(&w);
    let cert_id = w
        .registry()
        .auto_register(&device_cert(&ca, "sensor-1", None))
        .expect("registered");
    w.ports
        .instruments
        .fail_next(Operation::AttachThingPrincipal, 1, Fault::Throttled);
    let first = run(jitr_activator::handle(
        &w.ports,
        &w.cfg,
        &bytes(&jitr_event(&cert_id, &ca.id)),
        w.now,
    ));
    assert!(matches!(&first, Err(e) if e.is_retryable()));
    // Never ACTIVE without its attachments.
    assert_eq!(
        w.registry().certificate(&cert_id).expect("cert").status,
        CertificateStatus::PendingActivation
    );
    assert!(!jitr(&w, &jitr_event(&cert_id, &ca.id)).is_rejected());
    assert_eq!(
        w.registry().certificate(&cert_id).expect("cert").status,
        CertificateStatus::Active
    );
}

/// The age check starts rotations as the expiry check does; a certificate
/// both checks found in one audit is queued once.
#[test]
fn the_age_check_queues_too_and_a_certificate_both_checks_found_is_queued_once() {
    let w = World::new();
    let age_finding = |id: &str| -> rules::contracts::AuditFinding {
        serde_json::from_value(json!({
            "findingId": format!("a-{}", &id[..8]),
            "taskId": TASK,
            "checkName": "DEVICE_CERTIFICATE_AGE_CHECK",
            "nonCompliantResource": {
                "resourceType": "DEVICE_CERTIFICATE",
                "resourceIdentifier": {"deviceCertificateId": id}
            },
            "reasonForNonComplianceCode": "CERTIFICATE_PAST_AGE_THRESHOLD",
            "severity": "LOW"
        }))
        .expect("age finding")
    };
    let ids: Vec<String> = (0..4).map(|i| format!("{i:064x}")).collect();
    // expiring: 0, 1; old: 1, 2, 3 (1 is both)
    w.registry().set_audit_findings(
        TASK,
        "DEVICE_CERTIFICATE_EXPIRING_CHECK",
        ids[..2]
            .iter()
            .map(|id| {
                finding(
                    id,
                    TASK,
                    "DEVICE_CERTIFICATE_EXPIRING_CHECK",
                    NOW + 1,
                    false,
                )
            })
            .collect(),
    );
    w.registry().set_audit_findings(
        TASK,
        "DEVICE_CERTIFICATE_AGE_CHECK",
        ids[1..].iter().map(|id| age_finding(id)).collect(),
    );
    let mut event = sns_event(TASK, "DEVICE_CERTIFICATE_EXPIRING_CHECK", 2);
    let mut message: Value = serde_json::from_str(
        event["Records"][0]["Sns"]["Message"]
            .as_str()
            .expect("message"),
    )
    .expect("json");
    message["auditDetails"]
        .as_array_mut()
        .expect("details")
        .push(json!({"checkName": "DEVICE_CERTIFICATE_AGE_CHECK",
            "checkRunStatus": "COMPLETED_NON_COMPLIANT",
            "nonCompliantResourcesCount": 3, "totalResourcesCount": 10}));
    event["Records"][0]["Sns"]["Message"] = json!(message.to_string());
    let out = run(audit_fanout::handle(
        &w.ports,
        &w.cfg,
        &bytes(&event),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    let queued: Vec<Value> = w
        .ports
        .ports
        .queue
        .drain()
        .iter()
        .map(|m| serde_json::from_str(&m.body).expect("work"))
        .collect();
    let mut certs: Vec<&str> = queued
        .iter()
        .map(|m| m["certificateId"].as_str().expect("id"))
        .collect();
    certs.sort_unstable();
    assert_eq!(certs, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let aged = queued
        .iter()
        .find(|m| m["certificateId"] == ids[3].as_str())
        .expect("aged");
    assert_eq!(aged["checkName"], "DEVICE_CERTIFICATE_AGE_CHECK");
    assert_eq!(aged["pastExpiration"], false);
}
