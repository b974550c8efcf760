use std::collections::BTreeSet;

use rstest::rstest;

use super::*;

const ROTATION: &str = "rot-1";
const THING: &str = "sensor-42";
const OLD: &str = "old-cert";
const NEW: &str = "new-cert";
const FP: &str = "fp-a";
const FP_OTHER: &str = "fp-b";
const CREATED: i64 = 1_000;
const DEADLINE: i64 = 10_000;
const BEFORE: i64 = 5_000;
const AFTER: i64 = 20_000;

fn requested() -> Rotation {
    Rotation::requested(ROTATION, THING, OLD, CREATED, DEADLINE)
}

fn in_state(state: RotationState) -> Rotation {
    Rotation {
        state,
        attempts: 1,
        ..requested()
    }
}

fn issuing() -> Rotation {
    in_state(RotationState::Issuing {
        csr_fingerprint: FP.into(),
    })
}

fn issued() -> Rotation {
    in_state(RotationState::Issued {
        new_certificate_id: NEW.into(),
        csr_fingerprint: FP.into(),
    })
}

fn committed() -> Rotation {
    in_state(RotationState::Committed {
        new_certificate_id: NEW.into(),
    })
}

fn failed() -> Rotation {
    in_state(RotationState::Failed {
        reason: "boom".into(),
        new_certificate_id: Some(NEW.into()),
    })
}

fn expired() -> Rotation {
    in_state(RotationState::Expired {
        new_certificate_id: None,
        new_certificate_kept: false,
    })
}

fn expired_kept() -> Rotation {
    in_state(RotationState::Expired {
        new_certificate_id: Some(NEW.into()),
        new_certificate_kept: true,
    })
}

fn csr(fp: &str) -> Event {
    Event::CsrReceived {
        rotation_id: Some(ROTATION.into()),
        csr_fingerprint: fp.into(),
        now_ms: BEFORE,
    }
}

fn created(id: &str, fp: &str) -> Event {
    Event::CertificateCreated {
        certificate_id: id.into(),
        csr_fingerprint: fp.into(),
    }
}

fn ack(principal: &str) -> Event {
    Event::Ack {
        principal: principal.into(),
        rotation_id: Some(ROTATION.into()),
        certificate_id: None,
        now_ms: BEFORE,
    }
}

fn device_error() -> Event {
    Event::DeviceError {
        error: "cannot store key".into(),
        rotation_id: None,
        now_ms: BEFORE,
    }
}

fn sweep(now_ms: i64) -> Event {
    Event::Sweep {
        now_ms,
        new_certificate_unsent: false,
    }
}

/// A sweep that read the new certificate as not ACTIVE (never sent).
fn sweep_unsent(now_ms: i64) -> Event {
    Event::Sweep {
        now_ms,
        new_certificate_unsent: true,
    }
}

fn delete(id: &str) -> Action {
    Action::DeleteNewCertificate {
        certificate_id: id.into(),
    }
}

fn kinds(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .map(|a| match a {
            Action::CreateCertificateFromCsr => "create",
            Action::ResendCertificate { .. } => "resend",
            Action::AttachOldPoliciesAndThing { .. } => "attach",
            Action::PublishCrt { .. } => "publish",
            Action::RetireOldCertificate { .. } => "retire",
            Action::DeleteNewCertificate { .. } => "delete",
            Action::NotifySupport { .. } => "notify",
        })
        .collect()
}

// ---- the happy path ------------------------------------------------------

#[test]
fn happy_path_requests_issues_and_commits() {
    let t = step(&requested(), &csr(FP)).unwrap();
    assert_eq!(
        t.next.state,
        RotationState::Issuing {
            csr_fingerprint: FP.into()
        }
    );
    assert_eq!(t.next.attempts, 1);
    assert_eq!(t.actions, vec![Action::CreateCertificateFromCsr]);

    let t = step(&t.next, &created(NEW, FP)).unwrap();
    assert_eq!(t.next, issued());
    assert_eq!(
        t.actions,
        vec![
            Action::AttachOldPoliciesAndThing {
                new_certificate_id: NEW.into()
            },
            Action::PublishCrt {
                certificate_id: NEW.into()
            },
        ]
    );

    let t = step(&t.next, &ack(NEW)).unwrap();
    assert_eq!(t.next, committed());
    assert_eq!(
        t.actions,
        vec![Action::RetireOldCertificate {
            old_certificate_id: OLD.into()
        }]
    );
}

