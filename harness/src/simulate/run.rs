//! [`simulate`]: the run from start to report.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use emulator::{Cloud, CloudConfig, Provisioning};
use indicatif::{ProgressBar, ProgressStyle};
use lambdas::ports::CertificateStatus;
use tokio::sync::mpsc;

use super::brownfield;
use super::campaign::{self, CampaignOptions, CampaignReport, broken_devices};
use super::child::AgentChild;
use super::faults::{FaultCounters, crash_hooks, inject_registry_faults, publish_faults};
use super::fleet::{AgentSettings, Fleet, FleetDevice};
use super::options::{AgentHost, Options};
use super::report::{BrownfieldMix, Report, percentile};
use super::system::{open_files_limit, peak_memory_bytes};
use super::timeline::Sample;
use super::tracker::Tracker;
use super::{TestCa, synthesized_deployment};

/// Runs a simulation to the end and reports. `crypto_bound` (rotations/s
/// the machine's cryptography allows) is put into the report when given.
///
/// # Errors
/// When the cloud cannot start, a device cannot be provisioned, or the
/// fleet does not connect in time.
pub async fn simulate(opts: &Options) -> anyhow::Result<Report> {
    let opts = &Options {
        jitr: opts.jitr_devices(),
        ..opts.clone()
    };
    let total = opts.devices + opts.jitr;
    check_open_files(opts, total)?;
    let StartedCloud {
        cloud,
        ca,
        commit_attempts,
    } = start_cloud(opts).await?;

    let started = Instant::now();
    let expiring = ((opts.devices as f64) * opts.expiring_share.clamp(0.0, 1.0)).round() as usize;
    let installs = provision(&cloud, opts, ca.as_ref(), expiring).await?;
    let mut fleet = Fleet::install(opts.state_dir.as_deref(), installs)?;
    let mut settings = AgentSettings::default();
    let fault_counters = Arc::new(FaultCounters::default());
    if opts.faults {
        settings.crash = Some(crash_hooks(opts.seed));
    }
    let broken = Arc::new(broken_devices(opts.devices, opts.broken_share));
    let fixed = Arc::new(AtomicBool::new(false));
    if broken.iter().any(|b| *b) {
        if matches!(opts.agent_host, AgentHost::Child { .. }) {
            bail!(
                "broken devices (--broken-share) run in this process only: use --agents-process in"
            );
        }
        settings.firmware = Some(campaign::firmware_hooks(broken.clone(), fixed.clone()));
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

    let progress = progress_bar(opts, total);
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
    let child_restarts = child.as_ref().map(|c| c.restarts.clone());
    let faults_now = |s: &mut Sample| {
        s.messages_dropped = fault_counters.dropped.load(Ordering::Relaxed);
        s.messages_duplicated = fault_counters.duplicated.load(Ordering::Relaxed);
        s.commits_lost = fault_counters.commits_lost.load(Ordering::Relaxed);
        s.device_restarts = fleet.restarts()
            + child_restarts
                .as_ref()
                .map_or(0, |r| r.load(Ordering::Relaxed));
    };
    let (rotations, campaign_report) = match &opts.campaign {
        None => (
            rotate(
                &cloud,
                opts,
                deadline,
                (&mut rx, &mut state),
                &progress,
                &faults_now,
            )
            .await?,
            None,
        ),
        Some(copts) => {
            let members = &fleet.devices[..expiring];
            let (r, c) = rotate_campaign(
                &cloud,
                opts,
                copts,
                (members, &broken, &fixed),
                deadline,
                (&mut rx, &mut state),
                &progress,
                &faults_now,
            )
            .await?;
            (r, Some(c))
        }
    };
    // drain what is left of the events
    while let Ok(ev) = rx.try_recv() {
        state.observe(&ev);
    }
    progress.finish_and_clear();
    cloud.set_publish_hook(None);
    cloud.ports().instruments.clear_faults();

    // invariants, with the agents still running
    let held = check_devices(&cloud, &fleet, expiring);
    let orphaned = orphaned_certificates(&cloud, &held.certificates);
    let mut latencies = state.latencies_ms.clone();
    latencies.sort_by(f64::total_cmp);
    let rotation_seconds = rotations
        .last_rotation
        .duration_since(rotations.started)
        .as_secs_f64();
    let rotated = held.rotated;
    let report = Report {
        devices: opts.devices,
        expiring,
        jitr: opts.jitr,
        jitr_activated: held.jitr_activated,
        rotated,
        failed: expiring.saturating_sub(rotated),
        bricked: held.bricked,
        orphaned_certificates: orphaned,
        converged: rotations.converged,
        audit_cycles: rotations.cycles,
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
        timeline: state.timeline.clone(),
        brownfield: opts.brownfield.then(|| brownfield_mix(&fleet.devices)),
        campaign: campaign_report,
    };
    fleet.stop(Duration::from_secs(10)).await;
    if let Some(c) = child {
        c.stop(Duration::from_secs(10));
    }
    cloud.shutdown();
    Ok(report)
}

/// Counts the shapes of a brownfield fleet's provisioned devices.
fn brownfield_mix(devices: &[FleetDevice]) -> BrownfieldMix {
    let provisioned = || devices.iter().filter(|d| !d.jitr);
    BrownfieldMix {
        customer_policies: provisioned()
            .filter(|d| {
                d.policies
                    .iter()
                    .any(|p| p != emulator::cloud::DEVICE_POLICY)
            })
            .count(),
        thing_not_cn: provisioned().filter(|d| d.common_name.is_some()).count(),
        shared_certificates: provisioned().filter(|d| !d.other_things.is_empty()).count(),
        wildcard_subscribers: provisioned()
            .filter(|d| d.subscription == device::Subscription::Wildcard)
            .count(),
    }
}

/// Refuses a fleet the process cannot open sockets for.
fn check_open_files(opts: &Options, total: usize) -> anyhow::Result<()> {
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
    Ok(())
}

/// The cloud of a simulation, and what it was started with.
struct StartedCloud {
    cloud: Cloud,
    /// The customer CA of the JITR devices, if any.
    ca: Option<TestCa>,
    /// The invocation and each Lambda retry of a commit: all fail for the
    /// rotations whose commit is made never to land.
    commit_attempts: usize,
}

/// Starts the cloud on the synthesized template (with a JITR CA when the
/// fleet has JITR devices).
async fn start_cloud(opts: &Options) -> anyhow::Result<StartedCloud> {
    let ca = if opts.jitr > 0 {
        Some(TestCa::new("fleetcert simulation JITR CA")?)
    } else {
        None
    };
    let ca_ids: Vec<String> = match &ca {
        Some(ca) => vec![rules::csr::certificate_id(&ca.pem)?],
        None => Vec::new(),
    };
    let (mut deployment, _) = synthesized_deployment(&ca_ids)?;
    if opts.brownfield {
        deployment = brownfield::with_policies(deployment);
    }
    let mut config = CloudConfig::new(deployment);
    if opts.brownfield {
        config.handlers.policy_copy = brownfield::copy_rule();
    }
    config.sweep_every = Some(Duration::from_millis(500));
    config.max_open_rotations = opts.max_open_rotations;
    if opts.faults {
        config.handlers.rotation_deadline_ms = 8_000;
    } else {
        config.handlers.rotation_deadline_ms = i64::try_from(opts.timeout.as_millis())
            .unwrap_or(i64::MAX)
            .max(60_000);
    }
    let commit_attempts = config.lambda_retries as usize + 1;
    let cloud = Cloud::start(config).await?;
    if let Some(ca) = &ca {
        cloud.register_ca(&ca.pem)?;
    }
    Ok(StartedCloud {
        cloud,
        ca,
        commit_attempts,
    })
}

/// One device to install: where it stands, its certificate and key (PEM).
type Install = (FleetDevice, String, String);

/// Registers the fleet: `opts.devices` provisioned things (the first
/// `expiring` with certificates the audit finds) and `opts.jitr` devices
/// with certificates of `ca` the cloud has never seen.
async fn provision(
    cloud: &Cloud,
    opts: &Options,
    ca: Option<&TestCa>,
    expiring: usize,
) -> anyhow::Result<Vec<Install>> {
    let mut installs = Vec::with_capacity(opts.devices + opts.jitr);
    for i in 0..opts.devices {
        let thing = format!("sim-{i:06}");
        let days = if i < expiring {
            opts.threshold_days.saturating_sub(20).max(1)
        } else {
            365
        };
        if opts.brownfield {
            let shape = brownfield::shape(i);
            let policies: Vec<&str> = shape.policies.iter().map(String::as_str).collect();
            let others: Vec<&str> = shape.other_things.iter().map(String::as_str).collect();
            let creds = cloud
                .provision_device(&Provisioning {
                    thing: &shape.thing,
                    common_name: &shape.common_name,
                    validity_days: days,
                    issued_days_ago: 0,
                    policies: &policies,
                    other_things: &others,
                })
                .await?;
            let mut device = FleetDevice::new(shape.thing.clone(), creds.certificate_id, false);
            device.common_name = (shape.common_name != shape.thing).then_some(shape.common_name);
            device.subscription = shape.subscription;
            device.policies = shape.policies;
            device.other_things = shape.other_things;
            installs.push((device, creds.certificate_pem, creds.private_key_pem));
            continue;
        }
        let creds = cloud.register_device(&thing, days).await?;
        installs.push((
            FleetDevice::new(thing, creds.certificate_id, false),
            creds.certificate_pem,
            creds.private_key_pem,
        ));
    }
    if let Some(ca) = ca {
        for i in 0..opts.jitr {
            let thing = format!("jitr-{i:06}");
            let test_support::DeviceCert {
                cert_pem: cert,
                key_pem: key,
                ..
            } = ca.device(&thing)?;
            let id = rules::csr::certificate_id(&cert)?;
            installs.push((FleetDevice::new(thing, id, true), cert, key));
        }
    }
    Ok(installs)
}

fn progress_bar(opts: &Options, total: usize) -> ProgressBar {
    if opts.progress {
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
    }
}

/// How the rotation phase went.
struct Rotations {
    started: Instant,
    last_rotation: Instant,
    cycles: u32,
    converged: bool,
}

/// Audits until an audit finds nothing (or `opts.max_audit_cycles`, or the
/// deadline); after each audit, follows the events until no rotation is
/// open and the queue is empty.
///
/// Samples the fleet into the tracker's timeline as it goes (`faults`
/// fills in the faults injected so far).
async fn rotate(
    cloud: &Cloud,
    opts: &Options,
    deadline: Instant,
    (rx, state): (
        &mut mpsc::UnboundedReceiver<super::FleetEvent>,
        &mut Tracker,
    ),
    progress: &ProgressBar,
    faults: &dyn Fn(&mut Sample),
) -> anyhow::Result<Rotations> {
    let started = Instant::now();
    let sample = |state: &mut Tracker, force: bool| {
        let t_s = started.elapsed().as_secs_f64();
        if force || state.timeline.due(t_s) {
            let mut s = Sample {
                t_s,
                rotated: state.rotated_devices.len(),
                open_rotations: cloud.ports().ports.store.unsettled_count(),
                queued: cloud.queued(),
                ..Sample::default()
            };
            faults(&mut s);
            state.timeline.record(s);
        }
    };
    sample(state, true);
    let mut last_rotation = started;
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
            sample(state, false);
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
    sample(state, true);
    if !converged {
        converged = expiring_left(cloud, opts.threshold_days) == 0;
    }
    Ok(Rotations {
        started,
        last_rotation,
        cycles,
        converged,
    })
}

/// Follows the fleet's events (sampling as it goes) until `done` holds,
/// checked every 100 ms, or the deadline.
async fn follow(
    deadline: Instant,
    (rx, state): (
        &mut mpsc::UnboundedReceiver<super::FleetEvent>,
        &mut Tracker,
    ),
    progress: &ProgressBar,
    last_rotation: &mut Instant,
    sample: &dyn Fn(&mut Tracker, bool),
    done: &mut dyn FnMut() -> bool,
) {
    loop {
        let tick = tokio::time::sleep(Duration::from_millis(100));
        tokio::pin!(tick);
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else { break };
                    if state.observe(&ev) {
                        *last_rotation = Instant::now();
                    }
                    progress.set_position(state.rotated_devices.len() as u64);
                }
                () = &mut tick => break,
            }
        }
        sample(state, false);
        if done() || Instant::now() >= deadline {
            return;
        }
    }
}

