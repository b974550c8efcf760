//! Each duplicate and out-of-order event of `rules/src/rotation.rs`'s
//! table, and each rejection of bad input, through the handlers: the
//! outcome, no state change where none is due, invariants after each step.

mod common;

use common::*;
use lambdas::handlers::{Outcome, commit, csr_issuer, error_handler, rotation_starter, sweeper};
use lambdas::ports::Operation;
use rules::rotation::RotationState;
use serde_json::{Value, json};

/// A world with one device whose rotation was requested.
fn requested() -> (World, Device, String) {
    let w = World::new();
    let dev = w.provision("thing-1");
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[work(&dev.cert_id, false)])),
        w.now,
    ));
    assert!(batch.response.batch_item_failures.is_empty(), "{batch:?}");
    let id = last_csr_req(&w, "thing-1").expect("csr_req")["rotationId"]
        .as_str()
        .expect("id")
        .to_owned();
    (w, dev, id)
}

/// ... and issued: returns the CSR used and the new certificate id.
fn issued() -> (World, Device, String, String, String) {
    let (w, mut dev, id) = requested();
    let csr = csr_pem(&p256_key(), "thing-1");
    let out = run(csr_issuer::handle(
        &w.ports,
        &w.cfg,
        &bytes(&csr_res("thing-1", &csr, Some(&id))),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    let new_id = w.receive_crt(&mut dev).expect("crt")["certificateId"]
        .as_str()
        .expect("id")
        .to_owned();
    (w, dev, id, csr, new_id)
}

fn csr(w: &World, payload: &Value) -> Outcome {
    run(csr_issuer::handle(&w.ports, &w.cfg, &bytes(payload), w.now))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn ack(w: &World, payload: &Value) -> Outcome {
    run(commit::handle(&w.ports, &w.cfg, &bytes(payload), w.now)).unwrap_or_else(|e| panic!("{e}"))
}

fn err(w: &World, payload: &Value) -> Outcome {
    run(error_handler::handle(
        &w.ports,
        &w.cfg,
        &bytes(payload),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn row(w: &World) -> rules::rotation::Rotation {
    w.ports.ports.store.row_for_thing("thing-1").expect("row")
}

#[test]
fn duplicate_queue_message_does_not_start_a_second_rotation() {
    let (w, dev, id) = requested();
    let before = w.ports.ports.store.rows();
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[work(&dev.cert_id, false)])),
        w.now,
    ));
    assert!(batch.response.batch_item_failures.is_empty());
    assert_eq!(w.ports.ports.store.rows(), before);
    // The redelivery re-sends the same csr_req while the row is REQUESTED.
    let reqs = w
        .ports
        .ports
        .publisher
        .published_to("management/topic/thing-1/csr_req");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].payload, reqs[1].payload);
    assert_eq!(
        last_csr_req(&w, "thing-1").expect("csr_req")["rotationId"],
        id.as_str()
    );
    w.assert_invariants(&dev);
}

#[test]
fn another_audit_task_does_not_open_a_second_rotation_for_the_thing() {
    let (w, dev, _) = requested();
    let mut other = work(&dev.cert_id, false);
    other["taskId"] = json!("task-0002");
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[other])),
        w.now,
    ));
    assert!(batch.response.batch_item_failures.is_empty());
    assert_eq!(
        batch.outcomes[0]
            .1
            .as_ref()
            .ok()
            .and_then(Outcome::rejection_kind),
        Some("rotation_open")
    );
    assert_eq!(w.ports.ports.store.rows().len(), 1);
}

/// The starter's outcome for `work` from another audit task, and the IoT
/// API calls it made.
fn start_from_another_audit(w: &World, certificate_id: &str) -> (Option<String>, u64) {
    let mut other = work(certificate_id, false);
    other["taskId"] = json!("task-0002");
    let iot = |w: &World| {
        w.calls(Operation::DescribeCertificate) + w.calls(Operation::ListPrincipalThings)
    };
    let before = iot(w);
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[other])),
        w.now,
    ));
    assert!(batch.response.batch_item_failures.is_empty(), "{batch:?}");
    let kind = batch.outcomes[0]
        .1
        .as_ref()
        .ok()
        .and_then(Outcome::rejection_kind)
        .map(str::to_owned);
    (kind, iot(w) - before)
}

/// The daily audit finds a certificate again until its rotation deletes
/// it: those findings cost a read of the rotation table, not a share of
/// the IoT quotas the rotations need.
#[test]
fn a_certificate_found_again_while_rotating_or_rotated_spends_no_iot_call() {
    let (w, dev, id, _, new_id) = issued();
    assert_eq!(
        start_from_another_audit(&w, &dev.cert_id),
        (Some("rotation_open".to_owned()), 0)
    );
    let out = ack(&w, &crt_ack("thing-1", &new_id, Some(&id)));
    assert!(!out.is_rejected(), "{out:?}");
    assert_eq!(
        start_from_another_audit(&w, &dev.cert_id),
        (Some("already_rotated".to_owned()), 0)
    );
    assert_eq!(w.ports.ports.store.rows().len(), 1);
}

