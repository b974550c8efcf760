//! [`Limited`] over the memory adapters: retries counted with their call
//! counters and fault injection, rates measured on a [`ManualTimer`].

use std::time::Duration;

use rcgen::{CertificateParams, DnType, KeyPair};

use super::*;
use crate::memory::{Fault, MemoryPorts};

fn run<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn limited(config: &LimitsConfig) -> (MemoryPorts, Limited<MemoryPorts, ManualTimer>, ManualTimer) {
    let memory = MemoryPorts::new();
    memory.ports.registry.add_thing("thing-1");
    let timer = ManualTimer::new();
    let limited = Limited::with_timer(memory.clone(), config, timer.clone());
    (memory, limited, timer)
}

fn csr() -> String {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "thing-1");
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

#[test]
fn throttled_twice_then_ok_is_ok_after_three_calls() {
    let (memory, limited, timer) = limited(&LimitsConfig::default());
    memory
        .instruments
        .fail_next(Operation::DescribeThing, 2, Fault::Throttled);
    let thing = run(limited.describe_thing("thing-1")).expect("third attempt succeeds");
    assert_eq!(thing.thing_name, "thing-1");
    assert_eq!(memory.instruments.calls(Operation::DescribeThing), 3);
    // Two back-offs: at least 100 ms then 200 ms, jitter adds up to as much again.
    let slept = timer.elapsed();
    assert!(
        slept >= Duration::from_millis(300) && slept <= Duration::from_millis(600),
        "{slept:?}"
    );
}

#[test]
fn non_retryable_error_is_returned_after_one_call() {
    let (memory, limited, timer) = limited(&LimitsConfig::default());
    let err = run(limited.describe_thing("no-such-thing")).expect_err("not found");
    assert!(err.is_not_found(), "{err}");
    assert_eq!(memory.instruments.calls(Operation::DescribeThing), 1);
    assert_eq!(timer.elapsed(), Duration::ZERO);
}

#[test]
fn retries_are_bounded_and_the_last_error_is_returned() {
    let config = LimitsConfig::from_vars(vars(&[("FLEETCERT_MAX_RETRIES", "3")])).expect("vars");
    let (memory, limited, timer) = limited(&config);
    memory
        .instruments
        .fail_next(Operation::AttachPolicy, 10, Fault::Transient);
    let err = run(limited.attach_policy("p", "arn")).expect_err("still failing");
    assert!(matches!(err, PortError::Transient { .. }), "{err}");
    assert_eq!(memory.instruments.calls(Operation::AttachPolicy), 4);

    // The default bound: 6 attempts, at most 20 s of sleep.
    let (memory, limited, timer2) = self::limited(&LimitsConfig::default());
    memory
        .instruments
        .fail_next(Operation::AttachPolicy, 10, Fault::Throttled);
    let err = run(limited.attach_policy("p", "arn")).expect_err("still throttled");
    assert!(matches!(err, PortError::Throttled { .. }), "{err}");
    assert_eq!(memory.instruments.calls(Operation::AttachPolicy), 6);
    assert!(timer2.elapsed() <= DEFAULT_MAX_TOTAL_DELAY + DEFAULT_MAX_DELAY);
    assert!(timer.elapsed() < timer2.elapsed());
}

#[test]
fn create_certificate_is_retried_when_throttled_never_when_transient() {
    let (memory, limited, _) = limited(&LimitsConfig::default());
    let op = Operation::CreateCertificateFromCsr;

    memory.instruments.fail_next(op, 2, Fault::Throttled);
    run(limited.create_certificate_from_csr(&csr(), false)).expect("created on the third try");
    assert_eq!(memory.instruments.calls(op), 3);
    assert_eq!(memory.ports.registry.certificates().len(), 1);

    // A failure that may follow the creation goes back to the handler.
    memory.instruments.reset_calls();
    memory
        .instruments
        .fail_next(op, 1, Fault::TransientAfterEffect);
    let err = run(limited.create_certificate_from_csr(&csr(), false)).expect_err("lost response");
    assert!(matches!(err, PortError::Transient { .. }), "{err}");
    assert_eq!(memory.instruments.calls(op), 1);
    assert_eq!(
        memory.ports.registry.certificates().len(),
        2,
        "the lost-response call created one certificate, and no retry made another"
    );

    memory.instruments.reset_calls();
    memory.instruments.fail_next(op, 1, Fault::Transient);
    assert!(run(limited.create_certificate_from_csr(&csr(), false)).is_err());
    assert_eq!(memory.instruments.calls(op), 1);

    // Other operations are retried on transient failures.
    memory
        .instruments
        .fail_next(Operation::DescribeThing, 1, Fault::TransientAfterEffect);
    run(limited.describe_thing("thing-1")).expect("retried");
    assert_eq!(memory.instruments.calls(Operation::DescribeThing), 2);
}

/// Makes `n` calls of DescribeThing and returns the mock time they took.
fn time_of_calls(config: &LimitsConfig, n: u64) -> Duration {
    let (memory, limited, timer) = limited(config);
    run(async {
        for _ in 0..n {
            limited.describe_thing("thing-1").await.expect("describe");
        }
    });
    assert_eq!(memory.instruments.calls(Operation::DescribeThing), n);
    timer.elapsed()
}