/// True once no rotation is open or owes a cleanup and the queue has been
/// empty for 300 ms (the last acks and cleanups land).
fn quiet(cloud: &Cloud) -> impl FnMut() -> bool + '_ {
    let mut since: Option<Instant> = None;
    move || {
        let idle = cloud.ports().ports.store.unsettled_count() == 0 && cloud.queued() == 0;
        match (idle, since) {
            (true, None) => since = Some(Instant::now()),
            (true, Some(t)) if t.elapsed() > Duration::from_millis(300) => return true,
            (false, _) => since = None,
            _ => {}
        }
        false
    }
}

/// Rotates `members` (the devices with expiring certificates, in order) by
/// a campaign: follows it until the abort rule pauses it or it finishes;
/// paused, checks what it left untouched and told support, lets the open
/// rotations finish, fixes the broken firmware, resumes (retrying the
/// failed members) and follows it to the end.
#[allow(clippy::too_many_arguments)]
async fn rotate_campaign(
    cloud: &Cloud,
    opts: &Options,
    copts: &CampaignOptions,
    (members, broken, fixed): (&[FleetDevice], &[bool], &AtomicBool),
    deadline: Instant,
    (rx, state): (
        &mut mpsc::UnboundedReceiver<super::FleetEvent>,
        &mut Tracker,
    ),
    progress: &ProgressBar,
    faults: &dyn Fn(&mut Sample),
) -> anyhow::Result<(Rotations, CampaignReport)> {
    let started = Instant::now();
    let sample = |state: &mut Tracker, force: bool| {
        let t_s = started.elapsed().as_secs_f64();
        if force || state.timeline.due(t_s) {
            let mut s = Sample {
                t_s,
                rotated: state.rotated_devices.len(),
                open_rotations: cloud.ports().ports.store.unsettled_count(),
                queued: cloud.queued(),
                ..Sample::default()
            };
            faults(&mut s);
            state.timeline.record(s);
        }
    };
    sample(state, true);
    let mut last_rotation = started;
    let certificates: Vec<String> = members
        .iter()
        .map(|d| d.initial_certificate_id.clone())
        .collect();
    let created = campaign::create(cloud, copts, &certificates).await?;
    let waves = created.waves();
    let mut report = CampaignReport {
        id: created.id.to_string(),
        members: created.total,
        waves: waves.iter().map(|w| w.end - w.start).collect(),
        broken_devices: broken.iter().filter(|b| **b).count(),
        broken_in_canary: waves.first().map_or(0, |w| {
            (w.start as usize..w.end as usize)
                .filter(|i| broken.get(*i).copied().unwrap_or(false))
                .count()
        }),
        ..CampaignReport::default()
    };
    let current = || campaign::stored(cloud);
    let stopped = || campaign::stored_now(cloud).is_none_or(|c| campaign::stopped(&c));
    // the sweeper (every 500 ms) releases, counts, pauses
    let mut paused_or_done = stopped;
    follow(
        deadline,
        (rx, state),
        progress,
        &mut last_rotation,
        &sample,
        &mut paused_or_done,
    )
    .await;
    let c = current().await?;
    if let rules::campaign::CampaignState::Paused { trip: Some(trip) } = &c.state {
        report.paused_in_wave = Some(trip.wave);
        report.trip = Some(trip.clone());
        report.released_at_pause = c.counts.released;
        let untouched = campaign::pending_members(cloud, &c);
        report.untouched_at_pause = u32::try_from(untouched.len()).unwrap_or(u32::MAX);
        // open rotations finish; nothing new starts
        follow(
            deadline,
            (rx, state),
            progress,
            &mut last_rotation,
            &sample,
            &mut quiet(cloud),
        )
        .await;
        let store = &cloud.ports().ports.store;
        report.rotated_while_paused = untouched
            .iter()
            .filter_map(|m| members.get(*m as usize))
            .filter(|d| !store.rows_for_thing(&d.thing).is_empty())
            .count();
        report.support_notified = cloud.notifications().iter().any(|n| {
            serde_json::from_str::<serde_json::Value>(&n.message).is_ok_and(|v| {
                v["kind"] == "campaign_paused"
                    && v["campaignId"] == report.id.as_str()
                    && v["trip"]["failed"].as_u64() == Some(u64::from(trip.failed))
            })
        });
        tracing::info!(
            ?trip,
            untouched = untouched.len(),
            "campaign paused; fixing the firmware and resuming"
        );
        fixed.store(true, Ordering::Relaxed);
        campaign::resume(cloud).await?;
        let mut finished = stopped;
        follow(
            deadline,
            (rx, state),
            progress,
            &mut last_rotation,
            &sample,
            &mut finished,
        )
        .await;
    }
    follow(
        deadline,
        (rx, state),
        progress,
        &mut last_rotation,
        &sample,
        &mut quiet(cloud),
    )
    .await;
    sample(state, true);
    let c = current().await?;
    report.finished = c.state == rules::campaign::CampaignState::Finished;
    report.committed = c.counts.committed;
    report.failed = c.counts.failed;
    report.expired = c.counts.expired;
    report.skipped = c.counts.skipped;
    let converged = report.finished && expiring_left(cloud, opts.threshold_days) == 0;
    Ok((
        Rotations {
            started,
            last_rotation,
            cycles: 0,
            converged,
        },
        report,
    ))
}

