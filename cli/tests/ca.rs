//! `fleetcert ca` end to end: the real binary against a local AWS API (moto
//! on 127.0.0.1), results read back with the AWS SDK, certificates checked
//! with openssl; and the failure paths against a scripted HTTP listener
//! (HTTP 500/429, a closed port) and bad local files.
//!
//! What moto cannot show, and where it is covered instead:
//! - ListCACertificates (`ca list`) is not implemented: the aws-smithy-mocks
//!   tests in `cli/src/ca/aws.rs` and `ca_list_through_the_binary` below.
//! - `pageSize`/`marker` are ignored (one page): the mocks and
//!   `certificates_follow_every_page` / the revoke tests below.
//! - UpdateCACertificate's `newAutoRegistrationStatus` and RegisterCACertificate's
//!   `allowAutoRegistration` are accepted but not stored:
//!   `auto_registration_and_status_requests` and
//!   `register_sends_the_ca_and_a_verification_certificate_for_the_code` check
//!   the requests the binary sends.
//! - moto does not check the verification certificate, nor device chains:
//!   openssl does, here.
//!
//! With feature `local`, `full_jitr_ca_lifecycle_against_the_emulator` runs
//! the lifecycle against `fleetcert emulate`'s AWS IoT API, which stores
//! auto-registration, checks the verification certificate and runs a
//! broker: the devices `issue-device` made connect by JITR over mutual TLS
//! (Debian's `mosquitto_sub`), and revoked ones are refused.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_iot::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_iot::types::{CaCertificateStatus, CertificateStatus};

const REGION: &str = "us-east-1";

// ---------------------------------------------------------------- helpers --

use test_support::{IsolatedAws, Moto, free_port};

