//! The EMF writer against the specification (CloudWatch "Specification:
//! Embedded metric format"): a JSON Schema of the document structure, and
//! the rules a schema cannot say (every dimension and metric is a root
//! member, dimension values are strings, at most 30 dimensions and 100
//! metric values).

use std::sync::Arc;

use jsonschema::Validator;
use rules::functions::{Function, Operation};
use rules::rotation::{Rotation, RotationState};
use serde_json::{Value, json};

use super::*;

/// The EMF document structure as the specification states it: `_aws`
/// with `Timestamp` (ms) and `CloudWatchMetrics`, an array of
/// MetricDirectives (`Namespace`, `Dimensions`: arrays of at most 30
/// dimension names, `Metrics`: at most 100 MetricDefinitions of `Name` and
/// an optional `Unit` from CloudWatch's list).
fn emf_schema() -> Validator {
    let units = [
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["_aws"],
        "properties": {
            "_aws": {
                "type": "object",
                "required": ["Timestamp", "CloudWatchMetrics"],
                "additionalProperties": false,
                "properties": {
                    "Timestamp": { "type": "integer", "minimum": 0 },
                    "CloudWatchMetrics": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["Namespace", "Dimensions", "Metrics"],
                            "additionalProperties": false,
                            "properties": {
                                "Namespace": { "type": "string", "minLength": 1, "maxLength": 1024 },
                                "Dimensions": {
                                    "type": "array",
                                    "items": {
                                        "type": "array",
                                        "maxItems": 30,
                                        "uniqueItems": true,
                                        "items": { "type": "string", "minLength": 1, "maxLength": 250 }
                                    }
                                },
                                "Metrics": {
                                    "type": "array",
                                    "maxItems": 100,
                                    "items": {
                                        "type": "object",
                                        "required": ["Name"],
                                        "additionalProperties": false,
                                        "properties": {
                                            "Name": { "type": "string", "minLength": 1, "maxLength": 1024 },
                                            "Unit": { "enum": units },
                                            "StorageResolution": { "enum": [1, 60] }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    jsonschema::validator_for(&schema).expect("schema")
}

/// Checks `doc` against the schema and the rules beside it; returns the
/// problems found.
fn emf_problems(doc: &Value) -> Vec<String> {
    let mut problems: Vec<String> = emf_schema()
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    let Some(directives) = doc["_aws"]["CloudWatchMetrics"].as_array() else {
        return problems;
    };
    for directive in directives {
        for set in directive["Dimensions"].as_array().into_iter().flatten() {
            for name in set.as_array().into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                match &doc[name] {
                    Value::String(v) if !v.is_empty() && v.len() <= 1024 => {}
                    other => problems.push(format!("dimension {name} is {other}")),
                }
            }
        }
        for metric in directive["Metrics"].as_array().into_iter().flatten() {
            let name = metric["Name"].as_str().unwrap_or_default();
            match &doc[name] {
                Value::Number(_) => {}
                Value::Array(values)
                    if values.len() <= 100 && values.iter().all(Value::is_number) => {}
                other => problems.push(format!("metric {name} is {other}")),
            }
        }
    }
    problems
}

fn fixed_clock(ms: i64) -> Clock {
    Arc::new(move || ms)
}

#[test]
fn a_document_of_each_metric_follows_the_specification() {
    let m = Metrics::with_clock(Function::Commit, fixed_clock(1_733_500_000_000));
    m.count(Metric::RotationsStarted, &[]);
    m.count(Metric::RotationsIssued, &[]);
    m.count(Metric::RotationsCommitted, &[]);
    m.count(
        Metric::RotationsFailed,
        &[Dim::Reason(EndReason::DeviceError)],
    );
    m.count(
        Metric::RotationsExpired,
        &[Dim::Reason(EndReason::CertificateKept)],
    );
    m.count(Metric::MessagesResent, &[]);
    m.record(Metric::CommitLatency, &[], 1500.0);
    m.record(Metric::CommitLatency, &[], 2500.0);
    m.count(
        Metric::ThrottledCalls,
        &[Dim::Operation(Operation::DeleteCertificate)],
    );
    m.count(
        Metric::FailedCalls,
        &[Dim::Operation(Operation::Publish), Dim::Kind("transient")],
    );
    m.count(Metric::Outcomes, &[Dim::Outcome(OutcomeKind::Done)]);
    m.count(Metric::Rejections, &[Dim::Kind("ack_on_old_principal")]);
    let docs = m.flush();
    assert_eq!(docs.len(), Metric::ALL.len(), "{docs:#?}");
    for doc in &docs {
        assert_eq!(emf_problems(doc), Vec::<String>::new(), "{doc}");
        assert_eq!(doc["_aws"]["Timestamp"], json!(1_733_500_000_000_i64));
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "fleetcert"
        );
        assert_eq!(doc["Function"], "commit");
    }
    let latency = docs
        .iter()
        .find(|d| d.get("CommitLatency").is_some())
        .expect("latency");
    assert_eq!(latency["CommitLatency"], json!([1500.0, 2500.0]));
    assert_eq!(
        latency["_aws"]["CloudWatchMetrics"][0]["Metrics"],
        json!([{ "Name": "CommitLatency", "Unit": "Milliseconds" }])
    );
    let failed = docs
        .iter()
        .find(|d| d.get("FailedCalls").is_some())
        .expect("failed calls");
    assert_eq!(
        failed["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Function", "Operation", "Kind"], []])
    );
    assert_eq!(failed["Operation"], "Publish");
    assert_eq!(failed["Kind"], "transient");
    // the buffer is empty after a flush
    assert!(m.is_empty());
    assert!(m.flush().is_empty());
}

#[test]
fn the_schema_check_refuses_what_the_specification_refuses() {
    let good = json!({
        "_aws": { "Timestamp": 1, "CloudWatchMetrics": [{
            "Namespace": "fleetcert", "Dimensions": [["Function"]],
            "Metrics": [{ "Name": "X", "Unit": "Count" }] }] },
        "Function": "commit", "X": 1
    });
    assert!(emf_problems(&good).is_empty());
    let mut no_timestamp = good.clone();
    no_timestamp["_aws"]
        .as_object_mut()
        .expect("object")
        .remove("Timestamp");
    let mut bad_unit = good.clone();
    bad_unit["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Things");
    let mut missing_dimension = good.clone();
    missing_dimension
        .as_object_mut()
        .expect("object")
        .remove("Function");
    let mut text_value = good.clone();
    text_value["X"] = json!("1");
    for bad in [no_timestamp, bad_unit, missing_dimension, text_value] {
        assert!(!emf_problems(&bad).is_empty(), "accepted {bad}");
    }
}

#[test]
fn counts_are_summed_per_dimension_values() {
    let m = Metrics::with_clock(Function::CsrIssuer, fixed_clock(0));
    m.count(Metric::Rejections, &[Dim::Kind("different_key")]);
    m.count(Metric::Rejections, &[Dim::Kind("different_key")]);
    m.count(Metric::Rejections, &[Dim::Kind("deadline_passed")]);
    let docs = m.flush();
    let by_kind: Vec<(String, Value)> = docs
        .iter()
        .map(|d| {
            (
                d["Kind"].as_str().expect("kind").to_owned(),
                d["Rejections"].clone(),
            )
        })
        .collect();
    assert_eq!(
        by_kind,
        vec![
            ("deadline_passed".to_owned(), json!(1.0)),
            ("different_key".to_owned(), json!(2.0)),
        ]
    );
}

fn row(state: RotationState) -> Rotation {
    Rotation {
        state,
        ..Rotation::requested("r-1", "thing-1", "old", 0, 1000)
    }
}

#[test]
fn end_reasons_come_from_the_state_not_from_the_device_text() {
    let failed = |id: Option<&str>| RotationState::Failed {
        reason: "thing-1's flash is full; call 555-0100".to_owned(),
        new_certificate_id: id.map(str::to_owned),
    };
    let expired = |id: Option<&str>, kept| RotationState::Expired {
        new_certificate_id: id.map(str::to_owned),
        new_certificate_kept: kept,
    };
    assert_eq!(EndReason::of(&failed(None)), Some(EndReason::DeviceError));
    assert_eq!(
        EndReason::of(&failed(Some("n"))),
        Some(EndReason::DeviceErrorAfterIssue)
    );
    assert_eq!(
        EndReason::of(&expired(None, false)),
        Some(EndReason::NoCertificate)
    );
    assert_eq!(
        EndReason::of(&expired(Some("n"), false)),
        Some(EndReason::CertificateDeleted)
    );
    assert_eq!(
        EndReason::of(&expired(Some("n"), true)),
        Some(EndReason::CertificateKept)
    );
    assert_eq!(EndReason::of(&RotationState::Requested), None);

    // the device's text never reaches a document
    let m = Metrics::with_clock(Function::ErrorHandler, fixed_clock(0));
    m.transition(&row(RotationState::Requested), &row(failed(None)));
    let text = serde_json::to_string(&m.flush()).expect("json");
    assert!(
        !text.contains("flash") && !text.contains("thing-1"),
        "{text}"
    );
}

#[test]
fn transitions_count_once_and_resends_only_when_newly_set() {
    let m = Metrics::with_clock(Function::Sweeper, fixed_clock(0));
    let requested = row(RotationState::Requested);
    let resent = Rotation {
        resent_at_ms: Some(500),
        ..requested.clone()
    };
    m.transition(&requested, &resent);
    // the same row written again (a cleanup flag cleared, ...): nothing
    m.transition(&resent, &resent);
    let names: Vec<String> = m
        .flush()
        .iter()
        .flat_map(|d| {
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|m| m["Name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, vec!["MessagesResent".to_owned()]);
}
