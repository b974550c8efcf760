//! The alarms and the dashboard against the metrics the functions write:
//! every fleetcert metric the template names is a `lambdas::metrics`
//! metric with its dimensions, every alarm notifies the support topic, and
//! the metric-math alarms, evaluated on the EMF documents `lambdas::metrics`
//! writes, fire exactly at their threshold (moto stores alarms but never
//! evaluates them).

use std::collections::BTreeMap;
use std::sync::Arc;

use infra::assembly;
use infra::config::{Config, Frequency};
use lambdas::metrics::{Dim, EndReason, Metric, Metrics};
use rules::functions::Function;
use serde_json::{Value as Json, json};

fn template(config: Config) -> Json {
    let v = config.validate().unwrap_or_else(|e| panic!("{e}"));
    let assets: Vec<_> = assembly::lambda_assets(std::path::Path::new("/nonexistent"))
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assembly::template(&v, &assets).unwrap_or_else(|e| panic!("{e}"))
}

fn alarms(t: &Json) -> BTreeMap<String, Json> {
    t["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(id, r)| (id.clone(), r["Properties"].clone()))
        .collect()
}

fn metric_by_name(name: &str) -> Metric {
    *Metric::ALL
        .iter()
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("{name} is not a lambdas::metrics::Metric"))
}

