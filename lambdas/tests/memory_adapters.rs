//! The memory adapters enforce the AWS rules the handlers rely on.

mod common;

use common::*;
use lambdas::memory::{Fault, StatusChange};
use lambdas::ports::{
    CertificateStatus, IotRegistry, Operation, PortError, QueueMessage, RotationStore, WorkQueue,
};
use rules::rotation::Rotation;

#[test]
fn delete_certificate_follows_aws_conflict_rules() {
    let w = World::new();
    let dev = w.provision("thing-1");
    let r = &w.ports.ports.registry;
    let arn = w
        .registry()
        .certificate(&dev.cert_id)
        .expect("cert")
        .certificate_arn;
    let mut status = r.subscribe_status();
    let conflict = run(r.delete_certificate(&dev.cert_id));
    assert!(
        matches!(conflict, Err(PortError::Conflict { .. })),
        "active: {conflict:?}"
    );
    run(r.update_certificate(&dev.cert_id, CertificateStatus::Inactive)).expect("deactivate");
    let conflict = run(r.delete_certificate(&dev.cert_id));
    assert!(
        matches!(conflict, Err(PortError::Conflict { .. })),
        "attached: {conflict:?}"
    );
    run(r.detach_policy(POLICY, &arn)).expect("detach policy");
    run(r.detach_thing_principal("thing-1", &arn)).expect("detach thing");
    run(r.delete_certificate(&dev.cert_id)).expect("delete");
    assert!(matches!(run(r.describe_certificate(&dev.cert_id)), Err(e) if e.is_not_found()));
    assert_eq!(
        status.try_recv().ok(),
        Some(StatusChange {
            certificate_id: dev.cert_id.clone(),
            status: Some(CertificateStatus::Inactive)
        })
    );
    assert_eq!(
        status.try_recv().ok(),
        Some(StatusChange {
            certificate_id: dev.cert_id.clone(),
            status: None
        })
    );
}

#[test]
fn create_from_csr_issues_a_new_certificate_each_call_for_accepted_keys() {
    let w = World::new();
    let r = &w.ports.ports.registry;
    let csr = csr_pem(&p256_key(), "thing-1");
    let a = run(r.create_certificate_from_csr(&csr, true)).expect("first");
    let b = run(r.create_certificate_from_csr(&csr, true)).expect("second");
    assert_ne!(a.certificate_id, b.certificate_id, "not idempotent, as AWS");
    assert_eq!(
        rules::csr::certificate_id(&a.certificate_pem).ok(),
        Some(a.certificate_id.clone())
    );
    let rsa = run(r.create_certificate_from_csr(&csr_pem(&rsa2048_key(), "thing-1"), false))
        .expect("rsa-2048");
    assert_eq!(
        w.registry()
            .certificate(&rsa.certificate_id)
            .expect("cert")
            .status,
        CertificateStatus::Inactive
    );
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("p384");
    run(r.create_certificate_from_csr(&csr_pem(&p384, "thing-1"), true)).expect("p-384");
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519");
    let refused = run(r.create_certificate_from_csr(&csr_pem(&ed, "thing-1"), true));
    assert!(
        matches!(refused, Err(PortError::Invalid { .. })),
        "{refused:?}"
    );
}

#[test]
fn faults_counters_and_paging() {
    let w = World::new();
    let r = &w.ports.ports.registry;
    w.ports
        .instruments
        .fail_after(Operation::DescribeThing, 1, 2, Fault::Transient);
    w.registry().add_thing("t");
    assert!(run(r.describe_thing("t")).is_ok());
    assert!(matches!(run(r.describe_thing("t")), Err(e) if e.is_retryable()));
    assert!(matches!(run(r.describe_thing("t")), Err(e) if e.is_retryable()));
    assert!(run(r.describe_thing("t")).is_ok());
    assert_eq!(w.calls(Operation::DescribeThing), 4);

    let store = &w.ports.ports.store;
    for i in 0..250 {
        let row = Rotation::requested(format!("r{i:04}"), format!("t{i}"), "c", 0, i);
        run(store.create(&row)).expect("create");
    }
    let dup = Rotation::requested("r9999", "t7", "c", 0, 1);
    assert!(
        matches!(run(store.create(&dup)), Err(e) if e.is_condition_failed()),
        "one open rotation per thing"
    );
    let mut deadlines = Vec::new();
    let mut token = None;
    for _ in 0..10 {
        let page = run(store.open_due(200, token)).expect("page");
        deadlines.extend(page.items.iter().map(|r| r.deadline_ms));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    // As the DynamoDB due index: every due row once, most overdue first.
    assert_eq!(deadlines, (0..200).collect::<Vec<i64>>());
    assert!(matches!(
        run(store.open_due(200, Some("nonsense".to_owned()))),
        Err(PortError::Invalid { .. })
    ));

    let q = &w.ports.ports.queue;
    let eleven: Vec<QueueMessage> = (0..11)
        .map(|i| QueueMessage {
            id: format!("m{i}"),
            body: String::new(),
        })
        .collect();
    assert!(matches!(
        run(q.send_batch(&eleven)),
        Err(PortError::Invalid { .. })
    ));
}
