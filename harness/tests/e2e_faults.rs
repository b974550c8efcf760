//! A faulted fleet converges: the simulation with dropped and duplicated
//! messages, device crashes and registry faults, in its own test binary so
//! that it does not share the two cores with `e2e.rs`'s 100-device runs
//! (its rotation deadline is 8 s; under that load a rotation could expire
//! past the third audit cycle). Bounded in devices and seconds; 127.0.0.1 only.

use std::time::Duration;

use harness::simulate::Options;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulted_simulation_converges_with_its_invariants_intact() {
    let report = harness::simulate::simulate(&Options {
        devices: 50,
        jitr: 5,
        faults: true,
        seed: 7,
        timeout: Duration::from_secs(240),
        ..Options::default()
    })
    .await
    .expect("simulation runs");
    eprintln!("{}", report.render());
    assert_eq!(report.bricked, 0, "{report:?}");
    assert_eq!(report.orphaned_certificates, 0, "{report:?}");
    assert!(report.converged, "{report:?}");
    assert!(report.audit_cycles <= 3);
    assert_eq!(report.rotated, 50);
    assert_eq!(report.jitr_activated, 5);
    // the faults really happened
    assert!(
        report.messages_dropped + report.messages_duplicated > 0,
        "{report:?}"
    );
    assert!(report.device_restarts > 0, "{report:?}");
}
