//! `lambdas::handlers::operations(f)` is what infra builds each role from:
//! every handler scenario below, counted by the memory adapters, calls
//! only operations of its function's list, and together they call every
//! listed operation (the list has nothing extra, so the role has no
//! permission nothing uses). Both issuers run every scenario: csr-issuer's
//! list is `operations_for(csr-issuer, issuer)`, and only its list depends
//! on the issuer.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use lambdas::handlers::{
    audit_fanout, commit, csr_issuer, error_handler, jitr_activator, rotation_starter, sweeper,
};
use lambdas::memory::Fault;
use lambdas::ports::Operation;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rules::functions::{Function, Issuer};
use serde_json::{Value, json};

/// The operations each function was seen calling, per issuer.
#[derive(Default)]
struct Coverage(BTreeMap<(Function, Issuer), BTreeSet<Operation>>);

impl Coverage {
    /// Takes the calls since the last reset as `f`'s, checks them against
    /// its list and resets the counters.
    fn record(&mut self, w: &World, f: Function) {
        let calls = w.ports.instruments.all_calls();
        assert!(!calls.is_empty(), "{} called nothing", f.name());
        let issuer = w.cfg.issuer.kind();
        let listed = lambdas::handlers::operations_for(f, issuer);
        for op in calls.keys() {
            assert!(
                listed.contains(op),
                "{} ({issuer}) called {op}, which lambdas::handlers::operations_for does not list (its role would deny it)",
                f.name()
            );
        }
        self.0
            .entry((f, issuer))
            .or_default()
            .extend(calls.into_keys());
        w.ports.instruments.reset_calls();
    }
}

fn issue(w: &World, cov: &mut Coverage, thing: &str, rotation_id: Option<&str>) -> String {
    let csr = csr_pem(&p256_key(), thing);
    let out = run(csr_issuer::handle(
        &w.ports,
        &w.cfg,
        &bytes(&csr_res(thing, &csr, rotation_id)),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    cov.record(w, Function::CsrIssuer);
    let topic = format!("management/topic/{thing}/crt");
    let crt = w
        .ports
        .ports
        .publisher
        .published_to(&topic)
        .pop()
        .expect("crt");
    let crt: Value = serde_json::from_slice(&crt.payload).expect("crt json");
    crt["certificateId"].as_str().expect("id").to_owned()
}

fn start(w: &World, cov: &mut Coverage, cert_id: &str, past: bool) -> Option<String> {
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[work(cert_id, past)])),
        w.now,
    ));
    assert!(batch.response.batch_item_failures.is_empty(), "{batch:?}");
    cov.record(w, Function::RotationStarter);
    let topic_things = w.registry().certificate(cert_id).expect("cert").things;
    let thing = topic_things.iter().next().expect("thing");
    last_csr_req(w, thing).map(|r| r["rotationId"].as_str().expect("id").to_owned())
}

fn customer_ca(w: &World) -> (rcgen::Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "customer ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("ca");
    let handle = w
        .registry()
        .register_ca_certificate(&cert.pem())
        .expect("register ca");
    (rcgen::Issuer::new(params, key), handle.ca_certificate_id)
}

fn device_cert(ca: &rcgen::Issuer<'static, KeyPair>, cn: &str) -> String {
    let key = p256_key();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before =
        time::OffsetDateTime::from_unix_timestamp(NOW / 1000 - 86_400).expect("time");
    params.not_after =
        time::OffsetDateTime::from_unix_timestamp(NOW / 1000 + 365 * 86_400).expect("time");
    params.signed_by(&key, ca).expect("device cert").pem()
}

