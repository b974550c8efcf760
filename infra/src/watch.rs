//! What a platform team watches: the stack's CloudWatch alarms (each
//! notifying the support topic) and its dashboard, over AWS's own metrics
//! (`AWS/Lambda`, `AWS/SQS`) and the ones the functions write as embedded
//! metric format documents (`lambdas::metrics`, namespace [`NAMESPACE`]).
//!
//! The metric names and dimensions here are `lambdas::metrics`'s
//! (`tests/tests/watch_metrics.rs` checks every one the template names
//! against `lambdas::metrics::Metric`); `infra` does not depend on
//! `lambdas`.

use std::collections::BTreeMap;

use rules::functions::Function as Fn_;
use serde_json::{Value as Json, json};

use crate::config::{Config, Frequency};
use crate::generated::cloudwatch_alarm::{
    Alarm, AlarmComparisonOperator, AlarmStatistic, AlarmTreatMissingData, Dimension, Metric,
    MetricDataQuery, MetricStat,
};
use crate::generated::cloudwatch_dashboard::Dashboard;
use crate::generated::lambda_function::Function;
use crate::generated::sns_topic::Topic;
use crate::generated::sqs_queue::Queue;
use crate::intrinsics::sub;
use crate::stack::{Handle, Stack};

/// The namespace of fleetcert's own metrics (`lambdas::metrics::NAMESPACE`).
pub const NAMESPACE: &str = "fleetcert";

/// rotation-starter's rejection kinds that leave a certificate the audit
/// found expiring without a rotation: it has expired (cannot connect), is
/// not ACTIVE, or is attached to no thing. (`unknown_certificate`
/// is left out: the certificate no longer exists, there is nothing to
/// rotate.)
pub const NOT_ROTATED_KINDS: [&str; 3] =
    ["certificate_expired", "certificate_not_active", "no_thing"];

/// How the "audit has not run" alarm watches audit-fanout's invocations:
/// `(period seconds, evaluation periods)`, or `None` when CloudWatch cannot
/// express it. An alarm evaluates at most 7 days (Period ×
/// EvaluationPeriods ≤ 604,800 s, `PutMetricAlarm`), so:
/// DAILY: two daily periods without an invocation (2× the audit period);
/// WEEKLY: seven daily periods without one (the longest an alarm sees:
/// the audit is a day late, not two weeks); BIWEEKLY and MONTHLY: no alarm
/// (seven days without an audit is their normal state).
pub fn audit_window(frequency: Frequency) -> Option<(i64, i64)> {
    const DAY: i64 = 86_400;
    match frequency {
        Frequency::Daily => Some((DAY, 2)),
        Frequency::Weekly => Some((DAY, 7)),
        Frequency::Biweekly | Frequency::Monthly => None,
    }
}

/// The resources the alarms and the dashboard watch.
pub(crate) struct Watched<'a> {
    pub functions: &'a BTreeMap<Fn_, Handle<Function>>,
    pub dead_letters: &'a Handle<Queue>,
    pub rule_errors: &'a Handle<Queue>,
    pub support: &'a Handle<Topic>,
    /// The logical id of each function (`AuditFanout`, ...).
    pub logical_ids: BTreeMap<Fn_, String>,
}

fn metric(namespace: &str, name: &str, dimensions: Vec<Dimension>) -> Metric {
    Metric {
        namespace: Some(namespace.into()),
        metric_name: Some(name.into()),
        dimensions: (!dimensions.is_empty()).then_some(dimensions),
    }
}

fn query(id: &str, metric: Metric, period: i64, stat: &str) -> MetricDataQuery {
    MetricDataQuery {
        metric_stat: Some(MetricStat::new(metric, period, stat)),
        return_data: Some(false.into()),
        ..MetricDataQuery::new(id)
    }
}

fn expression(id: &str, expression: &str, label: &str) -> MetricDataQuery {
    MetricDataQuery {
        expression: Some(expression.into()),
        label: Some(label.into()),
        return_data: Some(true.into()),
        ..MetricDataQuery::new(id)
    }
}

