//! The EMF documents `metrics::Metered` writes for scripted rotations on
//! the memory adapters: one committed, one failed by the device, one
//! stalled (re-sent, then expired), one start throttled; and, with feature
//! `aws`, the outcomes `runtime::dispatch_recorded_at` adds.

mod common;

use std::sync::Arc;

use common::*;
use lambdas::handlers::{commit, csr_issuer, error_handler, rotation_starter, sweeper};
use lambdas::memory::Fault;
use lambdas::metrics::{Metered, Metrics};
use lambdas::ports::Operation;
use rules::functions::Function;
use serde_json::{Value, json};

/// One document: its metric, its dimensions other than `Function`, its value.
type Datum = (String, Vec<(String, String)>, Value);

/// The [`Datum`] of each document, sorted, with every document's Function
/// checked to be `f`.
fn summary(f: Function, docs: &[Value]) -> Vec<Datum> {
    let mut out: Vec<_> = docs
        .iter()
        .map(|d| {
            let directive = &d["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(directive["Namespace"], "fleetcert");
            assert_eq!(d["Function"], f.name(), "{d}");
            let name = directive["Metrics"][0]["Name"]
                .as_str()
                .expect("name")
                .to_owned();
            let dims = directive["Dimensions"][0]
                .as_array()
                .expect("dimensions")
                .iter()
                .map(|n| n.as_str().expect("dimension name"))
                .filter(|n| *n != "Function")
                .map(|n| (n.to_owned(), d[n].as_str().expect("value").to_owned()))
                .collect();
            (
                name,
                dims,
                d[directive["Metrics"][0]["Name"].as_str().expect("name")].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

fn metered(w: &World, f: Function, at_ms: i64) -> Metered<lambdas::memory::MemoryPorts> {
    Metered::new(
        w.ports.clone(),
        Metrics::with_clock(f, Arc::new(move || at_ms)),
    )
}

fn start(w: &World, cert_id: &str, at: i64) -> Vec<Value> {
    let p = metered(w, Function::RotationStarter, at);
    let batch = run(rotation_starter::handle(
        &p,
        &w.cfg,
        &bytes(&sqs_event(&[work(cert_id, false)])),
        at,
    ));
    assert!(batch.response.batch_item_failures.is_empty(), "{batch:?}");
    p.metrics().flush()
}

fn rotation_id(w: &World, thing: &str) -> String {
    last_csr_req(w, thing).expect("csr_req")["rotationId"]
        .as_str()
        .expect("id")
        .to_owned()
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn a_committed_rotation_writes_started_issued_committed_and_its_latency() {
    let w = World::new();
    let mut dev = w.provision("thing-1");
    let docs = start(&w, &dev.cert_id, w.now);
    assert_eq!(
        summary(Function::RotationStarter, &docs),
        vec![("RotationsStarted".to_owned(), vec![], json!(1.0))]
    );
    let id = rotation_id(&w, "thing-1");

    let p = metered(&w, Function::CsrIssuer, w.now + 1_000);
    let csr = csr_pem(&p256_key(), "thing-1");
    let out = run(csr_issuer::handle(
        &p,
        &w.cfg,
        &bytes(&csr_res("thing-1", &csr, Some(&id))),
        w.now + 1_000,
    ))
    .expect("csr");
    assert!(!out.is_rejected(), "{out:?}");
    assert_eq!(
        summary(Function::CsrIssuer, &p.metrics().flush()),
        vec![("RotationsIssued".to_owned(), vec![], json!(1.0))]
    );
    let new_id = w.receive_crt(&mut dev).expect("crt")["certificateId"]
        .as_str()
        .expect("id")
        .to_owned();

    // an ack on the old certificate changes nothing: no metric
    let p = metered(&w, Function::Commit, w.now + 2_000);
    let out = run(commit::handle(
        &p,
        &w.cfg,
        &bytes(&crt_ack("thing-1", &dev.cert_id, Some(&id))),
        w.now + 2_000,
    ))
    .expect("ack");
    assert!(out.is_rejected());
    assert!(p.metrics().is_empty(), "{:?}", p.metrics().flush());

    let p = metered(&w, Function::Commit, w.now + 60_000);
    let out = run(commit::handle(
        &p,
        &w.cfg,
        &bytes(&crt_ack("thing-1", &new_id, Some(&id))),
        w.now + 60_000,
    ))
    .expect("ack");
    assert!(!out.is_rejected(), "{out:?}");
    assert_eq!(
        summary(Function::Commit, &p.metrics().flush()),
        vec![
            ("CommitLatency".to_owned(), vec![], json!(60_000.0)),
            ("RotationsCommitted".to_owned(), vec![], json!(1.0)),
        ]
    );

    // a duplicate ack after the commit: no second commit counted
    let p = metered(&w, Function::Commit, w.now + 61_000);
    let _ = run(commit::handle(
        &p,
        &w.cfg,
        &bytes(&crt_ack("thing-1", &new_id, Some(&id))),
        w.now + 61_000,
    ));
    assert!(
        summary(Function::Commit, &p.metrics().flush())
            .iter()
            .all(|(name, _, _)| name != "RotationsCommitted")
    );
}

#[test]
fn a_device_error_after_issue_is_a_failure_by_reason_without_the_device_text() {
    let w = World::new();
    let mut dev = w.provision("thing-2");
    start(&w, &dev.cert_id, w.now);
    let id = rotation_id(&w, "thing-2");
    let csr = csr_pem(&p256_key(), "thing-2");
    run(csr_issuer::handle(
        &w.ports,
        &w.cfg,
        &bytes(&csr_res("thing-2", &csr, Some(&id))),
        w.now,
    ))
    .expect("csr");
    w.receive_crt(&mut dev).expect("crt");

    let p = metered(&w, Function::ErrorHandler, w.now + 5_000);
    let out = run(error_handler::handle(
        &p,
        &w.cfg,
        &bytes(&crt_err(
            "thing-2",
            &dev.cert_id,
            "no room for thing-2's key",
            Some(&id),
        )),
        w.now + 5_000,
    ))
    .expect("crt_err");
    assert!(!out.is_rejected(), "{out:?}");
    let docs = p.metrics().flush();
    assert_eq!(
        summary(Function::ErrorHandler, &docs),
        vec![(
            "RotationsFailed".to_owned(),
            kv(&[("Reason", "device_error_after_issue")]),
            json!(1.0)
        )]
    );
    let text = serde_json::to_string(&docs).expect("json");
    assert!(
        !text.contains("thing-2") && !text.contains("no room"),
        "{text}"
    );
}

#[test]
fn a_stalled_rotation_is_resent_then_expired() {
    let w = World::new();
    let dev = w.provision("thing-3");
    start(&w, &dev.cert_id, w.now);
    let deadline = w.cfg.rotation_deadline_ms;

    let half = w.now + deadline / 2 + 1;
    let p = metered(&w, Function::Sweeper, half);
    run(sweeper::handle(
        &p,
        &w.cfg,
        &bytes(&scheduled_event()),
        half,
    ))
    .expect("sweep");
    assert_eq!(
        summary(Function::Sweeper, &p.metrics().flush()),
        vec![("MessagesResent".to_owned(), vec![], json!(1.0))]
    );
    // a second sweep before the next mark re-sends nothing
    let p = metered(&w, Function::Sweeper, half + 1);
    run(sweeper::handle(
        &p,
        &w.cfg,
        &bytes(&scheduled_event()),
        half + 1,
    ))
    .expect("sweep");
    assert!(p.metrics().is_empty(), "{:?}", p.metrics().flush());

    let after = w.now + deadline + 1;
    let p = metered(&w, Function::Sweeper, after);
    run(sweeper::handle(
        &p,
        &w.cfg,
        &bytes(&scheduled_event()),
        after,
    ))
    .expect("sweep");
    assert_eq!(
        summary(Function::Sweeper, &p.metrics().flush()),
        vec![(
            "RotationsExpired".to_owned(),
            kv(&[("Reason", "no_certificate")]),
            json!(1.0)
        )]
    );
}

#[test]
fn a_throttled_call_counts_per_operation() {
    let w = World::new();
    let dev = w.provision("thing-4");
    w.ports
        .instruments
        .fail_next(Operation::DescribeCertificate, 1, Fault::Throttled);
    let p = metered(&w, Function::RotationStarter, w.now);
    let batch = run(rotation_starter::handle(
        &p,
        &w.cfg,
        &bytes(&sqs_event(&[work(&dev.cert_id, false)])),
        w.now,
    ));
    assert_eq!(batch.response.batch_item_failures.len(), 1);
    assert_eq!(
        summary(Function::RotationStarter, &p.metrics().flush()),
        vec![(
            "ThrottledCalls".to_owned(),
            kv(&[("Operation", "DescribeCertificate")]),
            json!(1.0)
        )]
    );
}

#[cfg(feature = "aws")]
#[test]
fn dispatch_records_each_outcome_and_rejection_kind() {
    use lambdas::runtime::dispatch_recorded_at;

    let w = World::new();
    let dev = w.provision("thing-5");
    let p = metered(&w, Function::RotationStarter, w.now);
    let event = sqs_event(&[
        work(&dev.cert_id, false),
        work("0".repeat(64).as_str(), false),
    ]);
    run(dispatch_recorded_at(
        Function::RotationStarter,
        &p,
        &w.cfg,
        event,
        w.now,
        p.metrics(),
    ))
    .expect("batch");
    assert_eq!(
        summary(Function::RotationStarter, &p.metrics().flush()),
        vec![
            (
                "Outcomes".to_owned(),
                kv(&[("Outcome", "done")]),
                json!(1.0)
            ),
            (
                "Outcomes".to_owned(),
                kv(&[("Outcome", "rejected")]),
                json!(1.0)
            ),
            (
                "Rejections".to_owned(),
                kv(&[("Kind", "unknown_certificate")]),
                json!(1.0)
            ),
            ("RotationsStarted".to_owned(), vec![], json!(1.0)),
        ]
    );

    let p = metered(&w, Function::CsrIssuer, w.now);
    run(dispatch_recorded_at(
        Function::CsrIssuer,
        &p,
        &w.cfg,
        json!({ "clientid": "thing-5", "topicClientId": "thing-5", "CSR": "not a pem" }),
        w.now,
        p.metrics(),
    ))
    .expect("rejected is ok");
    let got = summary(Function::CsrIssuer, &p.metrics().flush());
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].1, kv(&[("Outcome", "rejected")]));
    assert_eq!(got[1].0, "Rejections");
}

#[test]
fn answers_are_not_failures_but_errors_are() {
    let w = World::new();
    let dev = w.provision("thing-6");
    // unknown certificate (NotFound): an answer, no FailedCalls
    let p = metered(&w, Function::RotationStarter, w.now);
    run(rotation_starter::handle(
        &p,
        &w.cfg,
        &bytes(&sqs_event(&[work("0".repeat(64).as_str(), false)])),
        w.now,
    ));
    assert!(p.metrics().is_empty(), "{:?}", p.metrics().flush());
    // a transient failure of the publish: FailedCalls by kind
    w.ports
        .instruments
        .fail_next(Operation::Publish, 1, Fault::Transient);
    let p = metered(&w, Function::RotationStarter, w.now);
    run(rotation_starter::handle(
        &p,
        &w.cfg,
        &bytes(&sqs_event(&[work(&dev.cert_id, false)])),
        w.now,
    ));
    let got = summary(Function::RotationStarter, &p.metrics().flush());
    assert!(
        got.contains(&(
            "FailedCalls".to_owned(),
            kv(&[("Operation", "Publish"), ("Kind", "transient")]),
            json!(1.0)
        )),
        "{got:?}"
    );
}