/// Runs the real `fleetcert` with dummy credentials, isolated from the
/// user's AWS configuration, against `endpoint`.
fn fleetcert(endpoint: &str, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetcert"))
        .arg("ca")
        .args(args)
        .args(["--endpoint-url", endpoint, "--region", REGION])
        .isolated_aws()
        .stdin(Stdio::null())
        .output()
        .expect("run fleetcert");
    eprintln!(
        "$ fleetcert ca {}\n-> {:?}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn sdk(endpoint: &str) -> aws_sdk_iot::Client {
    let config = aws_sdk_iot::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    aws_sdk_iot::Client::from_conf(config)
}

/// `fleetcert ca create` into `dir` with file stem `name`; returns (cert, key).
fn create_ca(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let out = fleetcert(
        "http://127.0.0.1:9",
        &[
            "create",
            "--out-dir",
            p(dir),
            "--name",
            name,
            "--common-name",
            cn,
        ],
    );
    ok(&out);
    (
        dir.join(format!("{name}.crt.pem")),
        dir.join(format!("{name}.key.pem")),
    )
}

// ------------------------------------------------------ the moto flow ----

#[tokio::test(flavor = "multi_thread")]
async fn full_jitr_ca_lifecycle_against_moto() {
    let moto = Moto::start();
    let url = moto.endpoint.as_str();
    let iot = sdk(url);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // create: a self-signed CA, key 0600, subject as asked.
    let (ca_crt, ca_key) = create_ca(d, "root", "Fleet Test Root");
    assert_eq!(mode(&ca_key), 0o600);
    let subject = openssl(&["x509", "-noout", "-subject", "-in", p(&ca_crt)]);
    assert!(subject.contains("CN = Fleet Test Root"), "{subject}");
    let text = openssl(&["x509", "-noout", "-text", "-in", p(&ca_crt)]);
    assert!(text.contains("CA:TRUE"), "{text}");
    openssl(&["verify", "-CAfile", p(&ca_crt), p(&ca_crt)]);
    // An intermediate signed by it.
    let inter = fleetcert(
        url,
        &[
            "create",
            "--out-dir",
            p(d),
            "--name",
            "inter",
            "--common-name",
            "Fleet Inter",
            "--issuer-cert",
            p(&ca_crt),
            "--issuer-key",
            p(&ca_key),
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&inter)).unwrap();
    assert_eq!(v["intermediate"], true);
    assert_eq!(v["subject"], "CN=Fleet Inter");
    assert_eq!(v["issuer"], "CN=Fleet Test Root");
    openssl(&["verify", "-CAfile", p(&ca_crt), p(&d.join("inter.crt.pem"))]);
    // Never overwrites a CA key silently.
    let again = fleetcert(url, &["create", "--out-dir", p(d), "--name", "root"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("exists; pass --force"),
        "{}",
        stderr(&again)
    );

    // register: INACTIVE, auto-registration off; the verification certificate
    // has the registration code as its CN and is signed by the CA. (moto makes
    // up a new registration code on every call, so the code is compared with
    // the one the command reports having used.)
    let verification = d.join("verification.pem");
    let reg = fleetcert(
        url,
        &[
            "register",
            "--ca-cert",
            p(&ca_crt),
            "--ca-key",
            p(&ca_key),
            "--verification-cert-out",
            p(&verification),
            "--json",
        ],
    );
    let reg: serde_json::Value = serde_json::from_str(&ok(&reg)).unwrap();
    let ca_id = reg["certificateId"].as_str().unwrap().to_owned();
    assert_eq!(ca_id.len(), 64, "a certificate id: {ca_id}");
    openssl(&["verify", "-CAfile", p(&ca_crt), p(&verification)]);
    let vsubject = openssl(&[
        "x509",
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
        "-in",
        p(&verification),
    ]);
    let code = reg["registrationCode"].as_str().unwrap();
    assert_eq!(code.len(), 36, "moto's code is a UUID: {code}");
    assert_eq!(vsubject.trim(), format!("subject=CN={code}"));
    let describe = |iot: aws_sdk_iot::Client, id: String| async move {
        iot.describe_ca_certificate()
            .certificate_id(id)
            .send()
            .await
            .unwrap()
            .certificate_description
            .unwrap()
    };
    let desc = describe(iot.clone(), ca_id.clone()).await;
    assert_eq!(desc.status, Some(CaCertificateStatus::Inactive));
    assert_eq!(
        desc.certificate_pem.as_deref().map(str::trim),
        Some(std::fs::read_to_string(&ca_crt).unwrap().trim())
    );

    // activate, auto-registration on.
    ok(&fleetcert(url, &["activate", &ca_id]));
    assert_eq!(
        describe(iot.clone(), ca_id.clone()).await.status,
        Some(CaCertificateStatus::Active)
    );
    // moto accepts but does not store newAutoRegistrationStatus: the request
    // itself is checked in `auto_registration_and_status_requests`.
    ok(&fleetcert(url, &["auto-registration", "on", &ca_id]));
    // describe, as JSON.
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&fleetcert(url, &["describe", &ca_id, "--json"]))).unwrap();
    assert_eq!(shown["certificateId"], ca_id.as_str());
    assert_eq!(shown["status"], "ACTIVE");
    let text = ok(&fleetcert(url, &["describe", &ca_id]));
    assert!(text.contains("status:            ACTIVE"), "{text}");

    // issue-device: three devices, each verified by openssl against the CA,
    // registered with the CA as JITR would (RegisterCertificate).
    let devices = d.join("devices");
    let mut device_ids = Vec::new();
    for n in 1..=3 {
        let name = format!("thing-{n}");
        ok(&fleetcert(
            url,
            &[
                "issue-device",
                "--ca-cert",
                p(&ca_crt),
                "--ca-key",
                p(&ca_key),
                "--name",
                &name,
                "--out-dir",
                p(&devices),
            ],
        ));
        let crt = devices.join(format!("{name}.crt.pem"));
        let chain = devices.join(format!("{name}.chain.pem"));
        let key = devices.join(format!("{name}.key.pem"));
        assert_eq!(mode(&key), 0o600);
        assert_eq!(
            openssl(&["verify", "-CAfile", p(&ca_crt), p(&crt)]).trim(),
            format!("{}: OK", crt.display())
        );
        let subj = openssl(&[
            "x509",
            "-noout",
            "-subject",
            "-nameopt",
            "RFC2253",
            "-in",
            p(&crt),
        ]);
        assert_eq!(subj.trim(), format!("subject=CN={name}"));
        // The chain is the device certificate then the CA.
        let chain_text = std::fs::read_to_string(&chain).unwrap();
        let crt_text = std::fs::read_to_string(&crt).unwrap();
        let ca_text = std::fs::read_to_string(&ca_crt).unwrap();
        assert_eq!(chain_text.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(chain_text.starts_with(&crt_text));
        assert!(chain_text.ends_with(ca_text.trim_start()));
        // The key is the certificate's.
        let pub_of_key = openssl(&["pkey", "-in", p(&key), "-pubout"]);
        let pub_of_crt = openssl(&["x509", "-in", p(&crt), "-noout", "-pubkey"]);
        assert_eq!(pub_of_key, pub_of_crt);
        let registered = iot
            .register_certificate()
            .certificate_pem(crt_text)
            .ca_certificate_pem(ca_text)
            .status(CertificateStatus::Active)
            .send()
            .await
            .unwrap();
        device_ids.push(registered.certificate_id.unwrap());
    }

    // certificates: every device certificate registered under the CA.
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&fleetcert(url, &["certificates", &ca_id, "--json"]))).unwrap();
    let mut listed_ids: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["certificateId"].as_str().unwrap().to_owned())
        .collect();
    listed_ids.sort();
    let mut expected = device_ids.clone();
    expected.sort();
    assert_eq!(listed_ids, expected);
    let table = ok(&fleetcert(url, &["certificates", &ca_id]));
    assert!(table.starts_with("CERTIFICATE ID"), "{table}");
    assert_eq!(table.lines().count(), 4);

    // revoke one by id.
    let one = ok(&fleetcert(url, &["revoke", &device_ids[0], "--yes"]));
    assert_eq!(one.trim(), format!("revoked {}", device_ids[0]));
    let status = |iot: aws_sdk_iot::Client, id: String| async move {
        iot.describe_certificate()
            .certificate_id(id)
            .send()
            .await
            .unwrap()
            .certificate_description
            .unwrap()
            .status
            .unwrap()
    };
    assert_eq!(
        status(iot.clone(), device_ids[0].clone()).await,
        CertificateStatus::Revoked
    );
    assert_eq!(
        status(iot.clone(), device_ids[1].clone()).await,
        CertificateStatus::Active
    );

    // revoke the rest from the CA; the one already revoked is skipped.
    let all = fleetcert(url, &["revoke", "--all-from", &ca_id, "--yes", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&ok(&all)).unwrap();
    let mut revoked: Vec<String> = report["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    revoked.sort();
    let mut rest = device_ids[1..].to_vec();
    rest.sort();
    assert_eq!(revoked, rest);
    assert_eq!(report["failed"], serde_json::json!([]));
    assert_eq!(report["caDeactivated"], false);
    assert!(
        stderr(&all).contains("1 certificate(s) registered under CA"),
        "{}",
        stderr(&all)
    );
    for id in &device_ids {
        assert_eq!(
            status(iot.clone(), id.clone()).await,
            CertificateStatus::Revoked
        );
    }

    // auto-registration off, deactivate.
    ok(&fleetcert(url, &["auto-registration", "off", &ca_id]));
    ok(&fleetcert(url, &["deactivate", &ca_id]));
    let desc = describe(iot.clone(), ca_id.clone()).await;
    assert_eq!(desc.status, Some(CaCertificateStatus::Inactive));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_ids_against_moto_fail_clearly_and_the_others_are_still_revoked() {
    let moto = Moto::start();
    let url = moto.endpoint.as_str();
    let iot = sdk(url);
    let dir = tempfile::tempdir().unwrap();
    let (ca_crt, ca_key) = create_ca(dir.path(), "ca", "Unknown Ids CA");
    let ca_id = ok(&fleetcert(
        url,
        &[
            "register",
            "--ca-cert",
            p(&ca_crt),
            "--ca-key",
            p(&ca_key),
            "--activate",
        ],
    ))
    .trim()
    .to_owned();
    ok(&fleetcert(
        url,
        &[
            "issue-device",
            "--ca-cert",
            p(&ca_crt),
            "--ca-key",
            p(&ca_key),
            "--name",
            "d1",
            "--out-dir",
            p(dir.path()),
        ],
    ));
    let known = iot
        .register_certificate()
        .certificate_pem(std::fs::read_to_string(dir.path().join("d1.crt.pem")).unwrap())
        .ca_certificate_pem(std::fs::read_to_string(&ca_crt).unwrap())
        .status(CertificateStatus::Active)
        .send()
        .await
        .unwrap()
        .certificate_id
        .unwrap();
    let unknown = "0".repeat(64);

    // Only unknown ids: failure (1), naming the id and AWS's error.
    let out = fleetcert(url, &["revoke", &unknown, "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "failed  {unknown}: UpdateCertificate failed: AWS returned ResourceNotFoundException"
        )),
        "{text}"
    );
    assert!(
        stderr(&out).contains("revoked 0 of 1; 1 failed"),
        "{}",
        stderr(&out)
    );

    // Unknown and known: partial (3); the known one is revoked.
    let out = fleetcert(url, &["revoke", &unknown, &known, "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["revoked"], serde_json::json!([known]));
    assert_eq!(report["failed"][0]["certificateId"], unknown.as_str());
    let st = iot
        .describe_certificate()
        .certificate_id(&known)
        .send()
        .await
        .unwrap();
    assert_eq!(
        st.certificate_description.unwrap().status,
        Some(CertificateStatus::Revoked)
    );

    // An unknown CA id.
    let out = fleetcert(url, &["describe", &unknown]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("DescribeCACertificate failed: AWS returned ResourceNotFoundException"),
        "{}",
        stderr(&out)
    );
    let out = fleetcert(url, &["activate", &unknown]);
    assert_eq!(out.status.code(), Some(1));
    // The real CA is untouched.
    let desc = iot
        .describe_ca_certificate()
        .certificate_id(&ca_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        desc.certificate_description.unwrap().status,
        Some(CaCertificateStatus::Active)
    );
}

// ------------------------------------------- a scripted AWS endpoint ----

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    body: String,
}

type Handler = dyn Fn(&Request, usize) -> (u16, String) + Send + Sync;

/// An HTTP/1.1 listener on 127.0.0.1 answering each request with what the
/// handler returns (status, JSON body); records every request. Stops on drop.
struct FakeAws {
    url: String,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeAws {
    fn start(handler: impl Fn(&Request, usize) -> (u16, String) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &log2, &*handler),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            url,
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for FakeAws {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves one request and closes the connection (so that one thread serves
/// every client in turn).
fn serve(stream: TcpStream, log: &Mutex<Vec<Request>>, handler: &Handler) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut len = 0usize;
    for _ in 0..100 {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        if h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let req = Request {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let n = {
        let mut log = log.lock().unwrap();
        log.push(req.clone());
        log.len()
    };
    let (status, body) = handler(&req, n);
    let reason = match status {
        200 => "OK",
        429 => "Too Many Requests",
        _ => "Error",
    };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = writer.write_all(resp.as_bytes());
    let _ = writer.flush();
}

fn aws_error(kind: &str, message: &str) -> String {
    serde_json::json!({ "__type": kind, "message": message }).to_string()
}

#[test]
fn http_500_is_retried_then_reported_with_awss_code_and_message() {
    let fake = FakeAws::start(|_, _| {
        (
            500,
            aws_error("InternalFailureException", "the service broke"),
        )
    });
    let out = fleetcert(&fake.url, &["describe", "abc", "--max-attempts", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "error: DescribeCACertificate failed: AWS returned InternalFailureException: the service broke"
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2, "one retry: {reqs:?}");
    assert!(
        reqs.iter()
            .all(|r| r.method == "GET" && r.path == "/cacertificate/abc")
    );
}

#[test]
fn a_gateway_error_without_an_aws_body_names_the_http_status() {
    let fake = FakeAws::start(|_, _| (502, "<html>bad gateway</html>".into()));
    let out = fleetcert(&fake.url, &["deactivate", "abc", "--max-attempts", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "error: UpdateCACertificate failed: AWS returned HTTP 502: (no message)"
    );
}

#[test]
fn throttling_is_retried_then_reported() {
    let fake = FakeAws::start(|_, _| (429, aws_error("ThrottlingException", "Rate exceeded")));
    let out = fleetcert(&fake.url, &["activate", "abc", "--max-attempts", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "UpdateCACertificate failed: AWS returned ThrottlingException: Rate exceeded"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(fake.requests().len(), 3);
}

#[test]
fn a_closed_port_is_reported_as_unreachable() {
    let port = free_port(); // bound then released: nothing listens there
    let url = format!("http://127.0.0.1:{port}");
    let out = fleetcert(&url, &["certificates", "abc", "--max-attempts", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "ListCertificatesByCA failed: cannot reach the AWS IoT endpoint {url}"
        )),
        "{}",
        stderr(&out)
    );
}

fn certs_page(ids: &[&str], next: Option<&str>) -> String {
    let certs: Vec<_> = ids
        .iter()
        .map(|id| {
            serde_json::json!({
                "certificateId": id,
                "certificateArn": format!("arn:aws:iot:us-east-1:123456789012:cert/{id}"),
                "status": if *id == "old" { "REVOKED" } else { "ACTIVE" },
                "certificateMode": "DEFAULT",
                "creationDate": 1.8e9,
            })
        })
        .collect();
    serde_json::json!({ "certificates": certs, "nextMarker": next }).to_string()
}

/// Two pages of certificates under `ca1`; `c1` revokes, later ones fail with 500.
fn failing_revocations(req: &Request, _: usize) -> (u16, String) {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", p) if p.starts_with("/certificates-by-ca/ca1") && p.contains("marker=page2") => {
            (200, certs_page(&["c3", "old"], None))
        }
        ("GET", p) if p.starts_with("/certificates-by-ca/ca1") => {
            (200, certs_page(&["c1", "c2"], Some("page2")))
        }
        ("PUT", p) if p.starts_with("/cacertificate/ca1?newStatus=INACTIVE") => (200, "{}".into()),
        ("PUT", p) if p.starts_with("/certificates/c1?newStatus=REVOKED") => (200, "{}".into()),
        ("PUT", p) if p.starts_with("/certificates/") => {
            (500, aws_error("InternalFailureException", "backend down"))
        }
        _ => (404, aws_error("ResourceNotFoundException", "no such route")),
    }
}

#[test]
fn revoke_all_from_reports_what_was_revoked_before_a_service_failure() {
    let fake = FakeAws::start(failing_revocations);
    let out = fleetcert(
        &fake.url,
        &[
            "revoke",
            "--all-from",
            "ca1",
            "--yes",
            "--deactivate-ca",
            "--rate",
            "1",
            "--max-attempts",
            "1",
            "--page-size",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "partial failure");
    let text = stdout(&out);
    assert_eq!(
        text,
        "revoked c1\nfailed  c2: UpdateCertificate failed: AWS returned InternalFailureException: backend down\nnot sent c3\n"
    );
    let err = stderr(&out);
    assert!(
        err.contains("1 certificate(s) registered under CA ca1 are already REVOKED"),
        "{err}"
    );
    assert!(err.contains("CA ca1 is INACTIVE"), "{err}");
    assert!(
        err.contains("revoked 1 of 3; 1 failed; 1 not sent"),
        "{err}"
    );
    assert!(err.contains("stopped after a service failure"), "{err}");
    // Both pages were read (with the page size), the CA was deactivated
    // before any revocation, c3 was never sent.
    let reqs: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        reqs,
        [
            "GET /certificates-by-ca/ca1?pageSize=2",
            "GET /certificates-by-ca/ca1?pageSize=2&marker=page2",
            "PUT /cacertificate/ca1?newStatus=INACTIVE",
            "PUT /certificates/c1?newStatus=REVOKED",
            "PUT /certificates/c2?newStatus=REVOKED",
        ]
    );
}

#[test]
fn revoke_all_from_as_json_lists_every_id_by_outcome() {
    let fake = FakeAws::start(failing_revocations);
    let out = fleetcert(
        &fake.url,
        &[
            "revoke",
            "--all-from",
            "ca1",
            "--yes",
            "--rate",
            "1",
            "--max-attempts",
            "1",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["revoked"], serde_json::json!(["c1"]));
    assert_eq!(report["failed"][0]["certificateId"], "c2");
    assert_eq!(report["notAttempted"], serde_json::json!(["c3"]));
    assert_eq!(report["caCertificateId"], "ca1");
    assert_eq!(report["caDeactivated"], false);
    assert!(stderr(&out).contains("stays as it is"), "{}", stderr(&out));
}

#[test]
fn revoke_without_yes_and_without_a_terminal_revokes_nothing() {
    let fake = FakeAws::start(failing_revocations);
    let out = fleetcert(&fake.url, &["revoke", "--all-from", "ca1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pass --yes (nothing was revoked)"),
        "{}",
        stderr(&out)
    );
    assert!(fake.requests().iter().all(|r| r.method == "GET"));
}

/// Runs `fleetcert ca <args>` on a pseudo-terminal (util-linux `script`)
/// typing `input`; returns the exit code and everything the terminal showed.
fn fleetcert_on_a_terminal(endpoint: &str, args: &[&str], input: &str) -> (Option<i32>, String) {
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let mut cmd = vec![quote(env!("CARGO_BIN_EXE_fleetcert")), "ca".into()];
    cmd.extend(args.iter().map(|a| quote(a)));
    cmd.extend(["--endpoint-url", endpoint, "--region", REGION].map(quote));
    let mut child = Command::new("script")
        .args(["-qec", &cmd.join(" "), "/dev/null"])
        .isolated_aws()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` (Debian package bsdutils) runs the CLI on a terminal");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "$ fleetcert ca {} <<< {input:?}\n-> {:?}\n{shown}",
        args.join(" "),
        out.status.code()
    );
    (out.status.code(), shown)
}

fn all_revocations_succeed(req: &Request, _: usize) -> (u16, String) {
    match req.method.as_str() {
        "GET" => (200, certs_page(&["c1", "c2"], None)),
        _ => (200, "{}".into()),
    }
}

#[test]
fn on_a_terminal_revoke_asks_first_and_offers_to_deactivate_the_ca() {
    let fake = FakeAws::start(all_revocations_succeed);
    let (code, shown) =
        fleetcert_on_a_terminal(&fake.url, &["revoke", "--all-from", "ca1"], "y\ny\n");
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("revoke 2 certificate(s) registered under CA ca1? [y/N]"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "deactivate CA ca1 first, so that no new device registers with it meanwhile? [Y/n]"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("revoked c1") && shown.contains("revoked c2"),
        "{shown}"
    );
    let reqs: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        reqs[..2],
        [
            "GET /certificates-by-ca/ca1",
            "PUT /cacertificate/ca1?newStatus=INACTIVE"
        ]
    );
    assert_eq!(reqs.len(), 4);
}

#[test]
fn on_a_terminal_answering_no_revokes_nothing() {
    let fake = FakeAws::start(all_revocations_succeed);
    let (code, shown) = fleetcert_on_a_terminal(&fake.url, &["revoke", "c1", "c2"], "n\n");
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("revoke 2 certificate(s) given? [y/N]"),
        "{shown}"
    );
    assert!(shown.contains("nothing was revoked"), "{shown}");
    assert!(fake.requests().is_empty());
}

#[test]
fn certificates_follow_every_page() {
    let fake = FakeAws::start(failing_revocations);
    let out = fleetcert(
        &fake.url,
        &["certificates", "ca1", "--page-size", "2", "--json"],
    );
    let listed: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["certificateId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c1", "c2", "c3", "old"]);
    assert_eq!(listed[3]["status"], "REVOKED");
    assert_eq!(fake.requests().len(), 2);
}

#[test]
fn ca_list_through_the_binary() {
    // moto has no ListCACertificates: the scripted endpoint answers it.
    let fake = FakeAws::start(|req, _| {
        let page = |ids: &[&str], next: Option<&str>| {
            let cas: Vec<_> = ids
                .iter()
                .map(|id| serde_json::json!({"certificateId": id, "status": "ACTIVE", "creationDate": 1.8e9}))
                .collect();
            serde_json::json!({"certificates": cas, "nextMarker": next}).to_string()
        };
        if req.path.contains("marker=m") {
            (200, page(&["ca3"], None))
        } else {
            (200, page(&["ca1", "ca2"], Some("m")))
        }
    });
    let text = ok(&fleetcert(&fake.url, &["list"]));
    assert_eq!(
        text,
        "CA CERTIFICATE ID  STATUS  CREATED\n\
         ca1                ACTIVE  2027-01-15T08:00:00Z\n\
         ca2                ACTIVE  2027-01-15T08:00:00Z\n\
         ca3                ACTIVE  2027-01-15T08:00:00Z\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&fleetcert(&fake.url, &["list", "--json"]))).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.path.starts_with("/cacertificates"))
    );
}

#[test]
fn auto_registration_and_status_requests() {
    let fake = FakeAws::start(|_, _| (200, "{}".into()));
    ok(&fleetcert(&fake.url, &["auto-registration", "on", "ca1"]));
    ok(&fleetcert(&fake.url, &["auto-registration", "off", "ca1"]));
    ok(&fleetcert(&fake.url, &["activate", "ca1"]));
    ok(&fleetcert(&fake.url, &["deactivate", "ca1"]));
    let reqs: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        reqs,
        [
            "PUT /cacertificate/ca1?newAutoRegistrationStatus=ENABLE",
            "PUT /cacertificate/ca1?newAutoRegistrationStatus=DISABLE",
            "PUT /cacertificate/ca1?newStatus=ACTIVE",
            "PUT /cacertificate/ca1?newStatus=INACTIVE",
        ]
    );
}

#[test]
fn register_sends_the_ca_and_a_verification_certificate_for_the_code() {
    let fake = FakeAws::start(|req, _| {
        match req.method.as_str() {
        "GET" => (200, r#"{"registrationCode":"a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"}"#.into()),
        _ => (200, r#"{"certificateId":"ca-id-1","certificateArn":"arn:aws:iot:us-east-1:123456789012:cacert/ca-id-1"}"#.into()),
    }
    });
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = create_ca(dir.path(), "ca", "Registered CA");
    let out = fleetcert(
        &fake.url,
        &[
            "register",
            "--ca-cert",
            p(&crt),
            "--ca-key",
            p(&key),
            "--activate",
            "--auto-registration",
        ],
    );
    assert_eq!(ok(&out), "ca-id-1\n");
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/registrationcode");
    assert_eq!(reqs[1].method, "POST");
    assert_eq!(
        reqs[1].path,
        "/cacertificate?setAsActive=true&allowAutoRegistration=true"
    );
    let body: serde_json::Value = serde_json::from_str(&reqs[1].body).unwrap();
    assert_eq!(
        body["caCertificate"].as_str().unwrap().trim(),
        std::fs::read_to_string(&crt).unwrap().trim()
    );
    let sent = dir.path().join("sent-verification.pem");
    std::fs::write(&sent, body["verificationCertificate"].as_str().unwrap()).unwrap();
    openssl(&["verify", "-CAfile", p(&crt), p(&sent)]);
    assert_eq!(
        openssl(&[
            "x509",
            "-noout",
            "-subject",
            "-nameopt",
            "RFC2253",
            "-in",
            p(&sent)
        ])
        .trim(),
        "subject=CN=a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
    );
}

// ------------------------------------------------------ bad local input ----

#[test]
fn a_wrong_ca_key_is_refused_before_any_call() {
    let fake = FakeAws::start(|_, _| (200, "{}".into()));
    let dir = tempfile::tempdir().unwrap();
    let (a_crt, _) = create_ca(dir.path(), "a", "CA A");
    let (_, b_key) = create_ca(dir.path(), "b", "CA B");
    let out = fleetcert(
        &fake.url,
        &["register", "--ca-cert", p(&a_crt), "--ca-key", p(&b_key)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "error: the key {} does not belong to the certificate {}: their public keys differ",
            b_key.display(),
            a_crt.display()
        )
    );
    let out = fleetcert(
        &fake.url,
        &[
            "issue-device",
            "--ca-cert",
            p(&a_crt),
            "--ca-key",
            p(&b_key),
            "--name",
            "d",
            "--out-dir",
            p(&dir.path().join("out")),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not belong to the certificate"));
    assert!(!dir.path().join("out").exists(), "nothing written");
    assert!(fake.requests().is_empty(), "no AWS call was made");
}

#[test]
fn an_unreadable_pem_is_refused_naming_the_file() {
    let fake = FakeAws::start(|_, _| (200, "{}".into()));
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = create_ca(dir.path(), "ca", "CA");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = fleetcert(
        &fake.url,
        &["register", "--ca-cert", p(&garbage), "--ca-key", p(&key)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(&format!(
            "error: {} is not a PEM X.509 certificate",
            garbage.display()
        )),
        "{}",
        stderr(&out)
    );
    // The key given as the certificate, the certificate as the key.
    let out = fleetcert(
        &fake.url,
        &["register", "--ca-cert", p(&key), "--ca-key", p(&key)],
    );
    assert!(
        stderr(&out).contains("no `BEGIN CERTIFICATE` block"),
        "{}",
        stderr(&out)
    );
    let out = fleetcert(
        &fake.url,
        &["register", "--ca-cert", p(&crt), "--ca-key", p(&crt)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("{} is not a PEM private key", crt.display())));
    // A missing file.
    let missing = dir.path().join("missing.pem");
    let out = fleetcert(
        &fake.url,
        &["register", "--ca-cert", p(&missing), "--ca-key", p(&key)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!(
        "cannot read the CA certificate {}",
        missing.display()
    )));
    assert!(fake.requests().is_empty());
}

#[test]
fn an_expired_ca_registers_nothing_and_signs_nothing() {
    let fake = FakeAws::start(|_, _| (200, "{}".into()));
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let (crt, key_path) = (
        dir.path().join("old.crt.pem"),
        dir.path().join("old.key.pem"),
    );
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let out = fleetcert(
        &fake.url,
        &["register", "--ca-cert", p(&crt), "--ca-key", p(&key_path)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "error: CA certificate {} expired on 2021-01-01T00:00:00Z",
            crt.display()
        )
    );
    let out_dir = dir.path().join("devices");
    let out = fleetcert(
        &fake.url,
        &[
            "issue-device",
            "--ca-cert",
            p(&crt),
            "--ca-key",
            p(&key_path),
            "--name",
            "d",
            "--out-dir",
            p(&out_dir),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("expired on 2021-01-01"));
    assert!(!out_dir.exists());
    assert!(fake.requests().is_empty());
}

// ------------------------------------------------- fleetcert adopt ----

/// `fleetcert adopt` on an account fleetcert did not provision: a
/// certificate ready to rotate, one whose policy denies `crt_ack`, one with
/// no thing, one shared by two things (ready: it rotates once); with an
/// allow-list, a policy outside it blocks; read-only (nothing in the
/// account changes).
#[tokio::test(flavor = "multi_thread")]
async fn adopt_says_which_certificates_would_rotate_and_what_blocks_the_others() {
    let moto = Moto::start();
    let iot = sdk(&moto.endpoint);
    let allow_all = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#;
    let no_ack = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"},{"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:us-east-1:123456789012:topic/management/topic/*/crt_ack"}]}"#;
    for (name, doc) in [("Fleet", allow_all), ("FleetNoAck", no_ack)] {
        iot.create_policy()
            .policy_name(name)
            .policy_document(doc)
            .send()
            .await
            .expect("policy");
    }
    let mut ids = std::collections::BTreeMap::new();
    for (label, policy, things) in [
        ("ready", "Fleet", vec!["pump-1"]),
        ("no-ack", "FleetNoAck", vec!["pump-2"]),
        ("no-thing", "Fleet", vec![]),
        ("two-things", "Fleet", vec!["pump-3", "pump-4"]),
    ] {
        let cert = iot
            .create_keys_and_certificate()
            .set_as_active(true)
            .send()
            .await
            .expect("certificate");
        let arn = cert.certificate_arn().expect("arn").to_owned();
        iot.attach_policy()
            .policy_name(policy)
            .target(&arn)
            .send()
            .await
            .expect("attach policy");
        for thing in things {
            iot.create_thing()
                .thing_name(thing)
                .send()
                .await
                .expect("thing");
            iot.attach_thing_principal()
                .thing_name(thing)
                .principal(&arn)
                .send()
                .await
                .expect("attach thing");
        }
        ids.insert(label, cert.certificate_id().expect("id").to_owned());
    }
    let adopt = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_fleetcert"))
            .args([
                "adopt",
                "--json",
                "--endpoint-url",
                &moto.endpoint,
                "--region",
                REGION,
            ])
            .args(extra)
            .isolated_aws()
            .stdin(Stdio::null())
            .output()
            .expect("run fleetcert adopt");
        let report: Vec<serde_json::Value> = serde_json::from_str(&ok(&out)).expect("json");
        report
    };
    let report = adopt(&[]);
    assert_eq!(report.len(), 4, "{report:#?}");
    let entry = |report: &[serde_json::Value], label: &str| -> serde_json::Value {
        report
            .iter()
            .find(|c| c["certificateId"] == ids[label].as_str())
            .unwrap_or_else(|| panic!("{label} missing"))
            .clone()
    };
    let blockers = |report: &[serde_json::Value], label: &str| -> Vec<String> {
        entry(report, label)["blockers"]
            .as_array()
            .expect("blockers")
            .iter()
            .map(|b| b.as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert!(
        blockers(&report, "ready").is_empty(),
        "{:?}",
        blockers(&report, "ready")
    );
    assert_eq!(
        entry(&report, "ready")["newPolicies"],
        serde_json::json!(["Fleet"])
    );
    assert_eq!(
        blockers(&report, "no-ack"),
        ["its policies block: publish crt_ack"]
    );
    assert!(blockers(&report, "no-thing")[0].starts_with("no thing is attached"));
    let shared = entry(&report, "two-things");
    assert!(blockers(&report, "two-things").is_empty(), "{shared:?}");
    assert_eq!(shared["rotationThing"], "pump-3");
    // an allow-list that leaves FleetNoAck out blocks that certificate by name
    let listed = adopt(&["--copy-policies", "Fleet"]);
    assert_eq!(
        blockers(&listed, "no-ack")[0],
        "the old certificate carries a policy outside the allow-list (Fleet): FleetNoAck"
    );
    assert!(blockers(&listed, "ready").is_empty());
    // read-only: every certificate is still ACTIVE with its attachments
    for id in ids.values() {
        let d = iot
            .describe_certificate()
            .certificate_id(id)
            .send()
            .await
            .expect("describe");
        assert_eq!(
            d.certificate_description().and_then(|c| c.status()),
            Some(&CertificateStatus::Active)
        );
    }
}

// ------------------------------------------------- the emulator flow ----

/// `fleetcert emulate` on free ports, killed on drop.
#[cfg(feature = "local")]
struct Emulate {
    child: std::process::Child,
    /// The MQTT endpoint's port.
    mqtt_port: u16,
    /// The API's `--endpoint-url`.
    api: String,
    dir: PathBuf,
}

#[cfg(feature = "local")]
impl Emulate {
    fn start(dir: &Path) -> Emulate {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fleetcert"))
            .args(["emulate", "--port", "0", "--api-port", "0", "--dir", p(dir)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fleetcert emulate");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // reads the instructions, then keeps draining stdout
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let (mut mqtt_port, mut api) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while mqtt_port.is_none() || api.is_none() {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("fleetcert emulate prints its endpoints within 60 s");
            if let Some(addr) = line.split("MQTT 3.1.1 over mutual TLS on ").nth(1) {
                mqtt_port = addr.trim().rsplit(':').next().and_then(|p| p.parse().ok());
            }
            if let Some(rest) = line.strip_prefix("AWS IoT API:") {
                api = rest.split_whitespace().next().map(str::to_owned);
            }
        }
        Emulate {
            child,
            mqtt_port: mqtt_port.unwrap(),
            api: api.unwrap(),
            dir: dir.to_owned(),
        }
    }

    /// Whether `mosquitto_sub` (Debian's, an MQTT client fleetcert did not
    /// write) connects over mutual TLS as `thing` with `cert` (the chain
    /// the device presents) and `key` on its first attempt: CONNACK 0 to
    /// its first CONNECT (mosquitto_sub reconnects by itself after a
    /// dropped connection; a second CONNECT means the first was refused).
    fn connects(&self, thing: &str, cert: &Path, key: &Path) -> bool {
        let out = Command::new("mosquitto_sub")
            .args(["-h", "localhost", "-p", &self.mqtt_port.to_string()])
            .args(["--cafile", p(&self.dir.join("root-ca.pem"))])
            .args(["--cert", p(cert), "--key", p(key), "-i", thing])
            .args(["-t", &format!("management/topic/{thing}/crt"), "-q", "1"])
            .args(["-W", "2", "-d"])
            .stdin(Stdio::null())
            .output()
            .expect("mosquitto_sub is installed: run `bash scripts/install-test-tools.sh`");
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!(
            "mosquitto_sub as {thing}: {}",
            text.lines().take(4).collect::<Vec<_>>().join(" | ")
        );
        text.find("received CONNACK (0)")
            .is_some_and(|at| text[..at].matches("sending CONNECT").count() == 1)
    }
}

#[cfg(feature = "local")]
impl Drop for Emulate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The whole JITR CA lifecycle with `fleetcert ca` against `fleetcert
/// emulate`'s AWS IoT API, where (unlike moto) a broker runs: devices the
/// CA signed connect over mutual TLS by JITR, the first connection refused
/// as AWS does, and a revoked device is refused.
#[cfg(feature = "local")]
#[tokio::test(flavor = "multi_thread")]
async fn full_jitr_ca_lifecycle_against_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let emu = Emulate::start(&d.join("emulator"));
    let url = emu.api.as_str();
    let iot = sdk(url);

    // create, register (INACTIVE, auto-registration off): the emulator
    // checks the verification certificate against its registration code.
    let (ca_crt, ca_key) = create_ca(d, "root", "Emulated Fleet Root");
    let verification = d.join("verification.pem");
    let reg = fleetcert(
        url,
        &[
            "register",
            "--ca-cert",
            p(&ca_crt),
            "--ca-key",
            p(&ca_key),
            "--verification-cert-out",
            p(&verification),
            "--json",
        ],
    );
    let reg: serde_json::Value = serde_json::from_str(&ok(&reg)).unwrap();
    let ca_id = reg["certificateId"].as_str().unwrap().to_owned();
    let code = iot
        .get_registration_code()
        .send()
        .await
        .unwrap()
        .registration_code
        .unwrap();
    assert_eq!(reg["registrationCode"], code.as_str());
    let described = |iot: aws_sdk_iot::Client, id: String| async move {
        iot.describe_ca_certificate()
            .certificate_id(id)
            .send()
            .await
            .unwrap()
            .certificate_description
            .unwrap()
    };
    let desc = described(iot.clone(), ca_id.clone()).await;
    assert_eq!(desc.status, Some(CaCertificateStatus::Inactive));
    assert_eq!(
        desc.auto_registration_status,
        Some(aws_sdk_iot::types::AutoRegistrationStatus::Disable)
    );
    // Registering it again is AWS's conflict, reported with its code.
    let again = fleetcert(
        url,
        &["register", "--ca-cert", p(&ca_crt), "--ca-key", p(&ca_key)],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("ResourceAlreadyExistsException"),
        "{}",
        stderr(&again)
    );

    // A device signed by the CA cannot come in while auto-registration is off.
    let devices = d.join("devices");
    for n in 1..=3 {
        ok(&fleetcert(
            url,
            &[
                "issue-device",
                "--ca-cert",
                p(&ca_crt),
                "--ca-key",
                p(&ca_key),
                "--name",
                &format!("thing-{n}"),
                "--out-dir",
                p(&devices),
            ],
        ));
    }
    let chain = |n: u32| devices.join(format!("thing-{n}.chain.pem"));
    let key = |n: u32| devices.join(format!("thing-{n}.key.pem"));
    assert!(!emu.connects("thing-1", &chain(1), &key(1)));

    // activate, auto-registration on; list shows it.
    ok(&fleetcert(url, &["activate", &ca_id]));
    ok(&fleetcert(url, &["auto-registration", "on", &ca_id]));
    let desc = described(iot.clone(), ca_id.clone()).await;
    assert_eq!(desc.status, Some(CaCertificateStatus::Active));
    assert_eq!(
        desc.auto_registration_status,
        Some(aws_sdk_iot::types::AutoRegistrationStatus::Enable)
    );
    let listed = ok(&fleetcert(url, &["list"]));
    assert!(listed.contains(&ca_id), "{listed}");

    // JITR over mutual TLS: the first connection is refused (the
    // certificate is registered PENDING_ACTIVATION and the registration
    // event goes to jitr-activator), then the device connects.
    let mut device_ids = Vec::new();
    for n in 1..=2 {
        let thing = format!("thing-{n}");
        assert!(
            !emu.connects(&thing, &chain(n), &key(n)),
            "the first connection of {thing} is refused"
        );
        let mut connected = false;
        for _ in 0..20 {
            if emu.connects(&thing, &chain(n), &key(n)) {
                connected = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            connected,
            "{thing} connects once jitr-activator activated it"
        );
        let certs: serde_json::Value =
            serde_json::from_str(&ok(&fleetcert(url, &["certificates", &ca_id, "--json"])))
                .unwrap();
        let crt_text = std::fs::read_to_string(devices.join(format!("{thing}.crt.pem"))).unwrap();
        let mut this = None;
        for c in certs.as_array().unwrap() {
            let id = c["certificateId"].as_str().unwrap().to_owned();
            let desc = iot
                .describe_certificate()
                .certificate_id(&id)
                .send()
                .await
                .unwrap()
                .certificate_description
                .unwrap();
            // the same certificate, whatever the PEM's line breaks
            let flat = |pem: &str| pem.split_whitespace().collect::<String>();
            if desc.certificate_pem.as_deref().map(flat) == Some(flat(&crt_text)) {
                assert_eq!(desc.status, Some(CertificateStatus::Active));
                assert_eq!(desc.ca_certificate_id.as_deref(), Some(ca_id.as_str()));
                this = Some(id);
            }
        }
        device_ids.push(this.unwrap_or_else(|| panic!("{thing} is registered under the CA")));
        // jitr-activator created its thing and attached it.
        let principals = iot
            .list_thing_principals()
            .thing_name(&thing)
            .send()
            .await
            .unwrap()
            .principals
            .unwrap_or_default();
        assert_eq!(principals.len(), 1, "{principals:?}");
    }
    // certificates: the two that came in, nothing for the third.
    let table = ok(&fleetcert(url, &["certificates", &ca_id]));
    assert!(table.starts_with("CERTIFICATE ID"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");

    // revoke one by id: refused from then on; the other still connects.
    let one = ok(&fleetcert(url, &["revoke", &device_ids[0], "--yes"]));
    assert_eq!(one.trim(), format!("revoked {}", device_ids[0]));
    assert!(
        !emu.connects("thing-1", &chain(1), &key(1)),
        "revoked, refused"
    );
    assert!(emu.connects("thing-2", &chain(2), &key(2)));

    // revoke the rest from the CA, auto-registration off, deactivate.
    let all = fleetcert(url, &["revoke", "--all-from", &ca_id, "--yes", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&ok(&all)).unwrap();
    assert_eq!(report["revoked"], serde_json::json!([device_ids[1]]));
    assert!(
        !emu.connects("thing-2", &chain(2), &key(2)),
        "revoked, refused"
    );
    ok(&fleetcert(url, &["auto-registration", "off", &ca_id]));
    ok(&fleetcert(url, &["deactivate", &ca_id]));
    let desc = described(iot.clone(), ca_id.clone()).await;
    assert_eq!(desc.status, Some(CaCertificateStatus::Inactive));
    // a device of the deactivated CA no longer registers
    assert!(!emu.connects("thing-3", &chain(3), &key(3)));
    let table = ok(&fleetcert(url, &["certificates", &ca_id]));
    assert_eq!(
        table.lines().count(),
        3,
        "thing-3 was not registered: {table}"
    );

    // An SDK call the emulator does not implement: AWS's error, named.
    let err = iot.list_topic_rules().send().await.unwrap_err();
    let err = aws_sdk_iot::error::ProvideErrorMetadata::code(&err)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{err:?}"));
    assert_eq!(err, "UnknownOperationException");
}
