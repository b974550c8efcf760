//! The `fleetcert` binary. `synth` (the default command) writes the cloud
//! assembly the stock CDK CLI deploys, and is all a default build compiles:
//! no AWS SDK, no C library. `ca` (feature `ca`: the AWS SDK) and
//! `emulate`/`simulate` (feature `local`: the emulated cloud and the device
//! agents) and `status` (feature `status`: the rotation table through the
//! AWS SDK) come with `--features full`; a build without them says so when
//! they are asked for.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use infra::config::{Architecture, Config};

#[cfg(feature = "ca")]
mod adopt;
#[cfg(feature = "ca")]
mod ca;
#[cfg(feature = "rotate")]
mod campaign;
mod check_policy;
#[cfg(feature = "local")]
mod local;
#[cfg(feature = "plan")]
mod plan;
#[cfg(feature = "rotate")]
mod rotate;
#[cfg(feature = "status")]
mod status;

/// A campaign's waves and abort rule from the command line's `--canary`,
/// `--cohort`, rate, `--abort-above` and `--abort-window` (`rotate`,
/// `plan`, `simulate`); a bad share or percentage names its flag.
#[cfg(any(feature = "rotate", feature = "plan", feature = "local"))]
fn waves(
    canary: &str,
    cohort: &str,
    rate_per_second: u32,
    abort_above: &str,
    abort_window: u32,
) -> anyhow::Result<(rules::campaign::Rollout, rules::campaign::AbortRule)> {
    use rules::campaign::{AbortRule, Rollout, Share, parse_percent};
    Ok((
        Rollout {
            canary: Share::parse(canary).context("--canary")?,
            cohort: Share::parse(cohort).context("--cohort")?,
            rate_per_second,
        },
        AbortRule {
            above_basis_points: parse_percent(abort_above).context("--abort-above")?,
            window: abort_window,
        },
    ))
}

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
    #[cfg(feature = "ca")]
    Ca(ca::CaArgs),
    /// Manage the JITR certificate authority (needs a build with `--features full`).
    #[cfg(not(feature = "ca"))]
    Ca(NotBuilt),
    /// Run a fleet of device agents against the in-process emulated cloud:
    /// audit, rotations to the end, and a report (exit 1 when a device is
    /// bricked, a certificate orphaned or the fleet did not converge).
    #[cfg(feature = "local")]
    Simulate(local::SimulateArgs),
    /// Run a fleet of device agents against the emulated cloud (needs a
    /// build with `--features full`).
    #[cfg(not(feature = "local"))]
    Simulate(NotBuilt),
    /// Run the emulated cloud (broker, policy, rules, handlers) for devices
    /// outside fleetcert until Ctrl-C.
    #[cfg(feature = "local")]
    Emulate(local::EmulateArgs),
    /// Run the emulated cloud for outside devices (needs a build with
    /// `--features full`).
    #[cfg(not(feature = "local"))]
    Emulate(NotBuilt),
    /// List the account's active device certificates as fleetcert would
    /// rotate them: things, policies, CA, and what blocks each (read-only).
    #[cfg(feature = "ca")]
    Adopt(adopt::AdoptArgs),
    /// List the certificates fleetcert would rotate (needs a build with
    /// `--features full`).
    #[cfg(not(feature = "ca"))]
    Adopt(NotBuilt),
    /// Rotate chosen certificates now (things, a thing group, a CA, older
    /// than a date, a file): asks, then queues them as the audit does.
    #[cfg(feature = "rotate")]
    Rotate(rotate::RotateArgs),
    /// Rotate chosen certificates now (needs a build with `--features full`).
    #[cfg(not(feature = "rotate"))]
    Rotate(NotBuilt),
    /// A rotation campaign (`rotate --canary`): status, pause, resume, cancel.
    #[cfg(feature = "rotate")]
    Campaign(campaign::CampaignArgs),
    /// A rotation campaign (needs a build with `--features full`).
    #[cfg(not(feature = "rotate"))]
    Campaign(NotBuilt),
    /// Say which steps of a rotation a customer's IoT policy would block
    /// (exit 1 when one is blocked).
    CheckPolicy(check_policy::CheckPolicyArgs),
    /// The fleet's rotations from the rotation table: counts by state, open
    /// rotations by age, the oldest; `--thing NAME` for one device.
    #[cfg(feature = "status")]
    Status(status::StatusArgs),
    /// The fleet's rotations from the rotation table (needs a build with
    /// `--features full`).
    #[cfg(not(feature = "status"))]
    Status(NotBuilt),
    /// Plan a fleet's rotation in virtual time: the deployed functions at
    /// the account's quotas, devices that go offline or never answer;
    /// makespan, the binding quota, what expires unrotated, the cost.
    #[cfg(feature = "plan")]
    Plan(plan::PlanArgs),
    /// Plan a fleet's rotation in virtual time (needs a build with
    /// `--features full` or `--features plan`).
    #[cfg(not(feature = "plan"))]
    Plan(NotBuilt),
    /// (internal) the device agents of `simulate` in their own process.
    #[command(hide = true)]
    SimulateAgents {
        /// <endpoint> <server-ca-file> <base-dir> <things-file> <faults|no-faults> <seed>
        args: Vec<String>,
    },
}

