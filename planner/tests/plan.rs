//! `fleetcert plan` as a user checks it: a fleet the quotas allow rotates
//! completely, a starved quota binds and is named, the same seed gives the
//! same JSON, bad input names its field, the timeline is an SVG with its
//! series. Sizes are small (debug build); the large figures are in
//! BENCHMARKS.md.

use planner::{PlanOptions, plan};

fn run(options: &PlanOptions) -> planner::Report {
    plan(options, |_, _| {}).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_fleet_the_quotas_allow_rotates_completely_near_the_bound() {
    let r = run(&PlanOptions::new(300));
    assert!(r.finished, "{}", r.text());
    assert_eq!(r.rotated, 300);
    assert_eq!(r.expired_unrotated.values().sum::<u64>(), 0);
    assert_eq!(r.rotations_by_state["COMMITTED"]["online"], 300);
    assert!(r.bound.seconds > 0.0);
    assert!(
        r.makespan_over_bound >= 0.99,
        "faster than the quota bound: {}",
        r.text()
    );
    // the bulk of the fleet moves at the quotas' pace
    let p50 = r.rotated_p50_hours.unwrap_or(f64::INFINITY) * 3600.0;
    assert!(p50 < 3.0 * r.bound.seconds, "{}", r.text());
    assert!(r.cost_usd > 0.0);
    assert!(r.text().contains("makespan / bound"));
}

#[test]
fn a_starved_quota_binds_and_is_named() {
    let mut o = PlanOptions::new(200);
    o.quotas
        .insert(rules::functions::Operation::CreateCertificateFromCsr, 0.05);
    o.horizon_days = Some(2.0);
    let r = run(&o);
    assert_eq!(r.bound.binding, "CreateCertificateFromCsr");
    assert!(r.bound.seconds >= 200.0 / 0.05 * 0.99);
    assert!(r.text().contains("bound by CreateCertificateFromCsr"));
    assert!(r.makespan_hours * 3600.0 >= r.bound.seconds * 0.99 || !r.finished);
}

#[test]
fn the_same_seed_gives_the_same_report_byte_for_byte() {
    let mut o = PlanOptions::new(150);
    o.mix.silent_share = 0.05;
    o.mix.crt_err_share = 0.05;
    o.mix.daily_share = 0.2;
    o.horizon_days = Some(3.0);
    let a = serde_json::to_string(&run(&o)).unwrap_or_default();
    let b = serde_json::to_string(&run(&o)).unwrap_or_default();
    assert!(a.len() > 1000);
    assert_eq!(a, b);
    o.seed = 2;
    let c = serde_json::to_string(&run(&o)).unwrap_or_default();
    assert_ne!(a, c, "another seed, another fleet");
}

#[test]
fn devices_that_never_answer_or_refuse_show_up_with_their_reason() {
    let mut o = PlanOptions::new(100);
    o.mix.silent_share = 0.2;
    o.mix.crt_err_share = 0.2;
    o.expiry_days = (8.0, 9.0);
    let r = run(&o);
    let failed = &r.rotations_by_state["FAILED"];
    assert!(failed["sends crt_err"] > 0, "{}", r.text());
    assert!(
        r.rotations_by_state["EXPIRED"]["never answers"] > 0,
        "{}",
        r.text()
    );
    assert!(r.expired_unrotated["never answers"] > 0);
    assert!(!r.recommendations.is_empty());
}

#[test]
fn bad_input_is_refused_with_the_field_named() {
    let mut o = PlanOptions::new(10);
    o.quotas
        .insert(rules::functions::Operation::UpdateCertificate, 0.0);
    let e = plan(&o, |_, _| {}).err().map(|e| e.field().to_owned());
    assert_eq!(e.as_deref(), Some("--quota UpdateCertificate"));

    let mut o = PlanOptions::new(10);
    o.config.rotation.deadline_hours = Some(30 * 24);
    let e = plan(&o, |_, _| {}).err().map(|e| e.field().to_owned());
    assert_eq!(e.as_deref(), Some("rotation.deadline_hours"));

    let e = plan(&PlanOptions::new(0), |_, _| {})
        .err()
        .map(|e| e.field().to_owned());
    assert_eq!(e.as_deref(), Some("--devices"));

    let mut o = PlanOptions::new(10);
    o.mix.silent_share = 0.7;
    o.mix.crt_err_share = 0.7;
    assert!(o.check().is_err());
}

#[test]
fn the_memory_estimate_says_when_a_run_is_over_the_floor() {
    assert!(PlanOptions::new(1_000_000).memory_estimate() < planner::options::MEMORY_FLOOR_BYTES);
    assert!(PlanOptions::new(5_000_000).memory_estimate() > planner::options::MEMORY_FLOOR_BYTES);
}

#[test]
fn the_timeline_is_an_svg_with_its_series() {
    let r = run(&PlanOptions::new(50));
    let svg = planner::chart::svg(&r).unwrap_or_else(|e| panic!("{e}"));
    assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
    assert!(svg.trim_end().ends_with("</svg>"));
    for series in [
        "open",
        "committed (cumulative)",
        "expired or failed (cumulative)",
        "CreateCertificateFromCsr",
        "DescribeCertificate",
    ] {
        assert!(svg.contains(series), "no {series} in the SVG");
    }
    assert!(svg.matches("<polyline").count() >= 3);
}

#[test]
fn ten_thousand_devices_all_rotate_at_the_default_quotas() {
    let r = run(&PlanOptions::new(10_000));
    assert!(r.finished, "{}", r.text());
    assert_eq!(r.rotated, 10_000);
    assert_eq!(r.expired_unrotated.values().sum::<u64>(), 0, "{}", r.text());
    assert_eq!(r.bound.binding, r.busiest_quota, "{}", r.text());
}

#[test]
fn with_each_function_at_its_share_the_makespan_is_within_ten_percent_of_the_bound() {
    let mut o = PlanOptions::new(1_000);
    o.split_quotas = true;
    let r = run(&o);
    assert!(r.finished, "{}", r.text());
    assert_eq!(r.throttled_failed, 0, "{}", r.text());
    assert!(
        (0.99..=1.10).contains(&r.makespan_over_bound),
        "makespan {} h against a bound of {} s: {}",
        r.makespan_hours,
        r.bound.seconds,
        r.text()
    );
}

/// The stack deploys each function's share of the quotas it shares
/// (`infra::quota_shares`, from the calls one rotation makes): at the
/// default configuration the functions together stay under every quota,
/// and the fleet finishes at the bound with no call failing.
#[test]
fn at_the_deployed_shares_the_default_stack_rotates_at_the_bound_with_no_failed_call() {
    let r = run(&PlanOptions::new(300));
    assert!(r.finished, "{}", r.text());
    assert_eq!(r.throttled_failed, 0, "{}", r.text());
    assert!(
        (0.99..=1.10).contains(&r.makespan_over_bound),
        "makespan {} h against a bound of {} s: {}",
        r.makespan_hours,
        r.bound.seconds,
        r.text()
    );
}

/// A campaign's waves take the sweeper's schedule into the makespan: each
/// wave is released only after the previous one settled, so the same fleet
/// takes longer than by the audit; and a fleet with 10 % crt_err devices
/// pauses its campaign within its first waves, the rest never rotated.
#[test]
fn a_campaigns_waves_lengthen_the_makespan_and_its_abort_rule_stops_it() {
    use rules::campaign::{AbortRule, Rollout, Share};
    let campaign = planner::PlanCampaign {
        rollout: Rollout {
            canary: Share::BasisPoints(500),
            cohort: Share::BasisPoints(2000),
            rate_per_second: 10,
        },
        abort: AbortRule {
            above_basis_points: 200,
            window: 50,
        },
    };
    let audit = run(&PlanOptions::new(200));
    let mut o = PlanOptions::new(200);
    o.campaign = Some(campaign);
    let waves = run(&o);
    assert!(waves.finished, "{}", waves.text());
    assert_eq!(waves.rotated, 200);
    let c = waves.campaign.as_deref().unwrap_or_default();
    // the run stops when the last device rotated: the last wave's outcomes
    // are counted by the sweep after that
    assert!(
        c.contains("wave 6 of 6") && c.contains("200 released"),
        "{c}"
    );
    assert!(
        waves.makespan_hours > audit.makespan_hours,
        "waves {} h, audit {} h",
        waves.makespan_hours,
        audit.makespan_hours
    );
    assert!(waves.text().contains("campaign "));

    o.mix.crt_err_share = 0.1;
    o.horizon_days = Some(2.0);
    let paused = run(&o);
    let c = paused.campaign.as_deref().unwrap_or_default();
    assert!(c.starts_with("PAUSED by its abort rule"), "{c}");
    assert!(!paused.finished);
    // the devices are drawn at random: the rule trips within the first
    // waves, the rest never released
    assert!(paused.rotated <= 50, "{}", paused.text());
}
