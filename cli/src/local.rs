//! `fleetcert emulate` and `fleetcert simulate` (feature `local`): the
//! emulated cloud for outside devices, and a fleet of device agents against
//! it.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args, Clone)]
pub struct EmulateArgs {
    /// Port on 127.0.0.1 (0: a free one).
    #[arg(long, default_value_t = 8883)]
    port: u16,
    /// Port of AWS IoT's API on 127.0.0.1 (0: a free one): the
    /// --endpoint-url of `aws iot`, boto3 and `fleetcert ca`.
    #[arg(long, default_value_t = 8884)]
    api_port: u16,
    /// Working directory: root CA, CSRs in, certificates out, notifications.
    #[arg(long, default_value = "fleetcert-emulator")]
    dir: PathBuf,
    /// Run the audit every this many seconds (0: only when <dir>/audit-now is touched).
    #[arg(long, default_value_t = 0)]
    audit_every: u64,
    /// Audit threshold, days.
    #[arg(long, default_value_t = 30)]
    threshold_days: u32,
    /// Validity of certificates registered from CSRs, days.
    #[arg(long, default_value_t = 365)]
    validity_days: u32,
    /// Attach this customer IoT policy (JSON, named after the file's stem)
    /// to registered devices instead of fleetcert's device policy: try a
    /// fleet's own policy, e.g. one subscribing to management/topic/<thing>/#.
    #[arg(long, value_name = "FILE")]
    device_policy: Option<PathBuf>,
}

