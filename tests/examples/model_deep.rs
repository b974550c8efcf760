//! The rotation protocol's model checked deeper than `cargo test` does:
//! `cargo run --release -p tests --example model_deep -- [max faults]`
//! (default 3), for the agent and for a seed device. Prints the state
//! counts and times that BENCHMARKS.md records.

use std::time::Instant;

use stateright::{Checker, Model};
use tests::model::ProtocolModel;

fn main() {
    let max_faults = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3u8);
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    for seed_device in [false, true] {
        let started = Instant::now();
        let checker = ProtocolModel {
            max_faults,
            seed_device,
        }
        .checker()
        .threads(threads)
        .spawn_bfs()
        .join();
        println!(
            "{} device, {max_faults} faults: {} states ({} unique), {:.1} s on {threads} threads",
            if seed_device { "seed" } else { "agent" },
            checker.state_count(),
            checker.unique_state_count(),
            started.elapsed().as_secs_f64()
        );
        checker.assert_properties();
    }
}
