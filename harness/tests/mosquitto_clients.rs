//! One rotation by hand against the emulator with clients fleetcert did
//! not write: Debian's `mosquitto_sub`/`mosquitto_pub` (installed by
//! `scripts/install-test-tools.sh`) and keys and CSRs made by `openssl`.
//! The device is registered the way `fleetcert emulate` documents it (a
//! CSR dropped into its directory) and the audit is triggered the same way.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::emulate::{EmulateOptions, serve, start};
use lambdas::ports::CertificateStatus;
use serde_json::{Value, json};

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: run `bash scripts/install-test-tools.sh`");
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A child process killed when dropped.
struct Guard(Option<Child>);

impl Guard {
    fn wait(mut self, bound: Duration) -> Output {
        let mut child = self.0.take().expect("child");
        let deadline = Instant::now() + bound;
        while child.try_wait().expect("try_wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("output")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Device<'a> {
    dir: &'a Path,
    port: u16,
    thing: &'a str,
}

impl Device<'_> {
    fn tls(&self, cmd: &mut Command, cert: &Path, key: &Path) {
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--cafile"])
            .arg(self.dir.join("root-ca.pem"))
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(["-i", self.thing, "-q", "1"]);
    }

    /// `mosquitto_sub -c` (persistent session) for one message on the
    /// device's two inbound topics.
    fn subscribe_one(&self, cert: &Path, key: &Path, wait_s: u32) -> Guard {
        let mut cmd = Command::new(tool("mosquitto_sub"));
        self.tls(&mut cmd, cert, key);
        cmd.args(["-c", "-C", "1", "-W", &wait_s.to_string()])
            .arg("-t")
            .arg(format!("management/topic/{}/csr_req", self.thing))
            .arg("-t")
            .arg(format!("management/topic/{}/crt", self.thing))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Guard(Some(cmd.spawn().expect("mosquitto_sub")))
    }

    fn publish(&self, cert: &Path, key: &Path, kind: &str, body: &Value, persistent: bool) {
        let mut cmd = Command::new(tool("mosquitto_pub"));
        self.tls(&mut cmd, cert, key);
        if persistent {
            cmd.arg("-c");
        }
        // QoS 0: mosquitto_pub is gone before the rule answers, so the reply
        // waits in the persistent session for mosquitto_sub instead of being
        // delivered to (and acknowledged by) mosquitto_pub's own connection.
        cmd.args(["-q", "0"])
            .arg("-t")
            .arg(format!("management/topic/{}/{kind}", self.thing))
            .arg("-m")
            .arg(body.to_string());
        run(&mut cmd);
    }
}

fn openssl_key_and_csr(dir: &Path, name: &str, cn: &str, csr_out: &Path) -> PathBuf {
    let key = dir.join(format!("{name}.key"));
    run(Command::new(tool("openssl"))
        .args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
        ])
        .arg(&key));
    run(Command::new(tool("openssl"))
        .args(["req", "-new", "-key"])
        .arg(&key)
        .args(["-subj", &format!("/CN={cn}"), "-out"])
        .arg(csr_out));
    key
}

async fn wait_for(what: &str, bound: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rotation_by_hand_with_mosquitto_clients_and_openssl() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("emu");
    let opts = EmulateOptions {
        port: 0,
        api_port: 0,
        dir: dir.clone(),
        audit_every: None,
        threshold_days: 30,
        validity_days: 10,
        device_policy: None,
    };
    let cloud = start(&opts).await.expect("emulator");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let opts = opts.clone();
        let cloud = std::sync::Arc::new(cloud);
        let c = cloud.clone();
        (
            tokio::spawn(async move {
                serve(&c, &opts, async {
                    let _ = stop_rx.await;
                })
                .await
            }),
            cloud,
        )
    };
    let cloud = server.1.clone();
    let thing = "hand-1";
    let device = Device {
        dir: &dir,
        port: cloud.endpoint().port(),
        thing,
    };

    // register: a CSR made by openssl dropped into the directory
    let old_key = openssl_key_and_csr(tmp.path(), "old", thing, &dir.join("csr/hand-1.csr"));
    let old_cert = dir.join("certs/hand-1.pem");
    wait_for("the certificate file", Duration::from_secs(20), || {
        old_cert.exists()
    })
    .await;
    let old_id =
        rules::csr::certificate_id(&std::fs::read_to_string(&old_cert).expect("pem")).expect("id");

    // subscribe (persistent session), then trigger the audit
    let sub = device.subscribe_one(&old_cert, &old_key, 30);
    wait_for("the subscriber", Duration::from_secs(20), || {
        cloud.emulator().connected_clients() == 1
    })
    .await;
    std::fs::write(dir.join("audit-now"), "").expect("trigger");
    let out = tokio::task::spawn_blocking(move || sub.wait(Duration::from_secs(40)))
        .await
        .expect("join");
    let csr_req: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "csr_req not received ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let rotation_id = csr_req["rotationId"]
        .as_str()
        .expect("rotationId")
        .to_owned();

    // answer with a new openssl key's CSR; the crt waits in the persistent
    // session (a duplicate csr_res re-sends it, should it go to mosquitto_pub)
    let new_csr = tmp.path().join("new.csr");
    let new_key = openssl_key_and_csr(tmp.path(), "new", thing, &new_csr);
    let csr_res = json!({
        "CSR": std::fs::read_to_string(&new_csr).expect("csr"),
        "rotationId": rotation_id,
    });
    let mut crt = None;
    for _ in 0..3 {
        device.publish(&old_cert, &old_key, "csr_res", &csr_res, true);
        let sub = device.subscribe_one(&old_cert, &old_key, 5);
        let out = tokio::task::spawn_blocking(move || sub.wait(Duration::from_secs(10)))
            .await
            .expect("join");
        if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
            crt = Some(v);
            break;
        }
    }
    let crt = crt.expect("crt received");
    assert_eq!(crt["rotationId"], rotation_id.as_str());
    let new_id = crt["certificateId"].as_str().expect("id").to_owned();
    let new_cert = tmp.path().join("new.pem");
    std::fs::write(&new_cert, crt["certificatePem"].as_str().expect("pem")).expect("write");

    // ack on a connection made with the new certificate
    device.publish(
        &new_cert,
        &new_key,
        "crt_ack",
        &json!({"rotationId": rotation_id, "certificateId": new_id}),
        false,
    );
    let registry = cloud.registry();
    wait_for(
        "the old certificate's deletion",
        Duration::from_secs(20),
        || registry.certificate(&old_id).is_none(),
    )
    .await;
    let now = registry.certificates_of_thing(thing);
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].certificate_id, new_id);
    assert_eq!(now[0].status, CertificateStatus::Active);
    let row = cloud
        .ports()
        .ports
        .store
        .row(&rotation_id)
        .expect("rotation row");
    assert_eq!(row.state.name(), "COMMITTED");

    let _ = stop_tx.send(());
    server.0.await.expect("join").expect("serve");
}
