//! The fleet: device agents, their slots on disk, their events.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use device::{Agent, AgentConfig, AgentError, AgentEvent, Backoff, Slots, Subscription};
use emulator::Cloud;
use rules::contracts::ClientId;
use tokio::sync::{mpsc, watch};

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
    /// The subject CN of its CSRs, when not the thing name.
    pub common_name: Option<String>,
    /// How it subscribes.
    pub subscription: Subscription,
    /// The policies its certificate carries (a rotation keeps them).
    pub policies: Vec<String>,
    /// Further things its certificate is attached to (a rotation keeps them).
    pub other_things: Vec<String>,
}

impl FleetDevice {
    /// A device of fleetcert's own: thing = CN, fleetcert's device policy,
    /// one filter per message.
    pub fn new(thing: String, initial_certificate_id: String, jitr: bool) -> FleetDevice {
        FleetDevice {
            thing,
            dir: PathBuf::new(),
            initial_certificate_id,
            jitr,
            common_name: None,
            subscription: Subscription::Exact,
            policies: vec![emulator::cloud::DEVICE_POLICY.to_owned()],
            other_things: Vec::new(),
        }
    }
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
    /// Firmware behaviour factory: given the device index, a hook asked
    /// at every run of its agent (a broken firmware's
    /// [`device::agent::REFUSE_CRT`]); unlike a crash it survives restarts.
    pub firmware: Option<Arc<dyn Fn(usize) -> Option<device::FaultHook> + Send + Sync>>,
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
            firmware: None,
            max_restarts: 20,
            confirm_every: Duration::from_secs(1),
        }
    }
}

impl Fleet {
    /// A fleet over slots already installed (by the parent process, for
    /// [`super::agents_child_main`]); nothing of it is removed on drop.
    pub(super) fn existing(devices: Vec<FleetDevice>) -> Fleet {
        Fleet {
            devices,
            shutdown: watch::channel(false).0,
            tasks: Vec::new(),
            restarts: Arc::default(),
            _tmp: None,
        }
    }

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
            config.csr_common_name.clone_from(&d.common_name);
            config.subscription = d.subscription;
            config.connect_timeout = Duration::from_secs(30);
            config.ack_timeout = Duration::from_secs(30);
            config.confirm_every = settings.confirm_every;
            let tx = tx.clone();
            let events: device::EventSink = Arc::new(move |event| {
                let _ = tx.send(FleetEvent { device: i, event });
            });
            let hook = settings.crash.as_ref().and_then(|f| f(i));
            let firmware = settings.firmware.as_ref().and_then(|f| f(i));
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
                    let crash = if run == 0 { hook.clone() } else { None };
                    let agent = match (crash, firmware.clone()) {
                        (Some(c), Some(f)) => {
                            agent.with_fault_hook(Arc::new(move |step: &str| f(step) || c(step)))
                        }
                        (Some(h), None) | (None, Some(h)) => agent.with_fault_hook(h),
                        (None, None) => agent,
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