/// The arguments of a command this build does not include.
#[derive(Debug, Args, Clone)]
#[allow(dead_code)]
struct NotBuilt {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// The error of a command this build does not include.
#[allow(dead_code)]
fn not_built(command: &str, feature: &str) -> anyhow::Result<()> {
    anyhow::bail!(
        "`fleetcert {command}` is not in this build (feature `{feature}`); run `cargo run --features full -- {command} ...` or install with `cargo install --path cli --features full`"
    )
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
        Some(Command::CheckPolicy(args)) => {
            if check_policy::run(args)? {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        #[cfg(feature = "ca")]
        Some(Command::Ca(args)) => ca::run(args),
        #[cfg(not(feature = "ca"))]
        Some(Command::Ca(_)) => not_built("ca", "ca"),
        #[cfg(feature = "ca")]
        Some(Command::Adopt(args)) => adopt::run(args),
        #[cfg(not(feature = "ca"))]
        Some(Command::Adopt(_)) => not_built("adopt", "ca"),
        #[cfg(feature = "rotate")]
        Some(Command::Rotate(args)) => rotate::run(args),
        #[cfg(not(feature = "rotate"))]
        Some(Command::Rotate(_)) => not_built("rotate", "rotate"),
        #[cfg(feature = "rotate")]
        Some(Command::Campaign(args)) => campaign::run(args),
        #[cfg(not(feature = "rotate"))]
        Some(Command::Campaign(_)) => not_built("campaign", "rotate"),
        #[cfg(feature = "local")]
        Some(Command::Simulate(args)) => local::simulate(args),
        #[cfg(feature = "local")]
        Some(Command::Emulate(args)) => local::emulate(args),
        #[cfg(feature = "local")]
        Some(Command::SimulateAgents { args }) => local::simulate_agents(&args),
        #[cfg(not(feature = "local"))]
        Some(Command::Simulate(_)) => not_built("simulate", "local"),
        #[cfg(not(feature = "local"))]
        Some(Command::Emulate(_)) => not_built("emulate", "local"),
        #[cfg(not(feature = "local"))]
        Some(Command::SimulateAgents { .. }) => not_built("simulate-agents", "local"),
        #[cfg(feature = "plan")]
        Some(Command::Plan(args)) => plan::run(args),
        #[cfg(not(feature = "plan"))]
        Some(Command::Plan(_)) => not_built("plan", "plan"),
        #[cfg(feature = "status")]
        Some(Command::Status(args)) => status::run(args),
        #[cfg(not(feature = "status"))]
        Some(Command::Status(_)) => not_built("status", "status"),
        None => synth(cli.synth),
    }
}
