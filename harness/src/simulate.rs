//! `fleetcert simulate`: a fleet of device agents against the in-process
//! cloud ([`emulator::Cloud`]), the emulated audit, the rotations to the
//! end, and a report whose invariants (nothing bricked, nothing orphaned,
//! converged) decide the exit status.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use device::{Agent, AgentConfig, AgentError, AgentEvent, Backoff, Slots};
use emulator::cloud::PublishHook;
use emulator::{Cloud, CloudConfig, Deployment};
use indicatif::{ProgressBar, ProgressStyle};
use lambdas::memory::{Fault, Published};
use lambdas::ports::{CertificateStatus, Operation};
use rcgen::{CertificateParams, DnType, KeyPair};
use rules::contracts::ClientId;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

/// [`Options::max_open_rotations`] by default: enough to keep two cores
/// busy, few enough that no device waits for its turn longer than its
/// timeouts.
pub const DEFAULT_MAX_OPEN_ROTATIONS: usize = 256;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Devices provisioned with certificates by the cloud.
    pub devices: usize,
    /// Share of those whose certificate expires within the audit threshold.
    pub expiring_share: f64,
    /// Further devices that come in by JITR (certificates of a customer CA).
    pub jitr: usize,
    /// Inject faults: dropped and duplicated messages, device crashes,
    /// registry throttling and errors, and commits of acknowledged
    /// rotations that never land (every attempt of the commit fails).
    pub faults: bool,
    /// Seed of the fault choices.
    pub seed: u64,
    /// The audit threshold in days (the synthesized default is 30).
    pub threshold_days: u32,
    /// Audit cycles allowed to converge.
    pub max_audit_cycles: u32,
    /// Bound on the whole run.
    pub timeout: Duration,
    /// Where the device slots live (default: a temporary directory under
    /// /dev/shm when it exists).
    pub state_dir: Option<PathBuf>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Where the device agents run.
    pub agent_host: AgentHost,
    /// Rotations open at once at most (the rest wait in the queue), as a
    /// deployment's rotation-starter concurrency paces them; `None`: no
    /// bound.
    pub max_open_rotations: Option<usize>,
}

/// Where a simulation's device agents run.
#[derive(Debug, Clone, Default)]
pub enum AgentHost {
    /// In this process (two sockets per device here).
    #[default]
    InProcess,
    /// In a child process, `program` with `args` then the arguments of
    /// [`agents_child_main`], so that the broker's and the agents' sockets
    /// are counted against two open-file limits.
    Child {
        /// The program (`fleetcert`).
        program: PathBuf,
        /// Its arguments before the child's own (`simulate-agents`).
        args: Vec<String>,
    },
}

impl Default for Options {
    fn default() -> Self {
        Options {
            devices: 100,
            expiring_share: 1.0,
            jitr: 0,
            faults: false,
            seed: 1,
            threshold_days: 30,
            max_audit_cycles: 3,
            timeout: Duration::from_secs(600),
            state_dir: None,
            progress: false,
            agent_host: AgentHost::InProcess,
            max_open_rotations: Some(DEFAULT_MAX_OPEN_ROTATIONS),
        }
    }
}

/// The simulation's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Devices provisioned by the cloud.
    pub devices: usize,
    /// Of those, with an expiring certificate.
    pub expiring: usize,
    /// Devices that came in by JITR (asked).
    pub jitr: usize,
    /// JITR devices whose certificate became ACTIVE and connected.
    pub jitr_activated: usize,
    /// Expiring devices now on a new certificate.
    pub rotated: usize,
    /// Expiring devices still on their old certificate at the end.
    pub failed: usize,
    /// Devices whose current certificate is not ACTIVE, attached to their
    /// thing and the device policy (must be 0).
    pub bricked: usize,
    /// Certificates ACTIVE or attached that no device holds (must be 0).
    pub orphaned_certificates: usize,
    /// Whether no certificate expiring within the threshold is left.
    pub converged: bool,
    /// Audit cycles run.
    pub audit_cycles: u32,
    /// Rotations completed (events, duplicates after restarts included).
    pub rotation_events: usize,
    /// Rollbacks reported by devices.
    pub rollbacks: usize,
    /// Device agents restarted after a (simulated) crash.
    pub device_restarts: u64,
    /// Cloud messages dropped by fault injection.
    pub messages_dropped: u64,
    /// Cloud messages duplicated by fault injection.
    pub messages_duplicated: u64,
    /// Rotations whose commit was made to fail on the invocation and every
    /// retry by fault injection (the ack delivered, the commit never landed).
    pub commits_lost: u64,
    /// Support notifications sent.
    pub notifications: usize,
    /// Seconds from the first audit to the last rotation.
    pub rotation_seconds: f64,
    /// Rotated devices per second over that time.
    pub rotations_per_second: f64,
    /// Median rotation latency (csr_req to crt_ack), ms.
    pub latency_p50_ms: f64,
    /// 99th percentile rotation latency, ms.
    pub latency_p99_ms: f64,
    /// Seconds to provision and connect the fleet.
    pub setup_seconds: f64,
    /// Peak resident memory of the process (VmHWM), bytes.
    pub peak_memory_bytes: u64,
    /// The machine's bound, when measured: rotations per second the
    /// cryptography of one rotation allows on every core.
    pub crypto_bound_per_second: Option<f64>,
    /// `rotations_per_second` / `crypto_bound_per_second`.
    pub ratio_to_crypto_bound: Option<f64>,
}

