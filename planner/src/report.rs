//! What a plan says: the report a platform team reads (and `--json`
//! prints whole), built from a run's measurements, the quota bound and the
//! price table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use lambdas::ports::{Operation, PortKind, port_of};
use rules::functions::Function;
use serde::Serialize;

use crate::bound::QuotaBound;
use crate::deployment::Deployment;
use crate::options::PlanOptions;
use crate::prices::Prices;
use crate::run::Outcome;

const HOUR_NS: f64 = 3.6e12;

/// Requests to one service, and their cost.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServiceCost {
    /// Requests (or messages, invocations).
    pub requests: u64,
    /// USD.
    pub usd: f64,
}

/// One operation's calls.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OperationCalls {
    /// Calls made.
    pub calls: u64,
    /// Refused as throttled by the account (each retried by the limiter
    /// unless its retries were spent).
    pub throttled: u64,
    /// The account quota, requests per second.
    pub quota: f64,
    /// The busiest hour's average rate, requests per second.
    pub peak_per_second: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Devices planned.
    pub devices: u64,
    /// The seed.
    pub seed: u64,
    /// The memory estimate of the run, bytes, and whether it is over the floor.
    pub memory_estimate_bytes: u64,
    /// Settings read from the synthesized stack.
    pub deployment: BTreeMap<String, String>,
    /// Devices that rotated (switched to a committed new certificate).
    pub rotated: u64,
    /// Hours from the first audit to the last device's rotation (or to
    /// the end of the run when some never rotated).
    pub makespan_hours: f64,
    /// Whether every device rotated.
    pub finished: bool,
    /// Hours until half, and until 99 %, of the fleet had rotated (`None`:
    /// never reached).
    pub rotated_p50_hours: Option<f64>,
    /// See [`rotated_p50_hours`](Self::rotated_p50_hours).
    pub rotated_p99_hours: Option<f64>,
    /// Hours simulated.
    pub simulated_hours: f64,
    /// The quota bound.
    pub bound: QuotaBound,
    /// Makespan over the bound (1.0: as fast as the quotas allow).
    pub makespan_over_bound: f64,
    /// Rotations committed in each hour of the run.
    pub rotations_per_hour: Vec<u64>,
    /// Rotations open at the start of each hour.
    pub open_per_hour: Vec<u64>,
    /// Rotations expired / failed in each hour.
    pub closed_unsuccessfully_per_hour: Vec<u64>,
    /// The most rotations open at once.
    pub peak_open_rotations: usize,
    /// The operation with the highest quota utilisation over the run.
    pub busiest_quota: String,
    /// Calls per operation.
    pub operations: BTreeMap<String, OperationCalls>,
    /// Calls per operation per hour.
    pub operations_per_hour: BTreeMap<String, Vec<u64>>,
    /// Throttled calls retried by the limiter (and then admitted or failed).
    pub throttled_retried: u64,
    /// Handler failures from a call still throttled after its retries.
    pub throttled_failed: u64,
    /// Rotation rows by final state and device class.
    pub rotations_by_state: BTreeMap<String, BTreeMap<String, u64>>,
    /// Support notifications by kind.
    pub support_notices: BTreeMap<String, u64>,
    /// Devices whose certificate expired before they rotated, by class.
    pub expired_unrotated: BTreeMap<String, u64>,
    /// Per function: invocations, errors, timeouts, dead letters.
    pub functions: BTreeMap<String, BTreeMap<String, f64>>,
    /// Rotation queue: messages dead-lettered, expired by retention.
    pub queue_dead_letters: u64,
    /// Rotation queue messages deleted by their retention period.
    pub queue_expired: u64,
    /// MQTT messages lost to devices offline past the session expiry.
    pub messages_lost: u64,
    /// Audits: (hour, findings).
    pub audits: Vec<(f64, usize)>,
    /// Requests and cost by service.
    pub cost: BTreeMap<String, ServiceCost>,
    /// Total USD.
    pub cost_usd: f64,
    /// The price table's date and region.
    pub prices: String,
    /// What to change, when the configuration cannot make it.
    pub recommendations: Vec<String>,
    /// The campaign at the end (state, wave, counts), when the plan
    /// rotated by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
}

