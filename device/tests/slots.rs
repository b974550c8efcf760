//! Crash safety of the certificate slots: a crash at every step of writing
//! `next/` and promoting it leaves a usable certificate and key.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Ca;
use device::{Slot, SlotError, SlotMeta, Slots};
use rules::contracts::{KeyAlgorithm, RotationId};

struct Pair {
    cert: String,
    key: String,
    fingerprint: String,
}

fn pair(ca: &Ca, algorithm: KeyAlgorithm) -> Pair {
    let key = device::keys::generate_key(algorithm).unwrap_or_else(|e| panic!("{e}"));
    let csr = device::keys::csr_pem("thing-s", &key).unwrap_or_else(|e| panic!("{e}"));
    Pair {
        cert: ca.sign_csr(&csr),
        key: key.serialize_pem(),
        fingerprint: device::keys::key_fingerprint(&key),
    }
}

fn next_slot(p: &Pair) -> Slot {
    Slot {
        cert_pem: Some(p.cert.clone()),
        key_pem: p.key.clone(),
        meta: SlotMeta {
            rotation_id: Some(RotationId::new("rot-s").expect("id")),
            certificate_id: Some(rules::csr::certificate_id(&p.cert).expect("id")),
            key_algorithm: Some(KeyAlgorithm::EcP256),
            key_fingerprint: p.fingerprint.clone(),
        },
    }
}

/// Writes `next` and promotes it, crashing at step `crash_at` (never when
/// `None`); returns how many steps were taken.
fn rotate(
    dir: &std::path::Path,
    next: &Slot,
    crash_at: Option<usize>,
) -> (usize, Result<(), SlotError>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let slots = Slots::open(dir)
        .expect("open")
        .with_fault_hook(Arc::new(move |_step| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            Some(n) == crash_at
        }));
    let result = slots.write_next(next).and_then(|()| slots.promote());
    (count.load(Ordering::SeqCst), result)
}

#[test]
fn a_crash_at_any_step_of_a_rotation_leaves_a_working_pair() {
    let ca = Ca::new("slots ca");
    let old = pair(&ca, KeyAlgorithm::EcP256);
    let new = pair(&ca, KeyAlgorithm::EcP256);
    let next = next_slot(&new);

    let probe = tempfile::tempdir().expect("tempdir");
    Slots::open(probe.path())
        .expect("open")
        .install(&old.cert, &old.key, None)
        .expect("install");
    let (steps, result) = rotate(probe.path(), &next, None);
    result.unwrap_or_else(|e| panic!("{e}"));
    assert!(steps >= 8, "only {steps} steps seen");

    let mut outcomes = Vec::new();
    for crash_at in 0..steps {
        let dir = tempfile::tempdir().expect("tempdir");
        Slots::open(dir.path())
            .expect("open")
            .install(&old.cert, &old.key, None)
            .expect("install");
        let (_, result) = rotate(dir.path(), &next, Some(crash_at));
        assert!(
            matches!(result, Err(SlotError::Crashed { .. })),
            "step {crash_at}: {result:?}"
        );

        // "Restart": a fresh Slots finds a working certificate and key.
        let state = Slots::open(dir.path())
            .expect("open")
            .load()
            .unwrap_or_else(|e| panic!("step {crash_at}: {e}"));
        let current = state
            .current
            .unwrap_or_else(|| panic!("step {crash_at}: no current slot"));
        let cert = current.cert_pem.clone().expect("current has a certificate");
        let info = rules::csr::inspect_certificate(&cert).expect("certificate parses");
        let key = device::keys::key_from_pem(&current.key_pem).expect("key parses");
        assert_eq!(
            device::keys::key_fingerprint(&key),
            info.public_key_fingerprint,
            "step {crash_at}: key does not match"
        );
        let roots = device::keys::root_store(&ca.pem).expect("roots");
        device::keys::client_config(roots, &cert, &current.key_pem)
            .unwrap_or_else(|e| panic!("step {crash_at}: unusable for tls: {e}"));
        assert!(
            cert == old.cert || cert == new.cert,
            "step {crash_at}: unknown certificate"
        );
        // Whatever was interrupted, the new certificate is either current or
        // still waiting in next/ to be tried: never lost once written.
        if cert == old.cert
            && let Some(n) = &state.next
        {
            assert_eq!(n.cert_pem.as_deref(), Some(new.cert.as_str()));
        }
        outcomes.push(cert == new.cert);

        // And the rotation can be finished from there.
        let slots = Slots::open(dir.path()).expect("open");
        if slots.load().expect("load").next.is_some() {
            slots
                .promote()
                .unwrap_or_else(|e| panic!("step {crash_at}: {e}"));
        }
    }
    assert!(
        outcomes.contains(&true) && outcomes.contains(&false),
        "{outcomes:?}"
    );
}

