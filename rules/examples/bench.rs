//! Throughput of the protocol core, native, one thread, in calls per
//! CPU-second of that thread (steady when other processes share the cores):
//! `cargo run -p rules --release --example bench [-- --json]`.
//!
//! Two sets of figures: the Rust API as the Lambdas and the emulator use it
//! (rules and policies parsed once), and the `rules::js` envelope API that
//! the wasm exports wrap (strings in, JSON envelope out, everything parsed
//! per call), which `node rules/wasm-tests/bench.mjs` compares with wasm.
//! The CSRs are made at start: RSA-2048 (the `rsa` crate's key, signed by
//! rcgen) and P-256 (rcgen).

use std::hint::black_box;
use std::time::{Duration, Instant};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use rules::contracts::{Contract, validate};
use rules::policy::{self, Action, ArnScope, PolicyContext, Request};
use rules::routes::{Router, deployed_rules};
use rules::sql::{self, MessageContext};
use rules::{csr, js};
use serde_json::{Value, json};

/// How much CPU time each figure is measured for.
const MEASURE: Duration = Duration::from_millis(500);

/// A clock of this thread's CPU time (`/proc/thread-self/schedstat`, Linux),
/// so that figures are calls per CPU-second on one core and do not fall when
/// other processes share the machine; wall time where that file is missing.
#[derive(Debug)]
enum Clock {
    Cpu(Duration),
    Wall(Instant),
}

fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

impl Clock {
    fn start() -> Self {
        thread_cpu_time().map_or_else(|| Clock::Wall(Instant::now()), Clock::Cpu)
    }

    fn elapsed(&self) -> Duration {
        match self {
            Clock::Cpu(start) => thread_cpu_time().unwrap_or(*start).saturating_sub(*start),
            Clock::Wall(start) => start.elapsed(),
        }
    }
}

/// Calls `f` in growing batches for about [`MEASURE`] of CPU time; returns
/// calls per CPU-second.
fn ops_per_sec(mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let clock = Clock::start();
    let mut calls: u64 = 0;
    let mut batch: u64 = 1;
    loop {
        for _ in 0..batch {
            f();
        }
        calls += batch;
        let elapsed = clock.elapsed();
        if elapsed >= MEASURE {
            return calls as f64 / elapsed.as_secs_f64();
        }
        if batch < 1 << 20 {
            batch *= 2;
        }
    }
}

