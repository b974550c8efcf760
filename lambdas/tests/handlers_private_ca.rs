//! csr-issuer with AWS Private CA as the issuer (`[issuer] kind =
//! "private_ca"`), on the memory adapters: the new certificate comes from
//! the configured CA (chain checked with x509-parser and `openssl verify`),
//! one certificate per claim (the idempotency token), and a certificate
//! issued but never recorded is removed from AWS IoT and revoked at the CA.

mod common;

use std::io::Write;
use std::process::Command;

use common::*;
use lambdas::handlers::{commit, csr_issuer, rotation_starter};
use lambdas::memory::Fault;
use lambdas::ports::{Operation, certificate_serial};
use rules::functions::{Function, Issuer};
use rules::rotation::RotationState;
use x509_parser::prelude::{FromDer, X509Certificate};

fn requested(w: &World, thing: &str) -> (Device, String) {
    let dev = w.provision(thing);
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[work(&dev.cert_id, false)])),
        w.now,
    ));
    assert!(batch.response.batch_item_failures.is_empty(), "{batch:?}");
    let id = last_csr_req(w, thing).expect("csr_req")["rotationId"]
        .as_str()
        .expect("id")
        .to_owned();
    w.ports.instruments.reset_calls();
    (dev, id)
}

fn pca(w: &World) -> &lambdas::memory::MemoryPrivateCa {
    &w.ports.ports.private_ca
}

fn send_csr(
    w: &World,
    thing: &str,
    csr: &str,
    id: &str,
) -> Result<lambdas::handlers::Outcome, lambdas::handlers::HandlerError> {
    run(csr_issuer::handle(
        &w.ports,
        &w.cfg,
        &bytes(&csr_res(thing, csr, Some(id))),
        w.now,
    ))
}

fn der_of(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
    p.contents
}

