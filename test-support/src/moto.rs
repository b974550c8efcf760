//! A local AWS API (moto) for the tests of the SDK adapters and of
//! `fleetcert ca`.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A moto server on 127.0.0.1 (a port the OS picks), killed on drop. Needs
/// `.tools/venv-cfnlint/bin/moto_server` in the workspace root (`bash
/// scripts/install-infra-tools.sh`).
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL` or the SDK's
    /// `endpoint_url`.
    pub endpoint: String,
}

impl Moto {
    /// Starts moto on a port the OS picks (`-p 0`) and waits (60 s at most)
    /// until it prints the address it listens on. The OS choosing the port
    /// means two tests never race for one: a port chosen here, released and
    /// then handed to moto could be taken by another test's server in
    /// between, and this test would talk to that one until it exits.
    ///
    /// # Panics
    /// When moto_server is not installed, does not start or does not listen.
    pub fn start() -> Self {
        let bin = workspace_root().join(".tools/venv-cfnlint/bin/moto_server");
        assert!(
            bin.exists(),
            "{} is missing: run `bash scripts/install-infra-tools.sh` in the workspace root",
            bin.display()
        );
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        // Reads moto's log to its end (so the pipe never fills), sending
        // the port of its "Running on http://127.0.0.1:PORT" line.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = listening_port(&line) {
                    let _ = tx.send(port);
                }
            }
        });
        let Ok(port) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let status = child.wait();
            panic!("moto_server did not say where it listens within 60 s ({status:?})");
        };
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

/// The port of werkzeug's start-up line ` * Running on http://127.0.0.1:PORT`.
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("Running on http://127.0.0.1:").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|p| *p != 0)
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bound, then released).
///
/// # Panics
/// When no port can be bound.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The workspace root (this crate's parent folder).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support is a workspace member")
        .to_path_buf()
}

/// Isolates an AWS client child process (the `fleetcert` binary) from the
/// user's AWS configuration: dummy credentials, no profile, no config or
/// credentials file, no instance metadata, no endpoint or session token
/// from the environment. The test passes `--endpoint-url` itself.
pub trait IsolatedAws {
    /// Sets the environment described above.
    fn isolated_aws(&mut self) -> &mut Self;
}

impl IsolatedAws for std::process::Command {
    fn isolated_aws(&mut self) -> &mut Self {
        self.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/fleetcert-test")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/fleetcert-test")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_SESSION_TOKEN")
    }
}

#[cfg(test)]
mod tests {
    use super::listening_port;

    #[test]
    fn the_port_is_read_from_werkzeugs_start_up_line() {
        assert_eq!(
            listening_port(" * Running on http://127.0.0.1:34413"),
            Some(34413)
        );
        assert_eq!(
            listening_port("\u{1b}[33m * Running on http://127.0.0.1:5000\u{1b}[0m"),
            Some(5000)
        );
        assert_eq!(listening_port(" * Running on http://127.0.0.1:0"), None);
        assert_eq!(listening_port("Press CTRL+C to quit"), None);
    }
}
