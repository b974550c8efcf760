//! Firmware fleetcert did not write rotates against `fleetcert emulate`:
//! a device on AWS's IoT Device SDK for Python (`awsiotsdk`, installed by
//! `scripts/install-test-tools.sh` into `.tools/venv-iotsdk`) speaking only
//! the original protocol (`{"CSR"}` without a rotation id, `crt_ack` as
//! `{}`) and subscribing to `management/topic/<thing>/#`, which a customer
//! policy (`tests/policies/customer-wildcard.json`, given as
//! `--device-policy`) allows and fleetcert's own policy refuses.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use emulator::Cloud;
use harness::emulate::{EmulateOptions, serve, start};
use lambdas::ports::CertificateStatus;
use serde_json::Value;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn python() -> PathBuf {
    let p = workspace().join(".tools/venv-iotsdk/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/install-test-tools.sh`",
        p.display()
    );
    p
}

fn openssl(args: &[&str], paths: &[&Path]) {
    let out = Command::new("openssl")
        .args(args)
        .args(paths)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn wait_for(what: &str, bound: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One run of the SDK device against a fresh emulator.
struct Run {
    /// The device's step lines (`{"step": ...}`).
    steps: Vec<Value>,
    /// Whether it exited 0 (crt_ack published on the new certificate).
    ok: bool,
    stderr: String,
    old_id: String,
    cloud: Arc<Cloud>,
    _tmp: tempfile::TempDir,
}

impl Run {
    fn step(&self, name: &str) -> Option<&Value> {
        self.steps.iter().find(|s| s["step"] == name)
    }
}

/// Registers `thing` through the emulator's directory (openssl key and
/// CSR), starts the SDK device, runs an audit once it is connected, and
/// waits for the device to finish.
async fn rotate_with_the_sdk(policy: Option<PathBuf>, thing: &str) -> Run {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("emu");
    let opts = EmulateOptions {
        port: 0,
        api_port: 0,
        dir: dir.clone(),
        audit_every: None,
        threshold_days: 30,
        validity_days: 10,
        device_policy: policy,
    };
    let cloud = Arc::new(start(&opts).await.expect("emulator"));
    {
        let (cloud, opts) = (cloud.clone(), opts.clone());
        tokio::spawn(async move { serve(&cloud, &opts, std::future::pending()).await });
    }
    let key = tmp.path().join("old.key");
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
        ],
        &[&key],
    );
    let csr = dir.join(format!("csr/{thing}.csr"));
    openssl(
        &["req", "-new", "-subj", &format!("/CN={thing}"), "-key"],
        &[&key, Path::new("-out"), &csr],
    );
    let cert = dir.join(format!("certs/{thing}.pem"));
    wait_for("the certificate file", Duration::from_secs(20), || {
        cert.exists()
    })
    .await;
    let old_id =
        rules::csr::certificate_id(&std::fs::read_to_string(&cert).expect("pem")).expect("id");

    let work = tmp.path().join("device");
    std::fs::create_dir_all(&work).expect("workdir");
    let mut child = Command::new(python())
        .arg(workspace().join("harness/tests/py/original_device.py"))
        .arg(cloud.endpoint().port().to_string())
        .arg(dir.join("root-ca.pem"))
        .arg(&cert)
        .arg(&key)
        .arg(thing)
        .arg(&work)
        .arg("40")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python device");
    // The device says when its subscription is in place; audit then.
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let reader = std::thread::spawn(move || {
        let mut steps = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v.clone());
                steps.push(v);
            }
        }
        steps
    });
    let first = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
        .await
        .expect("join");
    if matches!(&first, Ok(v) if v["step"] == "subscribed") {
        std::fs::write(dir.join("audit-now"), "").expect("trigger");
    }
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                return (s.success(), child);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return (false, child);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("join");
    let (ok, mut child) = status;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let _ = child.wait();
    let steps = reader.join().expect("reader");
    Run {
        steps,
        ok,
        stderr,
        old_id,
        cloud,
        _tmp: tmp,
    }
}

fn customer_policy() -> PathBuf {
    workspace().join("harness/tests/policies/customer-wildcard.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_device_on_its_own_wildcard_policy_rotates() {
    let run = rotate_with_the_sdk(Some(customer_policy()), "sdk-1").await;
    assert!(
        run.ok,
        "the device did not finish: {:?}\n{}",
        run.steps, run.stderr
    );
    let new_id = run.step("crt_ack").expect("crt_ack")["certificateId"]
        .as_str()
        .expect("id")
        .to_owned();
    let registry = run.cloud.registry();
    wait_for(
        "the old certificate's deletion",
        Duration::from_secs(20),
        || registry.certificate(&run.old_id).is_none(),
    )
    .await;
    let now = registry.certificates_of_thing("sdk-1");
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0].certificate_id, new_id);
    assert_eq!(now[0].status, CertificateStatus::Active);
    assert!(
        now[0].policies.contains("customer-wildcard"),
        "the customer's policy is copied: {:?}",
        now[0].policies
    );
    let row = run
        .cloud
        .ports()
        .ports
        .store
        .row_for_thing("sdk-1")
        .expect("row");
    assert_eq!(row.state.name(), "COMMITTED");
}

/// The same firmware on fleetcert's own device policy: its `#`
/// subscription is refused, so it never hears `csr_req` (why a fleet with
/// such firmware needs its own policy, `fleetcert check-policy`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleetcerts_policy_refuses_the_wildcard_subscription() {
    let run = rotate_with_the_sdk(None, "sdk-2").await;
    assert!(!run.ok, "{:?}", run.steps);
    assert!(run.step("csr_req").is_none(), "{:?}", run.steps);
    let error = run.step("error").map(|e| e["reason"].to_string());
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("SubscribeError: management/topic/sdk-2/#")),
        "{:?}\n{}",
        run.steps,
        run.stderr
    );
    let registry = run.cloud.registry();
    let certs = registry.certificates_of_thing("sdk-2");
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].certificate_id, run.old_id, "nothing rotated");
}
