//! Injected throttling and transient failures mid-handler: the event is
//! retried (as Lambda does) and afterwards nothing is orphaned, no device
//! is bricked and `CreateCertificateFromCsr` ran as often as stated.

mod common;

use common::*;
use lambdas::handlers::{commit, csr_issuer, error_handler, rotation_starter, sweeper};
use lambdas::memory::Fault;
use lambdas::ports::{CertificateStatus, Operation};
use rules::rotation::RotationState;
use serde_json::Value;

fn requested(w: &World, dev: &Device) -> String {
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[work(&dev.cert_id, false)])),
        w.now,
    ));
    assert!(batch.response.batch_item_failures.is_empty(), "{batch:?}");
    last_csr_req(w, &dev.thing).expect("csr_req")["rotationId"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Runs the CSR issuer until it succeeds (at most `max` attempts) and
/// returns the errors it returned on the way.
fn issue_with_retries(
    w: &World,
    payload: &Value,
    max: usize,
) -> Vec<lambdas::handlers::HandlerError> {
    let mut errors = Vec::new();
    for _ in 0..max {
        match run(csr_issuer::handle(&w.ports, &w.cfg, &bytes(payload), w.now)) {
            Ok(out) => {
                assert!(!out.is_rejected(), "{out:?} after {errors:?}");
                return errors;
            }
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                errors.push(e);
            }
        }
    }
    panic!("still failing after {max} attempts: {errors:?}");
}

/// A rotation of `dev` requested and issued without faults, its `crt`
/// received: the rotation id and the new certificate id.
fn issued(w: &World, dev: &mut Device) -> (String, String) {
    let id = requested(w, dev);
    let payload = csr_res(&dev.thing, &csr_pem(&p256_key(), &dev.thing), Some(&id));
    issue_with_retries(w, &payload, 1);
    let new_id = w.receive_crt(dev).expect("crt")["certificateId"]
        .as_str()
        .expect("id")
        .to_owned();
    (id, new_id)
}

#[test]
fn throttled_attach_after_create_resumes_with_exactly_one_certificate() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    let id = requested(&w, &dev);
    w.ports
        .instruments
        .fail_next(Operation::AttachPolicy, 1, Fault::Throttled);
    let payload = csr_res("thing-1", &csr_pem(&p256_key(), "thing-1"), Some(&id));

    let first = run(csr_issuer::handle(
        &w.ports,
        &w.cfg,
        &bytes(&payload),
        w.now,
    ));
    assert!(matches!(&first, Err(e) if e.is_retryable()), "{first:?}");
    // Between the failure and the retry: recorded, not yet sent; the
    // device still holds only its old, usable certificate.
    assert!(matches!(
        w.ports.ports.store.row(&id).expect("row").state,
        RotationState::Issued { .. }
    ));
    assert!(w.receive_crt(&mut dev).is_none());
    let old = w.registry().certificate(&dev.cert_id).expect("old");
    assert_eq!(old.status, CertificateStatus::Active);

    assert!(issue_with_retries(&w, &payload, 3).is_empty());
    assert_eq!(w.calls(Operation::CreateCertificateFromCsr), 1);
    w.receive_crt(&mut dev).expect("crt after the retry");
    w.assert_invariants(&dev);
    w.assert_no_orphans(&[&dev]);
    assert_eq!(w.registry().certificates().len(), 2);
}

#[test]
fn throttled_create_releases_the_claim_so_the_retry_can_issue() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    let id = requested(&w, &dev);
    w.ports
        .instruments
        .fail_next(Operation::CreateCertificateFromCsr, 2, Fault::Throttled);
    let payload = csr_res("thing-1", &csr_pem(&p256_key(), "thing-1"), Some(&id));
    let errors = issue_with_retries(&w, &payload, 5);
    assert_eq!(errors.len(), 2);
    assert_eq!(w.calls(Operation::CreateCertificateFromCsr), 3);
    w.receive_crt(&mut dev).expect("crt");
    assert_eq!(
        w.registry().certificates().len(),
        2,
        "one certificate issued"
    );
    w.assert_invariants(&dev);
    w.assert_no_orphans(&[&dev]);
}