#[test]
fn a_device_on_the_original_contract_without_rotation_ids_is_accepted() {
    let event = Event::CsrReceived {
        rotation_id: None,
        csr_fingerprint: FP.into(),
        now_ms: BEFORE,
    };
    let t = step(&requested(), &event).unwrap();
    assert_eq!(t.actions, vec![Action::CreateCertificateFromCsr]);
}

// ---- duplicates and out-of-order events -------------------------------------

#[test]
fn duplicate_csr_after_issued_resends_the_same_certificate() {
    let t = step(&issued(), &csr(FP)).unwrap();
    assert_eq!(t.next.state, issued().state);
    assert_eq!(t.next.attempts, 2);
    assert_eq!(
        t.actions,
        vec![
            Action::AttachOldPoliciesAndThing {
                new_certificate_id: NEW.into()
            },
            Action::ResendCertificate {
                certificate_id: NEW.into()
            },
        ]
    );
}

#[test]
fn csr_with_another_key_after_issued_is_rejected() {
    let err = step(&issued(), &csr(FP_OTHER)).unwrap_err();
    assert_eq!(
        err,
        Rejection::DifferentKey {
            rotation_id: ROTATION.into(),
            expected: FP.into(),
            got: FP_OTHER.into(),
        }
    );
    assert_eq!(err.kind(), "different_key");
}

#[test]
fn duplicate_csr_while_issuing_creates_nothing() {
    let err = step(&issuing(), &csr(FP)).unwrap_err();
    assert_eq!(err.kind(), "issue_in_progress");
}

#[test]
fn certificate_created_again_while_issued_resumes_attach_and_publish() {
    let t = step(&issued(), &created(NEW, FP)).unwrap();
    assert!(t.is_unchanged(&issued()));
    assert_eq!(kinds(&t.actions), ["attach", "publish"]);
}

#[test]
fn a_certificate_that_lost_the_race_is_deleted() {
    let t = step(&issued(), &created("second", FP)).unwrap();
    assert!(t.is_unchanged(&issued()));
    assert_eq!(t.actions, vec![delete("second")]);
}

#[test]
fn a_certificate_created_after_the_rotation_ended_is_deleted() {
    for from in [failed(), expired(), committed()] {
        let t = step(&from, &created("late", FP)).unwrap();
        assert!(t.is_unchanged(&from));
        assert_eq!(t.actions, vec![delete("late")], "from {}", from.state);
    }
}

#[test]
fn the_committed_certificate_is_never_deleted_by_a_late_creation_event() {
    let t = step(&committed(), &created(NEW, FP)).unwrap();
    assert!(t.is_unchanged(&committed()));
    assert!(t.actions.is_empty());
}

#[test]
fn a_creation_event_naming_the_old_certificate_is_rejected() {
    let err = step(&issuing(), &created(OLD, FP)).unwrap_err();
    assert_eq!(err.kind(), "not_a_new_certificate");
}

#[test]
fn ack_on_the_old_principal_changes_nothing() {
    let err = step(&issued(), &ack(OLD)).unwrap_err();
    assert_eq!(
        err,
        Rejection::AckOnOldPrincipal {
            rotation_id: ROTATION.into(),
            principal: OLD.into()
        }
    );
}

#[test]
fn duplicate_ack_after_committed_is_a_no_op() {
    let t = step(&committed(), &ack(NEW)).unwrap();
    assert!(t.is_unchanged(&committed()));
    assert!(t.actions.is_empty());
}

#[test]
fn a_late_ack_on_the_new_certificate_still_commits() {
    let late = Event::Ack {
        principal: NEW.into(),
        rotation_id: None,
        certificate_id: Some(NEW.into()),
        now_ms: AFTER,
    };
    let t = step(&issued(), &late).unwrap();
    assert_eq!(t.next.state.name(), "COMMITTED");
}

