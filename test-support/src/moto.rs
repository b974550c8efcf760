//! A local AWS API (moto) for the tests of the SDK adapters and of
//! `fleetcert ca`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto server on 127.0.0.1 (a free port), killed on drop. Needs
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
    /// Starts moto and waits (60 s at most) until it listens.
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
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }
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