#[test]
fn lost_create_response_leaves_no_usable_orphan() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    let id = requested(&w, &dev);
    // The certificate is created, the response is lost.
    w.ports.instruments.fail_next(
        Operation::CreateCertificateFromCsr,
        1,
        Fault::TransientAfterEffect,
    );
    let payload = csr_res("thing-1", &csr_pem(&p256_key(), "thing-1"), Some(&id));
    assert_eq!(issue_with_retries(&w, &payload, 3).len(), 1);
    assert_eq!(w.calls(Operation::CreateCertificateFromCsr), 2);
    w.receive_crt(&mut dev).expect("crt");
    // The lost certificate exists (AWS cannot be asked for it) but was
    // created inactive and attached to nothing: nothing can use it.
    w.assert_invariants(&dev);
    w.assert_no_orphans(&[&dev]);
}

#[test]
fn failed_issued_write_removes_the_new_certificate_and_starts_over() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    let id = requested(&w, &dev);
    // UpdateRotation call 1 is the ISSUING claim; call 2 records ISSUED.
    w.ports
        .instruments
        .fail_after(Operation::UpdateRotation, 1, 1, Fault::Throttled);
    let payload = csr_res("thing-1", &csr_pem(&p256_key(), "thing-1"), Some(&id));
    let first = run(csr_issuer::handle(
        &w.ports,
        &w.cfg,
        &bytes(&payload),
        w.now,
    ));
    assert!(matches!(&first, Err(e) if e.is_retryable()), "{first:?}");
    // The unrecorded certificate was removed and the claim handed back.
    assert_eq!(w.registry().certificates().len(), 1);
    assert_eq!(
        w.ports.ports.store.row(&id).expect("row").state,
        RotationState::Requested
    );
    w.assert_invariants(&dev);
    assert!(issue_with_retries(&w, &payload, 2).is_empty());
    assert_eq!(w.calls(Operation::CreateCertificateFromCsr), 2);
    w.receive_crt(&mut dev).expect("crt");
    assert_eq!(w.registry().certificates().len(), 2);
    w.assert_invariants(&dev);
    w.assert_no_orphans(&[&dev]);
}

#[test]
fn commit_retry_finishes_an_interrupted_retirement() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    let (id, new_id) = issued(&w, &mut dev);
    w.ports
        .instruments
        .fail_next(Operation::DeleteCertificate, 1, Fault::Transient);
    let ack = bytes(&crt_ack("thing-1", &new_id, Some(&id)));
    let first = run(commit::handle(&w.ports, &w.cfg, &ack, w.now));
    assert!(matches!(&first, Err(e) if e.is_retryable()), "{first:?}");
    // COMMITTED is written; the old certificate is detached and inactive
    // but still there: not usable, not an orphan by DESIGN.md's rule.
    let old = w
        .registry()
        .certificate(&dev.cert_id)
        .expect("old still there");
    assert_eq!(old.status, CertificateStatus::Inactive);
    assert!(old.things.is_empty() && old.policies.is_empty());
    dev.held.remove(&dev.cert_id.clone());
    w.assert_invariants(&dev);
    let second =
        run(commit::handle(&w.ports, &w.cfg, &ack, w.now)).unwrap_or_else(|e| panic!("{e}"));
    assert!(!second.is_rejected(), "{second:?}");
    assert!(
        w.registry().certificate(&dev.cert_id).is_none(),
        "retirement finished"
    );
    w.assert_no_orphans(&[&dev]);
}

/// The cleanup succeeded but the notification after it failed: the
/// retry has nothing left to remove and must still tell support (it
/// used to send nothing, the failure was lost).
#[test]
fn a_notification_that_failed_after_the_cleanup_is_sent_by_the_retry() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    let (id, new_id) = issued(&w, &mut dev);
    w.ports
        .instruments
        .fail_next(Operation::NotifySupport, 1, Fault::Transient);
    let err = bytes(&crt_err("thing-1", &dev.cert_id, "flash full", Some(&id)));
    let first = run(error_handler::handle(&w.ports, &w.cfg, &err, w.now));
    assert!(matches!(&first, Err(e) if e.is_retryable()), "{first:?}");
    assert!(
        w.registry().certificate(&new_id).is_none(),
        "cleanup ran first"
    );
    assert!(w.ports.ports.notifier.sent().is_empty());
    let second =
        run(error_handler::handle(&w.ports, &w.cfg, &err, w.now)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second.rejection_kind(), Some("rotation_closed"));
    let sent = w.ports.ports.notifier.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let body: Value = serde_json::from_str(&sent[0].message).expect("json");
    assert_eq!(body["deviceError"], "flash full");
    // and a third delivery of the same event tells no one again
    let third =
        run(error_handler::handle(&w.ports, &w.cfg, &err, w.now)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(third.rejection_kind(), Some("rotation_closed"));
    assert_eq!(w.ports.ports.notifier.sent().len(), 1);
    dev.held.remove(&new_id);
    w.assert_invariants(&dev);
    w.assert_no_orphans(&[&dev]);
}

