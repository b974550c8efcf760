//! The `fleetcert` binary. `synth` (the default command) writes the cloud
//! assembly the stock CDK CLI deploys.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use infra::config::{Architecture, Config};

mod ca;

/// Keep a fleet of AWS IoT devices on valid X.509 certificates.
#[derive(Debug, Parser)]
#[command(name = "fleetcert", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    synth: SynthArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Synthesize the CloudFormation stack into a CDK cloud assembly (default).
    Synth(SynthArgs),
    /// Manage the JITR certificate authority: create, register, activate, issue, list, revoke.
    Ca(ca::CaArgs),
    /// Run a fleet of device agents against the in-process emulated cloud:
    /// audit, rotations to the end, and a report (exit 1 when a device is
    /// bricked, a certificate orphaned or the fleet did not converge).
    Simulate(SimulateArgs),
    /// Run the emulated cloud (broker, policy, rules, handlers) for devices
    /// outside fleetcert until Ctrl-C.
    Emulate(EmulateArgs),
    /// (internal) the device agents of `simulate` in their own process.
    #[command(hide = true)]
    SimulateAgents {
        /// <endpoint> <server-ca-file> <base-dir> <things-file> <faults|no-faults> <seed>
        args: Vec<String>,
    },
}

#[derive(Debug, Args, Clone)]
struct EmulateArgs {
    /// Port on 127.0.0.1 (0: a free one).
    #[arg(long, default_value_t = 8883)]
    port: u16,
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
}

fn emulate(args: EmulateArgs) -> anyhow::Result<()> {
    use emulator::emulate::{EmulateOptions, instructions, serve, start};
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let opts = EmulateOptions {
        port: args.port,
        dir: args.dir,
        audit_every: (args.audit_every > 0)
            .then(|| std::time::Duration::from_secs(args.audit_every)),
        threshold_days: args.threshold_days,
        validity_days: args.validity_days,
    };
    runtime.block_on(async {
        let cloud = start(&opts).await?;
        print!("{}", instructions(cloud.endpoint(), &opts.dir));
        serve(&cloud, &opts, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        eprintln!("stopping");
        cloud.shutdown();
        Ok(())
    })
}

#[derive(Debug, Args, Clone)]
struct SimulateArgs {
    /// Devices provisioned with certificates by the cloud.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Share of the devices whose certificate expires within the audit threshold.
    #[arg(long, default_value_t = 1.0)]
    expiring_share: f64,
    /// Further devices that come in by JITR.
    #[arg(long, default_value_t = 0)]
    jitr: usize,
    /// Inject dropped/duplicated messages, device crashes, registry throttling/errors and
    /// commits of acknowledged rotations that never land.
    #[arg(long)]
    faults: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
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
    #[arg(long, default_value_t = emulator::simulate::DEFAULT_MAX_OPEN_ROTATIONS)]
    max_open_rotations: usize,
}

fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    use emulator::simulate::{Options, simulate};
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let total = (args.devices + args.jitr) as u64;
    let child = match args.agents_process.as_str() {
        "child" => true,
        "in" => false,
        _ => emulator::simulate::open_files_limit().is_some_and(|l| 2 * total + 128 > l),
    };
    let agent_host = if child {
        emulator::simulate::AgentHost::Child {
            program: std::env::current_exe().context("cannot find the fleetcert binary")?,
            args: vec!["simulate-agents".to_owned()],
        }
    } else {
        emulator::simulate::AgentHost::InProcess
    };
    let opts = Options {
        agent_host,
        devices: args.devices,
        expiring_share: args.expiring_share,
        jitr: args.jitr,
        faults: args.faults,
        seed: args.seed,
        timeout: std::time::Duration::from_secs(args.timeout_secs),
        progress: !args.quiet,
        max_open_rotations: (args.max_open_rotations > 0).then_some(args.max_open_rotations),
        ..Options::default()
    };
    let bound = (args.crypto_bound_secs > 0.0)
        .then(|| {
            emulator::simulate::crypto_bound(std::time::Duration::from_secs_f64(
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

/// Synthesis options; flags override the config file, which overrides the defaults.
#[derive(Debug, Args, Clone, Default)]
struct SynthArgs {
    /// TOML configuration file (see infra/fleetcert.example.toml).
    /// Default: $FLEETCERT_CONFIG when set.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output directory [default: $CDK_OUTDIR (set by the CDK CLI), else cdk.out].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stack name.
    #[arg(long)]
    stack_name: Option<String>,
    /// Deploy region.
    #[arg(long)]
    region: Option<String>,
    /// Days before expiry at which Device Defender reports a certificate.
    #[arg(long)]
    threshold_days: Option<u32>,
    /// Lambda architecture: arm64 or x86_64.
    #[arg(long, value_parser = ["arm64", "x86_64"])]
    architecture: Option<String>,
    /// JITR CA certificate PEM file.
    #[arg(long)]
    jitr_ca_pem: Option<PathBuf>,
    /// Directory holding <function>/bootstrap.zip (default: $CARGO_TARGET_DIR/lambda or target/lambda).
    #[arg(long)]
    lambda_dir: Option<PathBuf>,
}

fn synth(args: SynthArgs) -> anyhow::Result<()> {
    let config_file = args
        .config
        .clone()
        .or_else(|| std::env::var_os("FLEETCERT_CONFIG").map(PathBuf::from));
    let out = args
        .out
        .clone()
        .or_else(|| std::env::var_os("CDK_OUTDIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("cdk.out"));
    let mut config = match &config_file {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = args.stack_name {
        config.stack_name = v;
    }
    if let Some(v) = args.region {
        config.region = Some(v);
    }
    if let Some(v) = args.threshold_days {
        config.audit.expiring_threshold_days = v;
    }
    if let Some(v) = args.architecture {
        config.lambda.architecture = if v == "x86_64" {
            Architecture::X86_64
        } else {
            Architecture::Arm64
        };
    }
    if let Some(v) = args.jitr_ca_pem {
        config.jitr.ca_certificate_pem_file = Some(v);
    }
    let lambda_dir = args
        .lambda_dir
        .or_else(|| config.lambda.asset_dir.clone())
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("target"))
                .join("lambda")
        });
    let validated = config.validate()?;
    let done = infra::assembly::synth(&validated, &lambda_dir, &out)
        .context("cannot synthesize the stack")?;
    eprintln!("wrote cloud assembly {}", done.out_dir.display());
    if !done.missing_assets.is_empty() {
        eprintln!(
            "note: {} Lambda zip(s) missing, needed for `cdk deploy` (run `cargo xtask lambdas`):",
            done.missing_assets.len()
        );
        for p in &done.missing_assets {
            eprintln!("  {}", p.display());
        }
    }
    Ok(())
}

/// Errors are printed as `error: <cause chain>` (as `fleetcert ca` does),
/// never as a backtrace, whatever `RUST_BACKTRACE` says; exit code 1.
fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Synth(args)) => synth(args),
        Some(Command::Ca(args)) => ca::run(args),
        Some(Command::Simulate(args)) => simulate(args),
        Some(Command::Emulate(args)) => emulate(args),
        Some(Command::SimulateAgents { args }) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the tokio runtime")?
            .block_on(emulator::simulate::agents_child_main(&args)),
        None => synth(cli.synth),
    }
}
