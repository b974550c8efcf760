//! The recommendations of a report: what to change when the configuration
//! cannot rotate the fleet in time, computed from the run and the bound.

use lambdas::handlers::audit_fanout::BATCHES_IN_FLIGHT;
use lambdas::ports::{MAX_QUEUE_BATCH, Operation};
use rules::functions::Function;

use crate::deployment::Deployment;
use crate::options::PlanOptions;
use crate::report::Report;

/// `ListAuditFindings`' page size (its `maxResults` at most, as the memory
/// registry serves it).
const FINDINGS_PAGE: usize = 250;

/// What to change, most important first (empty when the plan works).
pub fn recommend(r: &Report, options: &PlanOptions, d: &Deployment) -> Vec<String> {
    let mut out = Vec::new();
    let unrotated: u64 = r.expired_unrotated.values().sum();
    let deadline_days = d
        .function(Function::RotationStarter)
        .config
        .rotation_deadline_ms as f64
        / 86_400_000.0;
    let bound_days = r.bound.seconds / 86_400.0;
    let threshold_days = d.threshold.as_secs_f64() / 86_400.0;
    let audit_days = d.audit_period.as_secs_f64() / 86_400.0;
    let class = |c: &str| r.expired_unrotated.get(c).copied().unwrap_or(0);
    let online = class("online");
    if online > 0 {
        let needed = (bound_days + deadline_days + audit_days).ceil();
        if needed > threshold_days {
            out.push(format!(
                "{online} always-online devices' certificates expire before they rotate: set audit.expiring_threshold_days to at least {needed:.0} (now {threshold_days:.0}): the quota bound ({bound_days:.1} days), a rotation's deadline and one audit period must fit before expiry"
            ));
            let q = r.bound.quota.get(&r.bound.binding).copied().unwrap_or(0.0);
            let factor = bound_days / (threshold_days - deadline_days - audit_days).max(1.0);
            out.push(format!(
                "or ask AWS to raise {} from {q} to at least {:.0} requests per second (then plan with --quota {}={:.0}): alone it needs {bound_days:.1} days for {} devices",
                r.bound.binding, (q * factor).ceil(), r.bound.binding, (q * factor).ceil(), options.devices
            ));
        } else {
            out.push(format!(
                "{online} always-online devices' certificates expire before they rotate although the quotas allow the whole fleet in {bound_days:.1} days (threshold {threshold_days:.0} days): the deployment loses the time, see below"
            ));
        }
    }
    let daily = class("online daily");
    if daily > 0 {
        out.push(format!(
            "{daily} devices online once a day expire unrotated: their csr_req or crt waits only {} h in the persistent session; a session expiry of at least 24 h (AWS IoT allows up to 168 h; plan with --session-expiry-hours 24) reaches them at their next connection",
            options.session_expiry_hours
        ));
    }
    let away = class("offline for days");
    if away > 0 {
        out.push(format!(
            "{away} devices offline for days expire unrotated: no configuration reaches a device that stays offline past its certificate's expiry; support must re-provision them"
        ));
    }
    let support = class("never answers") + class("sends crt_err");
    if support > 0 {
        out.push(format!(
            "{support} devices never answered or refused their new certificate (support was notified of each): firmware to fix, not configuration"
        ));
    }
    let _ = unrotated;
    if r.throttled_failed > 0 {
        let shares: Vec<String> = r
            .bound
            .shares
            .iter()
            .flat_map(|(f, ops)| {
                ops.iter()
                    .map(move |(op, rate)| format!("{f} FLEETCERT_QUOTA_{op}={rate:.2}"))
            })
            .collect();
        out.push(format!(
            "{} handler invocations failed on a call still throttled after the limiter's retries: each function paces itself at the whole quota (split only by its own reserved concurrency) while several functions share one account quota (the busiest: {}); give each function its share by its calls per rotation ({}); plan it with --split-quotas",
            r.throttled_failed, r.busiest_quota, shares.join(", ")
        ));
    }
    if let Some(f) = r.functions.get(Function::AuditFanout.name())
        && f.get("timeouts").copied().unwrap_or(0.0) > 0.0
    {
        let fanout = d.function(Function::AuditFanout);
        let timeout = fanout.timeout.as_secs_f64();
        // one page: its findings in batches of ten, BATCHES_IN_FLIGHT at a
        // time, while the next ListAuditFindings is in flight; each call at
        // the function's own rate or its round trip, whichever is slower
        let pace = |op: Operation| {
            (1.0 / fanout.limits.instance_rate(op)).max(crate::cloud::latency(op).as_secs_f64())
        };
        let page = FINDINGS_PAGE as f64;
        let batches = (page / MAX_QUEUE_BATCH as f64).ceil();
        let rounds = (batches / BATCHES_IN_FLIGHT as f64).ceil();
        let sending = (rounds * pace(Operation::SendMessageBatch))
            .max(batches / fanout.limits.instance_rate(Operation::SendMessageBatch));
        let per_second = page / pace(Operation::ListAuditFindings).max(sending);
        let findings = r.audits.iter().map(|(_, n)| *n).max().unwrap_or(0);
        let at_most = per_second * f64::from(*infra::config::LAMBDA_TIMEOUT_SECONDS.end());
        let mut line = format!(
            "audit-fanout timed out {} times: one invocation queues every finding of an audit, about {per_second:.0} a second here, so its {timeout:.0} s hold about {:.0} of the {findings} findings, and every retry starts again at the first page",
            f["timeouts"],
            per_second * timeout
        );
        if at_most >= findings as f64 {
            line.push_str(&format!(
                "; set lambda.fanout_timeout_seconds to at least {:.0}",
                (findings as f64 / per_second * 1.2).ceil()
            ));
        } else {
            line.push_str(&format!(
                "; even the 900 s maximum holds about {at_most:.0}: an audit of this size needs audit-fanout to continue across invocations (a change to the function), or a SendMessageBatch rate above the {} /s the functions assume (FLEETCERT_QUOTA_SendMessageBatch)",
                r.operations.get("SendMessageBatch").map_or(0.0, |c| c.quota)
            ));
        }
        out.push(line);
    }
    if r.queue_expired > 0 {
        out.push(format!(
            "{} rotation requests waited in the queue longer than its retention and were deleted: rotation-starter (reserved concurrency {}) cannot keep up",
            r.queue_expired,
            d.function(Function::RotationStarter).concurrency
        ));
    }
    if r.messages_lost > 0 {
        out.push(format!(
            "{} messages to offline devices outlived the persistent session ({} h): the sweeper sends them again at half and three quarters of the deadline; a longer session expiry (up to 7 days) delivers them at the device's next connection",
            r.messages_lost, options.session_expiry_hours
        ));
    }
    out
}