#[test]
fn ack_naming_another_certificate_is_rejected() {
    let event = Event::Ack {
        principal: NEW.into(),
        rotation_id: None,
        certificate_id: Some("other".into()),
        now_ms: BEFORE,
    };
    let err = step(&issued(), &event).unwrap_err();
    assert_eq!(err.kind(), "ack_certificate_mismatch");
}

#[test]
fn error_while_issued_deletes_the_new_certificate_and_notifies() {
    let t = step(&issued(), &device_error()).unwrap();
    assert_eq!(
        t.next.state,
        RotationState::Failed {
            reason: "cannot store key".into(),
            new_certificate_id: Some(NEW.into())
        }
    );
    assert_eq!(t.actions[0], delete(NEW));
    let Action::NotifySupport { subject, message } = &t.actions[1] else {
        panic!("expected a notification, got {:?}", t.actions);
    };
    assert_eq!(subject, "fleetcert: rotation failed for sensor-42");
    insta::assert_snapshot!(message, @r"
    thing: sensor-42
    rotation: rot-1
    old certificate: old-cert (still active)
    device error: cannot store key
    cleanup: new certificate new-cert deleted
    ");
}

/// Before issue 15 every ISSUED rotation past its deadline deleted the new
/// certificate. That bricked a device whose `crt_ack` was delivered (PUBACK)
/// but whose commit never landed and which had dropped its old key: only a
/// certificate read as never ACTIVE (so never sent) may be deleted now.
#[test]
fn sweep_past_the_deadline_while_issued_and_never_sent_expires_and_cleans_up() {
    let t = step(&issued(), &sweep_unsent(AFTER)).unwrap();
    assert_eq!(
        t.next.state,
        RotationState::Expired {
            new_certificate_id: Some(NEW.into()),
            new_certificate_kept: false,
        }
    );
    assert_eq!(kinds(&t.actions), ["delete", "notify"]);
    assert_eq!(t.actions[0], delete(NEW));
}

#[test]
fn sweep_past_the_deadline_while_issued_keeps_a_sent_certificate_and_tells_support() {
    let t = step(&issued(), &sweep(AFTER)).unwrap();
    assert_eq!(t.next.state, expired_kept().state);
    assert_eq!(kinds(&t.actions), ["notify"], "nothing deleted");
    assert_eq!(t.next.cleanup_actions(), []);
    assert_eq!(t.next.certificates_the_device_may_hold(), [OLD, NEW]);
    let Action::NotifySupport { subject, message } = &t.actions[0] else {
        panic!("expected a notification, got {:?}", t.actions);
    };
    assert_eq!(
        subject,
        "fleetcert: rotation expired for sensor-42, both certificates kept"
    );
    assert!(
        message.contains("new certificate: new-cert (still active"),
        "{message}"
    );
}

#[test]
fn an_ack_over_the_kept_certificate_still_commits_after_expiry() {
    let t = step(&expired_kept(), &ack(NEW)).unwrap();
    assert_eq!(t.next.state, committed().state);
    assert_eq!(
        t.actions,
        [Action::RetireOldCertificate {
            old_certificate_id: OLD.into()
        }]
    );
    // Over the old certificate it is still no evidence.
    let err = step(&expired_kept(), &ack(OLD)).unwrap_err();
    assert_eq!(err.kind(), "rotation_closed");
}

#[test]
fn rows_and_sweeps_written_before_the_kept_flag_existed_still_read() {
    let row: Rotation = serde_json::from_str(
        r#"{"rotationId":"r","thingName":"t","oldCertificateId":"o","state":"EXPIRED","newCertificateId":"n","createdAtMs":1,"deadlineMs":2,"attempts":1}"#,
    )
    .expect("row");
    assert_eq!(
        row.state,
        RotationState::Expired {
            new_certificate_id: Some("n".into()),
            new_certificate_kept: false
        }
    );
    let json = serde_json::to_string(&row).expect("json");
    assert!(!json.contains("newCertificateKept"), "{json}");
    let sweep: Event = serde_json::from_str(r#"{"event":"sweep","nowMs":5}"#).expect("event");
    assert_eq!(sweep, self::sweep(5), "absent means: may have been sent");
}

#[test]
fn sweep_past_the_deadline_while_requested_expires_without_cleanup() {
    let t = step(&requested(), &sweep(AFTER)).unwrap();
    assert_eq!(
        t.next.state,
        RotationState::Expired {
            new_certificate_id: None,
            new_certificate_kept: false,
        }
    );
    assert_eq!(kinds(&t.actions), ["notify"]);
}

/// Every event that must be rejected, and the reason a log line carries.
#[rstest]
#[case::ack_before_issued(requested(), ack(NEW), "ack_before_issued")]
#[case::ack_while_issuing(issuing(), ack(NEW), "ack_before_issued")]
#[case::ack_on_old_principal(issued(), ack(OLD), "ack_on_old_principal")]
#[case::ack_on_old_after_commit(committed(), ack(OLD), "ack_on_old_principal")]
#[case::ack_on_unknown_principal(issued(), ack("stranger"), "ack_on_unknown_principal")]
#[case::ack_after_failed(failed(), ack(NEW), "rotation_closed")]
#[case::ack_after_expired_and_deleted(expired(), ack(NEW), "rotation_closed")]
#[case::error_after_committed(committed(), device_error(), "rotation_closed")]
#[case::error_after_failed(failed(), device_error(), "rotation_closed")]
#[case::csr_after_committed(committed(), csr(FP), "rotation_closed")]
#[case::csr_after_expired(expired(), csr(FP), "rotation_closed")]
#[case::csr_other_key_while_issuing(issuing(), csr(FP_OTHER), "different_key")]
#[case::csr_past_deadline(requested(), Event::CsrReceived { rotation_id: None, csr_fingerprint: FP.into(), now_ms: AFTER }, "deadline_passed")]
#[case::sweep_before_deadline(issued(), sweep(BEFORE), "not_due")]
#[case::sweep_at_deadline(requested(), sweep(DEADLINE), "not_due")]
#[case::sweep_after_committed(committed(), sweep(AFTER), "rotation_closed")]
#[case::csr_for_other_rotation(requested(), Event::CsrReceived { rotation_id: Some("rot-0".into()), csr_fingerprint: FP.into(), now_ms: BEFORE }, "rotation_id_mismatch")]
#[case::ack_for_other_rotation(issued(), Event::Ack { principal: NEW.into(), rotation_id: Some("rot-0".into()), certificate_id: None, now_ms: BEFORE }, "rotation_id_mismatch")]
#[case::error_for_other_rotation(issued(), Event::DeviceError { error: "x".into(), rotation_id: Some("rot-0".into()), now_ms: BEFORE }, "rotation_id_mismatch")]
fn rejected(#[case] from: Rotation, #[case] event: Event, #[case] kind: &str) {
    let err = step(&from, &event).unwrap_err();
    assert_eq!(err.kind(), kind, "{err}");
}

#[test]
fn rejection_messages_are_lower_case_and_name_the_rotation() {
    let err = step(&issued(), &ack(OLD)).unwrap_err();
    insta::assert_snapshot!(err.to_string(), @"ack for rotation rot-1 arrived on the old certificate old-cert: only an ack over the new certificate commits");
    let err = step(
        &requested(),
        &Event::CsrReceived {
            rotation_id: Some("rot-0".into()),
            csr_fingerprint: FP.into(),
            now_ms: BEFORE,
        },
    )
    .unwrap_err();
    insta::assert_snapshot!(err.to_string(), @"message is for rotation rot-0, but the rotation of thing sensor-42 is rot-1");
}

// ---- state helpers and the stored row ---------------------------------------

#[rstest]
#[case(requested(), true)]
#[case(issuing(), true)]
#[case(issued(), true)]
#[case(committed(), false)]
#[case(failed(), false)]
#[case(expired(), false)]
fn open_and_terminal_are_complements(#[case] rotation: Rotation, #[case] open: bool) {
    assert_eq!(rotation.state.is_open(), open);
    assert_eq!(rotation.state.is_terminal(), !open);
}

#[rstest]
#[case(requested(), &[OLD], &[])]
#[case(issuing(), &[OLD], &[])]
#[case(issued(), &[OLD, NEW], &[])]
#[case(committed(), &[NEW], &[OLD])]
#[case(failed(), &[OLD], &[NEW])]
#[case(expired(), &[OLD], &[])]
fn which_certificates_the_device_may_hold(
    #[case] rotation: Rotation,
    #[case] hold: &[&str],
    #[case] remove: &[&str],
) {
    assert_eq!(rotation.certificates_the_device_may_hold(), hold);
    assert_eq!(rotation.certificates_to_remove(), remove);
}

#[test]
fn the_row_is_camel_case_with_the_state_flattened() {
    let row = serde_json::to_value(issued()).unwrap();
    // Keys sorted: serde_json may keep insertion order (`preserve_order`).
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!(row, @r#"
        {
          "attempts": 1,
          "createdAtMs": 1000,
          "csrFingerprint": "fp-a",
          "deadlineMs": 10000,
          "newCertificateId": "new-cert",
          "oldCertificateId": "old-cert",
          "rotationId": "rot-1",
          "state": "ISSUED",
          "thingName": "sensor-42"
        }
        "#);
    });
}

#[rstest]
#[case(requested())]
#[case(issuing())]
#[case(issued())]
#[case(committed())]
#[case(failed())]
#[case(expired())]
fn the_row_round_trips(#[case] rotation: Rotation) {
    let json = serde_json::to_string(&rotation).unwrap();
    let back: Rotation = serde_json::from_str(&json).unwrap();
    assert_eq!(back, rotation);
}

#[test]
fn a_row_with_an_unknown_state_is_an_error() {
    let json = r#"{"rotationId":"r","thingName":"t","oldCertificateId":"o","state":"DONE","createdAtMs":1,"deadlineMs":2,"attempts":0}"#;
    let err = serde_json::from_str::<Rotation>(json).unwrap_err();
    assert!(err.to_string().contains("DONE"), "{err}");
}

fn facts(id: &str, active: bool, attached: bool) -> CertificateFacts<'_> {
    CertificateFacts {
        certificate_id: id,
        active,
        attached_to_thing: attached,
        has_policy: attached,
    }
}

