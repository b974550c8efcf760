//! A full rotation across the handlers on the memory adapters, with
//! DESIGN.md's invariants asserted after every step and each handler's
//! calls checked against its operation list.

mod common;

use common::*;
use lambdas::handlers::{
    audit_fanout, commit, csr_issuer, error_handler, rotation_starter, sweeper,
};
use lambdas::ports::{CertificateStatus, Operation};
use rules::functions::Function;
use rules::rotation::{Rotation, RotationState};
use serde_json::Value;

#[test]
fn full_rotation_from_audit_notification_to_commit() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    let bystander = w.provision("thing-2");
    let check = "DEVICE_CERTIFICATE_EXPIRING_CHECK";
    w.registry().set_audit_findings(
        TASK,
        check,
        vec![finding(&dev.cert_id, TASK, check, NOW + 86_400_000, false)],
    );
    w.assert_invariants(&dev);

    // 1. audit notification → one queue message
    let out = run(audit_fanout::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sns_event(TASK, check, 1)),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    w.assert_calls_within(Function::AuditFanout);
    let queued = w.ports.ports.queue.drain();
    assert_eq!(queued.len(), 1);
    w.assert_invariants(&dev);

    // 2. queue → rotation row + csr_req
    let bodies: Vec<Value> = queued
        .iter()
        .map(|m| serde_json::from_str(&m.body).expect("body"))
        .collect();
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&bodies)),
        w.now,
    ));
    assert!(batch.response.batch_item_failures.is_empty(), "{batch:?}");
    w.assert_calls_within(Function::RotationStarter);
    let req = last_csr_req(&w, "thing-1").expect("csr_req published");
    let rotation_id = req["rotationId"].as_str().expect("rotation id").to_owned();
    let row = w.ports.ports.store.row(&rotation_id).expect("row");
    assert_eq!(row.state, RotationState::Requested);
    assert_eq!(row.old_certificate_id, dev.cert_id);
    w.assert_invariants(&dev);

    // 3. the device answers with a CSR for a new key → crt
    let new_key = p256_key();
    let csr = csr_pem(&new_key, "thing-1");
    let out = run(csr_issuer::handle(
        &w.ports,
        &w.cfg,
        &bytes(&csr_res("thing-1", &csr, Some(&rotation_id))),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    assert_eq!(w.calls(Operation::CreateCertificateFromCsr), 1);
    w.assert_calls_within(Function::CsrIssuer);
    let crt = w.receive_crt(&mut dev).expect("crt published");
    let new_id = crt["certificateId"]
        .as_str()
        .expect("certificate id")
        .to_owned();
    assert_eq!(crt["rotationId"], rotation_id.as_str());
    let new_cert = w.registry().certificate(&new_id).expect("new certificate");
    assert_eq!(new_cert.status, CertificateStatus::Active);
    assert!(new_cert.things.contains("thing-1"));
    assert!(new_cert.policies.contains(POLICY));
    // The certificate is real: issued by the registry's root for the new key.
    rules::csr::verify_issued_by(&new_cert.certificate_pem, w.registry().root_ca_pem())
        .unwrap_or_else(|e| panic!("{e}"));
    let info = rules::csr::inspect_certificate(&new_cert.certificate_pem)
        .unwrap_or_else(|e| panic!("{e}"));
    let csr_info = rules::csr::inspect_csr(&csr).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.public_key_fingerprint, csr_info.public_key_fingerprint);
    assert_eq!(info.certificate_id, new_id);
    w.assert_invariants(&dev);

    // 4. ack on the new principal → COMMITTED, old certificate gone
    let out = run(commit::handle(
        &w.ports,
        &w.cfg,
        &bytes(&crt_ack("thing-1", &new_id, Some(&rotation_id))),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    w.assert_calls_within(Function::Commit);
    assert!(
        w.registry().certificate(&dev.cert_id).is_none(),
        "old certificate deleted"
    );
    dev.held.remove(&dev.cert_id);
    let row = w.ports.ports.store.row(&rotation_id).expect("row");
    assert!(matches!(row.state, RotationState::Committed { .. }));
    w.assert_invariants(&dev);
    w.assert_invariants(&bystander);
    w.assert_no_orphans(&[&dev, &bystander]);

    // The sweeper finds nothing to do afterwards.
    w.ports.instruments.reset_calls();
    let out = run(sweeper::handle(
        &w.ports,
        &w.cfg,
        &bytes(&scheduled_event()),
        w.now + 30 * 86_400_000,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out,
        lambdas::handlers::Outcome::Done {
            summary: "0 rotations expired, 0 messages sent again".to_owned()
        }
    );
    w.assert_calls_within(Function::Sweeper);
}

#[test]
fn failed_rotation_cleans_up_and_notifies_support() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[work(&dev.cert_id, false)])),
        w.now,
    ));
    assert!(batch.response.batch_item_failures.is_empty());
    let rotation_id = last_csr_req(&w, "thing-1").expect("csr_req")["rotationId"]
        .as_str()
        .expect("id")
        .to_owned();
    let csr = csr_pem(&p256_key(), "thing-1");
    run(csr_issuer::handle(
        &w.ports,
        &w.cfg,
        &bytes(&csr_res("thing-1", &csr, None)),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let new_id = w.receive_crt(&mut dev).expect("crt")["certificateId"]
        .as_str()
        .expect("id")
        .to_owned();
    w.assert_invariants(&dev);
    w.ports.instruments.reset_calls();

    let out = run(error_handler::handle(
        &w.ports,
        &w.cfg,
        &bytes(&crt_err(
            "thing-1",
            &dev.cert_id,
            "could not store the key",
            Some(&rotation_id),
        )),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    w.assert_calls_within(Function::ErrorHandler);
    dev.held.remove(&new_id);
    assert!(
        w.registry().certificate(&new_id).is_none(),
        "new certificate deleted"
    );
    let row = w.ports.ports.store.row(&rotation_id).expect("row");
    assert!(matches!(row.state, RotationState::Failed { .. }));
    let sent = w.ports.ports.notifier.sent();
    assert_eq!(sent.len(), 1);
    let body: Value = serde_json::from_str(&sent[0].message).expect("json notice");
    assert_eq!(body["thingName"], "thing-1");
    assert_eq!(body["rotationId"], rotation_id.as_str());
    assert_eq!(body["deviceError"], "could not store the key");
    assert_eq!(body["cleanedUp"][0], new_id.as_str());
    w.assert_invariants(&dev);
    w.assert_no_orphans(&[&dev]);
}

/// Until issue 15 this test expected the issued certificate deleted at
/// expiry. It had been sent in `crt`, so the device may have switched to it
/// (acked, PUBACKed, old key gone) with the commit lost: it is kept now,
/// beside the old one, and support is told. The deletion of a certificate
/// that was never sent is `handlers_brick.rs`'s last test.
#[test]
fn sweeper_expires_stuck_rotations_and_keeps_a_certificate_it_sent() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    let idle = w.provision("thing-2");
    run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[
            work(&dev.cert_id, false),
            work(&idle.cert_id, false),
        ])),
        w.now,
    ));
    let csr = csr_pem(&p256_key(), "thing-1");
    run(csr_issuer::handle(
        &w.ports,
        &w.cfg,
        &bytes(&csr_res("thing-1", &csr, None)),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let new_id = w.receive_crt(&mut dev).expect("crt")["certificateId"]
        .as_str()
        .expect("id")
        .to_owned();

    // Before the deadline: nothing.
    let out = run(sweeper::handle(
        &w.ports,
        &w.cfg,
        &bytes(&scheduled_event()),
        w.now + 1000,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out,
        lambdas::handlers::Outcome::Done {
            summary: "0 rotations expired, 0 messages sent again".to_owned()
        }
    );

    // After it: both expire; the issued certificate, sent, is kept.
    let late = w.now + w.cfg.rotation_deadline_ms + 1;
    w.ports.instruments.reset_calls();
    let out = run(sweeper::handle(
        &w.ports,
        &w.cfg,
        &bytes(&scheduled_event()),
        late,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out,
        lambdas::handlers::Outcome::Done {
            summary: "2 rotations expired, 0 messages sent again".to_owned()
        }
    );
    w.assert_calls_within(Function::Sweeper);
    let kept = w.registry().certificate(&new_id).expect("kept");
    assert_eq!(kept.status, CertificateStatus::Active);
    assert_eq!(w.ports.ports.notifier.sent().len(), 2);
    for d in [&dev, &idle] {
        let row = w.ports.ports.store.row_for_thing(&d.thing).expect("row");
        assert!(
            matches!(row.state, RotationState::Expired { .. }),
            "{row:?}"
        );
        w.assert_invariants(d);
    }
    w.assert_no_orphans(&[&dev, &idle]);
}

#[test]
fn a_sweep_acts_on_at_most_sweep_max_rows_and_the_next_goes_on() {
    let mut w = World::new();
    w.cfg.sweep_max_rows = 2;
    let devices: Vec<_> = (1..=3)
        .map(|i| w.provision(&format!("thing-{i}")))
        .collect();
    let work_items: Vec<_> = devices.iter().map(|d| work(&d.cert_id, false)).collect();
    run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&work_items)),
        w.now,
    ));
    let late = w.now + w.cfg.rotation_deadline_ms + 1;
    let summary = |now: i64| sweep_summary(&w, now);
    assert_eq!(
        summary(late),
        "2 rotations expired, 0 messages sent again; stopped at the limit of 2 rows, the next sweep goes on"
    );
    let open = |w: &World| {
        w.ports
            .ports
            .store
            .rows()
            .iter()
            .filter(|r| r.state.is_open())
            .count()
    };
    assert_eq!(open(&w), 1);
    assert_eq!(
        summary(late + 1),
        "1 rotations expired, 0 messages sent again"
    );
    assert_eq!(open(&w), 0);
    assert_eq!(w.ports.ports.notifier.sent().len(), 3);
    for d in &devices {
        w.assert_invariants(d);
    }
}

