//! Issue 15: the windows in which a PUBACKed `crt_ack` never becomes a
//! commit, run on the real handlers and memory adapters with a device
//! written to the seed alone: it deletes its old key as soon as its ack is
//! acknowledged. The cloud must not delete the new certificate then (that
//! was the brick path: the sweeper expired the ISSUED rotation and deleted
//! the only certificate the device still had a key for).
//!
//! Each test failed before the fix (`never brick: thing thing-1 holds no
//! usable certificate`) and checks afterwards that a later ack over the new
//! certificate still commits, leaving nothing orphaned.

mod common;

use common::*;
use lambdas::handlers::{Outcome, commit, csr_issuer, rotation_starter, sweeper};
use lambdas::memory::Fault;
use lambdas::ports::{CertificateStatus, Operation};
use rules::functions::Function;
use rules::rotation::RotationState;

/// A rotation of `dev` requested and issued: the rotation id and the new
/// certificate id (`crt` published; not yet taken by the device).
fn issued(w: &World, dev: &Device) -> (String, String) {
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[work(&dev.cert_id, false)])),
        w.now,
    ));
    assert!(batch.response.batch_item_failures.is_empty(), "{batch:?}");
    let id = last_csr_req(w, &dev.thing).expect("csr_req")["rotationId"]
        .as_str()
        .expect("id")
        .to_owned();
    let payload = csr_res(&dev.thing, &csr_pem(&p256_key(), &dev.thing), Some(&id));
    let out = run(csr_issuer::handle(
        &w.ports,
        &w.cfg,
        &bytes(&payload),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    let row = w.ports.ports.store.row(&id).expect("row");
    let new_id = row.state.new_certificate_id().expect("issued").to_owned();
    (id, new_id)
}

/// The seed device takes the `crt`, connects with the new certificate,
/// publishes `crt_ack {}` and, once it is PUBACKed, deletes its old key.
/// The commit Lambda then fails on the invocation and both of Lambda's
/// retries (the conditional write is throttled each time): the event is
/// dropped and the row stays ISSUED.
fn ack_whose_commit_never_lands(w: &World, dev: &mut Device, new_id: &str, now: i64) {
    w.receive_crt(dev).expect("crt");
    dev.held = [new_id.to_owned()].into();
    w.ports
        .instruments
        .fail_next(Operation::UpdateRotation, 3, Fault::Throttled);
    let ack = bytes(&crt_ack(&dev.thing, new_id, None));
    for _ in 0..3 {
        let out = run(commit::handle(&w.ports, &w.cfg, &ack, now));
        assert!(matches!(&out, Err(e) if e.is_retryable()), "{out:?}");
    }
    let row = w.ports.ports.store.row_for_thing(&dev.thing).expect("row");
    assert!(matches!(row.state, RotationState::Issued { .. }), "{row:?}");
}

fn sweep(w: &World, now: i64) -> Outcome {
    w.ports.instruments.reset_calls();
    let out = run(sweeper::handle(
        &w.ports,
        &w.cfg,
        &bytes(&scheduled_event()),
        now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    w.assert_calls_within(Function::Sweeper);
    out
}

/// After the expiry both certificates are still usable and support was told
/// which; a later ack over the new certificate (the fixed agent sends one on
/// every connection while it keeps its old key; a seed device re-acks a
/// re-sent `crt`) commits and retires the old one.
fn expired_keeping_both_then_a_late_ack_commits(w: &World, dev: &Device, new_id: &str, now: i64) {
    let row = w.ports.ports.store.row_for_thing(&dev.thing).expect("row");
    assert!(
        matches!(row.state, RotationState::Expired { .. }),
        "{row:?}"
    );
    let new = w
        .registry()
        .certificate(new_id)
        .expect("new certificate kept");
    assert_eq!(new.status, CertificateStatus::Active);
    let old = w.registry().certificate(&dev.cert_id).expect("old kept");
    assert_eq!(old.status, CertificateStatus::Active);
    let notices = w.ports.ports.notifier.sent();
    assert!(
        notices
            .iter()
            .any(|n| n.subject.contains("both certificates kept")),
        "{notices:?}"
    );
    w.ports.instruments.reset_calls();
    let ack = bytes(&crt_ack(&dev.thing, new_id, Some(&row.rotation_id)));
    let out = run(commit::handle(&w.ports, &w.cfg, &ack, now)).unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    w.assert_calls_within(Function::Commit);
    let row = w.ports.ports.store.row_for_thing(&dev.thing).expect("row");
    assert!(
        matches!(row.state, RotationState::Committed { .. }),
        "{row:?}"
    );
    assert!(!row.cleanup_pending);
    assert!(
        w.registry().certificate(&dev.cert_id).is_none(),
        "old retired"
    );
    w.assert_invariants(dev);
    w.assert_no_orphans(&[dev]);
}

#[test]
fn commit_never_lands_after_the_ack_and_the_sweeper_does_not_brick_the_device() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    let (_, new_id) = issued(&w, &dev);
    ack_whose_commit_never_lands(&w, &mut dev, &new_id, w.now + 1_000);
    w.assert_invariants(&dev);

    let late = w.now + w.cfg.rotation_deadline_ms + 1;
    sweep(&w, late);
    w.assert_invariants(&dev);
    expired_keeping_both_then_a_late_ack_commits(&w, &dev, &new_id, late + 1);
}

#[test]
fn an_ack_after_the_three_quarter_resend_whose_commit_fails_does_not_brick_the_device() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    // The first `crt` is lost on the way: the device holds the old key only.
    let (id, new_id) = issued(&w, &dev);
    let row = w.ports.ports.store.row(&id).expect("row");
    let window = row.deadline_ms - row.created_at_ms;
    // Just past each mark (the sweeper reads rows whose deadline is less
    // than half a window away).
    let half = row.created_at_ms + window / 2 + 1;
    let three_quarters = row.created_at_ms + window / 4 * 3 + 1;
    // Lost again at half its time; at three quarters it arrives.
    for at in [half, three_quarters] {
        match sweep(&w, at) {
            Outcome::Done { summary } => assert_eq!(
                summary, "0 rotations expired, 1 messages sent again",
                "at {at}"
            ),
            other => panic!("{other:?}"),
        }
    }
    ack_whose_commit_never_lands(&w, &mut dev, &new_id, three_quarters + 10);
    w.assert_invariants(&dev);

    // Nothing is sent again before the deadline; at it the rotation expires.
    let late = row.deadline_ms + 1;
    sweep(&w, late);
    w.assert_invariants(&dev);
    expired_keeping_both_then_a_late_ack_commits(&w, &dev, &new_id, late + 1);
}

#[test]
fn a_reconnect_ack_racing_the_sweeper_at_the_deadline_does_not_brick_the_device() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    let (_, new_id) = issued(&w, &dev);
    // The device was offline; its persistent session delivers the `crt`
    // just before the deadline, it connects with the new certificate, acks
    // and (PUBACK) drops its old key. The sweeper runs first: the commit's
    // conditional write then finds the row EXPIRED (its re-read is the
    // same as stepping afterwards).
    w.receive_crt(&mut dev).expect("crt");
    dev.held = [new_id.clone()].into();
    let late = w.now + w.cfg.rotation_deadline_ms + 1;
    sweep(&w, late);
    w.assert_invariants(&dev);
    expired_keeping_both_then_a_late_ack_commits(&w, &dev, &new_id, late);
}