impl Report {
    /// Builds the report of a run.
    pub fn new(
        options: &PlanOptions,
        deployment: &Deployment,
        bound: QuotaBound,
        outcome: &Outcome,
        prices: &Prices,
    ) -> Report {
        let devices = &outcome.fleet.devices;
        let rotated = devices.iter().filter(|d| d.rotated_ns.is_some()).count() as u64;
        let finished = rotated == devices.len() as u64;
        let last = devices
            .iter()
            .filter_map(|d| d.rotated_ns)
            .max()
            .unwrap_or(0);
        let end = if finished { last } else { outcome.end_ns };
        let makespan_hours = end as f64 / HOUR_NS;
        let mut times: Vec<u64> = devices.iter().filter_map(|d| d.rotated_ns).collect();
        times.sort_unstable();
        let quantile = |q: f64| {
            let k = ((devices.len() as f64 * q).ceil() as usize).max(1);
            times.get(k - 1).map(|t| round3(*t as f64 / HOUR_NS))
        };
        let c = &outcome.counters;
        let hours = crate::cloud::hour_of(outcome.end_ns) + 1;
        let pad = |v: Option<&Vec<u64>>| {
            let mut v = v.cloned().unwrap_or_default();
            v.resize(hours, 0);
            v
        };
        let rotations_per_hour = pad(c.closed_hourly.get("COMMITTED"));
        let mut closed_bad = pad(c.closed_hourly.get("EXPIRED"));
        for (i, n) in pad(c.closed_hourly.get("FAILED")).into_iter().enumerate() {
            closed_bad[i] += n;
        }
        let mut open_per_hour = outcome.open_hourly.clone();
        open_per_hour.resize(hours, 0);
        let mut operations = BTreeMap::new();
        let mut operations_per_hour = BTreeMap::new();
        let mut busiest = (String::new(), 0.0);
        for (op, calls) in &c.calls {
            let hourly = pad(c.hourly.get(op));
            let quota = options.quota(*op);
            let peak = hourly.iter().copied().max().unwrap_or(0) as f64 / 3600.0;
            let utilisation = *calls as f64 / (quota * (outcome.end_ns as f64 / 1e9).max(1.0));
            if op.default_quota_per_second().is_some() && utilisation > busiest.1 {
                busiest = (op.name().to_owned(), utilisation);
            }
            operations.insert(
                op.name().to_owned(),
                OperationCalls {
                    calls: *calls,
                    throttled: c.throttled.get(op).copied().unwrap_or(0),
                    quota,
                    peak_per_second: peak,
                },
            );
            operations_per_hour.insert(op.name().to_owned(), hourly);
        }
        let throttled_total: u64 = c.throttled.values().sum();
        let mut rotations_by_state: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((state, class), n) in &outcome.rows {
            *rotations_by_state
                .entry(state.clone())
                .or_default()
                .entry((*class).to_owned())
                .or_default() += n;
        }
        let end_ms = crate::cloud::START_MS + (outcome.end_ns / 1_000_000) as i64;
        let mut expired_unrotated: BTreeMap<String, u64> = BTreeMap::new();
        for d in devices {
            let rotated_ms = d
                .rotated_ns
                .map(|ns| crate::cloud::START_MS + (ns / 1_000_000) as i64);
            let expired = d.expires_ms <= rotated_ms.unwrap_or(end_ms);
            if expired && d.expires_ms <= end_ms {
                *expired_unrotated
                    .entry(d.behaviour.class().to_owned())
                    .or_default() += 1;
            }
        }
        let functions = outcome
            .functions
            .iter()
            .map(|(f, s)| {
                (
                    f.name().to_owned(),
                    BTreeMap::from([
                        ("reserved_concurrency".to_owned(), f64::from(s.concurrency)),
                        ("invocations".to_owned(), s.invocations as f64),
                        ("errors".to_owned(), s.errors as f64),
                        ("timeouts".to_owned(), s.timeouts as f64),
                        ("dead_letters".to_owned(), s.dead_letters as f64),
                        (
                            "waited_for_concurrency".to_owned(),
                            s.waited_for_concurrency as f64,
                        ),
                        (
                            "gb_seconds".to_owned(),
                            (s.gb_seconds * 1000.0).round() / 1000.0,
                        ),
                    ]),
                )
            })
            .collect();
        let cost = cost(outcome, options, prices);
        let cost_usd: f64 = cost.values().map(|s| s.usd).sum();
        let makespan_over_bound = if bound.seconds > 0.0 {
            makespan_hours * 3600.0 / bound.seconds
        } else {
            0.0
        };
        let mut deployment_facts = BTreeMap::new();
        for (f, d) in &deployment.functions {
            deployment_facts.insert(
                format!("{} reserved concurrency", f.name()),
                d.concurrency.to_string(),
            );
        }
        let starter = deployment.function(Function::RotationStarter);
        let sweeper = deployment.function(Function::Sweeper);
        for (k, v) in [
            ("lambda timeout", format!("{} s", starter.timeout.as_secs())),
            (
                "audit period",
                format!("{} h", deployment.audit_period.as_secs() / 3600),
            ),
            (
                "audit threshold",
                format!("{} days", deployment.threshold.as_secs() / 86_400),
            ),
            (
                "rotation deadline",
                format!("{} h", starter.config.rotation_deadline_ms / 3_600_000),
            ),
            (
                "sweep period",
                format!("{} min", deployment.sweep_period.as_secs() / 60),
            ),
            ("sweep max rows", sweeper.config.sweep_max_rows.to_string()),
            ("queue batch size", deployment.batch_size.to_string()),
            (
                "queue visibility timeout",
                format!("{} s", deployment.visibility_timeout.as_secs()),
            ),
            (
                "queue max receive count",
                deployment.max_receive_count.to_string(),
            ),
            (
                "persistent session expiry",
                format!("{} h", options.session_expiry_hours),
            ),
        ] {
            deployment_facts.insert(k.to_owned(), v);
        }
        let mut report = Report {
            devices: options.devices,
            seed: options.seed,
            memory_estimate_bytes: options.memory_estimate(),
            deployment: deployment_facts,
            rotated,
            makespan_hours: round3(makespan_hours),
            finished,
            rotated_p50_hours: quantile(0.5),
            rotated_p99_hours: quantile(0.99),
            simulated_hours: round3(outcome.end_ns as f64 / HOUR_NS),
            makespan_over_bound: round3(makespan_over_bound),
            bound,
            rotations_per_hour,
            open_per_hour,
            closed_unsuccessfully_per_hour: closed_bad,
            peak_open_rotations: outcome.peak_open,
            busiest_quota: busiest.0,
            operations,
            operations_per_hour,
            throttled_retried: throttled_total,
            throttled_failed: outcome.throttle_failures,
            rotations_by_state,
            support_notices: c.notices.clone(),
            expired_unrotated,
            functions,
            queue_dead_letters: outcome.queue_dead_letters,
            queue_expired: outcome.queue_expired,
            messages_lost: outcome.messages_lost,
            audits: outcome
                .audits
                .iter()
                .map(|(t, n)| (round3(*t as f64 / HOUR_NS), *n))
                .collect(),
            cost,
            cost_usd: (cost_usd * 100.0).round() / 100.0,
            prices: format!("{} list prices of {}", prices.region, prices.date),
            recommendations: Vec::new(),
            campaign: outcome.campaign.as_ref().map(|c| {
                let waves = c.waves();
                let n = &c.counts;
                let state = match &c.state {
                    rules::campaign::CampaignState::Paused { trip: Some(t) } => {
                        format!("PAUSED by its abort rule ({t})")
                    }
                    other => other.name().to_owned(),
                };
                format!(
                    "{state}, wave {} of {} {:?}; {} released, {} committed, {} failed, {} expired, {} skipped",
                    (c.wave as usize + 1).min(waves.len()),
                    waves.len(),
                    waves.iter().map(|w| w.end - w.start).collect::<Vec<_>>(),
                    n.released,
                    n.committed,
                    n.failed,
                    n.expired,
                    n.skipped
                )
            }),
        };
        report.recommendations = crate::advice::recommend(&report, options, deployment);
        report
    }

