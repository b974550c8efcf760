//! The faults `--faults` injects: lost and duplicated messages, commits that never land, registry throttling and errors, agent crashes.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use emulator::Cloud;
use emulator::cloud::PublishHook;
use lambdas::memory::{Fault, Published};
use lambdas::ports::Operation;

use super::rng::{Rng, fnv};

/// Counts of what the fault hooks did.
#[derive(Debug, Default)]
pub(super) struct FaultCounters {
    pub(super) dropped: AtomicU64,
    pub(super) duplicated: AtomicU64,
    pub(super) commits_lost: AtomicU64,
}

/// Drops and duplicates `csr_req` and `crt`; and, for one thing in eight
/// (its first `crt`), makes the commit of the ack that follows fail on the
/// invocation and every Lambda retry: "the commit of an acknowledged
/// rotation never lands" (the device's ack is PUBACKed all the same).
pub(super) fn publish_faults(
    seed: u64,
    counters: Arc<FaultCounters>,
    store: lambdas::memory::MemoryRotationStore,
    commit_attempts: usize,
) -> PublishHook {
    let rng = std::sync::Mutex::new(Rng::new(seed ^ 0x5eed));
    let lost = std::sync::Mutex::new(HashSet::new());
    Arc::new(move |m: Published| {
        if let Some(thing) = m
            .topic
            .strip_suffix("/crt")
            .and_then(|t| t.rsplit('/').next())
        {
            let first = lost
                .lock()
                .map(|mut l| l.insert(thing.to_owned()))
                .unwrap_or(false);
            let chosen = Rng::new(seed ^ fnv(thing)).next_u64().is_multiple_of(8);
            if first && chosen {
                counters.commits_lost.fetch_add(1, Ordering::Relaxed);
                store.fail_commits(thing, commit_attempts);
            }
        }
        let roll = rng.lock().map(|mut r| r.next_u64() % 100).unwrap_or(99);
        // only the device-facing protocol messages
        if !(m.topic.ends_with("/csr_req") || m.topic.ends_with("/crt")) {
            return vec![m];
        }
        match roll {
            0..=3 => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                vec![]
            }
            4..=7 => {
                counters.duplicated.fetch_add(1, Ordering::Relaxed);
                vec![m.clone(), m]
            }
            _ => vec![m],
        }
    })
}

pub(super) fn inject_registry_faults(cloud: &Cloud, n: usize, seed: u64) {
    let instruments = &cloud.ports().instruments;
    let mut rng = Rng::new(seed ^ 0xfa17);
    for op in [
        Operation::CreateCertificateFromCsr,
        Operation::AttachPolicy,
        Operation::AttachThingPrincipal,
        Operation::UpdateCertificate,
        Operation::DeleteCertificate,
        Operation::DescribeCertificate,
        Operation::UpdateRotation,
    ] {
        // about one call in twelve fails, over the first 2n calls
        let mut calls = 0;
        while calls < 2 * n {
            let skip = 4 + (rng.next_u64() % 16) as usize;
            let fault = if rng.chance(0.5) {
                Fault::Throttled
            } else {
                Fault::Transient
            };
            instruments.fail_after(op, skip, 1, fault);
            calls += skip + 1;
        }
    }
}

pub(super) fn crash_hooks(
    seed: u64,
) -> Arc<dyn Fn(usize) -> Option<device::FaultHook> + Send + Sync> {
    const POINTS: [&str; 4] = [
        "agent: csr key stored",
        "agent: next stored",
        "agent: ack sent",
        "agent: crt_err sent",
    ];
    Arc::new(move |i| {
        let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        // one device in ten crashes once, at one of the agent's points;
        // one in twenty loses the PUBACK of its crt_ack once (the broker
        // has the ack: the commit may land)
        let crash = rng.chance(0.1);
        let point = POINTS[(rng.next_u64() % 3) as usize];
        let puback = rng.chance(0.05);
        if !crash && !puback {
            return None;
        }
        let fired = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        Some(Arc::new(move |step: &str| {
            (crash && step == point && !fired.swap(true, Ordering::Relaxed))
                || (puback
                    && step == "agent: crt_ack puback lost"
                    && !lost.swap(true, Ordering::Relaxed))
        }) as device::FaultHook)
    })
}
