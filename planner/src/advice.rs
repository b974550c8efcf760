//! The recommendations of a report: what to change when the configuration
//! cannot rotate the fleet in time, computed from the run and the bound.

use rules::functions::Function;

use crate::deployment::Deployment;
use crate::options::PlanOptions;
use crate::report::Report;

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
        let needed = (bound_days + deadline_days + audit_days)
            .ceil()
            .max(threshold_days + 1.0);
        out.push(format!(
            "{online} always-online devices' certificates expire before they rotate: set audit.expiring_threshold_days to at least {needed:.0} (now {threshold_days:.0}): the quota bound ({bound_days:.1} days), a rotation's deadline and one audit period must fit before expiry"
        ));
        if bound_days > threshold_days - deadline_days {
            let q = r.bound.quota.get(&r.bound.binding).copied().unwrap_or(0.0);
            let factor = bound_days / (threshold_days - deadline_days).max(1.0);
            out.push(format!(
                "or ask AWS to raise {} from {q} to at least {:.0} requests per second (then plan with --quota {}={:.0}): alone it needs {bound_days:.1} days for {} devices",
                r.bound.binding, (q * factor).ceil(), r.bound.binding, (q * factor).ceil(), options.devices
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
        out.push(format!(
            "audit-fanout timed out {} times ({} s timeout): one invocation queues every finding of an audit, and {} findings do not fit; raise lambda.timeout_seconds (up to 900)",
            f["timeouts"],
            d.function(Function::AuditFanout).timeout.as_secs(),
            r.audits.iter().map(|(_, n)| *n).max().unwrap_or(0)
        ));
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
