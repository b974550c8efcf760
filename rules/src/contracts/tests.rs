use rstest::rstest;

use super::*;

const CSR: &str =
    "-----BEGIN CERTIFICATE REQUEST-----\nMIIBAzCBqgIBADAP\n-----END CERTIFICATE REQUEST-----\n";
const CERT_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn invalid(contract: Contract, payload: &str) -> (String, String) {
    match validate(contract, payload.as_bytes()) {
        Err(ContractError::Invalid {
            contract: c,
            path,
            reason,
        }) => {
            assert_eq!(c, contract);
            (path, reason)
        }
        other => panic!("expected Invalid for {payload}, got {other:?}"),
    }
}

#[test]
fn names_round_trip_and_are_unique() {
    let mut seen = std::collections::BTreeSet::new();
    for &c in Contract::ALL {
        assert_eq!(Contract::from_name(c.name()), Ok(c));
        assert!(seen.insert(c.name()), "duplicate name {c}");
    }
    assert_eq!(seen.len(), Contract::ALL.len());
}

#[test]
fn unknown_contract_names_the_known_ones() {
    let err = Contract::from_name("csr_response").unwrap_err();
    assert_eq!(
        err,
        ContractError::UnknownContract {
            name: "csr_response".into()
        }
    );
    assert!(
        err.to_string()
            .starts_with("unknown contract `csr_response`, expected one of `csr_req`, `csr_res`")
    );
}

#[test]
fn seed_wire_format_stays_valid() {
    assert_eq!(
        validate(Contract::CsrReq, b"{}"),
        Ok(Message::CsrReq(CsrReq::default()))
    );
    let res = validate(
        Contract::CsrRes,
        serde_json::json!({ "CSR": CSR }).to_string().as_bytes(),
    );
    assert!(
        matches!(
            res,
            Ok(Message::CsrRes(CsrRes {
                rotation_id: None,
                ..
            }))
        ),
        "{res:?}"
    );
    let err = validate(Contract::CrtErr, br#"{"error": "disk full"}"#);
    assert!(
        matches!(err, Ok(Message::CrtErr(CrtErr { rotation_id: None, ref error })) if error.as_str() == "disk full")
    );
    assert_eq!(
        validate(Contract::CrtAck, b"{}"),
        Ok(Message::CrtAck(CrtAck::default()))
    );
}

#[test]
fn fleetcert_messages_serialize_to_what_validate_reads() {
    let req = CsrReq {
        rotation_id: Some(RotationId::new("r-1").unwrap()),
        key_algorithm: Some(KeyAlgorithm::EcP256),
        deadline: Some(1_767_225_600_000),
    };
    let json = serde_json::to_string(&req).unwrap();
    assert_eq!(
        json,
        r#"{"rotationId":"r-1","keyAlgorithm":"EC_P256","deadline":1767225600000}"#
    );
    assert_eq!(
        validate(Contract::CsrReq, json.as_bytes()),
        Ok(Message::CsrReq(req))
    );
    assert_eq!(serde_json::to_string(&CsrReq::default()).unwrap(), "{}");
}

#[rstest]
#[case::missing_field(Contract::CsrRes, r#"{"rotationId": "r1"}"#, "", "missing field `CSR`")]
#[case::unknown_field(
    Contract::CrtAck,
    r#"{"rotationId": "r1", "extra": true}"#,
    "/extra",
    "unknown field `extra`, expected `rotationId` or `certificateId`"
)]
#[case::wrong_type(
    Contract::CsrReq,
    r#"{"deadline": "soon"}"#,
    "/deadline",
    "invalid type: string \"soon\", expected a whole number from 0 to 9007199254740991"
)]
#[case::array_not_object(
    Contract::CsrRes,
    r#"["x"]"#,
    "",
    "invalid type: sequence, expected a JSON object"
)]
#[case::nested_array_not_object(
    Contract::SnsEvent,
    r#"{"Records": [["x"]]}"#,
    "/Records/0",
    "invalid type: sequence, expected a JSON object"
)]
#[case::bad_rotation_id(
    Contract::CrtErr,
    r#"{"error": "e", "rotationId": "a b"}"#,
    "/rotationId",
    "invalid rotation id: 1 to 64 characters of A-Z a-z 0-9 _ - (found \"a b\")"
)]
#[case::bad_key_algorithm(
    Contract::CsrReq,
    r#"{"keyAlgorithm": "EC_P521"}"#,
    "/keyAlgorithm",
    "unknown variant `EC_P521`, expected one of `EC_P256`, `EC_P384`, `RSA_2048`, `RSA_3072`"
)]
#[case::nested_path(
    Contract::AuditNotification,
    r#"{"auditDetails": [{"checkName": 3}]}"#,
    "/auditDetails/0/checkName",
    "invalid type: integer `3`, expected a string"
)]
fn invalid_payloads_name_path_and_reason(
    #[case] contract: Contract,
    #[case] payload: &str,
    #[case] path: &str,
    #[case] reason: &str,
) {
    assert_eq!(
        invalid(contract, payload),
        (path.to_owned(), reason.to_owned())
    );
}