#[test]
fn error_handler_retry_finishes_an_interrupted_cleanup() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    let (id, new_id) = issued(&w, &mut dev);
    w.ports
        .instruments
        .fail_next(Operation::DetachThingPrincipal, 1, Fault::Throttled);
    let err = bytes(&crt_err("thing-1", &dev.cert_id, "flash full", Some(&id)));
    let first = run(error_handler::handle(&w.ports, &w.cfg, &err, w.now));
    assert!(matches!(&first, Err(e) if e.is_retryable()), "{first:?}");
    // The retry sees FAILED (closed) and still finishes the cleanup.
    let second =
        run(error_handler::handle(&w.ports, &w.cfg, &err, w.now)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second.rejection_kind(), Some("rotation_closed"));
    assert!(w.registry().certificate(&new_id).is_none());
    // The notification the first run never reached is sent by the retry.
    let sent = w.ports.ports.notifier.sent();
    assert_eq!(sent.len(), 1);
    let body: Value = serde_json::from_str(&sent[0].message).expect("json");
    assert_eq!(body["deviceError"], "flash full");
    assert_eq!(body["cleanedUp"][0], new_id.as_str());
    dev.held.remove(&new_id);
    w.assert_invariants(&dev);
    w.assert_no_orphans(&[&dev]);
}

#[test]
fn a_retirement_that_failed_on_every_retry_is_finished_by_the_sweeper() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    let (id, new_id) = issued(&w, &mut dev);
    // The invocation and both of Lambda's retries fail to deactivate the
    // old certificate: the event is dropped.
    w.ports
        .instruments
        .fail_next(Operation::UpdateCertificate, 3, Fault::Transient);
    let ack = bytes(&crt_ack("thing-1", &new_id, Some(&id)));
    for _ in 0..3 {
        let out = run(commit::handle(&w.ports, &w.cfg, &ack, w.now));
        assert!(matches!(&out, Err(e) if e.is_retryable()), "{out:?}");
    }
    let old = w.registry().certificate(&dev.cert_id).expect("old");
    assert_eq!(old.status, CertificateStatus::Active, "left active");
    let row = w.ports.ports.store.row(&id).expect("row");
    assert!(matches!(row.state, RotationState::Committed { .. }));
    assert!(row.cleanup_pending, "the row remembers the cleanup it owes");
    dev.held.remove(&dev.cert_id.clone());

    // Before the deadline the sweeper leaves it to the handlers.
    run(sweeper::handle(
        &w.ports,
        &w.cfg,
        &bytes(&scheduled_event()),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(w.registry().certificate(&dev.cert_id).is_some());
    // After it, the sweeper retires the old certificate and settles the row.
    let later = row.deadline_ms + 1;
    let out = run(sweeper::handle(
        &w.ports,
        &w.cfg,
        &bytes(&scheduled_event()),
        later,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    assert!(
        w.registry().certificate(&dev.cert_id).is_none(),
        "old certificate retired by the sweeper"
    );
    let row = w.ports.ports.store.row(&id).expect("row");
    assert!(matches!(row.state, RotationState::Committed { .. }));
    assert!(!row.cleanup_pending);
    assert_eq!(w.ports.ports.store.unsettled_count(), 0);
    w.assert_invariants(&dev);
    w.assert_no_orphans(&[&dev]);
}

#[test]
fn a_cleanup_finished_by_the_handler_leaves_nothing_for_the_sweeper() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    let (id, new_id) = issued(&w, &mut dev);
    let ack = bytes(&crt_ack("thing-1", &new_id, Some(&id)));
    let out = run(commit::handle(&w.ports, &w.cfg, &ack, w.now)).unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    let row = w.ports.ports.store.row(&id).expect("row");
    assert!(!row.cleanup_pending);
    assert_eq!(w.ports.ports.store.unsettled_count(), 0);
    dev.held.remove(&dev.cert_id.clone());
    w.assert_invariants(&dev);
}