/// A rotation that failed is tried again by the next audit.
#[test]
fn a_certificate_whose_rotation_failed_rotates_again_at_the_next_audit() {
    let (w, dev, id) = requested();
    let out = err(
        &w,
        &crt_err("thing-1", &dev.cert_id, "no entropy", Some(&id)),
    );
    assert!(!out.is_rejected(), "{out:?}");
    let (kind, _) = start_from_another_audit(&w, &dev.cert_id);
    assert_eq!(kind, None);
    assert_eq!(w.ports.ports.store.rows().len(), 2);
    assert!(row(&w).state.is_open());
}

#[test]
fn expired_certificate_goes_to_support_not_to_the_device() {
    let w = World::new();
    let dev = w.provision("thing-1");
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[work(&dev.cert_id, true)])),
        w.now,
    ));
    assert!(batch.response.batch_item_failures.is_empty());
    assert!(last_csr_req(&w, "thing-1").is_none());
    assert!(w.ports.ports.store.rows().is_empty());
    let sent = w.ports.ports.notifier.sent();
    assert_eq!(sent.len(), 1);
    let body: Value = serde_json::from_str(&sent[0].message).expect("json");
    assert_eq!(body["kind"], "certificate_expired");
    assert_eq!(body["thingName"], "thing-1");
}

#[test]
fn bad_queue_bodies_are_rejected_and_retryable_failures_reported_per_message() {
    let w = World::new();
    let dev = w.provision("thing-1");
    w.ports.instruments.fail_next(
        Operation::ListPrincipalThings,
        1,
        lambdas::memory::Fault::Throttled,
    );
    let bad = json!({"certificateId": "nope"});
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[work(&dev.cert_id, false), bad])),
        w.now,
    ));
    // First message throttled → redelivered; second malformed → dropped.
    assert_eq!(batch.response.batch_item_failures.len(), 1);
    assert_eq!(
        batch.response.batch_item_failures[0].item_identifier,
        "msg-0"
    );
    assert_eq!(
        batch.outcomes[1]
            .1
            .as_ref()
            .ok()
            .and_then(Outcome::rejection_kind),
        Some("invalid_payload")
    );
    assert!(w.ports.ports.store.rows().is_empty());
}

#[test]
fn duplicate_csr_res_resends_the_same_certificate() {
    let (w, dev, id, csr_text, new_id) = issued();
    let out = csr(&w, &csr_res("thing-1", &csr_text, Some(&id)));
    assert!(!out.is_rejected(), "{out:?}");
    assert_eq!(w.calls(Operation::CreateCertificateFromCsr), 1);
    let crts = w
        .ports
        .ports
        .publisher
        .published_to("management/topic/thing-1/crt");
    assert_eq!(crts.len(), 2);
    assert_eq!(crts[0].payload, crts[1].payload);
    assert_eq!(row(&w).attempts, 2);
    assert_eq!(row(&w).state.new_certificate_id(), Some(new_id.as_str()));
    w.assert_invariants(&dev);
}

#[test]
fn csr_with_a_different_key_after_issue_is_rejected() {
    let (w, dev, id, _, _) = issued();
    let before = row(&w);
    let out = csr(
        &w,
        &csr_res("thing-1", &csr_pem(&p256_key(), "thing-1"), Some(&id)),
    );
    assert_eq!(out.rejection_kind(), Some("different_key"));
    assert_eq!(row(&w), before);
    assert_eq!(w.calls(Operation::CreateCertificateFromCsr), 1);
    w.assert_invariants(&dev);
}

#[test]
fn csr_while_issuing_is_rejected_without_a_second_create() {
    let (w, dev, _) = requested();
    let key = p256_key();
    let csr_text = csr_pem(&key, "thing-1");
    let fp = rules::csr::inspect_csr(&csr_text)
        .expect("csr")
        .public_key_fingerprint;
    // Another invocation holds the claim.
    let r = row(&w);
    let claimed = rules::rotation::Rotation {
        state: RotationState::Issuing {
            csr_fingerprint: fp,
        },
        ..r.clone()
    };
    run(lambdas::ports::RotationStore::update(
        &w.ports.ports.store,
        &r,
        &claimed,
    ))
    .expect("claim");
    let out = csr(&w, &csr_res("thing-1", &csr_text, None));
    assert_eq!(out.rejection_kind(), Some("issue_in_progress"));
    assert_eq!(w.calls(Operation::CreateCertificateFromCsr), 0);
    w.assert_invariants(&dev);
}