/// `openssl verify` (an independent verifier) of `leaf` against `ca`, at
/// the memory registry's clock.
fn openssl_verifies(ca: &str, leaf: &str, at_s: i64) -> bool {
    let dir = std::env::temp_dir().join(format!("fleetcert-pca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (ca_path, leaf_path) = (dir.join("ca.pem"), dir.join("leaf.pem"));
    for (path, pem) in [(&ca_path, ca), (&leaf_path, leaf)] {
        std::fs::File::create(path)
            .and_then(|mut f| f.write_all(pem.as_bytes()))
            .expect("write");
    }
    let out = Command::new("openssl")
        .args(["verify", "-attime", &at_s.to_string(), "-CAfile"])
        .arg(&ca_path)
        .arg(&leaf_path)
        .output()
        .expect("openssl (scripts/install-test-tools.sh installs it)");
    out.status.success()
}

#[test]
fn a_rotation_through_the_private_ca_commits_with_a_certificate_of_that_ca() {
    let w = World::for_issuer(Issuer::PrivateCa);
    let (mut dev, id) = requested(&w, "thing-1");
    let csr = csr_pem(&p256_key(), "thing-1");
    let out = send_csr(&w, "thing-1", &csr, &id).unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    w.assert_calls_within(Function::CsrIssuer);
    let crt = w.receive_crt(&mut dev).expect("crt");
    let new_id = crt["certificateId"].as_str().expect("id").to_owned();
    let pem = crt["certificatePem"].as_str().expect("pem").to_owned();
    w.assert_invariants(&dev);

    // Signed by the configured CA, for the configured validity.
    let ca_pem = pca(&w).ca_certificate_pem().to_owned();
    let (ca_der, leaf_der) = (der_of(&ca_pem), der_of(&pem));
    let (_, ca) = X509Certificate::from_der(&ca_der).expect("ca");
    let (_, leaf) = X509Certificate::from_der(&leaf_der).expect("leaf");
    assert_eq!(leaf.issuer(), ca.subject());
    assert!(!leaf.is_ca());
    let days =
        (leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, 365);
    let registered = w.registry().certificate(&new_id).expect("registered");
    assert!(
        registered.ca_certificate_id.is_some(),
        "registered with its ca"
    );
    assert!(openssl_verifies(
        &ca_pem,
        &pem,
        w.registry().now_ms() / 1000 + 60
    ));
    assert_eq!(w.calls(Operation::CreateCertificateFromCsr), 0);

    // The device acks over the new certificate: COMMITTED, old retired.
    let out = run(commit::handle(
        &w.ports,
        &w.cfg,
        &bytes(&crt_ack("thing-1", &new_id, Some(&id))),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    let row = w.ports.ports.store.row_for_thing("thing-1").expect("row");
    assert!(
        matches!(row.state, RotationState::Committed { .. }),
        "{}",
        row.state
    );
    assert!(
        w.registry().certificate(&dev.cert_id).is_none(),
        "old retired"
    );
    dev.held = [new_id].into();
    w.assert_no_orphans(&[&dev]);
    assert_eq!(pca(&w).issued_count(), 1);
}

#[test]
fn a_duplicate_csr_res_does_not_issue_twice() {
    let w = World::for_issuer(Issuer::PrivateCa);
    let (_dev, id) = requested(&w, "thing-1");
    let csr = csr_pem(&p256_key(), "thing-1");
    for _ in 0..3 {
        let out = send_csr(&w, "thing-1", &csr, &id).unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.is_rejected(), "{out:?}");
    }
    assert_eq!(w.calls(Operation::IssueCertificate), 1);
    assert_eq!(w.calls(Operation::RegisterCertificate), 1);
    assert_eq!(pca(&w).issued_count(), 1);
    let crts = w
        .ports
        .ports
        .publisher
        .published_to("management/topic/thing-1/crt");
    assert_eq!(crts.len(), 3, "sent again, the same certificate");
}

/// `GetCertificate` still in progress (past the adapters' polling): the
/// claim goes back with its attempt number, and the retry's token gets the
/// same certificate from the CA instead of a second one.
#[test]
fn a_certificate_still_in_progress_is_fetched_again_not_issued_again() {
    let w = World::for_issuer(Issuer::PrivateCa);
    let (mut dev, id) = requested(&w, "thing-1");
    let csr = csr_pem(&p256_key(), "thing-1");
    pca(&w).answer_in_progress(1);
    let first = send_csr(&w, "thing-1", &csr, &id);
    assert!(matches!(&first, Err(e) if e.is_retryable()), "{first:?}");
    let row = w.ports.ports.store.row_for_thing("thing-1").expect("row");
    assert_eq!(row.state, RotationState::Requested);
    let out = send_csr(&w, "thing-1", &csr, &id).unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    assert_eq!(w.calls(Operation::IssueCertificate), 2);
    assert_eq!(pca(&w).issued_count(), 1, "one certificate for one claim");
    assert!(w.receive_crt(&mut dev).is_some());
    w.assert_invariants(&dev);
}

/// The ISSUED write fails after the certificate was issued and registered:
/// it is removed from AWS IoT and revoked at the CA, and the retry (the
/// next attempt, so a new token) issues the one the rotation records.
#[test]
fn a_certificate_issued_but_not_recorded_is_removed_and_revoked() {
    let w = World::for_issuer(Issuer::PrivateCa);
    let (mut dev, id) = requested(&w, "thing-1");
    let csr = csr_pem(&p256_key(), "thing-1");
    // the first UpdateRotation is the ISSUING claim, the second the ISSUED record
    w.ports
        .instruments
        .fail_after(Operation::UpdateRotation, 1, 1, Fault::Throttled);
    let first = send_csr(&w, "thing-1", &csr, &id);
    assert!(matches!(&first, Err(e) if e.is_retryable()), "{first:?}");
    assert_eq!(pca(&w).issued_count(), 1);
    assert_eq!(w.calls(Operation::RevokeCertificate), 1);
    let thing_certs = w.registry().certificates();
    assert_eq!(
        thing_certs.len(),
        1,
        "only the old certificate is left in IoT"
    );

    let out = send_csr(&w, "thing-1", &csr, &id).unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    assert_eq!(pca(&w).issued_count(), 2);
    let crt = w.receive_crt(&mut dev).expect("crt");
    let pem = crt["certificatePem"].as_str().expect("pem");
    let serial = certificate_serial(pem).expect("serial");
    assert!(
        !pca(&w).is_revoked(&serial),
        "the recorded one is not revoked"
    );
    w.assert_invariants(&dev);
    dev.held.insert(dev.cert_id.clone());
    w.assert_no_orphans(&[&dev]);
}

/// `RegisterCertificate` refused (the CA is not registered in AWS IoT):
/// the issued certificate is revoked and the rotation stays REQUESTED.
#[test]
fn a_certificate_aws_iot_refuses_to_register_is_revoked() {
    let mut w = World::new();
    w.cfg.issuer = World::for_issuer(Issuer::PrivateCa).cfg.issuer;
    let (_dev, id) = requested(&w, "thing-1");
    let csr = csr_pem(&p256_key(), "thing-1");
    let first = send_csr(&w, "thing-1", &csr, &id);
    assert!(matches!(&first, Err(e) if !e.is_retryable()), "{first:?}");
    assert_eq!(w.calls(Operation::RevokeCertificate), 1);
    assert_eq!(w.registry().certificates().len(), 1, "nothing registered");
    let row = w.ports.ports.store.row_for_thing("thing-1").expect("row");
    assert_eq!(row.state, RotationState::Requested);
    assert_eq!(row.attempts, 1, "the next claim gets a new token");
}

/// `RegisterCertificate` took effect but its answer was lost: the
/// registered certificate is removed from AWS IoT again and revoked, and
/// the retry's certificate is the rotation's; nothing is left behind.
#[test]
fn a_registration_whose_answer_was_lost_leaves_nothing_behind() {
    let w = World::for_issuer(Issuer::PrivateCa);
    let (mut dev, id) = requested(&w, "thing-1");
    let csr = csr_pem(&p256_key(), "thing-1");
    w.ports.instruments.fail_next(
        Operation::RegisterCertificate,
        1,
        Fault::TransientAfterEffect,
    );
    let first = send_csr(&w, "thing-1", &csr, &id);
    assert!(matches!(&first, Err(e) if e.is_retryable()), "{first:?}");
    assert_eq!(
        w.registry().certificates().len(),
        1,
        "removed from IoT again"
    );
    assert_eq!(pca(&w).revoked_count(), 1);
    let out = send_csr(&w, "thing-1", &csr, &id).unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    assert!(w.receive_crt(&mut dev).is_some());
    assert_eq!(pca(&w).issued_count(), 2);
    w.assert_invariants(&dev);
    dev.held.insert(dev.cert_id.clone());
    w.assert_no_orphans(&[&dev]);
}