#[test]
fn check_invariants_finds_a_bricked_device_and_an_orphan() {
    let ok = [facts(OLD, true, true), facts(NEW, true, true)];
    assert_eq!(check_invariants(&issued(), &ok), Ok(()));

    let old_gone = [facts(NEW, true, true)];
    assert!(matches!(
        check_invariants(&issued(), &old_gone),
        Err(InvariantViolation::MayBrick { certificate_id, .. }) if certificate_id == OLD
    ));

    let new_left_active = [facts(OLD, true, true), facts(NEW, true, false)];
    assert!(matches!(
        check_invariants(&failed(), &new_left_active),
        Err(InvariantViolation::Orphaned { certificate_id, .. }) if certificate_id == NEW
    ));

    let new_deactivated_but_attached = [facts(OLD, true, true), facts(NEW, false, true)];
    assert!(check_invariants(&failed(), &new_deactivated_but_attached).is_err());
}

#[rstest]
#[case(requested(), vec![])]
#[case(issued(), vec![])]
#[case(committed(), vec![Action::RetireOldCertificate { old_certificate_id: OLD.into() }])]
#[case(failed(), vec![delete(NEW)])]
#[case(expired(), vec![])]
#[case(expired_kept(), vec![])]
fn cleanup_actions_resume_what_the_state_implies(
    #[case] rotation: Rotation,
    #[case] actions: Vec<Action>,
) {
    assert_eq!(rotation.cleanup_actions(), actions);
}