/// A CSR the policy refuses ends the rotation at once (issue 16: it used
/// to wait silently for its deadline): FAILED with the reason, support told
/// with the thing, the reason and what the CSR holds, no certificate
/// created, the device left on its current one.
#[test]
fn a_refused_csr_fails_the_rotation_at_once_and_tells_support() {
    let unreadable =
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
    for (case, kind) in [("old key", "csr_policy"), ("unreadable", "bad_csr")] {
        let (w, dev, id) = requested();
        let refused = if case == "old key" {
            csr_pem(&dev.key, "thing-1")
        } else {
            unreadable.to_owned()
        };
        let out = csr(&w, &csr_res("thing-1", &refused, Some(&id)));
        assert_eq!(out.rejection_kind(), Some(kind), "{case}: {out:?}");
        let failed = row(&w);
        assert!(
            matches!(&failed.state, RotationState::Failed { reason, new_certificate_id: None }
                if reason.starts_with("csr refused")),
            "{case}: {:?}",
            failed.state
        );
        let sent = w.ports.ports.notifier.sent();
        assert_eq!(sent.len(), 1, "{case}: {sent:?}");
        assert!(sent[0].message.contains("thing-1"), "{}", sent[0].message);
        if case == "old key" {
            assert!(sent[0].message.contains("ec-p256"), "{}", sent[0].message);
        }
        assert_eq!(w.calls(Operation::CreateCertificateFromCsr), 0, "{case}");
        assert!(
            w.ports
                .ports
                .publisher
                .published_to("management/topic/thing-1/crt")
                .is_empty()
        );
        w.assert_invariants(&dev);
        // the same CSR again changes nothing more
        let again = csr(&w, &csr_res("thing-1", &refused, Some(&id)));
        assert!(again.is_rejected(), "{again:?}");
        assert_eq!(w.ports.ports.notifier.sent().len(), 1, "{case}");
    }
}

#[test]
fn messages_that_are_not_the_devices_csr_change_nothing() {
    let (w, dev, _id) = requested();
    let before = row(&w);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"clientid": "thing-1", "topicClientId": "thing-2", "CSR": csr_pem(&p256_key(), "x")}),
            "topic_client_id_mismatch",
        ),
        (
            csr_res(
                "thing-1",
                &csr_pem(&p256_key(), "x"),
                Some("other-rotation"),
            ),
            "unknown_rotation",
        ),
        (
            csr_res("thing-9", &csr_pem(&p256_key(), "x"), None),
            "unknown_rotation",
        ),
        (
            json!({"clientid": "thing-1", "topicClientId": "thing-1", "CSR": 5}),
            "invalid_payload",
        ),
        (
            json!({"clientid": "thing-1", "topicClientId": "thing-1", "CSR": "x", "extra": 1}),
            "invalid_payload",
        ),
    ];
    for (payload, kind) in cases {
        assert_eq!(csr(&w, &payload).rejection_kind(), Some(kind), "{payload}");
    }
    let malformed = run(csr_issuer::handle(&w.ports, &w.cfg, b"{not json", w.now))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(malformed.rejection_kind(), Some("malformed_payload"));
    let huge = vec![b' '; 200 * 1024];
    let too_large =
        run(csr_issuer::handle(&w.ports, &w.cfg, &huge, w.now)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(too_large.rejection_kind(), Some("payload_too_large"));
    assert_eq!(row(&w), before);
    assert_eq!(w.calls(Operation::CreateCertificateFromCsr), 0);
    assert!(
        w.ports
            .ports
            .publisher
            .published_to("management/topic/thing-1/crt")
            .is_empty()
    );
    w.assert_invariants(&dev);
}

#[test]
fn csr_past_the_deadline_is_rejected() {
    let (mut w, dev, id) = requested();
    w.now += w.cfg.rotation_deadline_ms + 1;
    let out = csr(
        &w,
        &csr_res("thing-1", &csr_pem(&p256_key(), "thing-1"), Some(&id)),
    );
    assert_eq!(out.rejection_kind(), Some("deadline_passed"));
    assert_eq!(row(&w).state, RotationState::Requested);
    w.assert_invariants(&dev);
}

