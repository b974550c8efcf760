//! `fleetcert simulate`: a fleet of device agents against the in-process
//! cloud ([`emulator::Cloud`]), the emulated audit, the rotations to the
//! end, and a report whose invariants (nothing bricked, nothing orphaned,
//! converged) decide the exit status.
//!
//! One job per file: [`Options`] (`options`), the brownfield fleet's
//! policies and device shapes (`brownfield`), the [`Report`] (`report`),
//! the [`Fleet`] of agents (`fleet`), the deterministic [`Rng`] (`rng`), the
//! injected faults (`faults`), the agents' child process (`child`), the
//! crypto bound (`bound`), a campaign's run and the broken firmware
//! (`campaign`), the event tracker (`tracker`), the sampled
//! series (`timeline`), the HTML report (`html`) and the run itself
//! ([`simulate`], `run`).

mod bound;
pub mod brownfield;
mod campaign;
mod child;
mod faults;
mod fleet;
mod html;
mod options;
mod report;
mod rng;
mod run;
mod system;
mod timeline;
mod tracker;

pub use bound::crypto_bound;
pub use campaign::{CampaignOptions, CampaignReport, broken_devices};
pub use child::agents_child_main;
pub use fleet::{AgentSettings, Fleet, FleetDevice, FleetEvent};
pub use html::render_html;
pub use options::{AgentHost, DEFAULT_MAX_OPEN_ROTATIONS, Options};
pub use report::{BrownfieldMix, Report};
pub use rng::Rng;
pub use run::simulate;
pub use system::{open_files_limit, peak_memory_bytes};
pub use timeline::{MAX_SAMPLES, Sample, Timeline};

use emulator::Deployment;

/// The synthesized template (as `fleetcert synth` writes it), built in
/// memory, with the JITR rule for `jitr_ca_ids`.
///
/// # Errors
/// When the default configuration does not validate or synthesize.
pub fn synthesized_deployment(jitr_ca_ids: &[String]) -> anyhow::Result<(Deployment, u32)> {
    let threshold = infra::config::Config::default()
        .audit
        .expiring_threshold_days;
    let template = infra::assembly::default_template(jitr_ca_ids)?;
    let deployment = Deployment::from_template(&template, &Deployment::default_scope())?;
    Ok((deployment, threshold))
}

/// A customer CA for JITR devices (the workspace's one test CA).
pub use test_support::TestCa;