/// Every `{Namespace, MetricName, Dimensions}` of fleetcert's namespace in
/// the alarms names a metric the functions write, with its full dimension
/// set or none (the two sets every document publishes).
#[test]
fn every_alarm_metric_is_one_the_functions_write() {
    let t = template(Config::default());
    let mut seen = 0;
    for (id, alarm) in alarms(&t) {
        for q in alarm["Metrics"].as_array().into_iter().flatten() {
            let m = &q["MetricStat"]["Metric"];
            if m["Namespace"] != "fleetcert" {
                continue;
            }
            seen += 1;
            let metric = metric_by_name(m["MetricName"].as_str().expect("name"));
            let names: Vec<&str> = m["Dimensions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| d["Name"].as_str().expect("dimension"))
                .collect();
            let full: Vec<&str> = metric.dimensions().iter().map(|d| d.as_str()).collect();
            assert!(
                names.is_empty() || names == full,
                "{id}: {metric} has dimensions {full:?}, the alarm asks for {names:?}"
            );
        }
    }
    assert!(seen >= 5, "only {seen} fleetcert metrics in the alarms");
}

#[test]
fn the_dashboard_names_only_metrics_the_functions_write() {
    let t = template(Config::default());
    let body = t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
        .as_str()
        .expect("Fn::Sub body");
    let body: Json = serde_json::from_str(body).expect("the body is JSON");
    let widgets = body["widgets"].as_array().expect("widgets");
    assert!(widgets.len() >= 5);
    let mut named = 0;
    for w in widgets {
        for row in w["properties"]["metrics"].as_array().into_iter().flatten() {
            let row = row.as_array().expect("metric row");
            if row.first() == Some(&json!("fleetcert")) {
                metric_by_name(row[1].as_str().expect("name"));
                named += 1;
            }
            if let Some(expr) = row.first().and_then(|e| e["expression"].as_str()) {
                for rest in expr.split("MetricName=\"").skip(1) {
                    metric_by_name(rest.split('"').next().expect("name"));
                    named += 1;
                }
            }
        }
    }
    assert!(named >= 10, "{named}");
}

#[test]
fn every_alarm_notifies_the_support_topic_when_it_fires_and_clears() {
    let t = template(Config::default());
    let all = alarms(&t);
    // 2 queues, rotations failing, expiring without rotation, the audit,
    // one per function (its errors and throttles)
    assert_eq!(all.len(), 2 + 1 + 1 + 1 + 7, "{:?}", all.keys());
    for (id, a) in &all {
        assert_eq!(
            a["AlarmActions"],
            json!([{ "Ref": "SupportTopic" }]),
            "{id}"
        );
        assert_eq!(a["OKActions"], json!([{ "Ref": "SupportTopic" }]), "{id}");
        // CloudWatch: Period × EvaluationPeriods ≤ 7 days
        let period = a["Period"].as_i64().unwrap_or_else(|| {
            a["Metrics"][0]["MetricStat"]["Period"]
                .as_i64()
                .expect("period")
        });
        let periods = a["EvaluationPeriods"].as_i64().expect("evaluation periods");
        assert!(period * periods <= 604_800, "{id}: {period} × {periods}");
    }
}

#[test]
fn the_audit_alarm_follows_the_audit_frequency_where_cloudwatch_can() {
    let audit = |frequency: Frequency, day_of_week: Option<&str>, day_of_month: Option<&str>| {
        let mut c = Config::default();
        c.audit.frequency = frequency;
        c.audit.day_of_week = day_of_week.map(str::to_owned);
        c.audit.day_of_month = day_of_month.map(str::to_owned);
        alarms(&template(c)).remove("AuditNotRunAlarm")
    };
    let daily = audit(Frequency::Daily, None, None).expect("daily alarm");
    assert_eq!(daily["Period"], 86_400);
    assert_eq!(daily["EvaluationPeriods"], 2);
    assert_eq!(daily["TreatMissingData"], "breaching");
    assert_eq!(
        daily["Dimensions"],
        json!([{ "Name": "FunctionName", "Value": { "Ref": "AuditFanout" } }])
    );
    let weekly = audit(Frequency::Weekly, Some("MON"), None).expect("weekly alarm");
    assert_eq!(weekly["EvaluationPeriods"], 7);
    assert!(audit(Frequency::Biweekly, Some("MON"), None).is_none());
    assert!(audit(Frequency::Monthly, None, Some("1")).is_none());
}

/// Evaluates one metric-math alarm of the template on EMF documents: the
/// sum of each `MetricStat` over the documents whose dimension set and
/// values match it, then the expression (`FILL(id, 0)` terms joined by
/// `+`, the only form the stack uses), compared with the threshold.
fn fires(alarm: &Json, docs: &[Json]) -> bool {
    fires_with(alarm, docs, &BTreeMap::new())
}

/// [`fires`], with `aws` holding the sums of AWS's own metrics by query id.
fn fires_with(alarm: &Json, docs: &[Json], aws: &BTreeMap<&str, f64>) -> bool {
    let mut sums: BTreeMap<String, Option<f64>> = BTreeMap::new();
    let mut expression = None;
    for q in alarm["Metrics"].as_array().expect("metric math") {
        let id = q["Id"].as_str().expect("id").to_owned();
        if let Some(e) = q["Expression"].as_str() {
            expression = Some(e.to_owned());
            continue;
        }
        let m = &q["MetricStat"]["Metric"];
        assert_eq!(q["MetricStat"]["Stat"], "Sum");
        if m["Namespace"] != "fleetcert" {
            sums.insert(id.clone(), aws.get(id.as_str()).copied());
            continue;
        }
        let want: BTreeMap<&str, &Json> = m["Dimensions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| (d["Name"].as_str().expect("name"), &d["Value"]))
            .collect();
        let name = m["MetricName"].as_str().expect("name");
        let mut sum = None;
        for doc in docs {
            let directive = &doc["_aws"]["CloudWatchMetrics"][0];
            if directive["Namespace"] != m["Namespace"]
                || !directive["Metrics"]
                    .as_array()
                    .expect("metrics")
                    .iter()
                    .any(|d| d["Name"] == name)
            {
                continue;
            }
            let published = directive["Dimensions"]
                .as_array()
                .expect("sets")
                .iter()
                .any(|set| {
                    let set: Vec<&str> = set
                        .as_array()
                        .expect("set")
                        .iter()
                        .map(|n| n.as_str().expect("name"))
                        .collect();
                    set.len() == want.len() && set.iter().all(|n| want.get(n) == Some(&&doc[*n]))
                });
            if published {
                *sum.get_or_insert(0.0) += doc[name].as_f64().expect("count");
            }
        }
        sums.insert(id, sum);
    }
    let value: f64 = expression
        .expect("an expression")
        .split(" + ")
        .map(|term| {
            let id = term
                .strip_prefix("FILL(")
                .and_then(|t| t.strip_suffix(", 0)"))
                .unwrap_or_else(|| panic!("unexpected term {term}"));
            sums[id].unwrap_or(0.0)
        })
        .sum();
    let threshold = alarm["Threshold"].as_f64().expect("threshold");
    match alarm["ComparisonOperator"].as_str() {
        Some("GreaterThanOrEqualToThreshold") => value >= threshold,
        Some("GreaterThanThreshold") => value > threshold,
        other => panic!("unexpected comparison {other:?}"),
    }
}

fn at_zero() -> lambdas::metrics::Clock {
    Arc::new(|| 0)
}

#[test]
fn rotations_failing_fires_at_the_configured_rate_of_failed_and_expired() {
    let mut c = Config::default();
    c.alarms.failed_rotations_per_hour = 5;
    let alarm = alarms(&template(c))
        .remove("RotationsFailingAlarm")
        .expect("alarm");
    let errors = Metrics::with_clock(Function::ErrorHandler, at_zero());
    let sweeper = Metrics::with_clock(Function::Sweeper, at_zero());
    for _ in 0..2 {
        errors.count(
            Metric::RotationsFailed,
            &[Dim::Reason(EndReason::DeviceError)],
        );
    }
    errors.count(
        Metric::RotationsFailed,
        &[Dim::Reason(EndReason::DeviceErrorAfterIssue)],
    );
    sweeper.count(
        Metric::RotationsExpired,
        &[Dim::Reason(EndReason::NoCertificate)],
    );
    // commits and other metrics do not count
    errors.count(Metric::RotationsCommitted, &[]);
    let mut docs = errors.flush();
    docs.extend(sweeper.flush());
    assert!(!fires(&alarm, &docs), "4 of 5");
    sweeper.count(
        Metric::RotationsExpired,
        &[Dim::Reason(EndReason::CertificateKept)],
    );
    docs.extend(sweeper.flush());
    assert!(fires(&alarm, &docs), "5 of 5");
    assert!(!fires(&alarm, &[]), "no data is not breaching");
}

#[test]
fn expiring_without_rotation_fires_on_rotation_starters_refusals_only() {
    let alarm = alarms(&template(Config::default()))
        .remove("ExpiringWithoutRotationAlarm")
        .expect("alarm");
    let starter = Metrics::with_clock(Function::RotationStarter, at_zero());
    starter.count(Metric::Rejections, &[Dim::Kind("unknown_certificate")]);
    starter.count(Metric::RotationsStarted, &[]);
    let csr = Metrics::with_clock(Function::CsrIssuer, at_zero());
    csr.count(Metric::Rejections, &[Dim::Kind("no_thing")]);
    let mut docs = starter.flush();
    docs.extend(csr.flush());
    assert!(!fires(&alarm, &docs));
    for kind in infra::watch::NOT_ROTATED_KINDS {
        starter.count(Metric::Rejections, &[Dim::Kind(kind)]);
        assert!(fires(&alarm, &starter.flush()), "{kind}");
    }
}

#[test]
fn each_function_alarms_on_its_own_errors_or_throttles() {
    let all = alarms(&template(Config::default()));
    for (f, id) in [
        (Function::AuditFanout, "AuditFanout"),
        (Function::RotationStarter, "RotationStarter"),
        (Function::CsrIssuer, "CsrIssuer"),
        (Function::Commit, "Commit"),
        (Function::ErrorHandler, "ErrorHandler"),
        (Function::Sweeper, "Sweeper"),
        (Function::JitrActivator, "JitrActivator"),
    ] {
        let alarm = &all[&format!("{id}ErrorsAlarm")];
        for q in alarm["Metrics"].as_array().expect("metrics").iter().take(2) {
            assert_eq!(
                q["MetricStat"]["Metric"]["Dimensions"],
                json!([{ "Name": "FunctionName", "Value": { "Ref": id } }]),
                "{f:?}"
            );
        }
        assert!(!fires_with(alarm, &[], &BTreeMap::new()));
        assert!(fires_with(alarm, &[], &BTreeMap::from([("errors", 1.0)])));
        assert!(fires_with(
            alarm,
            &[],
            &BTreeMap::from([("throttles", 2.0)])
        ));
    }
}
