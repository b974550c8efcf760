//! Every AWS event and response shape the handlers consume, as a fixture
//! (`fixtures/example-<source>-<case>.json`), parsed into its type and
//! serialized back. fleetcert's own closed shapes and the envelopes that
//! keep unknown fields must come back equal; open AWS shapes (which drop
//! fields fleetcert does not read) must come back as a subset, and reparse
//! to the same value.

use std::path::PathBuf;

use lambdas::events::{
    DescribeCertificateResponse, ListAuditFindingsResponse, ScheduledEvent, SqsBatchResponse,
    SqsEvent,
};
use lambdas::ports::CertificateStatus;
use rules::contracts::{Contract, Message, validate};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}"))
}

/// `sub` is contained in `sup`: every object key of `sub` is in `sup` with
/// a contained value; arrays element-wise.
fn contained(sub: &Value, sup: &Value) -> bool {
    match (sub, sup) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| contained(v, w))),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| contained(x, y))
        }
        (a, b) => a == b,
    }
}

fn exact<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let raw = fixture(name);
    let typed: T = serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        serde_json::to_value(&typed).unwrap_or_else(|e| panic!("{e}")),
        json(&raw),
        "{name}"
    );
    typed
}

fn subset<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(name: &str) -> T {
    let raw = fixture(name);
    let typed: T = serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
    let back = serde_json::to_value(&typed).unwrap_or_else(|e| panic!("{e}"));
    assert!(contained(&back, &json(&raw)), "{name}: {back:#}");
    let again: T = serde_json::from_value(back).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, typed);
    typed
}

/// Validates with the contract and checks the round trip is exact.
fn contract_exact(name: &str, contract: Contract) -> Message {
    let raw = fixture(name);
    let message = validate(contract, &raw).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(message.to_json(), json(&raw), "{name}");
    message
}

#[test]
fn sns_audit_notifications_in_both_spellings() {
    for name in [
        "example-sns-audit-notification-expiring.json",
        "example-sns-audit-notification-approaching.json",
    ] {
        let Message::SnsEvent(event) = contract_exact(name, Contract::SnsEvent) else {
            panic!("{name}: not an sns event");
        };
        let notification = event.records[0]
            .audit_notification()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(notification.has_rotation_work(), "{name}");
        let inner = json(event.records[0].sns.message.as_bytes());
        assert_eq!(
            serde_json::to_value(&notification).unwrap_or_else(|e| panic!("{e}")),
            inner
        );
    }
}

#[test]
fn sqs_batch_and_its_bodies() {
    let event: SqsEvent = exact("example-sqs-rotation-work-batch.json");
    assert_eq!(event.records.len(), 2);
    for record in &event.records {
        let work = validate(Contract::RotationWork, record.body.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(work.to_json(), json(record.body.as_bytes()));
    }
    let response: SqsBatchResponse = exact("example-sqs-batch-response.json");
    assert_eq!(response.batch_item_failures.len(), 1);
}

#[test]
fn rule_outputs() {
    contract_exact("example-iot-rule-csr-res.json", Contract::CsrResRuleEvent);
    contract_exact(
        "example-iot-rule-csr-res-original-contract.json",
        Contract::CsrResRuleEvent,
    );
    contract_exact("example-iot-rule-crt-ack.json", Contract::CrtAckRuleEvent);
    contract_exact("example-iot-rule-crt-err.json", Contract::CrtErrRuleEvent);
}

#[test]
fn jitr_registration_event() {
    let raw = fixture("example-iot-jitr-registered.json");
    let message = validate(Contract::JitrRegistrationEvent, &raw).unwrap_or_else(|e| panic!("{e}"));
    // `certificateRegistrationTimestamp: null` is read as absent.
    assert!(contained(&message.to_json(), &json(&raw)));
    assert_eq!(
        validate(
            Contract::JitrRegistrationEvent,
            message.to_json().to_string().as_bytes()
        )
        .ok(),
        Some(message)
    );
}

#[test]
fn list_audit_findings_page() {
    let page: ListAuditFindingsResponse = subset("example-iot-list-audit-findings-page.json");
    assert_eq!(page.findings.len(), 2);
    assert_eq!(page.next_token.as_deref(), Some("AAEAAbT6n1Yp0XtV"));
    assert!(!page.findings[0].is_past_expiration());
    assert!(page.findings[1].is_past_expiration());
    assert_eq!(
        page.findings[0].expiration_time_ms(),
        Some(1_768_435_200_000)
    );
    for f in &page.findings {
        let one = serde_json::to_vec(f).unwrap_or_else(|e| panic!("{e}"));
        validate(Contract::AuditFinding, &one).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn describe_certificate_response() {
    let response: DescribeCertificateResponse = exact("example-iot-describe-certificate.json");
    let d = lambdas::ports::CertificateDescription::from(response.certificate_description);
    assert_eq!(d.status, CertificateStatus::Active);
    assert_eq!(d.not_after_ms, 1_768_435_200_000);
    assert!(d.certificate_arn.ends_with(&d.certificate_id));
}

#[test]
fn scheduled_event() {
    let event: ScheduledEvent = exact("example-events-scheduled.json");
    assert_eq!(event.detail_type, "Scheduled Event");
}

#[test]
fn every_fixture_is_tested() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let this = include_str!("fixtures.rs");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    assert!(names.len() >= 12);
    for name in names {
        assert!(
            name.starts_with("example-") && name.ends_with(".json"),
            "{name}"
        );
        assert!(
            this.contains(&format!("\"{name}\"")),
            "{name} has no round-trip test"
        );
    }
}
