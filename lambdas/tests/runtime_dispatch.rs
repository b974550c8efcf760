//! `lambdas::runtime::dispatch`: each function's fixture event through its
//! handler on the memory adapters, and the outcome as Lambda sees it (the
//! SQS partial batch response, Ok for a rejection, an error type that says
//! retryable for a retryable failure).
#![cfg(feature = "aws")]

mod common;

use common::*;
use lambda_runtime::Diagnostic;
use lambdas::memory::Fault;
use lambdas::ports::Operation;
use lambdas::runtime::{HandlerFailure, dispatch_at};
use rules::functions::Function;
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(format!("example-{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).expect("fixture json")
}

fn dispatch(w: &World, f: Function, event: Value) -> Result<Value, HandlerFailure> {
    run(dispatch_at(f, &w.ports, &w.cfg, event, w.now))
}

const FIXTURES: [(Function, &str); 7] = [
    (Function::AuditFanout, "sns-audit-notification-expiring"),
    (Function::RotationStarter, "sqs-rotation-work-batch"),
    (Function::CsrIssuer, "iot-rule-csr-res"),
    (Function::Commit, "iot-rule-crt-ack"),
    (Function::ErrorHandler, "iot-rule-crt-err"),
    (Function::Sweeper, "events-scheduled"),
    (Function::JitrActivator, "iot-jitr-registered"),
];

#[test]
fn sqs_batch_answers_batch_item_failures() {
    let w = World::new();
    let event = fixture("sqs-rotation-work-batch");
    let ids: Vec<Value> = event["Records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| json!({ "itemIdentifier": r["messageId"] }))
        .collect();
    assert!(ids.len() >= 2);

    // The certificates are unknown here: every message is rejected, none
    // is redelivered.
    let out = dispatch(&w, Function::RotationStarter, event.clone()).expect("ok");
    assert_eq!(out, json!({ "batchItemFailures": [] }));

    // Throttled: every message is listed for redelivery, the batch is Ok.
    w.ports
        .instruments
        .fail_next(Operation::DescribeCertificate, ids.len(), Fault::Throttled);
    let out = dispatch(&w, Function::RotationStarter, event.clone()).expect("ok");
    assert_eq!(out, json!({ "batchItemFailures": ids }));

    // Only the first message throttled: only it is redelivered.
    w.ports
        .instruments
        .fail_next(Operation::DescribeCertificate, 1, Fault::Throttled);
    let out = dispatch(&w, Function::RotationStarter, event).expect("ok");
    assert_eq!(out, json!({ "batchItemFailures": [ids[0]] }));

    // An event that is no SQS batch has nothing to redeliver.
    let out = dispatch(&w, Function::RotationStarter, json!({"hello": 1})).expect("ok");
    assert_eq!(out, json!({ "batchItemFailures": [] }));
}

#[test]
fn a_full_rotation_through_dispatch() {
    let w = World::new();
    let dev = w.provision("thing-1");
    let out = dispatch(
        &w,
        Function::RotationStarter,
        sqs_event(&[work(&dev.cert_id, false)]),
    )
    .expect("ok");
    assert_eq!(out, json!({ "batchItemFailures": [] }));
    let id = last_csr_req(&w, "thing-1").expect("csr_req")["rotationId"]
        .as_str()
        .expect("id")
        .to_owned();
    let csr = csr_pem(&p256_key(), "thing-1");
    let out = dispatch(&w, Function::CsrIssuer, csr_res("thing-1", &csr, Some(&id))).expect("ok");
    assert_eq!(out["outcome"], "done", "{out}");
    assert!(out["summary"].is_string());
}

#[test]
fn every_fixture_is_answered_and_rejections_are_not_errors() {
    for (f, name) in FIXTURES {
        let w = World::new();
        let out = dispatch(&w, f, fixture(name)).unwrap_or_else(|e| panic!("{}: {e}", f.name()));
        if f == Function::RotationStarter {
            assert!(out["batchItemFailures"].is_array(), "{out}");
        } else {
            assert!(
                out["outcome"] == "done" || out["outcome"] == "rejected",
                "{}: {out}",
                f.name()
            );
        }
        // A malformed event is rejected (logged), never an error to retry.
        let out = dispatch(&w, f, json!(["not", "an", "event"]))
            .unwrap_or_else(|e| panic!("{}: {e}", f.name()));
        if f != Function::RotationStarter {
            assert_eq!(out["outcome"], "rejected", "{}: {out}", f.name());
            assert!(out["kind"].is_string() && out["reason"].is_string());
        }
    }
    // Rejections name their reason: the crt_ack fixture's rotation is unknown.
    let w = World::new();
    let out = dispatch(&w, Function::Commit, fixture("iot-rule-crt-ack")).expect("ok");
    assert_eq!(out["outcome"], "rejected");
    assert_eq!(out["kind"], "unknown_rotation");
}

#[test]
fn retryable_failures_are_errors_typed_retryable() {
    let cases = [
        (
            Function::AuditFanout,
            "sns-audit-notification-expiring",
            Operation::ListAuditFindings,
        ),
        (
            Function::CsrIssuer,
            "iot-rule-csr-res",
            Operation::GetRotation,
        ),
        (Function::Commit, "iot-rule-crt-ack", Operation::GetRotation),
        (
            Function::ErrorHandler,
            "iot-rule-crt-err",
            Operation::GetRotation,
        ),
        (
            Function::Sweeper,
            "events-scheduled",
            Operation::ListDueRotations,
        ),
        (
            Function::JitrActivator,
            "iot-jitr-registered",
            Operation::DescribeCertificate,
        ),
    ];
    for (f, name, op) in cases {
        let w = World::new();
        w.ports.instruments.fail_next(op, 1, Fault::Throttled);
        let err = dispatch(&w, f, fixture(name)).expect_err(f.name());
        assert!(err.is_retryable(), "{}: {err}", f.name());
        let diagnostic = Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "Retryable.Port", "{}", f.name());
        assert!(
            diagnostic.error_message.contains(op.name()),
            "{}: {}",
            f.name(),
            diagnostic.error_message
        );
        assert_eq!(w.calls(op), 1);
    }
}
