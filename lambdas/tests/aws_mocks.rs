//! The AWS adapters against recorded responses (aws-smithy-mocks): what
//! moto cannot serve (Device Defender findings, throttling, DynamoDB
//! transaction cancellation reasons) goes through the SDK's real
//! deserializers from the HTTP responses AWS sends.
#![cfg(feature = "aws")]

use aws_sdk_iot::config::retry::RetryConfig;
use aws_sdk_iot::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use lambdas::aws::{AwsRegistry, DynamoStore};
use lambdas::ports::{IotRegistry, Operation, PortError, RotationStore};
use rules::contracts::{CheckName, ReasonCode};
use rules::rotation::Rotation;
use serde_json::{Value, json};

const TASK: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const CHECK: &str = "DEVICE_CERTIFICATE_EXPIRING_CHECK";

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

fn http(status: u16, headers: &[(&'static str, &'static str)], body: String) -> HttpResponse {
    let mut r = HttpResponse::new(
        StatusCode::try_from(status).expect("status"),
        SdkBody::from(body),
    );
    for (k, v) in headers {
        r.headers_mut().insert(*k, *v);
    }
    r
}

fn interceptor(rules: &[&Rule]) -> MockResponseInterceptor {
    rules.iter().fold(
        MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny),
        |i, r| i.with_rule(r),
    )
}

fn iot(rules: &[&Rule], retry: RetryConfig) -> AwsRegistry {
    let conf = aws_sdk_iot::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
        .http_client(create_mock_http_client())
        .interceptor(interceptor(rules))
        .retry_config(retry)
        .build();
    AwsRegistry::new(aws_sdk_iot::Client::from_conf(conf))
}

fn cert_id(n: usize) -> String {
    format!("{n:064x}")
}

/// One finding as `ListAuditFindings` returns it (restJson1, epoch-second
/// timestamps).
fn finding(n: usize) -> Value {
    json!({
        "findingId": format!("finding-{n}"),
        "taskId": TASK,
        "checkName": CHECK,
        "taskStartTime": 1_767_225_600.0,
        "findingTime": 1_767_225_900.5,
        "severity": "MEDIUM",
        "nonCompliantResource": {
            "resourceType": "DEVICE_CERTIFICATE",
            "resourceIdentifier": {"deviceCertificateId": cert_id(n)},
            "additionalInfo": {"EXPIRATION_TIME": (1_768_000_000_000_u64 + n as u64).to_string()}
        },
        "relatedResources": [],
        "reasonForNonCompliance": "Certificate is approaching expiration",
        "reasonForNonComplianceCode": if n == 4 { "CERTIFICATE_PAST_EXPIRATION" } else { "CERTIFICATE_APPROACHING_EXPIRATION" },
        "isSuppressed": false
    })
}

fn findings_page(ns: &[usize], next: Option<&str>) -> HttpResponse {
    let mut body = json!({"findings": ns.iter().map(|n| finding(*n)).collect::<Vec<_>>()});
    if let Some(next) = next {
        body["nextToken"] = json!(next);
    }
    http(
        200,
        &[("content-type", "application/json")],
        body.to_string(),
    )
}

fn findings_rule(
    token: Option<&'static str>,
    ns: &'static [usize],
    next: Option<&'static str>,
) -> Rule {
    mock!(aws_sdk_iot::Client::list_audit_findings)
        .match_requests(move |r| {
            r.next_token() == token
                && r.task_id() == Some(TASK)
                && r.check_name() == Some(CHECK)
                && r.max_results() == Some(250)
        })
        .then_http_response(move || findings_page(ns, next))
}

fn throttled() -> HttpResponse {
    http(
        400,
        &[
            ("content-type", "application/json"),
            ("x-amzn-ErrorType", "ThrottlingException"),
        ],
        json!({"message": "Rate exceeded"}).to_string(),
    )
}

#[test]
fn audit_findings_follow_the_token_chain_over_three_pages() {
    let pages = [
        findings_rule(None, &[1, 2], Some("token-a")),
        findings_rule(Some("token-a"), &[3], Some("token-b")),
        findings_rule(Some("token-b"), &[4, 5], None),
    ];
    let registry = iot(&pages.iter().collect::<Vec<_>>(), RetryConfig::disabled());
    let mut token = None;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let page = run(registry.list_audit_findings(TASK, CHECK, token.take()))
            .unwrap_or_else(|e| panic!("{e}"));
        seen.extend(page.items);
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert!(token.is_none(), "the chain ends");
    assert_eq!(
        pages.iter().map(Rule::num_calls).collect::<Vec<_>>(),
        [1, 1, 1]
    );
    let ids: Vec<&str> = seen.iter().map(|f| f.finding_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "finding-1",
            "finding-2",
            "finding-3",
            "finding-4",
            "finding-5"
        ]
    );
    let f = &seen[0];
    assert_eq!(f.task_id, TASK);
    assert_eq!(f.check_name, CheckName::DeviceCertificateExpiring);
    assert_eq!(
        f.device_certificate_id().map(|c| c.as_str().to_owned()),
        Some(cert_id(1))
    );
    assert_eq!(f.expiration_time_ms(), Some(1_768_000_000_001));
    assert_eq!(f.non_compliant_resource.resource_type, "DEVICE_CERTIFICATE");
    assert_eq!(
        f.reason_for_non_compliance_code,
        Some(ReasonCode::CertificateApproachingExpiration)
    );
    assert_eq!(f.severity.as_deref(), Some("MEDIUM"));
    assert!(seen[3].is_past_expiration());
}