impl Report {
    /// Whether the invariants hold: nothing bricked, nothing orphaned,
    /// converged.
    pub fn ok(&self) -> bool {
        self.bricked == 0 && self.orphaned_certificates == 0 && self.converged
    }

    /// The report as text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut line = |k: &str, v: String| s.push_str(&format!("{k:<28} {v}\n"));
        line("devices", self.devices.to_string());
        line("expiring", self.expiring.to_string());
        line(
            "jitr (activated/asked)",
            format!("{}/{}", self.jitr_activated, self.jitr),
        );
        line("rotated", self.rotated.to_string());
        line("failed", self.failed.to_string());
        line("bricked", self.bricked.to_string());
        line(
            "orphaned certificates",
            self.orphaned_certificates.to_string(),
        );
        line(
            "converged",
            format!("{} ({} audit cycles)", self.converged, self.audit_cycles),
        );
        line("rollbacks", self.rollbacks.to_string());
        line("device restarts", self.device_restarts.to_string());
        line(
            "messages dropped/duplicated",
            format!("{}/{}", self.messages_dropped, self.messages_duplicated),
        );
        line("commits never landed", self.commits_lost.to_string());
        line("support notifications", self.notifications.to_string());
        line("setup", format!("{:.1} s", self.setup_seconds));
        line(
            "rotations/s",
            format!(
                "{:.1} ({} in {:.2} s)",
                self.rotations_per_second, self.rotated, self.rotation_seconds
            ),
        );
        line(
            "rotation latency p50/p99",
            format!(
                "{:.0} ms / {:.0} ms",
                self.latency_p50_ms, self.latency_p99_ms
            ),
        );
        line(
            "peak memory (VmHWM)",
            format!("{:.1} MiB", self.peak_memory_bytes as f64 / 1_048_576.0),
        );
        if let (Some(bound), Some(ratio)) =
            (self.crypto_bound_per_second, self.ratio_to_crypto_bound)
        {
            line(
                "crypto bound",
                format!(
                    "{bound:.1} rotations/s; achieved {:.1}% of it",
                    ratio * 100.0
                ),
            );
        }
        s
    }
}

/// The synthesized template (as `fleetcert synth` writes it), built in
/// memory, with the JITR rule for `jitr_ca_ids`.
///
/// # Errors
/// When the default configuration does not validate or synthesize.
pub fn synthesized_deployment(jitr_ca_ids: &[String]) -> anyhow::Result<(Deployment, u32)> {
    let mut config = infra::config::Config::default();
    config.jitr.ca_certificate_ids = jitr_ca_ids.to_vec();
    let threshold = config.audit.expiring_threshold_days;
    let validated = config.validate()?;
    let template = infra::assembly::template(&validated, &infra::assembly::unbuilt_assets())?;
    let deployment = Deployment::from_template(&template, &Deployment::default_scope())?;
    Ok((deployment, threshold))
}

/// A customer CA for JITR devices (the workspace's one test CA).
pub use test_support::TestCa;

/// One device of a [`Fleet`].
#[derive(Debug, Clone)]
pub struct FleetDevice {
    /// The thing name.
    pub thing: String,
    /// The slots directory.
    pub dir: PathBuf,
    /// The certificate it was provisioned with.
    pub initial_certificate_id: String,
    /// Provisioned by JITR.
    pub jitr: bool,
}

/// An event of one device.
#[derive(Debug, Clone)]
pub struct FleetEvent {
    /// Index into [`Fleet::devices`].
    pub device: usize,
    /// What happened.
    pub event: AgentEvent,
}