fn csr_pem(key: &KeyPair, cn: &str) -> Result<String, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.serialize_request(key)?.pem()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let as_json = std::env::args().any(|a| a == "--json");

    let rsa_pair = test_support::rsa_keypair(2048, &PKCS_RSA_SHA256);
    let rsa_csr = csr_pem(&rsa_pair, "bench-thing")?;
    let p256_csr = csr_pem(
        &KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
        "bench-thing",
    )?;

    let topic = "management/topic/bench-thing/csr_res";
    let principal = "0".repeat(64);
    let payload = serde_json::to_string(&json!({ "CSR": rsa_csr, "rotationId": "r-0001" }))?;
    let router = Router::new(&deployed_rules(&[]))?;
    let csr_res_text = deployed_rules(&[])
        .into_iter()
        .find(|r| r.sql.contains("/csr_res'"))
        .ok_or("no csr_res rule")?
        .sql;
    let csr_res_sql = sql::parse(&csr_res_text)?;
    let parsed_payload: Value = serde_json::from_str(&payload)?;
    let ctx = |payload| MessageContext {
        topic,
        payload,
        client_id: "bench-thing",
        principal: &principal,
        timestamp_ms: 0,
    };
    // Sanity: the measured calls do what they say.
    assert_eq!(router.route(&ctx(&parsed_payload))?.len(), 1);
    assert!(validate(Contract::CsrRes, payload.as_bytes()).is_ok());

    let scope = ArnScope {
        partition: "aws".into(),
        region: "eu-west-1".into(),
        account: "123456789012".into(),
    };
    let device_policy = [policy::device_policy(&scope)];
    let policy_text = serde_json::to_string(&device_policy[0])?;
    let own = scope.topic_arn("management/topic/bench-thing/csr_res");
    let other = scope.topic_arn("management/topic/other-thing/csr_res");
    let pctx = PolicyContext {
        client_id: "bench-thing",
        thing_name: Some("bench-thing"),
        is_attached: true,
        certificate_cn: None,
    };
    let js_ctx = r#"{"clientId":"bench-thing","thingName":"bench-thing","isAttached":true}"#;
    let decide = |resource: &str| {
        policy::evaluate(
            &device_policy,
            &Request {
                action: Action::Publish,
                resource,
            },
            &pctx,
        )
    };
    assert!(decide(&own).is_allowed() && !decide(&other).is_allowed());

    let mut figures: Vec<(&str, &str, f64)> = Vec::new();
    let mut measure = |set: &'static str, name: &'static str, f: &mut dyn FnMut()| {
        let rate = ops_per_sec(f);
        if !as_json {
            println!("{set:<5} {name:<28} {rate:>12.0} ops/s");
        }
        figures.push((set, name, rate));
    };

    if !as_json {
        println!(
            "rules bench, native, one thread, ~{} ms per figure",
            MEASURE.as_millis()
        );
        println!("csr_res payload: {} bytes (RSA-2048 CSR)", payload.len());
    }
    // The Rust API, as the Lambdas and the emulator call it.
    measure("core", "validate csr_res", &mut || {
        black_box(validate(Contract::CsrRes, black_box(payload.as_bytes())).is_ok());
    });
    measure("core", "route", &mut || {
        black_box(router.route(&ctx(black_box(&parsed_payload))).ok());
    });
    measure("core", "validate+route csr_res", &mut || {
        let message = validate(Contract::CsrRes, black_box(payload.as_bytes()));
        if let Ok(message) = message {
            let event = message.to_json();
            let ctx = MessageContext {
                topic,
                payload: &event,
                client_id: "bench-thing",
                principal: &principal,
                timestamp_ms: 0,
            };
            black_box(router.route(&ctx).ok());
        }
    });
    measure("core", "inspect_csr RSA-2048", &mut || {
        black_box(csr::inspect_csr(black_box(&rsa_csr)).is_ok());
    });
    measure("core", "inspect_csr P-256", &mut || {
        black_box(csr::inspect_csr(black_box(&p256_csr)).is_ok());
    });
    measure("core", "policy allow", &mut || {
        black_box(decide(black_box(&own)));
    });
    measure("core", "policy deny", &mut || {
        black_box(decide(black_box(&other)));
    });
    measure("core", "sql evaluate csr_res", &mut || {
        black_box(csr_res_sql.evaluate(&ctx(black_box(&parsed_payload))).ok());
    });
    // The envelope API the wasm exports wrap: what Node calls, per call.
    measure("js", "validate csr_res", &mut || {
        black_box(js::validate("csr_res", black_box(&payload)));
    });
    measure("js", "route", &mut || {
        black_box(js::route(
            topic,
            black_box(&payload),
            "bench-thing",
            &principal,
            0.0,
        ));
    });
    measure("js", "validate+route csr_res", &mut || {
        black_box(js::validate("csr_res", black_box(&payload)));
        black_box(js::route(
            topic,
            black_box(&payload),
            "bench-thing",
            &principal,
            0.0,
        ));
    });
    measure("js", "inbound csr_res", &mut || {
        black_box(js::inbound(
            topic,
            black_box(payload.as_bytes()),
            "bench-thing",
            &principal,
            0.0,
        ));
    });
    measure("js", "inspect_csr RSA-2048", &mut || {
        black_box(js::inspect_csr(black_box(&rsa_csr)));
    });
    measure("js", "inspect_csr P-256", &mut || {
        black_box(js::inspect_csr(black_box(&p256_csr)));
    });
    measure("js", "policy allow", &mut || {
        black_box(js::evaluate_policy(
            &policy_text,
            "iot:Publish",
            black_box(&own),
            js_ctx,
        ));
    });
    measure("js", "policy deny", &mut || {
        black_box(js::evaluate_policy(
            &policy_text,
            "iot:Publish",
            black_box(&other),
            js_ctx,
        ));
    });
    measure("js", "sql evaluate csr_res", &mut || {
        black_box(js::evaluate_rule(
            &csr_res_text,
            topic,
            black_box(&payload),
            "bench-thing",
            &principal,
            0.0,
        ));
    });

    if as_json {
        let out: Vec<Value> = figures
            .iter()
            .map(|(set, name, rate)| json!({ "set": set, "name": name, "opsPerSec": rate }))
            .collect();
        println!("{}", Value::Array(out));
    }
    Ok(())
}
