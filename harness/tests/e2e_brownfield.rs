//! A brownfield fleet rotates to the end under faults: customer policies of
//! three shapes (one subscribing to `management/topic/<thing>/#`), thing
//! names that are not CNs, certificates shared by two things, JITR devices
//! from a customer CA; each device ends on a new certificate with exactly
//! the policies and things it started with (the simulation's invariants).
//! In its own test binary (its own process) for the same reason as
//! `e2e_faults.rs`. Bounded in devices and seconds; 127.0.0.1 only.

use std::time::Duration;

use harness::simulate::{BrownfieldMix, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brownfield_fleet_rotates_under_faults_keeping_its_policies_and_things() {
    let report = harness::simulate::simulate(&Options {
        devices: 60,
        brownfield: true,
        faults: true,
        seed: 11,
        timeout: Duration::from_secs(240),
        ..Options::default()
    })
    .await
    .expect("simulation runs");
    eprintln!("{}", report.render());
    assert_eq!(
        report.brownfield,
        Some(BrownfieldMix {
            customer_policies: 42,
            thing_not_cn: 36,
            shared_certificates: 12,
            wildcard_subscribers: 24,
        })
    );
    assert_eq!(report.bricked, 0, "{report:?}");
    assert_eq!(report.orphaned_certificates, 0, "{report:?}");
    assert!(report.converged, "{report:?}");
    assert_eq!(report.rotated, 60, "{report:?}");
    assert_eq!(report.jitr, 6);
    assert_eq!(report.jitr_activated, 6);
    assert!(
        report.messages_dropped + report.messages_duplicated > 0,
        "{report:?}"
    );
}