fn assert_close(actual: Duration, expected: Duration) {
    let diff = actual.abs_diff(expected);
    assert!(
        diff <= Duration::from_millis(5),
        "took {actual:?}, expected {expected:?}"
    );
}

#[test]
fn calls_are_spaced_at_the_instance_share_of_the_quota() {
    // 10 rps: a burst of 10, then one call every 100 ms.
    let ten =
        LimitsConfig::from_vars(vars(&[("FLEETCERT_QUOTA_DescribeThing", "10")])).expect("vars");
    assert_close(time_of_calls(&ten, 10), Duration::ZERO);
    assert_close(time_of_calls(&ten, 25), Duration::from_millis(1500));

    // Four instances share the quota: 2.5 rps each, a burst of 2, then one
    // call every 400 ms.
    let shared = LimitsConfig::from_vars(vars(&[
        ("FLEETCERT_QUOTA_DescribeThing", "10"),
        ("FLEETCERT_CONCURRENCY", "4"),
    ]))
    .expect("vars");
    assert_close(time_of_calls(&shared, 12), Duration::from_millis(4000));

    // Without a configured quota an operation gets the default rate (50),
    // and a published quota applies where there is one.
    assert_close(
        time_of_calls(&LimitsConfig::default(), 60),
        Duration::from_millis(200),
    );
    let (_, limited, _) = limited(&LimitsConfig::default());
    assert_eq!(limited.rate(Operation::CreateCertificateFromCsr), 15.0);
    assert_eq!(limited.rate(Operation::DescribeCertificate), 10.0);
    assert_eq!(limited.rate(Operation::Publish), DEFAULT_RATE);
}

#[test]
fn buckets_are_per_operation() {
    let config = LimitsConfig::from_vars(vars(&[
        ("FLEETCERT_QUOTA_DescribeThing", "1"),
        ("FLEETCERT_QUOTA_CreateThing", "1"),
    ]))
    .expect("vars");
    let (_, limited, timer) = limited(&config);
    run(async {
        limited.describe_thing("thing-1").await.expect("describe");
        limited.create_thing("thing-2").await.expect("create");
    });
    assert_eq!(timer.elapsed(), Duration::ZERO, "each had its own token");
    run(limited.describe_thing("thing-1")).expect("describe");
    assert_close(timer.elapsed(), Duration::from_secs(1));
}

#[test]
fn config_reads_quotas_concurrency_and_retries() {
    let c = LimitsConfig::from_vars(vars(&[
        ("FLEETCERT_QUOTA_CreateCertificateFromCsr", "30"),
        ("FLEETCERT_QUOTA_DescribeCACertificate", "2.5"),
        ("FLEETCERT_DEFAULT_QUOTA", "20"),
        ("FLEETCERT_CONCURRENCY", "5"),
        ("FLEETCERT_MAX_RETRIES", "2"),
        ("PATH", "/usr/bin"),
    ]))
    .expect("vars");
    assert_eq!(c.account_rate(Operation::CreateCertificateFromCsr), 30.0);
    assert_eq!(c.instance_rate(Operation::CreateCertificateFromCsr), 6.0);
    assert_eq!(c.account_rate(Operation::DescribeCaCertificate), 2.5);
    assert_eq!(c.account_rate(Operation::AttachPolicy), 15.0);
    assert_eq!(c.instance_rate(Operation::Publish), 4.0);
    assert_eq!(c.max_retries, 2);
    assert_eq!(
        LimitsConfig::from_vars(vars(&[])),
        Ok(LimitsConfig::default())
    );
}

#[test]
fn bad_limits_variables_are_named() {
    for (name, value) in [
        ("FLEETCERT_QUOTA_AttachPolicy", "0"),
        ("FLEETCERT_QUOTA_AttachPolicy", "fast"),
        ("FLEETCERT_DEFAULT_QUOTA", "-1"),
        ("FLEETCERT_CONCURRENCY", "0"),
        ("FLEETCERT_MAX_RETRIES", "many"),
    ] {
        let err = LimitsConfig::from_vars(vars(&[(name, value)])).expect_err(name);
        assert!(
            matches!(&err, LimitsConfigError::Invalid { name: n, value: v, .. } if n == name && v == value),
            "{err}"
        );
    }
    let err = LimitsConfig::from_vars(vars(&[("FLEETCERT_QUOTA_AttachPolicies", "5")]))
        .expect_err("typo");
    assert_eq!(
        err,
        LimitsConfigError::UnknownOperation {
            name: "FLEETCERT_QUOTA_AttachPolicies".to_owned()
        }
    );
}

#[test]
fn only_throttling_retries_the_non_idempotent_create() {
    let e = |op, throttled: bool| {
        if throttled {
            PortError::Throttled {
                operation: op,
                message: String::new(),
            }
        } else {
            PortError::Transient {
                operation: op,
                message: String::new(),
            }
        }
    };
    let create = Operation::CreateCertificateFromCsr;
    assert!(should_retry(create, &e(create, true)));
    assert!(!should_retry(create, &e(create, false)));
    for op in Operation::ALL {
        if op != create {
            assert!(should_retry(op, &e(op, true)) && should_retry(op, &e(op, false)));
        }
    }
}