/// Device agents running against a cloud, each restarted from its slots
/// when it crashes.
#[derive(Debug)]
pub struct Fleet {
    /// The devices.
    pub devices: Vec<FleetDevice>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    restarts: Arc<AtomicU64>,
    _tmp: Option<tempfile::TempDir>,
}

/// How agents of a [`Fleet`] behave.
#[derive(Clone)]
pub struct AgentSettings {
    /// Back-off when connecting.
    pub backoff: Backoff,
    /// Crash hook factory: given the device index, the hook for its agent.
    pub crash: Option<Arc<dyn Fn(usize) -> Option<device::FaultHook> + Send + Sync>>,
    /// Restarts allowed per device.
    pub max_restarts: u32,
    /// [`AgentConfig::confirm_every`](device::AgentConfig): how soon an
    /// agent keeping its previous key looks for the commit's proof.
    pub confirm_every: Duration,
}

impl std::fmt::Debug for AgentSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSettings")
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max_delay: Duration::from_secs(2),
                max_attempts: 30,
                max_total: Duration::from_secs(120),
            },
            crash: None,
            max_restarts: 20,
            confirm_every: Duration::from_secs(1),
        }
    }
}

impl Fleet {
    /// Writes each device's certificate and key into its slots under
    /// `root` (a temporary directory when `None`).
    ///
    /// # Errors
    /// When a directory or slot cannot be written.
    pub fn install(
        root: Option<&Path>,
        devices: Vec<(FleetDevice, String, String)>,
    ) -> anyhow::Result<Fleet> {
        let (tmp, base) = match root {
            Some(r) => (None, r.to_path_buf()),
            None => {
                let shm = Path::new("/dev/shm");
                let tmp = if shm.is_dir() {
                    tempfile::Builder::new()
                        .prefix("fleetcert-sim-")
                        .tempdir_in(shm)
                } else {
                    tempfile::Builder::new().prefix("fleetcert-sim-").tempdir()
                }
                .context("temporary state directory")?;
                let base = tmp.path().to_path_buf();
                (Some(tmp), base)
            }
        };
        let mut out = Vec::with_capacity(devices.len());
        for (mut d, cert, key) in devices {
            d.dir = base.join(&d.thing);
            Slots::open(&d.dir)
                .and_then(|s| s.install(&cert, &key, None))
                .with_context(|| format!("installing the certificate of {}", d.thing))?;
            out.push(d);
        }
        Ok(Fleet {
            devices: out,
            shutdown: watch::channel(false).0,
            tasks: Vec::new(),
            restarts: Arc::default(),
            _tmp: tmp,
        })
    }