#[test]
fn invalid_message_reads_well() {
    let err = validate(Contract::CsrRes, br#"{"CSR": "hello"}"#).unwrap_err();
    insta::assert_snapshot!(err.to_string(), @r#"payload does not match `csr_res` at `/CSR`: invalid CSR: one PEM block "-----BEGIN CERTIFICATE REQUEST-----" ... "-----END CERTIFICATE REQUEST-----" of at most 16384 bytes (found "hello")"#);
}

#[rstest]
#[case::truncated(r#"{"CSR": "x""#, 1, 11)]
#[case::trailing_garbage("{} x", 1, 4)]
#[case::type_error_then_syntax_error(r#"{"CSR": 1, ]"#, 1, 12)]
fn malformed_payloads_give_position(
    #[case] payload: &str,
    #[case] line: usize,
    #[case] column: usize,
) {
    match validate(Contract::CsrRes, payload.as_bytes()) {
        Err(ContractError::Malformed {
            line: l, column: c, ..
        }) => assert_eq!((l, c), (line, column)),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn invalid_utf8_is_malformed() {
    let err = validate(Contract::CsrRes, b"{\"CSR\": \"\xff\"}").unwrap_err();
    assert!(
        matches!(err, ContractError::Malformed { line: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn oversized_payload_is_refused_before_parsing() {
    let mut payload = vec![b' '; MAX_PAYLOAD_BYTES - 2];
    payload.splice(0..0, *b"{}");
    assert!(validate(Contract::CrtAck, &payload).is_ok());
    payload.push(b' ');
    assert_eq!(
        validate(Contract::CrtAck, &payload),
        Err(ContractError::TooLarge {
            size: MAX_PAYLOAD_BYTES + 1,
            max: MAX_PAYLOAD_BYTES
        })
    );
}

fn notification(check: &str, non_compliant: u64) -> String {
    serde_json::json!({
        "accountId": "123456789012", "taskId": "t1", "taskStatus": "COMPLETED",
        "taskType": "SCHEDULED_AUDIT_TASK", "scheduledAuditName": "daily",
        "failedChecksCount": 0, "canceledChecksCount": 0, "nonCompliantChecksCount": 1,
        "compliantChecksCount": 0, "totalChecksCount": 1, "taskStartTime": 1_700_000_000_000u64,
        "auditDetails": [
            { "checkName": "CA_CERTIFICATE_EXPIRING_CHECK", "checkRunStatus": "COMPLETED_NON_COMPLIANT",
              "nonCompliantResourcesCount": 3, "totalResourcesCount": 3 },
            { "checkName": check, "checkRunStatus": "COMPLETED_NON_COMPLIANT",
              "nonCompliantResourcesCount": non_compliant, "totalResourcesCount": 10 }
        ]
    })
    .to_string()
}

#[rstest]
#[case("DEVICE_CERTIFICATE_EXPIRING_CHECK", 2, true)]
#[case("DEVICE_CERT_APPROACHING_EXPIRATION_CHECK", 2, true)]
#[case("DEVICE_CERTIFICATE_EXPIRING_CHECK", 0, false)]
#[case("REVOKED_DEVICE_CERTIFICATE_CHECK", 2, false)]
fn expiring_check_in_either_spelling(
    #[case] check: &str,
    #[case] count: u64,
    #[case] expected: bool,
) {
    let Ok(Message::AuditNotification(n)) = validate(
        Contract::AuditNotification,
        notification(check, count).as_bytes(),
    ) else {
        panic!("notification did not validate");
    };
    assert_eq!(n.has_rotation_work(), expected);
    assert_eq!(
        n.audit_details[1].check_name.as_str(),
        check,
        "spelling is kept"
    );
}

#[test]
fn sns_message_is_a_string_holding_the_notification() {
    let event = serde_json::json!({
        "Records": [{ "EventSource": "aws:sns", "EventVersion": "1.0",
                      "Sns": { "Type": "Notification", "Message": notification("DEVICE_CERTIFICATE_EXPIRING_CHECK", 1) } }]
    })
    .to_string();
    let Ok(Message::SnsEvent(event)) = validate(Contract::SnsEvent, event.as_bytes()) else {
        panic!("sns event did not validate");
    };
    let n = event.records[0].audit_notification().unwrap();
    assert_eq!(n.task_id, "t1");
    assert!(n.expiring_check().is_some());
}

#[rstest]
#[case("CERTIFICATE_APPROACHING_EXPIRATION", false)]
#[case("CERTIFICATE_PAST_EXPIRATION", true)]
fn finding_helpers(#[case] reason: &str, #[case] past: bool) {
    let finding = serde_json::json!({
        "findingId": "f1", "taskId": "t1", "checkName": "DEVICE_CERTIFICATE_EXPIRING_CHECK",
        "nonCompliantResource": {
            "resourceType": "DEVICE_CERTIFICATE",
            "resourceIdentifier": { "deviceCertificateId": CERT_ID },
            "additionalInfo": { "EXPIRATION_TIME": "1767225600000" }
        },
        "reasonForNonComplianceCode": reason, "severity": "MEDIUM", "isSuppressed": false
    })
    .to_string();
    let Ok(Message::AuditFinding(f)) = validate(Contract::AuditFinding, finding.as_bytes()) else {
        panic!("finding did not validate");
    };
    assert_eq!(
        f.device_certificate_id().map(CertificateId::as_str),
        Some(CERT_ID)
    );
    assert_eq!(f.expiration_time_ms(), Some(1_767_225_600_000));
    assert_eq!(f.is_past_expiration(), past);
}

#[test]
fn every_schema_is_draft_2020_12_and_closed_where_it_should_be() {
    let open = [
        Contract::SnsEvent,
        Contract::AuditNotification,
        Contract::AuditFinding,
        Contract::JitrRegistrationEvent,
    ];
    for &c in Contract::ALL {
        let schema = c.schema();
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{c}"
        );
        let closed = schema.get("additionalProperties") == Some(&serde_json::Value::Bool(false));
        assert_eq!(closed, !open.contains(&c), "{c}");
        assert_eq!(schema[MAX_PAYLOAD_KEYWORD], c.max_payload_bytes(), "{c}");
    }
}

#[test]
fn errors_serialize_with_kind_fields_and_message() {
    let err = validate(Contract::CrtAck, br#"{"rotationId": 7}"#).unwrap_err();
    insta::assert_json_snapshot!(err, @r#"
    {
      "kind": "invalid",
      "contract": "crt_ack",
      "path": "/rotationId",
      "reason": "invalid type: integer `7`, expected a rotation id: 1 to 64 characters of A-Z a-z 0-9 _ -",
      "message": "payload does not match `crt_ack` at `/rotationId`: invalid type: integer `7`, expected a rotation id: 1 to 64 characters of A-Z a-z 0-9 _ -"
    }
    "#);
    let too_large = ContractError::TooLarge { size: 5, max: 4 };
    assert_eq!(
        serde_json::to_value(&too_large).unwrap(),
        serde_json::json!({"kind": "tooLarge", "size": 5, "max": 4, "message": "payload is 5 bytes, over the limit of 4 bytes"})
    );
}