// ---- exhaustive walk ------------------------------------------------------------

/// A registry model: certificate id -> (active, attached with policies).
#[derive(Clone, Default)]
struct Model {
    registry: Vec<(String, bool, bool)>,
    seen: BTreeSet<String>,
    creates: usize,
    retires: usize,
    events: Vec<Event>,
}

impl Model {
    fn facts(&self) -> Vec<CertificateFacts<'_>> {
        self.registry
            .iter()
            .map(|(id, active, attached)| facts(id, *active, *attached))
            .collect()
    }

    fn remove(&mut self, id: &str) {
        self.registry.retain(|(c, _, _)| c != id);
    }

    fn apply(&mut self, before: &Rotation, event: &Event, t: &Transition) {
        if let Event::CertificateCreated { certificate_id, .. } = event
            && self.seen.insert(certificate_id.clone())
        {
            // The API never returns the same id twice.
            // CreateCertificateFromCsr(setAsActive): active, attached to nothing.
            self.registry.push((certificate_id.clone(), true, false));
        }
        for action in &t.actions {
            match action {
                Action::CreateCertificateFromCsr => self.creates += 1,
                Action::AttachOldPoliciesAndThing { new_certificate_id } => {
                    for c in &mut self.registry {
                        if c.0 == *new_certificate_id {
                            c.2 = true;
                        }
                    }
                }
                Action::RetireOldCertificate { old_certificate_id } => {
                    self.retires += 1;
                    let Event::Ack { principal, .. } = event else {
                        panic!("retired on {event:?}: {:?}", self.events);
                    };
                    assert_ne!(principal, old_certificate_id, "{:?}", self.events);
                    assert_eq!(
                        before.state.new_certificate_id(),
                        Some(principal.as_str()),
                        "retired on an ack not over the new certificate: {:?}",
                        self.events
                    );
                    self.remove(old_certificate_id);
                }
                Action::DeleteNewCertificate { certificate_id } => {
                    assert_ne!(certificate_id, OLD, "{:?}", self.events);
                    self.remove(certificate_id);
                }
                Action::ResendCertificate { .. }
                | Action::PublishCrt { .. }
                | Action::NotifySupport { .. } => {}
            }
        }
    }
}

