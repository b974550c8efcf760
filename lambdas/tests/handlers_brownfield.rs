//! Fleets fleetcert did not provision, through the handlers on the memory
//! adapters: their own IoT policies (an allow-list decides which are
//! copied, others may be added), thing names unrelated to the CN,
//! certificates attached to several things, things with several
//! certificates.

mod common;

use common::*;
use lambdas::handlers::{commit, csr_issuer, rotation_starter};
use lambdas::ports::{CertificateStatus, IotRegistry, Operation, Ports};
use rules::policy_copy::PolicyCopy;
use rules::rotation::RotationState;

/// Starts the device's rotation; returns its id.
fn start(w: &World, dev: &Device) -> String {
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[work(&dev.cert_id, false)])),
        w.now,
    ));
    assert!(batch.response.batch_item_failures.is_empty(), "{batch:?}");
    let out = batch.outcomes[0].1.as_ref().expect("started");
    assert!(!out.is_rejected(), "{out:?}");
    last_csr_req(w, &dev.thing).expect("csr_req")["rotationId"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Answers `csr_req` with a new key (CSR CN `cn`), receives `crt` and
/// acknowledges it; returns the new certificate id.
fn answer_and_ack(w: &World, dev: &mut Device, id: &str, cn: &str) -> String {
    let key = p256_key();
    let out = run(csr_issuer::handle(
        &w.ports,
        &w.cfg,
        &bytes(&csr_res(&dev.thing, &csr_pem(&key, cn), Some(id))),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    let new_id = w.receive_crt(dev).expect("crt")["certificateId"]
        .as_str()
        .expect("id")
        .to_owned();
    let out = run(commit::handle(
        &w.ports,
        &w.cfg,
        &bytes(&crt_ack(&dev.thing, &new_id, Some(id))),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.is_rejected(), "{out:?}");
    dev.key = key;
    dev.held = [new_id.clone()].into();
    dev.cert_id.clone_from(&new_id);
    new_id
}

fn policies_of(w: &World, certificate_id: &str) -> Vec<String> {
    let mut p: Vec<String> = w
        .registry()
        .certificate(certificate_id)
        .expect("certificate")
        .policies
        .into_iter()
        .collect();
    p.sort();
    p
}

#[test]
fn a_policy_outside_the_allow_list_fails_the_rotation_before_any_certificate_exists() {
    let mut w = World::new();
    w.cfg.policy_copy = PolicyCopy::from_lists("CustomerDevice,legacy-*", "").expect("copy");
    let dev = w.provision_with("pump-7", "pump-7", &["CustomerDevice", "AdminAll"]);
    let id = start(&w, &dev);
    let out = run(csr_issuer::handle(
        &w.ports,
        &w.cfg,
        &bytes(&csr_res(
            "pump-7",
            &csr_pem(&p256_key(), "pump-7"),
            Some(&id),
        )),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.rejection_kind(), Some("policy_not_allowed"), "{out:?}");
    assert_eq!(w.calls(Operation::CreateCertificateFromCsr), 0);
    let row = w.ports.ports.store.row_for_thing("pump-7").expect("row");
    assert!(
        matches!(&row.state, RotationState::Failed { reason, new_certificate_id: None } if reason.contains("AdminAll")),
        "{:?}",
        row.state
    );
    let sent = w.ports.ports.notifier.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].message.contains("AdminAll") && sent[0].message.contains("pump-7"),
        "{}",
        sent[0].message
    );
    assert!(
        sent[0]
            .message
            .contains("allow-list (CustomerDevice,legacy-*): AdminAll)"),
        "only the refused policy is named as refused: {}",
        sent[0].message
    );
    // the device keeps its certificate, untouched
    let old = w.registry().certificate(&dev.cert_id).expect("old");
    assert_eq!(old.status, CertificateStatus::Active);
    assert_eq!(
        policies_of(&w, &dev.cert_id),
        ["AdminAll", "CustomerDevice"]
    );
    w.assert_invariants(&dev);
}

#[test]
fn allowed_policies_are_copied_and_added_ones_attached() {
    let mut w = World::new();
    w.cfg.policy_copy =
        PolicyCopy::from_lists("CustomerDevice,legacy-*", "fleetcert-management").expect("copy");
    w.registry().create_policy("fleetcert-management");
    let mut dev = w.provision_with("pump-8", "pump-8", &["CustomerDevice", "legacy-v2"]);
    let id = start(&w, &dev);
    let new_id = answer_and_ack(&w, &mut dev, &id, "pump-8");
    assert_eq!(
        policies_of(&w, &new_id),
        ["CustomerDevice", "fleetcert-management", "legacy-v2"]
    );
    w.assert_invariants(&dev);
    w.assert_no_orphans(&[&dev]);
}

#[test]
fn by_default_every_policy_is_copied_without_listing_them_first() {
    let w = World::new();
    let mut dev = w.provision_with("pump-9", "pump-9", &["AnyName", "Other"]);
    let id = start(&w, &dev);
    let new_id = answer_and_ack(&w, &mut dev, &id, "pump-9");
    assert_eq!(policies_of(&w, &new_id), ["AnyName", "Other"]);
}

#[test]
fn thing_names_need_not_be_the_certificates_cn() {
    let w = World::new();
    let mut dev = w.provision_with("plant7-line2-pump", "SN-000042", &[POLICY]);
    let id = start(&w, &dev);
    // firmware keeps its serial number as the CN
    let new_id = answer_and_ack(&w, &mut dev, &id, "SN-000042");
    let new = w.registry().certificate(&new_id).expect("new");
    assert_eq!(new.status, CertificateStatus::Active);
    assert!(new.things.contains("plant7-line2-pump"), "{:?}", new.things);
    w.assert_invariants(&dev);
    w.assert_no_orphans(&[&dev]);
}

#[test]
fn a_certificate_shared_by_several_things_rotates_once_and_the_new_one_joins_every_thing() {
    let w = World::new();
    // a gateway: one certificate (CN gw-1) for its own thing and two it fronts
    let mut dev = w.provision_with("gw-1", "gw-1", &[POLICY]);
    let old_arn = w
        .registry()
        .certificate(&dev.cert_id)
        .expect("old")
        .certificate_arn;
    for extra in ["gw-1-sensor-a", "gw-1-sensor-b"] {
        w.registry().add_thing(extra);
        run(w.ports.registry().attach_thing_principal(extra, &old_arn)).expect("attach");
    }
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[work(&dev.cert_id, false)])),
        w.now,
    ));
    let started = batch.outcomes[0].1.as_ref().expect("started");
    assert!(!started.is_rejected(), "{started:?}");
    // the report names the thing told and the others
    let text = format!("{started:?}");
    assert!(
        text.contains("shared by 3 things") && text.contains("csr_req goes to gw-1,"),
        "{text}"
    );
    assert_eq!(
        w.ports.ports.store.rows().len(),
        1,
        "one rotation per certificate"
    );
    assert!(last_csr_req(&w, "gw-1-sensor-a").is_none());
    let id = last_csr_req(&w, "gw-1").expect("csr_req")["rotationId"]
        .as_str()
        .expect("id")
        .to_owned();
    let old_id = dev.cert_id.clone();
    let new_id = answer_and_ack(&w, &mut dev, &id, "gw-1");
    let new = w.registry().certificate(&new_id).expect("new");
    let mut things: Vec<_> = new.things.iter().cloned().collect();
    things.sort();
    assert_eq!(things, ["gw-1", "gw-1-sensor-a", "gw-1-sensor-b"]);
    assert!(w.registry().certificate(&old_id).is_none(), "old deleted");
    w.assert_no_orphans(&[&dev]);
}