fn jitr(w: &World, cov: &mut Coverage, cert_id: &str, ca_id: &str) -> lambdas::handlers::Outcome {
    let event = json!({
        "certificateId": cert_id, "caCertificateId": ca_id, "timestamp": NOW,
        "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": "123456789012",
        "certificateRegistrationTimestamp": null
    });
    let out = run(jitr_activator::handle(
        &w.ports,
        &w.cfg,
        &bytes(&event),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    cov.record(w, Function::JitrActivator);
    out
}

#[test]
fn only_csr_issuers_operations_depend_on_the_issuer() {
    for f in Function::ALL {
        let same = lambdas::handlers::operations_for(f, Issuer::AwsIot)
            == lambdas::handlers::operations_for(f, Issuer::PrivateCa);
        assert_eq!(same, f != Function::CsrIssuer, "{}", f.name());
    }
    let pca = lambdas::handlers::operations_for(Function::CsrIssuer, Issuer::PrivateCa);
    assert!(!pca.contains(&Operation::CreateCertificateFromCsr));
    for op in [
        Operation::IssueCertificate,
        Operation::GetCertificate,
        Operation::RevokeCertificate,
        Operation::RegisterCertificate,
    ] {
        assert!(pca.contains(&op), "{op}");
    }
}

#[test]
fn every_function_calls_only_and_all_of_its_listed_operations() {
    let mut cov = Coverage::default();
    for issuer in Issuer::ALL {
        scenarios(issuer, &mut cov);
    }
    for f in Function::ALL {
        for issuer in Issuer::ALL {
            let listed: BTreeSet<Operation> = lambdas::handlers::operations_for(f, issuer)
                .iter()
                .copied()
                .collect();
            let called = cov.0.get(&(f, issuer)).cloned().unwrap_or_default();
            let never: Vec<_> = listed.difference(&called).collect();
            assert!(
                never.is_empty(),
                "{} ({issuer}) lists {never:?} but no scenario calls them: drop them from lambdas::handlers::operations_for (and so from its role) or add the scenario that needs them",
                f.name()
            );
        }
    }
}

/// Every scenario, with csr-issuer's certificates from `issuer`.
fn scenarios(issuer: Issuer, cov: &mut Coverage) {
    let check = "DEVICE_CERTIFICATE_EXPIRING_CHECK";

    // A rotation named by id all the way: fan-out, start, issue, commit.
    let w = World::for_issuer(issuer);
    let dev = w.provision("thing-1");
    w.registry().set_audit_findings(
        TASK,
        check,
        vec![finding(&dev.cert_id, TASK, check, NOW + 86_400_000, false)],
    );
    run(audit_fanout::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sns_event(TASK, check, 1)),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    cov.record(&w, Function::AuditFanout);
    // The check failed (the audit role could not read): support is told.
    let out = run(audit_fanout::handle(
        &w.ports,
        &w.cfg,
        &bytes(&failed_check_event(TASK, check)),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    cov.record(&w, Function::AuditFanout);
    let id = start(&w, cov, &dev.cert_id, false).expect("csr_req");
    // The same message again: the open rotation is found, not re-created.
    start(&w, cov, &dev.cert_id, false);
    let new_id = issue(&w, cov, "thing-1", Some(&id));
    let out = run(commit::handle(
        &w.ports,
        &w.cfg,
        &bytes(&crt_ack("thing-1", &new_id, Some(&id))),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    cov.record(&w, Function::Commit);

    // Devices on the original contract send no rotation id; an expired
    // certificate goes to support.
    let w = World::for_issuer(issuer);
    let dev = w.provision("thing-2");
    let expired = w.provision("thing-3");
    start(&w, cov, &expired.cert_id, true);
    assert_eq!(w.ports.ports.notifier.sent().len(), 1);
    start(&w, cov, &dev.cert_id, false).expect("csr_req");
    // The ISSUED write is throttled after the certificate was created: the
    // issuer removes the unrecorded certificate, then issues on the retry.
    w.ports
        .instruments
        .fail_after(Operation::UpdateRotation, 1, 1, Fault::Throttled);
    let csr = csr_pem(&p256_key(), "thing-2");
    let first = run(csr_issuer::handle(
        &w.ports,
        &w.cfg,
        &bytes(&csr_res("thing-2", &csr, None)),
        w.now,
    ));
    assert!(matches!(&first, Err(e) if e.is_retryable()), "{first:?}");
    cov.record(&w, Function::CsrIssuer);
    let new_id = issue(&w, cov, "thing-2", None);
    let out = run(commit::handle(
        &w.ports,
        &w.cfg,
        &bytes(&crt_ack("thing-2", &new_id, None)),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    cov.record(&w, Function::Commit);

    // The device reports an error over the old certificate, with and
    // without a rotation id: the new certificate is removed, support told.
    for (thing, with_id) in [("thing-4", true), ("thing-5", false)] {
        let w = World::for_issuer(issuer);
        let dev = w.provision(thing);
        let id = start(&w, cov, &dev.cert_id, false).expect("csr_req");
        issue(&w, cov, thing, Some(&id));
        let out = run(error_handler::handle(
            &w.ports,
            &w.cfg,
            &bytes(&crt_err(
                thing,
                &dev.cert_id,
                "bad certificate",
                with_id.then_some(id.as_str()),
            )),
            w.now,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.is_rejected(), "{out:?}");
        cov.record(&w, Function::ErrorHandler);
    }

    // The error handler fails the rotation but is throttled during its
    // cleanup; a late csr_res (issuer) or crt_ack (commit) for the closed
    // rotation finishes the cleanup the closed row still owes and sends
    // the notification the error handler did not get to.
    for (thing, late) in [
        ("thing-7", Function::CsrIssuer),
        ("thing-8", Function::Commit),
    ] {
        let w = World::for_issuer(issuer);
        let dev = w.provision(thing);
        let id = start(&w, cov, &dev.cert_id, false).expect("csr_req");
        let new_id = issue(&w, cov, thing, Some(&id));
        w.ports
            .instruments
            .fail_next(Operation::DetachPolicy, 1, Fault::Throttled);
        let first = run(error_handler::handle(
            &w.ports,
            &w.cfg,
            &bytes(&crt_err(thing, &dev.cert_id, "no space", Some(&id))),
            w.now,
        ));
        assert!(matches!(&first, Err(e) if e.is_retryable()), "{first:?}");
        cov.record(&w, Function::ErrorHandler);
        let out = if late == Function::CsrIssuer {
            let csr = csr_pem(&p256_key(), thing);
            run(csr_issuer::handle(
                &w.ports,
                &w.cfg,
                &bytes(&csr_res(thing, &csr, Some(&id))),
                w.now,
            ))
        } else {
            run(commit::handle(
                &w.ports,
                &w.cfg,
                &bytes(&crt_ack(thing, &new_id, Some(&id))),
                w.now,
            ))
        }
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.is_rejected(), "{out:?}");
        cov.record(&w, late);
        assert!(
            w.registry().certificate(&new_id).is_none(),
            "{} finished the cleanup",
            late.name()
        );
        assert_eq!(w.ports.ports.notifier.sent().len(), 1);
    }

    // A rotation stuck after issue expires: the sweeper keeps the new
    // certificate it sent (the device may hold only its key) and tells
    // support.
    let w = World::for_issuer(issuer);
    let dev = w.provision("thing-6");
    let id = start(&w, cov, &dev.cert_id, false).expect("csr_req");
    issue(&w, cov, "thing-6", Some(&id));
    // Past half its time the sweeper sends the `crt` again ...
    let out = run(sweeper::handle(
        &w.ports,
        &w.cfg,
        &bytes(&scheduled_event()),
        w.now + w.cfg.rotation_deadline_ms / 2 + 1,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    cov.record(&w, Function::Sweeper);
    // ... and past its deadline expires it.
    let out = run(sweeper::handle(
        &w.ports,
        &w.cfg,
        &bytes(&scheduled_event()),
        w.now + 30 * 86_400_000,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    cov.record(&w, Function::Sweeper);

    // One whose new certificate was never made ACTIVE (the issuer's
    // activation failed), so never sent: the sweeper removes it.
    let w = World::for_issuer(issuer);
    let dev = w.provision("thing-7");
    let id = start(&w, cov, &dev.cert_id, false).expect("csr_req");
    w.ports
        .instruments
        .fail_next(Operation::UpdateCertificate, 1, Fault::Transient);
    let csr = csr_pem(&p256_key(), "thing-7");
    let out = run(csr_issuer::handle(
        &w.ports,
        &w.cfg,
        &bytes(&csr_res("thing-7", &csr, Some(&id))),
        w.now,
    ));
    assert!(out.is_err(), "{out:?}");
    cov.record(&w, Function::CsrIssuer);
    let out = run(sweeper::handle(
        &w.ports,
        &w.cfg,
        &bytes(&scheduled_event()),
        w.now + 30 * 86_400_000,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    cov.record(&w, Function::Sweeper);
    assert!(
        w.registry().certificates().len() == 1,
        "new certificate removed"
    );

    // A retirement whose commit invocation failed midway: the sweeper
    // finishes it past the deadline (deactivating the old certificate).
    let w = World::for_issuer(issuer);
    let dev = w.provision("thing-8");
    let id = start(&w, cov, &dev.cert_id, false).expect("csr_req");
    let new_id = issue(&w, cov, "thing-8", Some(&id));
    w.ports
        .instruments
        .fail_next(Operation::UpdateCertificate, 1, Fault::Transient);
    let out = run(commit::handle(
        &w.ports,
        &w.cfg,
        &bytes(&crt_ack("thing-8", &new_id, Some(&id))),
        w.now,
    ));
    assert!(out.is_err(), "{out:?}");
    cov.record(&w, Function::Commit);
    let out = run(sweeper::handle(
        &w.ports,
        &w.cfg,
        &bytes(&scheduled_event()),
        w.now + 30 * 86_400_000,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    cov.record(&w, Function::Sweeper);
    assert!(
        w.registry().certificate(&dev.cert_id).is_none(),
        "old retired"
    );

    // A campaign: the sweeper releases a member, the starter checks the
    // campaign and starts it, the sweeper counts its outcome (a failure of
    // 1: the abort rule pauses the campaign and tells support).
    let w = World::for_issuer(issuer);
    let dev = w.provision("thing-c");
    let (c, chunks) = rules::campaign::Campaign::new(
        rules::campaign::NewCampaign {
            id: rules::contracts::CampaignId::new("ops").expect("id"),
            task_id: "ops".into(),
            rollout: rules::campaign::Rollout {
                canary: rules::campaign::Share::Count(1),
                cohort: rules::campaign::Share::Count(1),
                rate_per_second: 1,
            },
            abort: rules::campaign::AbortRule {
                above_basis_points: 200,
                window: 10,
            },
            grace_ms: 60_000,
        },
        std::slice::from_ref(&dev.cert_id),
        w.now,
    )
    .expect("campaign");
    run(lambdas::handlers::campaign::create(
        &w.ports.ports.store,
        &c,
        &chunks,
    ))
    .expect("create");
    w.ports.instruments.reset_calls();
    let sweep = |w: &World, cov: &mut Coverage| {
        let out = run(sweeper::handle(
            &w.ports,
            &w.cfg,
            &bytes(&scheduled_event()),
            w.now,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.is_rejected(), "{out:?}");
        cov.record(w, Function::Sweeper);
    };
    sweep(&w, cov);
    let released = w.ports.ports.queue.drain();
    assert_eq!(released.len(), 1);
    let body: Value = serde_json::from_str(&released[0].body).expect("body");
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[body])),
        w.now,
    ));
    assert!(batch.response.batch_item_failures.is_empty(), "{batch:?}");
    cov.record(&w, Function::RotationStarter);
    let id = last_csr_req(&w, "thing-c").expect("csr_req")["rotationId"]
        .as_str()
        .expect("id")
        .to_owned();
    let out = run(error_handler::handle(
        &w.ports,
        &w.cfg,
        &bytes(&crt_err("thing-c", &dev.cert_id, "broken", Some(&id))),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    w.ports.instruments.reset_calls();
    sweep(&w, cov);
    assert!(matches!(
        w.ports.ports.store.campaign_item("campaign#ops"),
        Some(rules::campaign::CampaignItem::Campaign(c)) if c.state.name() == "PAUSED"
    ));

    // JITR: a new device (its thing created), then one from an inactive CA
    // (revoked and reported).
    let w = World::for_issuer(issuer);
    let (ca, ca_id) = customer_ca(&w);
    let cert_id = w
        .registry()
        .auto_register(&device_cert(&ca, "sensor-1"))
        .expect("registered");
    assert!(!jitr(&w, cov, &cert_id, &ca_id).is_rejected());
    let cert_id = w
        .registry()
        .auto_register(&device_cert(&ca, "sensor-2"))
        .expect("registered");
    w.registry().set_ca_status(&ca_id, "INACTIVE", "ENABLE");
    assert_eq!(
        jitr(&w, cov, &cert_id, &ca_id).rejection_kind(),
        Some("ca_not_active")
    );
}