#[test]
fn sweeper_sends_a_stalled_rotations_message_again_at_half_and_three_quarters_of_its_time() {
    let w = World::new();
    let waiting = w.provision("thing-1");
    let mut issued = w.provision("thing-2");
    run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[
            work(&waiting.cert_id, false),
            work(&issued.cert_id, false),
        ])),
        w.now,
    ));
    let csr = csr_pem(&p256_key(), "thing-2");
    run(csr_issuer::handle(
        &w.ports,
        &w.cfg,
        &bytes(&csr_res("thing-2", &csr, None)),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let first_crt = w.receive_crt(&mut issued).expect("crt");
    let sent = |topic: &str| w.ports.ports.publisher.published_to(topic);
    let summary = |now: i64| sweep_summary(&w, now);
    let halfway = w.now + w.cfg.rotation_deadline_ms / 2;

    // Before half the time: nothing is sent again.
    assert_eq!(
        summary(halfway - 1),
        "0 rotations expired, 0 messages sent again"
    );
    assert_eq!(sent("management/topic/thing-1/csr_req").len(), 1);
    assert_eq!(sent("management/topic/thing-2/crt").len(), 1);

    // After it: the csr_req and the crt again, the same messages; nothing
    // is created, nothing expires, the rows only record the re-send.
    let unmarked = |rows: Vec<Rotation>| {
        rows.into_iter()
            .map(|r| Rotation {
                resent_at_ms: None,
                ..r
            })
            .collect::<Vec<_>>()
    };
    let rows = w.ports.ports.store.rows();
    let certificates = w.registry().certificates().len();
    w.ports.instruments.reset_calls();
    assert_eq!(
        summary(halfway + 1),
        "0 rotations expired, 2 messages sent again"
    );
    let reqs = sent("management/topic/thing-1/csr_req");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].payload, reqs[1].payload);
    let crts = sent("management/topic/thing-2/crt");
    assert_eq!(crts.len(), 2);
    let again: serde_json::Value = serde_json::from_slice(&crts[1].payload).expect("json");
    assert_eq!(again, first_crt);
    assert_eq!(unmarked(w.ports.ports.store.rows()), unmarked(rows));
    assert!(
        w.ports
            .ports
            .store
            .rows()
            .iter()
            .all(|r| r.resent_at_ms == Some(halfway + 1))
    );
    assert_eq!(w.registry().certificates().len(), certificates);
    w.assert_calls_within(Function::Sweeper);

    // Sweeps until three quarters of the time send nothing more; the one
    // after sends each message once more, and that is the last.
    let three_quarters = w.now + w.cfg.rotation_deadline_ms / 4 * 3;
    for now in [halfway + 2, three_quarters - 1] {
        assert_eq!(summary(now), "0 rotations expired, 0 messages sent again");
    }
    assert_eq!(
        summary(three_quarters),
        "0 rotations expired, 2 messages sent again"
    );
    let deadline = w.now + w.cfg.rotation_deadline_ms;
    for now in [three_quarters + 1, deadline - 1] {
        assert_eq!(summary(now), "0 rotations expired, 0 messages sent again");
    }
    assert_eq!(sent("management/topic/thing-1/csr_req").len(), 3);
    assert_eq!(sent("management/topic/thing-2/crt").len(), 3);
    w.assert_invariants(&waiting);
    w.assert_invariants(&issued);
}

/// One sweep at `now`; its summary.
fn sweep_summary(w: &World, now: i64) -> String {
    match run(sweeper::handle(
        &w.ports,
        &w.cfg,
        &bytes(&scheduled_event()),
        now,
    ))
    .unwrap_or_else(|e| panic!("{e}"))
    {
        lambdas::handlers::Outcome::Done { summary } => summary,
        other => panic!("{other:?}"),
    }
}