#[test]
fn throttling_is_throttled_after_the_sdk_retries() {
    let rule = mock!(aws_sdk_iot::Client::list_audit_findings)
        .sequence()
        .http_response(throttled)
        .repeatedly()
        .build();
    let retry = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(std::time::Duration::from_millis(1));
    let registry = iot(&[&rule], retry);
    let err = run(registry.list_audit_findings(TASK, CHECK, None)).expect_err("throttled");
    assert!(
        matches!(
            &err,
            PortError::Throttled {
                operation: Operation::ListAuditFindings,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(err.message().contains("Rate exceeded"), "{err}");
    assert_eq!(
        rule.num_calls(),
        3,
        "the SDK's standard retry tried 3 times"
    );
}

#[test]
fn a_throttled_page_succeeds_on_the_sdk_retry() {
    let rule = mock!(aws_sdk_iot::Client::list_audit_findings)
        .sequence()
        .http_response(throttled)
        .http_response(|| findings_page(&[7], None))
        .build();
    let retry = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(std::time::Duration::from_millis(1));
    let registry = iot(&[&rule], retry);
    let page =
        run(registry.list_audit_findings(TASK, CHECK, None)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.items.len(), 1);
    assert_eq!(rule.num_calls(), 2);
}

#[test]
fn a_finding_with_a_bad_certificate_id_is_an_error_not_a_guess() {
    let rule = mock!(aws_sdk_iot::Client::list_audit_findings).then_http_response(|| {
        let mut f = finding(1);
        f["nonCompliantResource"]["resourceIdentifier"]["deviceCertificateId"] = json!("nope");
        http(
            200,
            &[("content-type", "application/json")],
            json!({"findings": [f]}).to_string(),
        )
    });
    let registry = iot(&[&rule], RetryConfig::disabled());
    let err = run(registry.list_audit_findings(TASK, CHECK, None)).expect_err("bad id");
    assert!(matches!(err, PortError::Other { .. }), "{err:?}");
    assert!(err.message().contains("deviceCertificateId"), "{err}");
}

fn dynamo(rules: &[&Rule]) -> DynamoStore {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "AKID", "SECRET", None, None, "test",
        ))
        .http_client(create_mock_http_client())
        .interceptor(interceptor(rules))
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(conf), "rotations")
}

fn canceled(reasons: &'static [&'static str]) -> HttpResponse {
    let body = json!({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "Message": format!("Transaction cancelled, please refer cancellation reasons for specific reasons [{}]", reasons.join(", ")),
        "CancellationReasons": reasons.iter().map(|r| if *r == "None" { json!({"Code": "None"}) } else { json!({"Code": r, "Message": "recorded"}) }).collect::<Vec<_>>()
    });
    http(
        400,
        &[("content-type", "application/x-amz-json-1.0")],
        body.to_string(),
    )
}

#[test]
fn transaction_cancellation_reasons_name_the_failed_condition() {
    let row = Rotation::requested("r-1", "thing-1", cert_id(1), 1_000, 2_000);
    for (reasons, kind, says) in [
        (
            &["None", "ConditionalCheckFailed"][..],
            "condition_failed",
            "thing thing-1 has an open rotation",
        ),
        (
            &["ConditionalCheckFailed", "None"][..],
            "condition_failed",
            "rotation r-1 exists",
        ),
        (
            &["None", "TransactionConflict"][..],
            "transient",
            "TransactionConflict",
        ),
        (
            &["ThrottlingError", "None"][..],
            "throttled",
            "ThrottlingError",
        ),
    ] {
        let reasons: &'static [&'static str] = Vec::leak(reasons.to_vec());
        let rule = mock!(aws_sdk_dynamodb::Client::transact_write_items)
            .then_http_response(move || canceled(reasons));
        let store = dynamo(&[&rule]);
        let err = run(store.create(&row)).expect_err("canceled");
        assert_eq!(err.kind(), kind, "{reasons:?}: {err}");
        assert!(err.message().contains(says), "{reasons:?}: {err}");
        assert_eq!(err.operation(), Operation::CreateRotation);
    }
}