    /// Starts one agent per device against `cloud`; events go to the
    /// returned receiver.
    ///
    /// # Errors
    /// When a device's thing name is not a valid client id.
    pub fn start(
        &mut self,
        cloud: &Cloud,
        settings: &AgentSettings,
    ) -> anyhow::Result<mpsc::UnboundedReceiver<FleetEvent>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.start_at(cloud.endpoint(), cloud.root_ca_pem(), settings, tx)?;
        Ok(rx)
    }

    /// Starts one agent per device against the broker at `endpoint`,
    /// trusting `root_ca_pem`; events go to `tx`.
    ///
    /// # Errors
    /// When a device's thing name is not a valid client id.
    pub fn start_at(
        &mut self,
        endpoint: std::net::SocketAddr,
        root_ca_pem: &str,
        settings: &AgentSettings,
        tx: mpsc::UnboundedSender<FleetEvent>,
    ) -> anyhow::Result<()> {
        for (i, d) in self.devices.iter().enumerate() {
            let mut config = AgentConfig::new(
                ClientId::new(d.thing.clone())
                    .map_err(|e| anyhow::anyhow!("thing {}: {e}", d.thing))?,
                endpoint.ip().to_string(),
                endpoint.port(),
                root_ca_pem,
                &d.dir,
            );
            config.backoff = settings.backoff;
            config.connect_timeout = Duration::from_secs(30);
            config.ack_timeout = Duration::from_secs(30);
            config.confirm_every = settings.confirm_every;
            let tx = tx.clone();
            let events: device::EventSink = Arc::new(move |event| {
                let _ = tx.send(FleetEvent { device: i, event });
            });
            let hook = settings.crash.as_ref().and_then(|f| f(i));
            let mut shutdown = self.shutdown.subscribe();
            let restarts = self.restarts.clone();
            let max_restarts = settings.max_restarts;
            let thing = d.thing.clone();
            self.tasks.push(tokio::spawn(async move {
                for run in 0..=max_restarts {
                    let agent = match Agent::new(config.clone()) {
                        Ok(a) => a.with_events(events.clone()),
                        Err(e) => {
                            tracing::warn!(%thing, error = %e, "agent cannot start");
                            return;
                        }
                    };
                    // a crashed agent is restarted without the crash hook:
                    // each device crashes at most once
                    let agent = match (&hook, run) {
                        (Some(h), 0) => agent.with_fault_hook(h.clone()),
                        _ => agent,
                    };
                    let mut stop = shutdown.clone();
                    let result = agent
                        .run(async move {
                            let _ = stop.wait_for(|s| *s).await;
                        })
                        .await;
                    match result {
                        Ok(()) => return,
                        Err(AgentError::Crashed { .. } | AgentError::GaveUp { .. }) => {
                            if *shutdown.borrow_and_update() {
                                return;
                            }
                            restarts.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => {
                            tracing::warn!(%thing, error = %e, "agent stopped");
                            return;
                        }
                    }
                }
            }));
        }
        Ok(())
    }

    /// Agent restarts so far.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The certificate id in a device's `current/` slot.
    pub fn current_certificate(&self, i: usize) -> Option<String> {
        Slots::open(&self.devices[i].dir)
            .ok()?
            .load()
            .ok()?
            .current?
            .meta
            .certificate_id
    }

    /// The certificate ids whose keys a device holds: `current/` and, while
    /// a commit is not yet confirmed, `old/`.
    pub fn held_certificates(&self, i: usize) -> Vec<String> {
        let Ok(state) = Slots::open(&self.devices[i].dir).and_then(|s| s.load()) else {
            return Vec::new();
        };
        [state.current, state.old]
            .into_iter()
            .flatten()
            .filter_map(|s| s.meta.certificate_id)
            .collect()
    }

    /// Stops every agent (disconnecting) and waits up to `within`.
    pub async fn stop(&mut self, within: Duration) {
        let _ = self.shutdown.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        let _ = tokio::time::timeout(within, async {
            for t in tasks {
                let _ = t.await;
            }
        })
        .await;
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Peak resident memory of this process (VmHWM), bytes.
pub fn peak_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The soft limit of open files, from /proc/self/limits.
pub fn open_files_limit() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A small deterministic generator (splitmix64) for fault choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Counts of what the fault hooks did.
#[derive(Debug, Default)]
struct FaultCounters {
    dropped: AtomicU64,
    duplicated: AtomicU64,
    commits_lost: AtomicU64,
}

/// Drops and duplicates `csr_req` and `crt`; and, for one thing in eight
/// (its first `crt`), makes the commit of the ack that follows fail on the
/// invocation and every Lambda retry: "the commit of an acknowledged
/// rotation never lands" (the device's ack is PUBACKed all the same).
fn publish_faults(
    seed: u64,
    counters: Arc<FaultCounters>,
    store: lambdas::memory::MemoryRotationStore,
    commit_attempts: usize,
) -> PublishHook {
    let rng = std::sync::Mutex::new(Rng::new(seed ^ 0x5eed));
    let lost = std::sync::Mutex::new(HashSet::new());
    Arc::new(move |m: Published| {
        if let Some(thing) = m
            .topic
            .strip_suffix("/crt")
            .and_then(|t| t.rsplit('/').next())
        {
            let first = lost
                .lock()
                .map(|mut l| l.insert(thing.to_owned()))
                .unwrap_or(false);
            let chosen = Rng::new(seed ^ fnv(thing)).next_u64().is_multiple_of(8);
            if first && chosen {
                counters.commits_lost.fetch_add(1, Ordering::Relaxed);
                store.fail_commits(thing, commit_attempts);
            }
        }
        let roll = rng.lock().map(|mut r| r.next_u64() % 100).unwrap_or(99);
        // only the device-facing protocol messages
        if !(m.topic.ends_with("/csr_req") || m.topic.ends_with("/crt")) {
            return vec![m];
        }
        match roll {
            0..=3 => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                vec![]
            }
            4..=7 => {
                counters.duplicated.fetch_add(1, Ordering::Relaxed);
                vec![m.clone(), m]
            }
            _ => vec![m],
        }
    })
}

/// FNV-1a of a name, to pick things by name whatever the order of events.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn inject_registry_faults(cloud: &Cloud, n: usize, seed: u64) {
    let instruments = &cloud.ports().instruments;
    let mut rng = Rng::new(seed ^ 0xfa17);
    for op in [
        Operation::CreateCertificateFromCsr,
        Operation::AttachPolicy,
        Operation::AttachThingPrincipal,
        Operation::UpdateCertificate,
        Operation::DeleteCertificate,
        Operation::DescribeCertificate,
        Operation::UpdateRotation,
    ] {
        // about one call in twelve fails, over the first 2n calls
        let mut calls = 0;
        while calls < 2 * n {
            let skip = 4 + (rng.next_u64() % 16) as usize;
            let fault = if rng.chance(0.5) {
                Fault::Throttled
            } else {
                Fault::Transient
            };
            instruments.fail_after(op, skip, 1, fault);
            calls += skip + 1;
        }
    }
}