#[test]
fn without_a_cn_match_the_first_thing_by_name_is_told() {
    let w = World::new();
    let dev = w.provision_with("zz-thing", "SN-1", &[POLICY]);
    let arn = w
        .registry()
        .certificate(&dev.cert_id)
        .expect("c")
        .certificate_arn;
    w.registry().add_thing("aa-thing");
    run(w.ports.registry().attach_thing_principal("aa-thing", &arn)).expect("attach");
    run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[work(&dev.cert_id, false)])),
        w.now,
    ));
    assert!(last_csr_req(&w, "aa-thing").is_some());
    assert!(last_csr_req(&w, "zz-thing").is_none());
}

#[test]
fn a_thing_with_two_certificates_rotates_the_expiring_one_and_leaves_the_other() {
    let w = World::new();
    let mut dev = w.provision_with("meter-3", "meter-3", &[POLICY]);
    // a second, long-lived certificate of the same thing (a backup key)
    let backup = w.provision_with("meter-3", "meter-3-backup", &[POLICY]);
    let id = start(&w, &dev);
    let new_id = answer_and_ack(&w, &mut dev, &id, "meter-3");
    let kept = w.registry().certificate(&backup.cert_id).expect("backup");
    assert_eq!(
        kept.status,
        CertificateStatus::Active,
        "the other certificate is untouched"
    );
    assert!(kept.things.contains("meter-3"));
    assert_eq!(policies_of(&w, &backup.cert_id), [POLICY]);
    let new = w.registry().certificate(&new_id).expect("new");
    assert_eq!(new.status, CertificateStatus::Active);
    assert!(new.things.contains("meter-3"));
    w.assert_no_orphans(&[&dev, &backup]);
}

