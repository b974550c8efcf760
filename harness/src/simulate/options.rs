//! What a simulation runs: its [`Options`] and where the agents live ([`AgentHost`]).

use std::path::PathBuf;
use std::time::Duration;

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
    /// A fleet fleetcert did not provision (`brownfield`): customer
    /// policies of three shapes, thing names that are not CNs,
    /// certificates shared by two things; with `jitr` 0, a tenth as many
    /// JITR devices again.
    pub brownfield: bool,
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
    /// Share of the provisioned devices on a broken firmware that refuses
    /// every `crt` with `crt_err` (spread evenly:
    /// [`broken_devices`](super::broken_devices)); a campaign's run fixes
    /// them when the campaign pauses.
    pub broken_share: f64,
    /// Rotate the expiring devices by this campaign instead of the audit.
    pub campaign: Option<super::CampaignOptions>,
}

/// Where a simulation's device agents run.
#[derive(Debug, Clone, Default)]
pub enum AgentHost {
    /// In this process (two sockets per device here).
    #[default]
    InProcess,
    /// In a child process, `program` with `args` then the arguments of
    /// [`agents_child_main`](super::agents_child_main), so that the broker's and the agents' sockets
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
            brownfield: false,
            faults: false,
            seed: 1,
            threshold_days: 30,
            max_audit_cycles: 3,
            timeout: Duration::from_secs(600),
            state_dir: None,
            progress: false,
            agent_host: AgentHost::InProcess,
            max_open_rotations: Some(DEFAULT_MAX_OPEN_ROTATIONS),
            broken_share: 0.0,
            campaign: None,
        }
    }
}

impl Options {
    /// The JITR devices of the run: `jitr`, or for a brownfield fleet
    /// without any, a tenth of `devices` (at least one).
    pub fn jitr_devices(&self) -> usize {
        if self.brownfield && self.jitr == 0 {
            (self.devices / 10).max(1)
        } else {
            self.jitr
        }
    }
}