/// What the devices hold, checked against the registry.
struct Held {
    /// Every certificate a device holds (current, or kept until its
    /// rotation's commit is confirmed).
    certificates: HashSet<String>,
    bricked: usize,
    rotated: usize,
    jitr_activated: usize,
}

/// Nothing bricked: every device's current certificate is ACTIVE, attached
/// to its things and carries exactly its policies (a rotation keeps both);
/// counts the rotated and the JITR devices too.
fn check_devices(cloud: &Cloud, fleet: &Fleet, expiring: usize) -> Held {
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
                // ACTIVE, on the things and with the policies it started with
                c.status == CertificateStatus::Active
                    && std::iter::once(&d.thing)
                        .chain(&d.other_things)
                        .all(|t| c.things.contains(t))
                    && c.policies.len() == d.policies.len()
                    && d.policies.iter().all(|p| c.policies.contains(p))
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
    Held {
        certificates: held,
        bricked,
        rotated,
        jitr_activated,
    }
}

/// Nothing orphaned: certificates no device holds that are still ACTIVE or
/// attached, each logged with the rotations that touched it.
fn orphaned_certificates(cloud: &Cloud, held: &HashSet<String>) -> usize {
    let registry = cloud.registry();
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
    orphans.len()
}

/// ACTIVE certificates attached to a thing that expire within the
/// threshold (what the next audit would find).
pub(super) fn expiring_left(cloud: &Cloud, threshold_days: u32) -> usize {
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