#[test]
fn a_certificate_attached_to_no_thing_is_reported_not_rotated() {
    let w = World::new();
    let dev = w.provision_with("lonely", "lonely", &[POLICY]);
    let arn = w
        .registry()
        .certificate(&dev.cert_id)
        .expect("c")
        .certificate_arn;
    run(w.ports.registry().detach_thing_principal("lonely", &arn)).expect("detach");
    let batch = run(rotation_starter::handle(
        &w.ports,
        &w.cfg,
        &bytes(&sqs_event(&[work(&dev.cert_id, false)])),
        w.now,
    ));
    let out = batch.outcomes[0].1.as_ref().expect("handled");
    assert_eq!(out.rejection_kind(), Some("no_thing"), "{out:?}");
    assert_eq!(w.ports.ports.notifier.sent().len(), 1);
    assert!(w.ports.ports.store.rows().is_empty());
}

#[test]
fn an_exclusive_attachment_stays_exclusive_and_a_shared_one_shared() {
    use lambdas::ports::ThingPrincipalType;
    let w = World::new();
    // thing-x's certificate is attached exclusively (EXCLUSIVE_THING)
    let mut dev = run(async {
        let key = p256_key();
        let registry = w.ports.registry();
        w.registry().add_thing("excl-1");
        let cert = registry
            .create_certificate_from_csr(&csr_pem(&key, "excl-1"), true)
            .await
            .expect("certificate");
        registry
            .attach_policy(POLICY, &cert.certificate_arn)
            .await
            .expect("policy");
        registry
            .attach_thing_principal_as(
                "excl-1",
                &cert.certificate_arn,
                ThingPrincipalType::Exclusive,
            )
            .await
            .expect("exclusive");
        // AWS: the thing is the only one attached to the principal
        w.registry().add_thing("intruder");
        let refused = registry
            .attach_thing_principal("intruder", &cert.certificate_arn)
            .await
            .expect_err("a second thing on an exclusive attachment");
        assert!(
            matches!(refused, lambdas::ports::PortError::Invalid { .. }),
            "{refused:?}"
        );
        w.ports.instruments.reset_calls();
        Device {
            thing: "excl-1".to_owned(),
            key,
            held: [cert.certificate_id.clone()].into(),
            cert_id: cert.certificate_id,
        }
    });
    let id = start(&w, &dev);
    let new_id = answer_and_ack(&w, &mut dev, &id, "excl-1");
    let new = w.registry().certificate(&new_id).expect("new");
    assert_eq!(new.exclusive_thing.as_deref(), Some("excl-1"));
    assert_eq!(new.things.len(), 1);
    w.assert_invariants(&dev);
    w.assert_no_orphans(&[&dev]);
}
