//! `fleetcert synth` as a person runs it: a bad setting is one line naming
//! the field, exit code 1, nothing written.

use std::process::Command;

#[test]
fn a_bad_setting_is_one_error_line_naming_the_field_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("fleetcert.toml");
    std::fs::write(&config, "[rotation]\ndeadline_hours = 720\n").expect("config");
    let out = dir.path().join("cdk.out");
    let run = Command::new(env!("CARGO_BIN_EXE_fleetcert"))
        .args(["synth", "--threshold-days", "30", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        // A developer's shell often has this set: the error stays one line.
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("fleetcert runs");
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: invalid rotation.deadline_hours: 720 must be"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");
}
