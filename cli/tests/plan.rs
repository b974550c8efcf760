//! `fleetcert plan` on the binary: a small fleet's JSON report, the SVG it
//! writes, and a quota that cannot work refused with its field named.

use std::process::Command;

fn fleetcert() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleetcert"))
}

#[test]
fn a_small_plan_prints_its_json_report_and_writes_the_timeline() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let svg = dir.path().join("plan.svg");
    let out = fleetcert()
        .args(["plan", "--devices", "40", "--quiet", "--json", "--svg"])
        .arg(&svg)
        .output()
        .expect("run fleetcert plan");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["devices"], 40);
    assert_eq!(report["rotated"], 40);
    assert_eq!(report["finished"], true);
    assert!(report["bound"]["binding"].is_string());
    let svg = std::fs::read_to_string(&svg).expect("the SVG");
    assert!(svg.starts_with("<svg") && svg.contains("committed (cumulative)"));
}

#[test]
fn a_quota_of_zero_is_refused_with_the_field_named() {
    let out = fleetcert()
        .args([
            "plan",
            "--devices",
            "10",
            "--quiet",
            "--quota",
            "DeleteCertificate=0",
        ])
        .output()
        .expect("run fleetcert plan");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--quota DeleteCertificate"), "{err}");
}
