//! `infra/data/calls-per-rotation.json`: the calls one rotation makes, by
//! function and operation, on the default stack, as the planner counts
//! them running the real handlers (`planner::bound`). `infra` splits each
//! quota that several functions share by these counts and deploys the
//! shares as `FLEETCERT_QUOTA_<operation>`, so that the functions together
//! stay under the account's quota. This test fails when the file is stale;
//! `FLEETCERT_UPDATE_CALLS=1 cargo test -p planner --test
//! calls_per_rotation` rewrites it.

use std::path::PathBuf;

use planner::PlanOptions;

#[test]
fn the_committed_call_counts_are_what_one_rotation_makes() {
    let options = PlanOptions::new(1);
    let deployment = planner::deployment::Deployment::of(&options).expect("default stack");
    let bound = planner::bound::derive(&options, &deployment).expect("one rotation");
    let mut text = serde_json::to_string_pretty(&bound.calls_by_function).expect("json");
    text.push('\n');
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/data/calls-per-rotation.json");
    if std::env::var_os("FLEETCERT_UPDATE_CALLS").is_some() {
        std::fs::write(&path, &text).expect("write");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        committed,
        text,
        "{} is stale: run FLEETCERT_UPDATE_CALLS=1 cargo test -p planner --test calls_per_rotation",
        path.display()
    );
}