fn alphabet() -> Vec<Event> {
    vec![
        csr(FP),
        csr(FP_OTHER),
        Event::CsrReceived {
            rotation_id: None,
            csr_fingerprint: FP.into(),
            now_ms: AFTER,
        },
        created(NEW, FP),
        created("second", FP),
        created("other-key", FP_OTHER),
        ack(OLD),
        ack(NEW),
        ack("second"),
        Event::Ack {
            principal: NEW.into(),
            rotation_id: Some("rot-0".into()),
            certificate_id: None,
            now_ms: BEFORE,
        },
        device_error(),
        sweep(BEFORE),
        sweep(AFTER),
        sweep_unsent(AFTER),
    ]
}

fn walk(rotation: &Rotation, model: &Model, depth: usize, alphabet: &[Event], paths: &mut u64) {
    *paths += 1;
    if depth == 0 {
        return;
    }
    for event in alphabet {
        if let Event::CertificateCreated { certificate_id, .. } = event
            && model.seen.contains(certificate_id)
            && !model.registry.iter().any(|c| c.0 == *certificate_id)
        {
            // The API never re-creates a deleted certificate: not a real path.
            *paths += 1 + pruned_subtree(depth - 1, alphabet.len() as u64);
            continue;
        }
        let mut model = model.clone();
        model.events.push(event.clone());
        let next = match step(rotation, event) {
            Ok(t) => {
                model.apply(rotation, event, &t);
                t.next
            }
            Err(rejection) => {
                // A rejection changes nothing; only the created certificate
                // reaches the registry, and it must be cleaned up by someone.
                assert!(
                    !matches!(event, Event::CertificateCreated { .. })
                        || rejection.kind() == "not_a_new_certificate",
                    "{rejection}: {:?}",
                    model.events
                );
                rotation.clone()
            }
        };
        assert!(model.creates <= 1, "two creates: {:?}", model.events);
        assert!(model.retires <= 1, "two retires: {:?}", model.events);
        if let Err(violation) = check_invariants(&next, &model.facts()) {
            panic!("{violation} after {:?}", model.events);
        }
        if matches!(
            next.state,
            RotationState::Failed { .. } | RotationState::Expired { .. }
        ) {
            let left: BTreeSet<_> = model.registry.iter().map(|c| c.0.as_str()).collect();
            // EXPIRED keeps a certificate that may have been sent (and says
            // so to support); every other end leaves the old one only.
            let expected = match &next.state {
                RotationState::Expired {
                    new_certificate_id: Some(new),
                    new_certificate_kept: true,
                } => BTreeSet::from([OLD, new.as_str()]),
                _ => BTreeSet::from([OLD]),
            };
            assert_eq!(
                left, expected,
                "new certificate left after {:?}",
                model.events
            );
        }
        walk(&next, &model, depth - 1, alphabet, paths);
    }
}