#[test]
fn a_crash_while_storing_the_pending_key_keeps_current_and_drops_the_half_slot() {
    let ca = Ca::new("slots ca");
    let old = pair(&ca, KeyAlgorithm::EcP256);
    let new = pair(&ca, KeyAlgorithm::EcP256);
    let mut key_only = next_slot(&new);
    key_only.cert_pem = None;
    key_only.meta.certificate_id = None;
    for crash_at in 0..4 {
        let dir = tempfile::tempdir().expect("tempdir");
        Slots::open(dir.path())
            .expect("open")
            .install(&old.cert, &old.key, None)
            .expect("install");
        let slots = Slots::open(dir.path())
            .expect("open")
            .with_fault_hook(Arc::new({
                let n = AtomicUsize::new(0);
                move |_| n.fetch_add(1, Ordering::SeqCst) == crash_at
            }));
        assert!(slots.write_next(&key_only).is_err());
        let state = Slots::open(dir.path()).expect("open").load().expect("load");
        assert_eq!(
            state.current.and_then(|c| c.cert_pem),
            Some(old.cert.clone())
        );
        assert!(
            state.next.is_none(),
            "step {crash_at}: half-written next kept"
        );
        assert!(!dir.path().join("next.tmp").exists());
    }
}

#[test]
fn a_next_slot_whose_key_does_not_match_is_discarded() {
    let ca = Ca::new("slots ca");
    let old = pair(&ca, KeyAlgorithm::EcP256);
    let new = pair(&ca, KeyAlgorithm::EcP256);
    let dir = tempfile::tempdir().expect("tempdir");
    let slots = Slots::open(dir.path()).expect("open");
    slots.install(&old.cert, &old.key, None).expect("install");
    let mut wrong = next_slot(&new);
    wrong.key_pem = old.key.clone();
    slots.write_next(&wrong).expect("write");
    let state = slots.load().expect("load");
    assert!(state.next.is_none());
    assert!(!dir.path().join("next").exists());
    assert!(
        slots.install(&new.cert, &old.key, None).is_err(),
        "mismatched install accepted"
    );
}

#[cfg(unix)]
#[test]
fn private_keys_are_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let ca = Ca::new("slots ca");
    let old = pair(&ca, KeyAlgorithm::EcP256);
    let dir = tempfile::tempdir().expect("tempdir");
    Slots::open(dir.path())
        .expect("open")
        .install(&old.cert, &old.key, None)
        .expect("install");
    let mode = std::fs::metadata(dir.path().join("current/key.pem"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("current/meta.json")).expect("meta"))
            .expect("meta json");
    assert_eq!(
        meta["certificateId"],
        rules::csr::certificate_id(&old.cert).expect("id").as_str()
    );
}

/// Issue 15: a PUBACK of `crt_ack` is no proof of the commit, so the
/// promotion keeps the old pair; a crash at any step of a fall-back (swap)
/// or of the confirmation loses neither pair before it is meant to go.
#[test]
fn the_old_pair_is_kept_until_confirmed_and_a_crash_while_swapping_loses_neither() {
    let ca = Ca::new("slots ca");
    let old = pair(&ca, KeyAlgorithm::EcP256);
    let new = pair(&ca, KeyAlgorithm::EcP256);
    let promoted = |dir: &std::path::Path| {
        Slots::open(dir)
            .expect("open")
            .install(&old.cert, &old.key, None)
            .expect("install");
        let (_, result) = rotate(dir, &next_slot(&new), None);
        result.unwrap_or_else(|e| panic!("{e}"));
    };
    let held = |dir: &std::path::Path| {
        let state = Slots::open(dir).expect("open").load().expect("load");
        let cert = |s: Option<Slot>| s.and_then(|s| s.cert_pem);
        (cert(state.current), cert(state.old))
    };
    let dir = tempfile::tempdir().expect("tempdir");
    promoted(dir.path());
    assert_eq!(
        held(dir.path()),
        (Some(new.cert.clone()), Some(old.cert.clone())),
        "the old pair survives the promotion"
    );

    for (name, op, after) in [
        (
            "swap",
            (|s: &Slots| s.swap()) as fn(&Slots) -> Result<(), SlotError>,
            (Some(old.cert.clone()), Some(new.cert.clone())),
        ),
        (
            "confirm",
            |s: &Slots| s.confirm(),
            (Some(new.cert.clone()), None),
        ),
    ] {
        for crash_at in 0.. {
            let dir = tempfile::tempdir().expect("tempdir");
            promoted(dir.path());
            let count = Arc::new(AtomicUsize::new(0));
            let counter = count.clone();
            let slots = Slots::open(dir.path())
                .expect("open")
                .with_fault_hook(Arc::new(move |_| {
                    counter.fetch_add(1, Ordering::SeqCst) == crash_at
                }));
            match op(&slots) {
                Ok(()) => {
                    assert_eq!(held(dir.path()), after, "{name} finished");
                    break;
                }
                Err(SlotError::Crashed { .. }) => {}
                Err(e) => panic!("{name} step {crash_at}: {e}"),
            }
            let now = held(dir.path());
            let before = (Some(new.cert.clone()), Some(old.cert.clone()));
            assert!(
                now == before || now == after,
                "{name}, crash at step {crash_at}: {now:?}"
            );
            assert!(crash_at < 10, "{name} never finished");
        }
    }
}