#[test]
fn a_certificate_never_made_active_is_still_deleted_at_expiry() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
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
    // The issuer's activation fails on the invocation and both retries:
    // the row is ISSUED, the certificate INACTIVE, no `crt` was sent.
    w.ports
        .instruments
        .fail_next(Operation::UpdateCertificate, 3, Fault::Transient);
    let payload = bytes(&csr_res(
        "thing-1",
        &csr_pem(&p256_key(), "thing-1"),
        Some(&id),
    ));
    for _ in 0..3 {
        let out = run(csr_issuer::handle(&w.ports, &w.cfg, &payload, w.now));
        assert!(matches!(&out, Err(e) if e.is_retryable()), "{out:?}");
    }
    assert!(w.receive_crt(&mut dev).is_none(), "no crt sent");
    let row = w.ports.ports.store.row(&id).expect("row");
    let new_id = row.state.new_certificate_id().expect("issued").to_owned();
    assert_eq!(
        w.registry().certificate(&new_id).expect("new").status,
        CertificateStatus::Inactive
    );

    let late = row.deadline_ms + 1;
    sweep(&w, late);
    assert!(
        w.registry().certificate(&new_id).is_none(),
        "a certificate never sent is deleted"
    );
    let row = w.ports.ports.store.row(&id).expect("row");
    assert!(
        matches!(row.state, RotationState::Expired { .. }),
        "{row:?}"
    );
    assert!(!row.cleanup_pending);
    w.assert_invariants(&dev);
    w.assert_no_orphans(&[&dev]);
}