#[test]
fn ack_before_issue_on_old_principal_and_on_unknown_principal_change_nothing() {
    let (w, dev, id) = requested();
    assert_eq!(
        ack(&w, &crt_ack("thing-1", &dev.cert_id, Some(&id))).rejection_kind(),
        Some("ack_before_issued")
    );
    let (w, dev, id, _, new_id) = issued();
    let before = row(&w);
    assert_eq!(
        ack(&w, &crt_ack("thing-1", &dev.cert_id, Some(&id))).rejection_kind(),
        Some("ack_on_old_principal")
    );
    let stranger = "0".repeat(64);
    assert_eq!(
        ack(&w, &crt_ack("thing-1", &stranger, None)).rejection_kind(),
        Some("ack_on_unknown_principal")
    );
    let mut mismatch = crt_ack("thing-1", &new_id, None);
    mismatch["certificateId"] = json!(dev.cert_id);
    assert_eq!(
        ack(&w, &mismatch).rejection_kind(),
        Some("ack_certificate_mismatch")
    );
    let mut spoof = crt_ack("thing-1", &new_id, None);
    spoof["topicClientId"] = json!("thing-2");
    assert_eq!(
        ack(&w, &spoof).rejection_kind(),
        Some("topic_client_id_mismatch")
    );
    assert_eq!(
        ack(&w, &crt_ack("thing-1", &new_id, Some("r-other"))).rejection_kind(),
        Some("unknown_rotation")
    );
    assert_eq!(row(&w), before);
    assert!(
        w.registry().certificate(&dev.cert_id).is_some(),
        "old certificate kept"
    );
    w.assert_invariants(&dev);
}

#[test]
fn duplicate_ack_after_commit_is_a_no_op() {
    let (w, mut dev, id, _, new_id) = issued();
    assert!(!ack(&w, &crt_ack("thing-1", &new_id, Some(&id))).is_rejected());
    dev.held.remove(&dev.cert_id.clone());
    let committed = row(&w);
    let out = ack(&w, &crt_ack("thing-1", &new_id, None));
    assert!(!out.is_rejected(), "{out:?}");
    assert_eq!(row(&w), committed);
    // A late ack over the old certificate still changes nothing.
    assert_eq!(
        ack(&w, &crt_ack("thing-1", &dev.cert_id, None)).rejection_kind(),
        Some("ack_on_old_principal")
    );
    w.assert_invariants(&dev);
    w.assert_no_orphans(&[&dev]);
}

#[test]
fn late_events_after_commit_are_rejected_as_closed() {
    let (w, mut dev, id, csr_text, new_id) = issued();
    ack(&w, &crt_ack("thing-1", &new_id, Some(&id)));
    dev.held.remove(&dev.cert_id.clone());
    let committed = row(&w);
    assert_eq!(
        csr(&w, &csr_res("thing-1", &csr_text, Some(&id))).rejection_kind(),
        Some("rotation_closed")
    );
    assert_eq!(
        err(&w, &crt_err("thing-1", &new_id, "late", Some(&id))).rejection_kind(),
        Some("rotation_closed")
    );
    assert_eq!(row(&w), committed);
    assert!(
        w.registry().certificate(&new_id).is_some(),
        "the device's only certificate is kept"
    );
    w.assert_invariants(&dev);
    w.assert_no_orphans(&[&dev]);
}

#[test]
fn crt_err_before_issue_fails_the_rotation_without_cleanup() {
    let (w, dev, id) = requested();
    let out = err(
        &w,
        &crt_err("thing-1", &dev.cert_id, "no entropy", Some(&id)),
    );
    assert!(!out.is_rejected(), "{out:?}");
    assert!(matches!(
        row(&w).state,
        RotationState::Failed {
            new_certificate_id: None,
            ..
        }
    ));
    assert_eq!(w.ports.ports.notifier.sent().len(), 1);
    // Duplicate: closed, nothing more sent.
    assert_eq!(
        err(
            &w,
            &crt_err("thing-1", &dev.cert_id, "no entropy", Some(&id))
        )
        .rejection_kind(),
        Some("rotation_closed")
    );
    assert_eq!(w.ports.ports.notifier.sent().len(), 1);
    w.assert_invariants(&dev);
    w.assert_no_orphans(&[&dev]);
}

#[test]
fn crt_err_over_the_new_certificate_never_deletes_it() {
    let (w, dev, _, _, new_id) = issued();
    let before = row(&w);
    assert_eq!(
        err(&w, &crt_err("thing-1", &new_id, "oops", None)).rejection_kind(),
        Some("error_on_new_certificate")
    );
    assert_eq!(row(&w), before);
    assert!(w.registry().certificate(&new_id).is_some());
    w.assert_invariants(&dev);
}

#[test]
fn sweeper_rejects_malformed_events_and_skips_closed_rotations() {
    let (w, _, _) = requested();
    let out =
        run(sweeper::handle(&w.ports, &w.cfg, b"[]", w.now)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.rejection_kind(), Some("malformed_payload"));
    assert_eq!(row(&w).state, RotationState::Requested);
}