/// moto does not paginate `ListPrincipalThings`/`ListAttachedPolicies`;
/// AWS does: the page size goes out, the token comes back and goes out
/// again.
#[test]
fn principal_things_and_policies_pass_page_size_and_tokens_through() {
    const ARN: &str = "arn:aws:iot:us-east-1:123456789012:cert/ab";
    let things = |token: Option<&'static str>,
                  names: &'static [&'static str],
                  next: Option<&'static str>| {
        mock!(aws_sdk_iot::Client::list_principal_things)
            .match_requests(move |r| {
                r.next_token() == token && r.max_results() == Some(2) && r.principal() == Some(ARN)
            })
            .then_http_response(move || {
                let mut body = json!({"things": names});
                if let Some(next) = next {
                    body["nextToken"] = json!(next);
                }
                http(
                    200,
                    &[("content-type", "application/json")],
                    body.to_string(),
                )
            })
    };
    let policies = |marker: Option<&'static str>,
                    names: &'static [&'static str],
                    next: Option<&'static str>| {
        mock!(aws_sdk_iot::Client::list_attached_policies)
            .match_requests(move |r| {
                r.marker() == marker && r.page_size() == Some(2) && r.target() == Some(ARN)
            })
            .then_http_response(move || {
                let policies: Vec<Value> = names
                    .iter()
                    .map(|n| json!({"policyName": n, "policyArn": format!("arn:aws:iot:us-east-1:123456789012:policy/{n}")}))
                    .collect();
                let mut body = json!({"policies": policies});
                if let Some(next) = next {
                    body["nextMarker"] = json!(next);
                }
                http(200, &[("content-type", "application/json")], body.to_string())
            })
    };
    let rules = [
        things(None, &["a", "b"], Some("t1")),
        things(Some("t1"), &["c"], None),
        policies(None, &["p1", "p2"], Some("m1")),
        policies(Some("m1"), &["p3"], None),
    ];
    let registry =
        iot(&rules.iter().collect::<Vec<_>>(), RetryConfig::disabled()).with_page_size(2);
    let first = run(registry.list_principal_things(ARN, None)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.items, ["a", "b"]);
    assert_eq!(first.next_token.as_deref(), Some("t1"));
    let last = run(registry.list_principal_things(ARN, first.next_token))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(last.items, ["c"]);
    assert_eq!(last.next_token, None);
    let first = run(registry.list_attached_policies(ARN, None)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.items, ["p1", "p2"]);
    let last = run(registry.list_attached_policies(ARN, first.next_token))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(last.items, ["p3"]);
    assert_eq!(last.next_token, None);
    assert_eq!(
        rules.iter().map(Rule::num_calls).collect::<Vec<_>>(),
        [1, 1, 1, 1]
    );
}

fn sqs(rules: &[&Rule]) -> lambdas::aws::SqsQueue {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "AKID", "SECRET", None, None, "test",
        ))
        .http_client(create_mock_http_client())
        .interceptor(interceptor(rules))
        .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
        .build();
    lambdas::aws::SqsQueue::new(
        aws_sdk_sqs::Client::from_conf(conf),
        "https://sqs.us-east-1.amazonaws.com/123456789012/rotations",
    )
}

/// A partially failed batch: the sender's fault is not retryable, the
/// service's is.
#[test]
fn failed_batch_entries_are_retryable_unless_the_sender_is_at_fault() {
    use lambdas::ports::{QueueMessage, WorkQueue};
    let rule = mock!(aws_sdk_sqs::Client::send_message_batch)
        .match_requests(|r| {
            r.entries().len() == 3
                && r.queue_url() == Some("https://sqs.us-east-1.amazonaws.com/123456789012/rotations")
        })
        .then_http_response(|| {
            let body = json!({
                "Successful": [{"Id": "m-0", "MessageId": "5fea7756-0ea4-451a-a703-a558b933e274", "MD5OfMessageBody": "99914b932bd37a50b983c5e7c90ae93b"}],
                "Failed": [
                    {"Id": "m-1", "SenderFault": true, "Code": "InvalidMessageContents", "Message": "bad character"},
                    {"Id": "m-2", "SenderFault": false, "Code": "InternalError", "Message": "try again"}
                ]
            });
            http(
                200,
                &[("content-type", "application/x-amz-json-1.0")],
                body.to_string(),
            )
        });
    let queue = sqs(&[&rule]);
    let batch: Vec<QueueMessage> = (0..3)
        .map(|i| QueueMessage {
            id: format!("m-{i}"),
            body: "{}".to_owned(),
        })
        .collect();
    let failed = run(queue.send_batch(&batch)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rule.num_calls(), 1);
    let got: Vec<(&str, &str, bool)> = failed
        .iter()
        .map(|f| (f.id.as_str(), f.error.kind(), f.error.is_retryable()))
        .collect();
    assert_eq!(got, [("m-1", "invalid", false), ("m-2", "transient", true)]);
    assert!(failed[0].error.message().contains("bad character"));
}
