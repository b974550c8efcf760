//! The device agents in a child process (`fleetcert simulate-agents`), so that the broker's and the agents' sockets do not share one process's limits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use device::AgentEvent;
use emulator::Cloud;
use tokio::sync::mpsc;

use super::faults::crash_hooks;
use super::fleet::{AgentSettings, Fleet, FleetDevice, FleetEvent};
use super::options::Options;
use device::Subscription;

/// The device agents of a simulation in a child process, reporting their
/// events on its stdout, one line each.
pub(super) struct AgentChild {
    pub(super) child: std::process::Child,
    pub(super) restarts: Arc<AtomicU64>,
}

impl AgentChild {
    pub(super) fn spawn(
        program: &Path,
        args: &[String],
        fleet: &Fleet,
        cloud: &Cloud,
        opts: &Options,
        tx: mpsc::UnboundedSender<FleetEvent>,
    ) -> anyhow::Result<AgentChild> {
        use std::io::BufRead;
        let base = fleet
            .devices
            .first()
            .and_then(|d| d.dir.parent())
            .context("no devices")?
            .to_path_buf();
        let ca = base.join("server-root-ca.pem");
        std::fs::write(&ca, cloud.root_ca_pem())?;
        let things = base.join("things.txt");
        // one line per device: thing, CSR CN (`-`: the thing), `exact` or `wildcard`
        let lines: Vec<String> = fleet
            .devices
            .iter()
            .map(|d| {
                format!(
                    "{}\t{}\t{}",
                    d.thing,
                    d.common_name.as_deref().unwrap_or("-"),
                    match d.subscription {
                        Subscription::Exact => "exact",
                        Subscription::Wildcard => "wildcard",
                    }
                )
            })
            .collect();
        std::fs::write(&things, lines.join("\n"))?;
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .arg(cloud.endpoint().to_string())
            .arg(&ca)
            .arg(&base)
            .arg(&things)
            .arg(if opts.faults { "faults" } else { "no-faults" })
            .arg(opts.seed.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let restarts = Arc::new(AtomicU64::new(0));
        let r = restarts.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let mut f = line.split(' ');
                let (Some(kind), Some(i)) = (f.next(), f.next().and_then(|v| v.parse().ok()))
                else {
                    continue;
                };
                let arg = f.next().unwrap_or_default().to_owned();
                let event = match kind {
                    "connected" => AgentEvent::Connected {
                        certificate_id: arg,
                        attempts: 1,
                    },
                    "rotated" => AgentEvent::Rotated {
                        rotation_id: None,
                        certificate_id: String::new(),
                        latency: arg
                            .parse::<f64>()
                            .ok()
                            .map(|ms| Duration::from_secs_f64(ms / 1000.0)),
                    },
                    "rolledback" => AgentEvent::RolledBack {
                        rotation_id: None,
                        reason: arg,
                    },
                    "restarts" => {
                        r.store(i as u64, Ordering::Relaxed);
                        continue;
                    }
                    _ => continue,
                };
                if tx.send(FleetEvent { device: i, event }).is_err() {
                    return;
                }
            }
        });
        Ok(AgentChild { child, restarts })
    }

    pub(super) fn peak_memory_bytes(&self) -> u64 {
        super::system::peak_memory_of(&self.child.id().to_string())
    }

    /// Closes the child's stdin (it disconnects its agents and exits);
    /// kills it after `within`.
    pub(super) fn stop(mut self, within: Duration) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The child half of [`AgentHost::Child`](super::AgentHost::Child): `args` are the broker
/// endpoint, the server root CA file, the slots' base directory, the file
/// of devices (thing, CSR CN, subscription per line), `faults`/`no-faults` and the seed. Runs the agents until
/// stdin closes, printing one line per event on stdout.
///
/// # Errors
/// For bad arguments or unreadable files.
pub async fn agents_child_main(args: &[String]) -> anyhow::Result<()> {
    use std::io::Write;
    let [endpoint, ca, base, things, faults, seed] = args else {
        bail!(
            "expected: <endpoint> <server-ca-file> <base-dir> <things-file> <faults|no-faults> <seed>"
        );
    };
    let endpoint: std::net::SocketAddr = endpoint.parse().context("endpoint")?;
    let ca = std::fs::read_to_string(ca).context("server ca file")?;
    let base = PathBuf::from(base);
    let seed: u64 = seed.parse().context("seed")?;
    let devices: Vec<FleetDevice> = std::fs::read_to_string(things)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut fields = line.split('\t');
            let thing = fields.next().unwrap_or_default().to_owned();
            let mut d = FleetDevice::new(thing.clone(), String::new(), false);
            d.dir = base.join(&thing);
            d.common_name = fields.next().filter(|cn| *cn != "-").map(str::to_owned);
            if fields.next() == Some("wildcard") {
                d.subscription = Subscription::Wildcard;
            }
            d
        })
        .collect();
    let mut fleet = Fleet::existing(devices);
    let mut settings = AgentSettings::default();
    if faults == "faults" {
        settings.crash = Some(crash_hooks(seed));
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    fleet.start_at(endpoint, &ca, &settings, tx)?;
    let (eof_tx, mut eof_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = eof_tx.send(());
    });
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut last_restarts = 0;
    loop {
        let ev = tokio::select! {
            _ = &mut eof_rx => break,
            ev = rx.recv() => ev,
            () = tokio::time::sleep(Duration::from_millis(50)) => None,
        };
        if let Some(ev) = ev {
            let line = match &ev.event {
                AgentEvent::Connected { certificate_id, .. } => {
                    Some(format!("connected {} {certificate_id}", ev.device))
                }
                AgentEvent::Rotated { latency, .. } => Some(format!(
                    "rotated {} {}",
                    ev.device,
                    latency.map_or(-1.0, |l| l.as_secs_f64() * 1000.0)
                )),
                AgentEvent::RolledBack { .. } => Some(format!("rolledback {} -", ev.device)),
                _ => None,
            };
            if let Some(line) = line {
                writeln!(out, "{line}")?;
            }
            // flush when the burst is over
            if !rx.is_empty() {
                continue;
            }
        }
        let restarts = fleet.restarts();
        if restarts != last_restarts {
            writeln!(out, "restarts {restarts}")?;
            last_restarts = restarts;
        }
        out.flush()?;
    }
    fleet.stop(Duration::from_secs(10)).await;
    Ok(())
}