fn crash_hooks(seed: u64) -> Arc<dyn Fn(usize) -> Option<device::FaultHook> + Send + Sync> {
    const POINTS: [&str; 4] = [
        "agent: csr key stored",
        "agent: next stored",
        "agent: ack sent",
        "agent: crt_err sent",
    ];
    Arc::new(move |i| {
        let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        // one device in ten crashes once, at one of the agent's points;
        // one in twenty loses the PUBACK of its crt_ack once (the broker
        // has the ack: the commit may land)
        let crash = rng.chance(0.1);
        let point = POINTS[(rng.next_u64() % 3) as usize];
        let puback = rng.chance(0.05);
        if !crash && !puback {
            return None;
        }
        let fired = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        Some(Arc::new(move |step: &str| {
            (crash && step == point && !fired.swap(true, Ordering::Relaxed))
                || (puback
                    && step == "agent: crt_ack puback lost"
                    && !lost.swap(true, Ordering::Relaxed))
        }) as device::FaultHook)
    })
}

/// Runs a simulation to the end and reports. `crypto_bound` (rotations/s
/// the machine's cryptography allows) is put into the report when given.
///
/// # Errors
/// When the cloud cannot start, a device cannot be provisioned, or the
/// fleet does not connect in time.
pub async fn simulate(opts: &Options) -> anyhow::Result<Report> {
    let total = opts.devices + opts.jitr;
    if let Some(limit) = open_files_limit() {
        let per_device = match opts.agent_host {
            AgentHost::InProcess => 2,
            AgentHost::Child { .. } => 1,
        };
        let needed = per_device * total as u64 + 128;
        if needed > limit {
            bail!(
                "{total} devices need about {needed} open files (a client and a server socket each) but the limit is {limit}: raise it with `ulimit -n` or simulate fewer devices"
            );
        }
    }
    let ca = if opts.jitr > 0 {
        Some(TestCa::new("fleetcert simulation JITR CA")?)
    } else {
        None
    };
    let ca_ids: Vec<String> = match &ca {
        Some(ca) => vec![rules::csr::certificate_id(&ca.pem)?],
        None => Vec::new(),
    };
    let (deployment, _) = synthesized_deployment(&ca_ids)?;
    let mut config = CloudConfig::new(deployment);
    config.sweep_every = Some(Duration::from_millis(500));
    config.max_open_rotations = opts.max_open_rotations;
    if opts.faults {
        config.handlers.rotation_deadline_ms = 8_000;
    } else {
        config.handlers.rotation_deadline_ms = i64::try_from(opts.timeout.as_millis())
            .unwrap_or(i64::MAX)
            .max(60_000);
    }
    // The invocation and each Lambda retry of a commit: all fail for the
    // rotations whose commit is made never to land.
    let commit_attempts = config.lambda_retries as usize + 1;
    let cloud = Cloud::start(config).await?;
    if let Some(ca) = &ca {
        cloud.register_ca(&ca.pem)?;
    }

    let started = Instant::now();
    let expiring = ((opts.devices as f64) * opts.expiring_share.clamp(0.0, 1.0)).round() as usize;
    let mut installs = Vec::with_capacity(total);
    for i in 0..opts.devices {
        let thing = format!("sim-{i:06}");
        let days = if i < expiring {
            opts.threshold_days.saturating_sub(20).max(1)
        } else {
            365
        };
        let creds = cloud.register_device(&thing, days).await?;
        installs.push((
            FleetDevice {
                thing,
                dir: PathBuf::new(),
                initial_certificate_id: creds.certificate_id,
                jitr: false,
            },
            creds.certificate_pem,
            creds.private_key_pem,
        ));
    }
    if let Some(ca) = &ca {
        for i in 0..opts.jitr {
            let thing = format!("jitr-{i:06}");
            let test_support::DeviceCert {
                cert_pem: cert,
                key_pem: key,
                ..
            } = ca.device(&thing)?;
            let id = rules::csr::certificate_id(&cert)?;
            installs.push((
                FleetDevice {
                    thing,
                    dir: PathBuf::new(),
                    initial_certificate_id: id,
                    jitr: true,
                },
                cert,
                key,
            ));
        }
    }
    let mut fleet = Fleet::install(opts.state_dir.as_deref(), installs)?;
    let mut settings = AgentSettings::default();
    let fault_counters = Arc::new(FaultCounters::default());
    if opts.faults {
        settings.crash = Some(crash_hooks(opts.seed));
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut child = None;
    match &opts.agent_host {
        AgentHost::InProcess => {
            fleet.start_at(cloud.endpoint(), cloud.root_ca_pem(), &settings, tx)?
        }
        AgentHost::Child { program, args } => {
            child = Some(AgentChild::spawn(program, args, &fleet, &cloud, opts, tx)?);
        }
    }

    let progress = if opts.progress {
        let pb = ProgressBar::new(total as u64);
        pb.set_style(
            ProgressStyle::with_template("{msg:<12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_message("connecting");
        pb
    } else {
        ProgressBar::hidden()
    };

    let deadline = started + opts.timeout;
    let mut state = Tracker::new(fleet.devices.len());
    // every device connected once
    while state.connected_once < total {
        let ev = match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some(ev)) => ev,
            _ => bail!(
                "only {} of {total} devices connected within {:?}",
                state.connected_once,
                opts.timeout
            ),
        };
        if state.observe(&ev) {
            progress.set_position(state.connected_once as u64);
        }
    }
    let setup_seconds = started.elapsed().as_secs_f64();
    if opts.faults {
        inject_registry_faults(&cloud, total, opts.seed);
        cloud.set_publish_hook(Some(publish_faults(
            opts.seed,
            fault_counters.clone(),
            cloud.ports().ports.store.clone(),
            commit_attempts,
        )));
    }

    progress.set_message("rotating");
    progress.set_position(0);
    progress.set_length(expiring as u64);
    let rotation_start = Instant::now();
    let mut last_rotation = rotation_start;
    let mut cycles = 0;
    let mut converged = false;
    while cycles < opts.max_audit_cycles && Instant::now() < deadline {
        cycles += 1;
        let report = cloud.audit_now(opts.threshold_days).await?;
        tracing::info!(task = %report.task_id, findings = report.findings, outcome = %report.outcome, "audit");
        if report.findings == 0 {
            converged = true;
            break;
        }
        // until no rotation is open and the queue is empty (the sweeper
        // closes rotations that stall)
        let mut quiet_since: Option<Instant> = None;
        loop {
            let tick = tokio::time::sleep(Duration::from_millis(100));
            tokio::pin!(tick);
            loop {
                tokio::select! {
                    ev = rx.recv() => {
                        let Some(ev) = ev else { break };
                        if state.observe(&ev) {
                            last_rotation = Instant::now();
                        }
                        progress.set_position(state.rotated_devices.len() as u64);
                    }
                    () = &mut tick => break,
                }
            }
            // open rotations and cleanups still owed (the sweeper finishes
            // those after their deadline)
            let unsettled = cloud.ports().ports.store.unsettled_count();
            let idle = unsettled == 0 && cloud.queued() == 0;
            match (idle, quiet_since) {
                (true, None) => quiet_since = Some(Instant::now()),
                // give the last acks and cleanups a moment
                (true, Some(t)) if t.elapsed() > Duration::from_millis(300) => break,
                (false, _) => quiet_since = None,
                _ => {}
            }
            if Instant::now() >= deadline {
                break;
            }
        }
    }
    if !converged {
        converged = expiring_left(&cloud, opts.threshold_days) == 0;
    }
    // drain what is left of the events
    while let Ok(ev) = rx.try_recv() {
        state.observe(&ev);
    }
    progress.finish_and_clear();
    cloud.set_publish_hook(None);
    cloud.ports().instruments.clear_faults();

    // invariants, with the agents still running
    let registry = cloud.registry();
    let mut held = HashSet::new();
    let mut bricked = 0;
    let mut rotated = 0;
    let mut jitr_activated = 0;
    for (i, d) in fleet.devices.iter().enumerate() {
        let current = fleet.current_certificate(i);
        let ok = current
            .as_ref()
            .and_then(|id| registry.certificate(id))
            .is_some_and(|c| {
                c.status == CertificateStatus::Active
                    && c.things.contains(&d.thing)
                    && c.policies.contains(emulator::cloud::DEVICE_POLICY)
            });
        if !ok {
            bricked += 1;
            tracing::warn!(thing = %d.thing, ?current, "device without a working certificate");
        }
        // A key kept until its rotation's commit is confirmed is held too.
        held.extend(fleet.held_certificates(i));
        if let Some(id) = &current {
            held.insert(id.clone());
            if !d.jitr && i < expiring && *id != d.initial_certificate_id {
                rotated += 1;
            } else if !d.jitr && i < expiring {
                let rows: Vec<String> = cloud
                    .ports()
                    .ports
                    .store
                    .rows_for_thing(&d.thing)
                    .into_iter()
                    .map(|r| format!("{} {} attempts {}", r.rotation_id, r.state, r.attempts))
                    .collect();
                tracing::warn!(thing = %d.thing, ?rows, "expiring device not rotated");
            }
        }
        if d.jitr && ok {
            jitr_activated += 1;
        }
    }
    let orphans: Vec<_> = registry
        .certificates()
        .into_iter()
        .filter(|c| {
            !held.contains(&c.certificate_id)
                && (c.status == CertificateStatus::Active
                    || !c.things.is_empty()
                    || !c.policies.is_empty())
        })
        .collect();
    if !orphans.is_empty() {
        let rows = cloud.ports().ports.store.rows();
        for c in &orphans {
            let touched: Vec<String> = rows
                .iter()
                .filter(|r| {
                    r.old_certificate_id == c.certificate_id
                        || r.state.new_certificate_id() == Some(c.certificate_id.as_str())
                })
                .map(|r| serde_json::to_string(r).unwrap_or_default())
                .collect();
            tracing::warn!(
                certificate = %c.certificate_id,
                status = ?c.status,
                things = ?c.things,
                policies = ?c.policies,
                rotations = ?touched,
                "orphaned certificate"
            );
        }
    }
    let orphaned = orphans.len();
    let mut latencies = state.latencies_ms.clone();
    latencies.sort_by(f64::total_cmp);
    let rotation_seconds = last_rotation.duration_since(rotation_start).as_secs_f64();
    let report = Report {
        devices: opts.devices,
        expiring,
        jitr: opts.jitr,
        jitr_activated,
        rotated,
        failed: expiring.saturating_sub(rotated),
        bricked,
        orphaned_certificates: orphaned,
        converged,
        audit_cycles: cycles,
        rotation_events: state.rotation_events,
        rollbacks: state.rollbacks,
        device_restarts: fleet.restarts()
            + child
                .as_ref()
                .map_or(0, |c| c.restarts.load(Ordering::Relaxed)),
        messages_dropped: fault_counters.dropped.load(Ordering::Relaxed),
        messages_duplicated: fault_counters.duplicated.load(Ordering::Relaxed),
        commits_lost: fault_counters.commits_lost.load(Ordering::Relaxed),
        notifications: cloud.notifications().len(),
        rotation_seconds,
        rotations_per_second: if rotation_seconds > 0.0 {
            rotated as f64 / rotation_seconds
        } else {
            0.0
        },
        latency_p50_ms: percentile(&latencies, 50.0),
        latency_p99_ms: percentile(&latencies, 99.0),
        setup_seconds,
        peak_memory_bytes: peak_memory_bytes()
            + child.as_ref().map_or(0, AgentChild::peak_memory_bytes),
        crypto_bound_per_second: None,
        ratio_to_crypto_bound: None,
    };
    fleet.stop(Duration::from_secs(10)).await;
    if let Some(c) = child {
        c.stop(Duration::from_secs(10));
    }
    cloud.shutdown();
    Ok(report)
}

/// The device agents of a simulation in a child process, reporting their
/// events on its stdout, one line each.
struct AgentChild {
    child: std::process::Child,
    restarts: Arc<AtomicU64>,
}

impl AgentChild {
    fn spawn(
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
        let names: Vec<&str> = fleet.devices.iter().map(|d| d.thing.as_str()).collect();
        std::fs::write(&things, names.join("\n"))?;
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

    fn peak_memory_bytes(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024)
    }

    /// Closes the child's stdin (it disconnects its agents and exits);
    /// kills it after `within`.
    fn stop(mut self, within: Duration) {
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

/// The child half of [`AgentHost::Child`]: `args` are the broker
/// endpoint, the server root CA file, the slots' base directory, the file
/// of thing names, `faults`/`no-faults` and the seed. Runs the agents until
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
        .map(|t| FleetDevice {
            thing: t.to_owned(),
            dir: base.join(t),
            initial_certificate_id: String::new(),
            jitr: false,
        })
        .collect();
    let mut fleet = Fleet {
        devices,
        shutdown: watch::channel(false).0,
        tasks: Vec::new(),
        restarts: Arc::default(),
        _tmp: None,
    };
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

/// ACTIVE certificates attached to a thing that expire within the
/// threshold (what the next audit would find).
fn expiring_left(cloud: &Cloud, threshold_days: u32) -> usize {
    let horizon = emulator::cloud::now_ms() + i64::from(threshold_days) * 24 * 60 * 60 * 1000;
    cloud
        .registry()
        .certificates()
        .iter()
        .filter(|c| {
            c.status == CertificateStatus::Active
                && !c.things.is_empty()
                && c.not_after_ms <= horizon
        })
        .count()
}

/// Follows the fleet's events.
#[derive(Debug)]
struct Tracker {
    connected: Vec<bool>,
    connected_once: usize,
    rotated_devices: HashSet<usize>,
    rotation_events: usize,
    rollbacks: usize,
    latencies_ms: Vec<f64>,
}

impl Tracker {
    fn new(n: usize) -> Tracker {
        Tracker {
            connected: vec![false; n],
            connected_once: 0,
            rotated_devices: HashSet::new(),
            rotation_events: 0,
            rollbacks: 0,
            latencies_ms: Vec::new(),
        }
    }

    /// Returns true for a connection (first) or a rotation.
    fn observe(&mut self, ev: &FleetEvent) -> bool {
        match &ev.event {
            AgentEvent::Connected { .. } => {
                if !self.connected[ev.device] {
                    self.connected[ev.device] = true;
                    self.connected_once += 1;
                    return true;
                }
                false
            }
            AgentEvent::Rotated { latency, .. } => {
                self.rotation_events += 1;
                self.rotated_devices.insert(ev.device);
                if let Some(l) = latency {
                    self.latencies_ms.push(l.as_secs_f64() * 1000.0);
                }
                true
            }
            AgentEvent::RolledBack { .. } => {
                self.rollbacks += 1;
                false
            }
            _ => false,
        }
    }
}

/// The machine's bound: rotations per second if every core did nothing but
/// one rotation's cryptography — P-256 key generation, CSR signing, CSR
/// verification (as the CSR issuer checks it), certificate signing, and one
/// mutual-TLS handshake (both sides, in memory). Runs those operations in
/// a loop on one thread for `budget` and scales by the available cores.
///
/// # Errors
/// When a key, certificate or TLS configuration cannot be made.
pub fn crypto_bound(budget: Duration) -> anyhow::Result<f64> {
    use rcgen::CertificateSigningRequestParams;
    let server = emulator::tls::ServerIdentity::generate()?;
    let server_config = server.server_config()?;
    let roots = device::keys::root_store(server.root_ca_pem())?;
    let ca = TestCa::new("bound CA")?;
    let started = Instant::now();
    let mut n = 0u64;
    while n == 0 || started.elapsed() < budget {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("bound-{n}"));
        let csr = params.serialize_request(&key)?.pem()?;
        rules::csr::inspect_csr(&csr)?;
        let cert = CertificateSigningRequestParams::from_pem(&csr)?.signed_by(ca.issuer())?;
        let client = device::keys::client_config(roots.clone(), &cert.pem(), &key.serialize_pem())?;
        handshake(client, server_config.clone())?;
        n += 1;
    }
    let per_rotation = started.elapsed().as_secs_f64() / n as f64;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    Ok(cores / per_rotation)
}

/// A full TLS handshake between a client and a server connection, bytes
/// moved in memory.
fn handshake(
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
) -> anyhow::Result<()> {
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let mut c = rustls::ClientConnection::new(client, name)?;
    let mut s = rustls::ServerConnection::new(server)?;
    let mut buf = Vec::new();
    for _ in 0..32 {
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf)?;
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd)?;
        }
        s.process_new_packets()?;
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf)?;
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd)?;
        }
        c.process_new_packets()?;
    }
    bail!("the handshake did not finish")
}