/// An alarm notifying the support topic when it fires and when it clears.
fn notifying(support: &Handle<Topic>, description: String) -> Alarm {
    Alarm {
        alarm_description: Some(description.into()),
        alarm_actions: Some(vec![support.r#ref()]),
        ok_actions: Some(vec![support.r#ref()]),
        ..Alarm::default()
    }
}

/// A "more than zero in five minutes" alarm on one AWS metric.
fn any_in_five_minutes(
    support: &Handle<Topic>,
    description: String,
    namespace: &str,
    name: &str,
    dimension: Dimension,
    statistic: AlarmStatistic,
) -> Alarm {
    Alarm {
        namespace: Some(namespace.into()),
        metric_name: Some(name.into()),
        dimensions: Some(vec![dimension]),
        statistic: Some(statistic),
        period: Some(300_i64.into()),
        evaluation_periods: Some(1_i64.into()),
        threshold: Some(0.0.into()),
        comparison_operator: Some(AlarmComparisonOperator::GreaterThanThreshold),
        treat_missing_data: Some(AlarmTreatMissingData::NotBreaching),
        ..notifying(support, description)
    }
}

/// The name of the alarm with logical id `id`: `<stack name>-<id>`. Named
/// rather than generated so that the dashboard's alarm widget can list the
/// alarms' ARNs without a reference to them (moto creates no
/// `AWS::CloudWatch::Alarm` from a template, and a dashboard referring to
/// one fails its deploy there).
pub fn alarm_name(id: &str) -> String {
    format!("${{AWS::StackName}}-{id}")
}

/// Adds `alarm` under `id`, named by [`alarm_name`].
fn add_alarm(s: &mut Stack, id: &str, alarm: Alarm) -> Handle<Alarm> {
    s.add(
        id,
        Alarm {
            alarm_name: Some(sub(alarm_name(id))),
            ..alarm
        },
    )
}

/// Adds the alarms and the dashboard; returns the alarms' logical ids.
pub(crate) fn add(s: &mut Stack, c: &Config, w: &Watched<'_>) -> Vec<String> {
    let mut alarms: Vec<Handle<Alarm>> = Vec::new();

    // --- dead letters ----------------------------------------------------
    for (id, queue, what) in [
        (
            "RotationDeadLetterQueueNotEmptyAlarm",
            w.dead_letters,
            "an event failed every retry: see the rotation dead-letter queue",
        ),
        (
            "RuleErrorQueueNotEmptyAlarm",
            w.rule_errors,
            "a topic rule could not invoke its function: see the rule error queue",
        ),
    ] {
        alarms.push(add_alarm(
            s,
            id,
            any_in_five_minutes(
                w.support,
                format!("fleetcert: {what}"),
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                Dimension::new("QueueName", queue.queue_name()),
                AlarmStatistic::Maximum,
            ),
        ));
    }

    // --- rotations failing --------------------------------------------------
    let threshold = c.alarms.failed_rotations_per_hour;
    alarms.push(add_alarm(
        s,
        "RotationsFailingAlarm",
        Alarm {
            metrics: Some(vec![
                query(
                    "failed",
                    metric(NAMESPACE, "RotationsFailed", vec![]),
                    3600,
                    "Sum",
                ),
                query(
                    "expired",
                    metric(NAMESPACE, "RotationsExpired", vec![]),
                    3600,
                    "Sum",
                ),
                expression(
                    "ended",
                    "FILL(failed, 0) + FILL(expired, 0)",
                    "rotations ended FAILED or EXPIRED per hour",
                ),
            ]),
            evaluation_periods: Some(1_i64.into()),
            threshold: Some(f64::from(threshold).into()),
            comparison_operator: Some(AlarmComparisonOperator::GreaterThanOrEqualToThreshold),
            treat_missing_data: Some(AlarmTreatMissingData::NotBreaching),
            ..notifying(
                w.support,
                format!("fleetcert: {threshold}+ rotations FAILED or EXPIRED in an hour"),
            )
        },
    ));

    // --- certificates found expiring that get no rotation ------------------
    let mut not_rotated: Vec<MetricDataQuery> = NOT_ROTATED_KINDS
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            query(
                &format!("k{i}"),
                metric(
                    NAMESPACE,
                    "Rejections",
                    vec![
                        Dimension::new("Function", Fn_::RotationStarter.name()),
                        Dimension::new("Kind", *kind),
                    ],
                ),
                3600,
                "Sum",
            )
        })
        .collect();
    let sum = (0..NOT_ROTATED_KINDS.len())
        .map(|i| format!("FILL(k{i}, 0)"))
        .collect::<Vec<_>>()
        .join(" + ");
    not_rotated.push(expression(
        "notrotated",
        &sum,
        "certificates found expiring that got no rotation",
    ));
    alarms.push(add_alarm(
        s,
        "ExpiringWithoutRotationAlarm",
        Alarm {
            metrics: Some(not_rotated),
            evaluation_periods: Some(1_i64.into()),
            threshold: Some(0.0.into()),
            comparison_operator: Some(AlarmComparisonOperator::GreaterThanThreshold),
            treat_missing_data: Some(AlarmTreatMissingData::NotBreaching),
            ..notifying(
                w.support,
                "fleetcert: certificates found expiring got no rotation (support was told each)"
                    .to_owned(),
            )
        },
    ));

    // --- the audit has not run --------------------------------------------
    if let Some((period, periods)) = audit_window(c.audit.frequency) {
        let fanout = &w.functions[&Fn_::AuditFanout];
        alarms.push(add_alarm(
            s,
            "AuditNotRunAlarm",
            Alarm {
                namespace: Some("AWS/Lambda".into()),
                metric_name: Some("Invocations".into()),
                dimensions: Some(vec![Dimension::new("FunctionName", fanout.r#ref())]),
                statistic: Some(AlarmStatistic::Sum),
                period: Some(period.into()),
                evaluation_periods: Some(periods.into()),
                datapoints_to_alarm: Some(periods.into()),
                threshold: Some(1.0.into()),
                comparison_operator: Some(AlarmComparisonOperator::LessThanThreshold),
                // no invocation at all is exactly what this alarm is for
                treat_missing_data: Some(AlarmTreatMissingData::Breaching),
                ..notifying(
                    w.support,
                    format!(
                        "fleetcert: no audit notification for {} days",
                        period * periods / 86_400
                    ),
                )
            },
        ));
    }

    // --- every function's errors and throttles ----------------------------
    // one alarm per function over both metrics (half the alarms and the
    // template bytes of one per metric; the notification still names the
    // function)
    for (f, function) in w.functions {
        let id = &w.logical_ids[f];
        let lambda_metric = |name: &str| {
            metric(
                "AWS/Lambda",
                name,
                vec![Dimension::new("FunctionName", function.r#ref())],
            )
        };
        alarms.push(add_alarm(
            s,
            &format!("{id}ErrorsAlarm"),
            Alarm {
                metrics: Some(vec![
                    query("errors", lambda_metric("Errors"), 300, "Sum"),
                    query("throttles", lambda_metric("Throttles"), 300, "Sum"),
                    expression(
                        "both",
                        "FILL(errors, 0) + FILL(throttles, 0)",
                        "failed or throttled invocations",
                    ),
                ]),
                evaluation_periods: Some(1_i64.into()),
                threshold: Some(0.0.into()),
                comparison_operator: Some(AlarmComparisonOperator::GreaterThanThreshold),
                treat_missing_data: Some(AlarmTreatMissingData::NotBreaching),
                ..notifying(
                    w.support,
                    format!("fleetcert: {} failed or was throttled", f.name()),
                )
            },
        ));
    }

    let ids: Vec<String> = alarms.iter().map(|a| a.logical_id().to_owned()).collect();
    s.add(
        "Dashboard",
        Dashboard::new(sub(canonical_json(&dashboard_body(w, &ids)))),
    );
    ids
}

/// One metric widget.
fn widget(x: u32, y: u32, width: u32, title: &str, properties: Json) -> Json {
    let mut p = properties;
    p["title"] = json!(title);
    p["region"] = json!("${AWS::Region}");
    json!({ "type": "metric", "x": x, "y": y, "width": width, "height": 6, "properties": p })
}

/// The dashboard (CloudWatch's dashboard body structure), as an `Fn::Sub`
/// template: `${Logical}` and `${Logical.Attr}` name the stack's resources.
fn dashboard_body(w: &Watched<'_>, alarm_ids: &[String]) -> Json {
    let ns = NAMESPACE;
    let funnel = json!({
        "stat": "Sum", "period": 3600,
        "metrics": [
            [ns, "RotationsStarted", { "label": "started" }],
            [ns, "RotationsIssued", { "label": "issued" }],
            [ns, "RotationsCommitted", { "label": "committed" }],
            [ns, "RotationsFailed", { "label": "failed" }],
            [ns, "RotationsExpired", { "label": "expired" }],
            [ns, "MessagesResent", { "label": "re-sent" }]
        ]
    });
    let open = json!({
        "stat": "Sum", "period": 3600,
        "metrics": [
            [{ "expression": "RUNNING_SUM(FILL(s, 0) - FILL(c, 0) - FILL(f, 0) - FILL(e, 0))",
               "label": "opened minus ended since the start of the graph", "id": "open" }],
            [ns, "RotationsStarted", { "id": "s", "visible": false }],
            [ns, "RotationsCommitted", { "id": "c", "visible": false }],
            [ns, "RotationsFailed", { "id": "f", "visible": false }],
            [ns, "RotationsExpired", { "id": "e", "visible": false }]
        ]
    });
    let latency = json!({
        "period": 3600,
        "metrics": [
            [ns, "CommitLatency", { "stat": "p50", "label": "p50" }],
            [ns, "CommitLatency", { "stat": "p90", "label": "p90" }],
            [ns, "CommitLatency", { "stat": "Maximum", "label": "max" }]
        ],
        "yAxis": { "left": { "label": "ms from the audit to the commit", "showUnits": false } }
    });
    let throttled = json!({
        "stat": "Sum", "period": 300,
        "metrics": [
            [{ "expression": format!("SEARCH('{{{ns},Function,Operation}} MetricName=\"ThrottledCalls\"', 'Sum', 300)"),
               "label": "throttled after retries", "id": "throttled" }],
            [{ "expression": format!("SEARCH('{{{ns},Function,Operation,Kind}} MetricName=\"FailedCalls\"', 'Sum', 300)"),
               "label": "failed", "id": "failed" }]
        ]
    });
    let fn_ref = |f: &Fn_| format!("${{{}}}", w.logical_ids[f]);
    let lambda = |metric: &str| -> Json {
        w.functions
            .keys()
            .map(
                |f| json!(["AWS/Lambda", metric, "FunctionName", fn_ref(f), { "label": f.name() }]),
            )
            .collect::<Vec<_>>()
            .into()
    };
    let queues = json!({
        "stat": "Maximum", "period": 300,
        "metrics": [
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
             format!("${{{}.QueueName}}", w.dead_letters.logical_id()), { "label": "rotation dead letters" }],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
             format!("${{{}.QueueName}}", w.rule_errors.logical_id()), { "label": "rule errors" }]
        ]
    });
    let rejections = json!({
        "stat": "Sum", "period": 3600,
        "metrics": [
            [{ "expression": format!("SEARCH('{{{ns},Function,Kind}} MetricName=\"Rejections\"', 'Sum', 3600)"),
               "label": "rejections", "id": "rejections" }],
            [{ "expression": format!("SEARCH('{{{ns},Function,Reason}} MetricName=\"RotationsFailed\" OR MetricName=\"RotationsExpired\"', 'Sum', 3600)"),
               "label": "ended by reason", "id": "reasons" }]
        ]
    });
    let alarms: Vec<String> = alarm_ids
        .iter()
        .map(|id| {
            format!(
                "arn:${{AWS::Partition}}:cloudwatch:${{AWS::Region}}:${{AWS::AccountId}}:alarm:{}",
                alarm_name(id)
            )
        })
        .collect();
    json!({
        "widgets": [
            { "type": "alarm", "x": 0, "y": 0, "width": 24, "height": 4,
              "properties": { "title": "fleetcert alarms", "alarms": alarms } },
            widget(0, 4, 12, "Rotation funnel (per hour)", funnel),
            widget(12, 4, 12, "Open rotations", open),
            widget(0, 10, 12, "Commit latency", latency),
            widget(12, 10, 12, "API calls throttled and failed, by function and operation", throttled),
            widget(0, 16, 12, "Rejections by kind; failures and expiries by reason", rejections),
            widget(12, 16, 12, "Dead-letter and rule error queues", queues),
            widget(0, 22, 12, "Lambda errors", json!({ "metrics": lambda("Errors") })),
            widget(12, 22, 12, "Lambda throttles", json!({ "metrics": lambda("Throttles") }))
        ]
    })
}

/// `value` as JSON text with every object's keys sorted, whatever order
/// the map keeps them in: serde_json keeps insertion order when another
/// crate of the build turns on its `preserve_order` feature (the AWS SDK
/// does), and the synthesized template must not depend on which crates
/// were built with it.
fn canonical_json(value: &Json) -> String {
    fn sorted(value: &Json) -> Json {
        match value {
            Json::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Json::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect(),
                )
            }
            Json::Array(items) => Json::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}
