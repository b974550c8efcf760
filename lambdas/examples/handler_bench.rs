//! Handler time per event on the in-memory adapters.
//!
//! `cargo run -p lambdas --release --example handler_bench [devices]`
//! (default 1000 devices; RSA-2048 CSRs on a fifth of them). Keys, CSRs
//! and certificates are generated before the timed sections.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use lambdas::handlers::{
    audit_fanout, commit, csr_issuer, error_handler, jitr_activator, rotation_starter, sweeper,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};

fn report(name: &str, events: usize, elapsed: Duration) {
    let per = elapsed.as_secs_f64() * 1e6 / events.max(1) as f64;
    println!(
        "{name:<28} {events:>7} events {:>10.1} ms total {per:>10.1} µs/event",
        elapsed.as_secs_f64() * 1e3
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let w = World::new();
    let check = "DEVICE_CERTIFICATE_EXPIRING_CHECK";
    let mut devices: Vec<Device> = (0..n).map(|i| w.provision(&format!("thing-{i}"))).collect();
    w.registry().set_audit_findings(
        TASK,
        check,
        devices
            .iter()
            .map(|d| finding(&d.cert_id, TASK, check, NOW + 1, false))
            .collect(),
    );

    // audit-fanout: one notification, n findings
    let sns = bytes(&sns_event(TASK, check, n as u64));
    let t = Instant::now();
    rt.block_on(audit_fanout::handle(&w.ports, &w.cfg, &sns, w.now))
        .expect("fanout");
    report("audit-fanout (per finding)", n, t.elapsed());
    let bodies: Vec<Value> = w
        .ports
        .ports
        .queue
        .drain()
        .iter()
        .map(|m| serde_json::from_str(&m.body).expect("json"))
        .collect();

    // rotation-starter: batches of ten
    let batches: Vec<Vec<u8>> = bodies.chunks(10).map(|c| bytes(&sqs_event(c))).collect();
    let t = Instant::now();
    for b in &batches {
        let out = rt.block_on(rotation_starter::handle(&w.ports, &w.cfg, b, w.now));
        assert!(out.response.batch_item_failures.is_empty());
    }
    report("rotation-starter (per msg)", n, t.elapsed());

    // csr-issuer: P-256 for most, RSA-2048 for every fifth device
    let rsa = rsa2048_key();
    let mut p256_events = Vec::new();
    let mut rsa_events = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let id = last_csr_req(&w, &d.thing).expect("csr_req")["rotationId"]
            .as_str()
            .expect("id")
            .to_owned();
        if i % 5 == 4 {
            rsa_events.push(bytes(&csr_res(
                &d.thing,
                &csr_pem(&rsa, &d.thing),
                Some(&id),
            )));
        } else {
            p256_events.push(bytes(&csr_res(
                &d.thing,
                &csr_pem(&p256_key(), &d.thing),
                Some(&id),
            )));
        }
    }
    for (name, events) in [
        ("csr-issuer P-256", &p256_events),
        ("csr-issuer RSA-2048", &rsa_events),
    ] {
        let t = Instant::now();
        for e in events {
            let out = rt
                .block_on(csr_issuer::handle(&w.ports, &w.cfg, e, w.now))
                .expect("issuer");
            assert!(!out.is_rejected(), "{out:?}");
        }
        report(name, events.len(), t.elapsed());
    }
    let t = Instant::now();
    for e in &p256_events {
        rt.block_on(csr_issuer::handle(&w.ports, &w.cfg, e, w.now))
            .expect("issuer");
    }
    report(
        "csr-issuer duplicate (resend)",
        p256_events.len(),
        t.elapsed(),
    );

    // commit on the first half, error-handler on the second
    let half = n / 2;
    let mut acks = Vec::new();
    let mut errs = Vec::new();
    for (i, d) in devices.iter_mut().enumerate() {
        let crt = w.receive_crt(d).expect("crt");
        let new_id = crt["certificateId"].as_str().expect("id").to_owned();
        let rid = crt["rotationId"].as_str().expect("rid").to_owned();
        if i < half {
            acks.push(bytes(&crt_ack(&d.thing, &new_id, Some(&rid))));
        } else {
            errs.push(bytes(&crt_err(&d.thing, &d.cert_id, "bench", Some(&rid))));
        }
    }
    let t = Instant::now();
    for a in &acks {
        rt.block_on(commit::handle(&w.ports, &w.cfg, a, w.now))
            .expect("commit");
    }
    report("commit", acks.len(), t.elapsed());
    let t = Instant::now();
    for e in &errs {
        rt.block_on(error_handler::handle(&w.ports, &w.cfg, e, w.now))
            .expect("error");
    }
    report("error-handler", errs.len(), t.elapsed());

    // sweeper: a fresh world with n requested rotations, all past deadline
    let w2 = World::new();
    let devs2: Vec<Device> = (0..n).map(|i| w2.provision(&format!("s-{i}"))).collect();
    let work_bodies: Vec<Value> = devs2.iter().map(|d| work(&d.cert_id, false)).collect();
    for c in work_bodies.chunks(10) {
        rt.block_on(rotation_starter::handle(
            &w2.ports,
            &w2.cfg,
            &bytes(&sqs_event(c)),
            w2.now,
        ));
    }
    let t = Instant::now();
    rt.block_on(sweeper::handle(
        &w2.ports,
        &w2.cfg,
        &bytes(&scheduled_event()),
        w2.now + w2.cfg.rotation_deadline_ms + 1,
    ))
    .expect("sweep");
    report("sweeper (per rotation)", n, t.elapsed());

    // jitr-activator
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bench ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).expect("ca").pem();
    let ca_id = w2
        .registry()
        .register_ca_certificate(&ca_pem)
        .expect("ca")
        .ca_certificate_id;
    let issuer = Issuer::new(ca_params, ca_key);
    let mut events = Vec::new();
    for i in 0..n {
        let mut p = CertificateParams::default();
        p.distinguished_name
            .push(DnType::CommonName, format!("jitr-{i}"));
        p.not_before = time::OffsetDateTime::from_unix_timestamp(NOW / 1000 - 60).expect("time");
        p.not_after =
            time::OffsetDateTime::from_unix_timestamp(NOW / 1000 + 86_400 * 365).expect("time");
        let pem = p.signed_by(&p256_key(), &issuer).expect("cert").pem();
        let id = w2.registry().auto_register(&pem).expect("register");
        events.push(bytes(
            &json!({"certificateId": id, "caCertificateId": ca_id, "timestamp": NOW,
            "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": "123456789012"}),
        ));
    }
    let t = Instant::now();
    for e in &events {
        let out = rt
            .block_on(jitr_activator::handle(&w2.ports, &w2.cfg, e, w2.now))
            .expect("jitr");
        assert!(!out.is_rejected(), "{out:?}");
    }
    report("jitr-activator", n, t.elapsed());
    let t = Instant::now();
    for e in &events {
        rt.block_on(jitr_activator::handle(&w2.ports, &w2.cfg, e, w2.now))
            .expect("jitr");
    }
    report("jitr-activator (repeat)", n, t.elapsed());
}
