//! `fleetcert plan`: the command line of `planner::plan` (feature `plan`):
//! flags to options, a progress bar over virtual time, the report as text
//! or JSON, and the SVG timeline.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use infra::config::Config;
use planner::options::MEMORY_FLOOR_BYTES;
use planner::{DeviceMix, PlanOptions};
use rules::functions::Operation;

/// `fleetcert plan` arguments.
#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    /// Devices in the fleet.
    #[arg(long, default_value_t = 10_000)]
    devices: u64,
    /// The stack's configuration (the file `fleetcert synth` reads).
    /// Default: $FLEETCERT_CONFIG when set.
    #[arg(long)]
    config: Option<PathBuf>,
    /// An account quota that replaces AWS's default, e.g.
    /// `--quota CreateCertificateFromCsr=15` (repeatable).
    #[arg(long = "quota", value_name = "OPERATION=RPS")]
    quotas: Vec<String>,
    /// Seed of every random choice (same seed, same report).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Certificates expire uniformly between these days from now, `A..B`
    /// [default: half the audit threshold..the threshold].
    #[arg(long)]
    expiry_days: Option<String>,
    /// Share of devices online once a day only (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    online_daily: f64,
    /// How long a daily device stays online, minutes.
    #[arg(long, default_value_t = 10)]
    online_minutes: u32,
    /// Share of devices offline from the start for --offline-days (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    offline: f64,
    /// How long those devices are offline, days.
    #[arg(long, default_value_t = 14)]
    offline_days: u32,
    /// Share of devices that never answer a csr_req (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    silent: f64,
    /// Share of devices that refuse the new certificate with crt_err (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    crt_err: f64,
    /// AWS IoT persistent session expiry, hours (0 to 168).
    #[arg(long, default_value_t = 1.0)]
    session_expiry_hours: f64,
    /// Stop after this many days [default: a day after the last certificate expires].
    #[arg(long)]
    horizon_days: Option<f64>,
    /// Deploy each function with its share (by calls per rotation) of every
    /// quota it shares with others, as the report recommends when they
    /// overrun one together.
    #[arg(long)]
    split_quotas: bool,
    /// Rotate by a campaign instead of the audit: its first wave, a share
    /// (5%) or a count, released by the sweeper at its schedule.
    #[arg(long, value_name = "SHARE")]
    canary: Option<String>,
    /// The campaign's later waves: a share or a count.
    #[arg(long, value_name = "SHARE", default_value = "20%", requires = "canary")]
    cohort: String,
    /// The campaign releases at most this many members per second.
    #[arg(long, value_name = "N", default_value_t = 10, requires = "canary")]
    wave_rate: u32,
    /// The campaign pauses when failed + expired rotations of the last
    /// --abort-window are above this share (a plan never resumes it).
    #[arg(
        long,
        value_name = "PERCENT",
        default_value = "2%",
        requires = "canary"
    )]
    abort_above: String,
    /// How many of the last rotations the abort rule counts.
    #[arg(long, value_name = "N", default_value_t = 50, requires = "canary")]
    abort_window: u32,
    /// Print the whole report as JSON.
    #[arg(long)]
    json: bool,
    /// Write the timeline (SVG) here.
    #[arg(long, default_value = "fleetcert-plan.svg")]
    svg: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn options(args: &PlanArgs) -> anyhow::Result<PlanOptions> {
    let config_file = args
        .config
        .clone()
        .or_else(|| std::env::var_os("FLEETCERT_CONFIG").map(PathBuf::from));
    let config = match &config_file {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let mut o = PlanOptions::new(args.devices);
    o.config = config;
    let threshold = f64::from(o.config.audit.expiring_threshold_days);
    o.expiry_days = (threshold / 2.0, threshold);
    if let Some(range) = &args.expiry_days {
        let parsed = range
            .split_once("..")
            .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
        o.expiry_days = parsed.with_context(|| {
            format!("invalid --expiry-days: {range:?} is not A..B (days, e.g. 15..30)")
        })?;
    }
    for q in &args.quotas {
        let (name, rate) = q
            .split_once('=')
            .with_context(|| format!("invalid --quota {q:?}: expected OPERATION=RPS"))?;
        let op = Operation::from_name(name.trim()).with_context(|| {
            format!("invalid --quota {name}: no such operation (e.g. CreateCertificateFromCsr)")
        })?;
        let rate: f64 = rate
            .trim()
            .parse()
            .with_context(|| format!("invalid --quota {name}: {rate:?} is not a number"))?;
        o.quotas.insert(op, rate);
    }
    o.seed = args.seed;
    o.mix = DeviceMix {
        daily_share: args.online_daily,
        daily_window_minutes: args.online_minutes,
        away_share: args.offline,
        away_days: args.offline_days,
        silent_share: args.silent,
        crt_err_share: args.crt_err,
    };
    o.session_expiry_hours = args.session_expiry_hours;
    o.horizon_days = args.horizon_days;
    o.split_quotas = args.split_quotas;
    if let Some(canary) = &args.canary {
        if !(1..=rules::campaign::MAX_WINDOW).contains(&args.abort_window) || args.wave_rate == 0 {
            anyhow::bail!(
                "invalid campaign: --abort-window is 1 to {} and --wave-rate at least 1",
                rules::campaign::MAX_WINDOW
            );
        }
        let (rollout, abort) = crate::waves(
            canary,
            &args.cohort,
            args.wave_rate,
            &args.abort_above,
            args.abort_window,
        )?;
        o.campaign = Some(planner::PlanCampaign { rollout, abort });
    }
    Ok(o)
}

/// Runs `fleetcert plan`.
///
/// # Errors
/// Bad input (the field named) or an unwritable SVG file.
pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let options = options(&args)?;
    options.check()?;
    let estimate = options.memory_estimate();
    if estimate > MEMORY_FLOOR_BYTES {
        eprintln!(
            "warning: {} devices need an estimated {:.1} GiB of memory, over the 8 GiB floor",
            options.devices,
            estimate as f64 / f64::from(1u32 << 30)
        );
    }
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(1000)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} simulating [{bar:40}] {msg} ({elapsed} wall)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let b = bar.clone();
    let report = planner::plan(&options, move |now, horizon| {
        b.set_position(now.saturating_mul(1000) / horizon.max(1));
        b.set_message(format!("day {:.1}", now as f64 / 86_400e9));
    })?;
    bar.finish_and_clear();
    let svg =
        planner::chart::svg(&report).map_err(|e| anyhow::anyhow!("drawing the timeline: {e}"))?;
    std::fs::write(&args.svg, svg).with_context(|| format!("writing {}", args.svg.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
        println!("\ntimeline: {}", args.svg.display());
    }
    Ok(())
}