    /// The report as a person reads it.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let w = &mut s;
        let _ = writeln!(
            w,
            "fleetcert plan: {} devices, seed {}",
            self.devices, self.seed
        );
        let _ = writeln!(
            w,
            "memory estimate: {:.1} GiB{}",
            self.memory_estimate_bytes as f64 / f64::from(1u32 << 30),
            if self.memory_estimate_bytes > crate::options::MEMORY_FLOOR_BYTES {
                " (over the 8 GiB floor)"
            } else {
                ""
            }
        );
        let _ = writeln!(w, "\ndeployment (from the synthesized stack):");
        for (k, v) in &self.deployment {
            let _ = writeln!(w, "  {k:<36} {v}");
        }
        let _ = writeln!(w, "\nresult:");
        let _ = writeln!(
            w,
            "  rotated                {} of {}{}",
            self.rotated,
            self.devices,
            if self.finished { "" } else { " (not finished)" }
        );
        if let Some(c) = &self.campaign {
            let _ = writeln!(w, "  campaign               {c}");
        }
        let _ = writeln!(
            w,
            "  makespan               {:.2} h ({:.2} days)",
            self.makespan_hours,
            self.makespan_hours / 24.0
        );
        let h = |v: Option<f64>| v.map_or_else(|| "never".to_owned(), |h| format!("{h:.2} h"));
        let _ = writeln!(
            w,
            "  half / 99 % rotated    {} / {}",
            h(self.rotated_p50_hours),
            h(self.rotated_p99_hours)
        );
        let _ = writeln!(
            w,
            "  quota bound            {:.2} h, bound by {} ({:.3} calls per rotation at {} /s)",
            self.bound.seconds / 3600.0,
            self.bound.binding,
            self.bound
                .calls_per_rotation
                .get(&self.bound.binding)
                .copied()
                .unwrap_or(0.0),
            self.bound
                .quota
                .get(&self.bound.binding)
                .copied()
                .unwrap_or(0.0)
        );
        if self.finished {
            let _ = writeln!(
                w,
                "  makespan / bound       {:.3}",
                self.makespan_over_bound
            );
        } else {
            let _ = writeln!(w, "  makespan / bound       n/a: the fleet did not finish");
        }
        let _ = writeln!(w, "  busiest quota          {}", self.busiest_quota);
        let _ = writeln!(w, "  peak open rotations    {}", self.peak_open_rotations);
        let _ = writeln!(
            w,
            "  throttled calls        {} retried, {} failed after the retries",
            self.throttled_retried, self.throttled_failed
        );
        let _ = writeln!(
            w,
            "  queue                  {} dead-lettered, {} expired by retention; {} MQTT messages lost offline",
            self.queue_dead_letters, self.queue_expired, self.messages_lost
        );
        let _ = writeln!(w, "\nrotations by final state (and device class):");
        for (state, classes) in &self.rotations_by_state {
            let total: u64 = classes.values().sum();
            let detail: Vec<String> = classes.iter().map(|(c, n)| format!("{c} {n}")).collect();
            let _ = writeln!(w, "  {state:<32} {total:>9}  ({})", detail.join(", "));
        }
        let unrotated: u64 = self.expired_unrotated.values().sum();
        let _ = writeln!(w, "\ncertificates that expire unrotated: {unrotated}");
        for (class, n) in &self.expired_unrotated {
            let _ = writeln!(w, "  {class:<32} {n:>9}");
        }
        let _ = writeln!(w, "\nrotations per hour (committed):");
        let _ = writeln!(w, "  {}", sparkline(&self.rotations_per_hour));
        let busiest = self.rotations_per_hour.iter().copied().max().unwrap_or(0);
        let _ = writeln!(
            w,
            "  busiest hour {busiest}, hours {}",
            self.rotations_per_hour.len()
        );
        let _ = writeln!(w, "\ncalls (quota /s, peak hour's rate /s, throttled):");
        for (op, c) in &self.operations {
            let _ = writeln!(
                w,
                "  {op:<26} {:>11} {:>7.1} {:>8.2} {:>9}",
                c.calls, c.quota, c.peak_per_second, c.throttled
            );
        }
        let _ = writeln!(w, "\nfunctions:");
        for (f, m) in &self.functions {
            let g = |k: &str| m.get(k).copied().unwrap_or(0.0);
            let _ = writeln!(
                w,
                "  {f:<17} invocations {:>9} errors {:>6} timeouts {:>5} dead letters {:>5} GB-s {:>10.1}",
                g("invocations"),
                g("errors"),
                g("timeouts"),
                g("dead_letters"),
                g("gb_seconds")
            );
        }
        if !self.support_notices.is_empty() {
            let _ = writeln!(w, "\nsupport notifications:");
            for (k, n) in &self.support_notices {
                let _ = writeln!(w, "  {k:<32} {n:>9}");
            }
        }
        let _ = writeln!(w, "\ncost estimate ({}):", self.prices);
        for (service, c) in &self.cost {
            let _ = writeln!(
                w,
                "  {service:<32} {:>12} requests  ${:>10.2}",
                c.requests, c.usd
            );
        }
        let _ = writeln!(
            w,
            "  {:<32} {:>12}           ${:>10.2}",
            "total", "", self.cost_usd
        );
        if !self.recommendations.is_empty() {
            let _ = writeln!(w, "\nrecommendations:");
            for r in &self.recommendations {
                let _ = writeln!(w, "  - {r}");
            }
        }
        s
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn sparkline(values: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let step = values.len().div_ceil(96).max(1);
    values
        .chunks(step)
        .map(|c| {
            let v = c.iter().copied().max().unwrap_or(0);
            if v == 0 {
                ' '
            } else {
                BARS[((v * 7) / max) as usize]
            }
        })
        .collect()
}

/// Requests per service and their cost.
fn cost(
    outcome: &Outcome,
    options: &PlanOptions,
    prices: &Prices,
) -> BTreeMap<String, ServiceCost> {
    let c = &outcome.counters;
    let calls = |pred: &dyn Fn(Operation) -> bool| -> u64 {
        c.calls
            .iter()
            .filter(|(op, _)| pred(**op))
            .map(|(_, n)| n)
            .sum()
    };
    let mut out = BTreeMap::new();
    let mut put = |name: &str, requests: u64, usd: f64| {
        out.insert(
            name.to_owned(),
            ServiceCost {
                requests,
                usd: (usd * 100.0).round() / 100.0,
            },
        );
    };
    let registry = calls(&|op| port_of(op) == PortKind::Registry);
    put(
        "AWS IoT Core registry",
        registry,
        registry as f64 / 1e6 * prices.per_million("iot_registry_operation"),
    );
    let mqtt = outcome.mqtt_messages;
    put(
        "AWS IoT Core messaging",
        mqtt,
        mqtt as f64 / 1e6 * prices.per_million("iot_message"),
    );
    let rules = outcome.rule_actions;
    put(
        "AWS IoT Core rules",
        rules,
        rules as f64 / 1e6
            * (prices.per_million("iot_rule_triggered") + prices.per_million("iot_rule_action")),
    );
    // a create or a closing update is a two-item transaction (row and
    // pointer): two write units per item written transactionally; each row
    // written is also written to the certificate index (one unit)
    let writes = calls(&|op| matches!(op, Operation::CreateRotation | Operation::UpdateRotation));
    let reads = calls(&|op| {
        matches!(
            op,
            Operation::GetRotation
                | Operation::LatestRotationForThing
                | Operation::ListDueRotations
                | Operation::LatestRotationForCertificate
        )
    });
    put(
        "Amazon DynamoDB",
        writes + reads,
        (writes * 3) as f64 / 1e6 * prices.per_million("dynamodb_write_request")
            + reads as f64 / 1e6 * prices.per_million("dynamodb_read_request"),
    );
    let sqs = calls(&|op| op == Operation::SendMessageBatch) + outcome.sqs_receives;
    put(
        "Amazon SQS",
        sqs,
        sqs as f64 / 1e6 * prices.per_million("sqs_request"),
    );
    let sns = calls(&|op| op == Operation::NotifySupport) + outcome.audits.len() as u64;
    put(
        "Amazon SNS",
        sns,
        sns as f64 / 1e6 * prices.per_million("sns_publish"),
    );
    let invocations: u64 = outcome.functions.values().map(|f| f.invocations).sum();
    let gb_s: f64 = outcome.functions.values().map(|f| f.gb_seconds).sum();
    let arch = match options.config.lambda.architecture {
        infra::config::Architecture::Arm64 => "arm64",
        infra::config::Architecture::X86_64 => "x86_64",
    };
    put(
        "AWS Lambda",
        invocations,
        invocations as f64 / 1e6 * prices.per_million("lambda_request")
            + gb_s * prices.usd_per_gb_second.get(arch).copied().unwrap_or(0.0),
    );
    out
}