/// Number of prefixes below one node: 14 + 14^2 + ... (for the path count).
fn pruned_subtree(depth: usize, width: u64) -> u64 {
    (1..=depth as u32).map(|d| width.pow(d)).sum()
}

#[test]
fn every_sequence_of_four_events_keeps_the_invariants() {
    let model = Model {
        registry: vec![(OLD.to_owned(), true, true)],
        ..Model::default()
    };
    let alphabet = alphabet();
    let mut paths = 0;
    walk(&requested(), &model, 4, &alphabet, &mut paths);
    // 1 + 14 + 14^2 + 14^3 + 14^4 prefixes, all visited or (if unreal) counted.
    assert_eq!(paths, 1 + 14 + 196 + 2_744 + 38_416);
}

/// CREATED 1,000, DEADLINE 10,000: marks at 5,500 (half) and 7,750 (three
/// quarters).
#[test]
fn a_stalled_rotation_is_due_a_resend_at_half_and_three_quarters_of_its_time_only() {
    let half = 5_500;
    let three_quarters = 7_750;
    let row = requested();
    assert_eq!(row.resend_mark(half - 1), None, "before half its time");
    assert_eq!(row.resend_mark(half), Some(half));
    let resent = Rotation {
        resent_at_ms: Some(half + 10),
        ..row.clone()
    };
    assert_eq!(resent.resend_mark(half + 20), None, "already sent again");
    assert_eq!(resent.resend_mark(three_quarters - 1), None);
    assert_eq!(resent.resend_mark(three_quarters), Some(three_quarters));
    let twice = Rotation {
        resent_at_ms: Some(three_quarters + 5),
        ..row.clone()
    };
    assert_eq!(
        twice.resend_mark(DEADLINE - 1),
        None,
        "at most two per state"
    );
    assert_eq!(
        row.resend_mark(DEADLINE),
        None,
        "the sweeper expires it then"
    );
    // A sweep that missed the half mark sends once, for the latest mark.
    assert_eq!(row.resend_mark(9_000), Some(three_quarters));
    for closed in [committed(), failed(), expired()] {
        assert_eq!(closed.resend_mark(half), None, "{}", closed.state);
    }
}

#[test]
fn a_transition_clears_the_resend_mark_so_the_new_state_gets_its_own() {
    let row = Rotation {
        resent_at_ms: Some(6_000),
        ..requested()
    };
    let t = step(&row, &csr(FP)).expect("accepted");
    assert_eq!(t.next.resent_at_ms, None);
    assert_eq!(t.next.resend_mark(6_500), Some(5_500));
}

#[test]
fn rows_written_before_the_resend_mark_existed_still_read() {
    let json = serde_json::to_string(&requested()).expect("json");
    assert!(!json.contains("resentAtMs"), "{json}");
    let back: Rotation = serde_json::from_str(&json).expect("row");
    assert_eq!(back.resent_at_ms, None);
    let marked = Rotation {
        resent_at_ms: Some(42),
        ..requested()
    };
    let json = serde_json::to_string(&marked).expect("json");
    assert!(json.contains(r#""resentAtMs":42"#), "{json}");
}