pub fn emulate(args: EmulateArgs) -> anyhow::Result<()> {
    use harness::emulate::{EmulateOptions, instructions, serve, serve_api, start};
    harness::log_to_stderr("info");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let opts = EmulateOptions {
        port: args.port,
        api_port: args.api_port,
        dir: args.dir,
        audit_every: (args.audit_every > 0)
            .then(|| std::time::Duration::from_secs(args.audit_every)),
        threshold_days: args.threshold_days,
        validity_days: args.validity_days,
        device_policy: args.device_policy,
    };
    runtime.block_on(async {
        let cloud = start(&opts).await?;
        let api = serve_api(&cloud, &opts).await?;
        print!(
            "{}",
            instructions(cloud.endpoint(), &api.endpoint_url(), &opts.dir)
        );
        if let Some(file) = &opts.device_policy {
            let (name, _) = harness::emulate::customer_policy(file)?;
            println!(
                "device policy:     {name} (from {}), attached to registered devices",
                file.display()
            );
        }
        serve(&cloud, &opts, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        eprintln!("stopping");
        drop(api);
        cloud.shutdown();
        Ok(())
    })
}

#[derive(Debug, Args, Clone)]
pub struct SimulateArgs {
    /// Devices provisioned with certificates by the cloud.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Share of the devices whose certificate expires within the audit threshold.
    #[arg(long, default_value_t = 1.0)]
    expiring_share: f64,
    /// Further devices that come in by JITR.
    #[arg(long, default_value_t = 0)]
    jitr: usize,
    /// A fleet fleetcert did not provision: customer policies of three
    /// shapes (one subscribing to management/topic/<thing>/#), thing names
    /// that are not CNs, certificates shared by two things, and (unless
    /// --jitr says) a tenth as many JITR devices from a customer CA.
    #[arg(long)]
    brownfield: bool,
    /// Inject dropped/duplicated messages, device crashes, registry throttling/errors and
    /// commits of acknowledged rotations that never land.
    #[arg(long)]
    faults: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as a self-contained HTML page with charts
    /// (rotations, open rotations, latency, faults over time) to this file.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Seed of the fault choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Bound on the whole run, seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Measure the machine's crypto bound for this many seconds first (0: skip).
    #[arg(long, default_value_t = 3.0)]
    crypto_bound_secs: f64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Where the device agents run: `in` this process, a `child` process,
    /// or `auto` (a child when this process's open-file limit cannot hold
    /// both ends of every connection).
    #[arg(long, default_value = "auto", value_parser = ["auto", "in", "child"])]
    agents_process: String,
    /// Rotations open at once at most; the rest wait in the work queue, as
    /// the rotation starter's concurrency paces a deployment (0: no bound).
    #[arg(long, default_value_t = harness::simulate::DEFAULT_MAX_OPEN_ROTATIONS)]
    max_open_rotations: usize,
    /// Share of the devices (0 to 1) on a broken firmware that refuses
    /// every new certificate with crt_err; with --campaign they are fixed
    /// when the campaign pauses, and the campaign is resumed.
    #[arg(long, default_value_t = 0.0)]
    broken_share: f64,
    /// Rotate by a campaign (waves and an abort rule) instead of the audit.
    #[arg(long)]
    campaign: bool,
    /// The campaign's first wave: a share (5%) or a count.
    #[arg(long, default_value = "5%", requires = "campaign")]
    canary: String,
    /// Each later wave: a share (20%) or a count.
    #[arg(long, default_value = "20%", requires = "campaign")]
    cohort: String,
    /// Members released per second at most.
    #[arg(long, default_value_t = 50, requires = "campaign")]
    rate: u32,
    /// Pause when failed + expired rotations of the last --abort-window are above this share.
    #[arg(long, default_value = "2%", requires = "campaign")]
    abort_above: String,
    /// How many of the last rotations the abort rule counts.
    #[arg(long, default_value_t = 50, requires = "campaign")]
    abort_window: u32,
}

pub fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    use harness::simulate::{Options, simulate};
    harness::log_to_stderr("error");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let jitr = if args.brownfield && args.jitr == 0 {
        (args.devices / 10).max(1)
    } else {
        args.jitr
    };
    let total = (args.devices + jitr) as u64;
    let child = match args.agents_process.as_str() {
        "child" => true,
        "in" => false,
        _ => harness::simulate::open_files_limit().is_some_and(|l| 2 * total + 128 > l),
    };
    let agent_host = if child {
        harness::simulate::AgentHost::Child {
            program: std::env::current_exe().context("cannot find the fleetcert binary")?,
            args: vec!["simulate-agents".to_owned()],
        }
    } else {
        harness::simulate::AgentHost::InProcess
    };
    if !(0.0..=1.0).contains(&args.broken_share) {
        anyhow::bail!(
            "--broken-share {} is not between 0 and 1",
            args.broken_share
        );
    }
    let campaign = if args.campaign {
        let (rollout, abort) = crate::waves(
            &args.canary,
            &args.cohort,
            args.rate,
            &args.abort_above,
            args.abort_window,
        )?;
        Some(harness::simulate::CampaignOptions { rollout, abort })
    } else {
        None
    };
    let opts = Options {
        agent_host,
        broken_share: args.broken_share,
        campaign,
        devices: args.devices,
        expiring_share: args.expiring_share,
        jitr: args.jitr,
        brownfield: args.brownfield,
        faults: args.faults,
        seed: args.seed,
        timeout: std::time::Duration::from_secs(args.timeout_secs),
        progress: !args.quiet,
        max_open_rotations: (args.max_open_rotations > 0).then_some(args.max_open_rotations),
        ..Options::default()
    };
    let bound = (args.crypto_bound_secs > 0.0)
        .then(|| {
            harness::simulate::crypto_bound(std::time::Duration::from_secs_f64(
                args.crypto_bound_secs,
            ))
        })
        .transpose()?;
    let mut report = runtime.block_on(simulate(&opts))?;
    if let Some(b) = bound {
        report.crypto_bound_per_second = Some(b);
        report.ratio_to_crypto_bound = Some(report.rotations_per_second / b);
    }
    print!("{}", report.render());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        let page = harness::simulate::render_html(&report)?;
        std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if !report.ok() {
        anyhow::bail!(
            "invariants broken: bricked {}, orphaned {}, converged {}",
            report.bricked,
            report.orphaned_certificates,
            report.converged
        );
    }
    Ok(())
}

/// The device agents of `simulate` in their own process.
pub fn simulate_agents(args: &[String]) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?
        .block_on(harness::simulate::agents_child_main(args))
}
