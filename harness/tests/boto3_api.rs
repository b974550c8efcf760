//! boto3 (AWS's Python SDK, a client fleetcert did not write) drives the
//! emulator's AWS IoT API as `fleetcert emulate` serves it:
//! `harness/tests/py/boto3_lifecycle.py` registers a CA with a verification
//! certificate, activates it with auto-registration, connects a device it
//! signed over mutual TLS by JITR (first connection refused), creates,
//! attaches, pages and deletes certificates, things and policies, runs an
//! on-demand audit, publishes through iot-data, revokes the device, and
//! calls an operation the emulator does not serve. The cloud's registry is
//! then checked here: what boto3 changed is what the broker and the
//! handlers see.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use harness::emulate::{EmulateOptions, serve_api, start};
use lambdas::ports::CertificateStatus;
use serde_json::Value;

fn python() -> PathBuf {
    let p = test_support::workspace_root().join(".tools/venv-cfnlint/bin/python");
    assert!(
        p.exists(),
        "{} is missing (boto3 comes with moto there): run `bash scripts/install-infra-tools.sh`",
        p.display()
    );
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn boto3_drives_the_jitr_ca_lifecycle_through_the_api() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let opts = EmulateOptions {
        port: 0,
        api_port: 0,
        dir: tmp.path().join("emu"),
        audit_every: None,
        threshold_days: 30,
        validity_days: 365,
        device_policy: None,
    };
    let cloud = Arc::new(start(&opts).await.expect("emulator"));
    let api = serve_api(&cloud, &opts).await.expect("api");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let script = test_support::workspace_root().join("harness/tests/py/boto3_lifecycle.py");
    let out = {
        let mut cmd = Command::new(python());
        cmd.arg(script)
            .arg(api.endpoint_url())
            .arg(cloud.endpoint().port().to_string())
            .arg(opts.dir.join("root-ca.pem"))
            .arg(&work)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env("AWS_CONFIG_FILE", "/nonexistent/fleetcert-test")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/fleetcert-test");
        tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join")
            .expect("run python")
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "boto3 script failed\n{stdout}\n{stderr}"
    );
    let steps: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no {name} step in\n{stdout}"))
            .clone()
    };
    assert_eq!(steps.last().map(|s| s["step"].clone()), Some("done".into()));

    // What boto3 did is in the one registry.
    let registry = cloud.registry();
    let ca_id = step("ca")["caId"].as_str().unwrap().to_owned();
    let ca = registry
        .ca_certificate(&ca_id)
        .expect("the ca is registered");
    assert_eq!(ca.description.status, "INACTIVE");
    assert_eq!(ca.description.auto_registration_status, "DISABLE");
    let device_id = step("jitr")["certificateId"].as_str().unwrap().to_owned();
    let device = registry
        .certificate(&device_id)
        .expect("the device certificate");
    assert_eq!(device.status, CertificateStatus::Revoked);
    assert_eq!(device.ca_certificate_id.as_deref(), Some(ca_id.as_str()));
    assert!(device.things.contains("boto-thing-1"));
    assert!(registry.has_thing("paged-11"));
    assert!(
        !registry.has_thing("boto-thing-2"),
        "deleted through the api"
    );
    assert!(step("audit")["findings"].as_u64().unwrap() >= 1);
    // jitr-activator ran as its role allows: no call denied.
    assert!(cloud.lambda().access_log().denials().is_empty());
    assert!(cloud.emulator().stats().jitr_events >= 1);
}
