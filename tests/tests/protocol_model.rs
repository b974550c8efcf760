//! Issue 15: the rotation protocol checked exhaustively with `stateright`
//! over every interleaving with up to three faults per rotation (see
//! `tests::model`): never bricked, nothing orphaned once settled, every
//! rotation ends. Bounded: about 6 s on two cores in a debug build; the
//! deeper run is `cargo run --release -p tests --example model_deep -- 6`
//! (BENCHMARKS.md).

use std::time::Instant;

use stateright::{Checker, Model};
use tests::model::ProtocolModel;

fn check(model: ProtocolModel, what: &str) {
    let started = Instant::now();
    let checker = model.checker().threads(2).spawn_bfs().join();
    eprintln!(
        "{what}: {} states ({} unique) in {:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        started.elapsed().as_secs_f64()
    );
    checker.assert_properties();
}

#[test]
fn the_agent_and_the_cloud_keep_the_invariants_with_three_faults() {
    check(
        ProtocolModel {
            max_faults: 3,
            seed_device: false,
        },
        "agent, 3 faults",
    );
}

#[test]
fn the_cloud_never_bricks_a_seed_device_with_three_faults() {
    check(
        ProtocolModel {
            max_faults: 3,
            seed_device: true,
        },
        "seed device, 3 faults",
    );
}
