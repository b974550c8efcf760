//! SDK errors → [`PortError`], in one place.
//!
//! The classification looks at the error code the service sent
//! ([`ProvideErrorMetadata::code`]), then at the raw HTTP status, then at
//! the kind of [`SdkError`] (timeouts and connection failures are
//! transient). Codes are compared without their namespace
//! (`AWS.SimpleQueueService.`, `com.amazonaws...#`) and without an
//! `Exception` suffix, so `ThrottlingException` and `Throttling` are one.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::ports::{Operation, PortError};

/// Codes meaning "slow down".
const THROTTLED: &[&str] = &[
    "Throttling",
    "Throttled",
    "TooManyRequests",
    "RequestLimitExceeded",
    "RequestThrottled",
    "ProvisionedThroughputExceeded",
    "TransactionThrottled",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "KMSThrottling",
];

/// Codes meaning "try again": the service failed, not the request.
const TRANSIENT: &[&str] = &[
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerError",
    "InternalServer",
    "InternalError",
    "InternalException",
    "ServiceFailure",
    "RequestTimeout",
    "TransactionConflict",
    "TransactionInProgress",
    // ACM PCA's GetCertificate while the certificate is being issued: the
    // back-off of `limits::Limited` polls it.
    "RequestInProgress",
];

/// Codes meaning the resource does not exist.
const NOT_FOUND: &[&str] = &[
    "ResourceNotFound",
    "NotFound",
    "NonExistentQueue",
    "QueueDoesNotExist",
];

/// Codes meaning the request conflicts with the resource's state.
const CONFLICT: &[&str] = &[
    "DeleteConflict",
    "CertificateState",
    "ResourceAlreadyExists",
    "VersionConflict",
    "Conflict",
    "ConflictingResourceUpdate",
];

/// Codes meaning the request itself is wrong.
/// IAM refused the call: IoT says `UnauthorizedException` (401),
/// DynamoDB `AccessDeniedException`, SQS `AccessDenied`, SNS
/// `AuthorizationError` (403).
const ACCESS_DENIED: &[&str] = &["AccessDenied", "Unauthorized", "AuthorizationError"];

const INVALID: &[&str] = &[
    "InvalidRequest",
    "Validation",
    "InvalidParameter",
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "MissingParameter",
    "MalformedPolicy",
    "Serialization",
    "CertificateValidation",
    "TooManyEntriesInBatchRequest",
    "EmptyBatchRequest",
    "BatchEntryIdsNotDistinct",
    "InvalidBatchEntryId",
    "BatchRequestTooLong",
    "InvalidMessageContents",
    "ItemCollectionSizeLimitExceeded",
    // ACM PCA
    "MalformedCSR",
    "InvalidArgs",
    "InvalidArn",
    "InvalidState",
];

/// A service error code without its namespace and `Exception` suffix:
/// `AWS.SimpleQueueService.NonExistentQueue` → `NonExistentQueue`,
/// `ThrottlingException` → `Throttling`.
pub(crate) fn base_code(code: &str) -> &str {
    let code = code.split(':').next().unwrap_or(code);
    let code = code.rsplit(['.', '#']).next().unwrap_or(code);
    code.strip_suffix("Exception").unwrap_or(code)
}

/// Classifies a service's answer from its error code and HTTP status
/// (either may be absent); [`PortError::Other`] when neither says anything
/// known.
pub(crate) fn classify_code(
    operation: Operation,
    code: Option<&str>,
    status: Option<u16>,
    message: String,
) -> PortError {
    let base = code.map(base_code).unwrap_or_default();
    let is = |list: &[&str]| list.iter().any(|c| c.eq_ignore_ascii_case(base));
    if is(THROTTLED) || status == Some(429) {
        PortError::Throttled { operation, message }
    } else if is(NOT_FOUND) {
        PortError::NotFound { operation, message }
    } else if base.eq_ignore_ascii_case("ConditionalCheckFailed")
        || (base.eq_ignore_ascii_case("TransactionCanceled")
            && message.contains("ConditionalCheckFailed"))
    {
        PortError::ConditionFailed { operation, message }
    } else if base.eq_ignore_ascii_case("TransactionCanceled")
        && (message.contains("ThrottlingError") || message.contains("ProvisionedThroughput"))
    {
        PortError::Throttled { operation, message }
    } else if base.eq_ignore_ascii_case("TransactionCanceled")
        && message.contains("TransactionConflict")
    {
        PortError::Transient { operation, message }
    } else if is(ACCESS_DENIED) {
        PortError::AccessDenied { operation, message }
    } else if is(CONFLICT) {
        PortError::Conflict { operation, message }
    } else if is(INVALID) {
        PortError::Invalid { operation, message }
    } else if is(TRANSIENT) || status.is_some_and(|s| s >= 500) {
        PortError::Transient { operation, message }
    } else if code.is_none() && status == Some(404) {
        PortError::NotFound { operation, message }
    } else {
        PortError::Other { operation, message }
    }
}

/// Classifies an SDK error of `operation`.
pub(crate) fn classify<E>(operation: Operation, err: &SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = error_message(err);
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            PortError::Transient { operation, message }
        }
        SdkError::ConstructionFailure(_) => PortError::Invalid { operation, message },
        SdkError::ResponseError(e) => {
            let status = e.raw().status().as_u16();
            if status >= 500 {
                PortError::Transient { operation, message }
            } else if status == 429 {
                PortError::Throttled { operation, message }
            } else if status == 401 || status == 403 {
                PortError::AccessDenied { operation, message }
            } else {
                PortError::Other { operation, message }
            }
        }
        _ => classify_code(
            operation,
            err.code(),
            err.raw_response().map(|r| r.status().as_u16()),
            message,
        ),
    }
}

/// `code: message` when the service sent them; the HTTP status when it
/// answered without a code (not the body: it may be a whole HTML page);
/// else the error chain (timeouts, connection and request errors).
fn error_message<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match (err.code(), err.message(), err.raw_response()) {
        (Some(code), Some(message), _) => format!("{code}: {message}"),
        (Some(code), None, _) => code.to_owned(),
        (None, _, Some(raw)) => format!(
            "HTTP {} without an error code the SDK could read",
            raw.status().as_u16()
        ),
        (None, _, None) => DisplayErrorContext(err).to_string(),
    }
}

/// An answer the adapter cannot use (a field AWS always sends is missing).
pub(crate) fn unexpected(operation: Operation, what: impl std::fmt::Display) -> PortError {
    PortError::Other {
        operation,
        message: format!("unexpected response: {what}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sdk_iot::config::retry::RetryConfig;
    use aws_sdk_iot::config::timeout::TimeoutConfig;
    use aws_sdk_iot::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_mocks::{
        MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock,
    };
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use rstest::rstest;

    use super::*;

    fn config() -> aws_sdk_iot::config::Builder {
        aws_sdk_iot::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
            .retry_config(RetryConfig::disabled())
    }

    fn mocked(rule: &Rule) -> aws_sdk_iot::Client {
        let interceptor = MockResponseInterceptor::new()
            .rule_mode(RuleMode::Sequential)
            .with_rule(rule);
        aws_sdk_iot::Client::from_conf(
            config()
                .http_client(create_mock_http_client())
                .interceptor(interceptor)
                .build(),
        )
    }

    /// An IoT (restJson1) error response as AWS sends it.
    fn response(status: u16, code: Option<&'static str>) -> HttpResponse {
        let body = match code {
            Some(_) => r#"{"message":"recorded"}"#,
            None => "<html>bad gateway</html>",
        };
        let mut r = Response::new(
            StatusCode::try_from(status).expect("status"),
            SdkBody::from(body),
        );
        if let Some(code) = code {
            r.headers_mut().insert("x-amzn-ErrorType", code);
        }
        r.headers_mut().insert("content-type", "application/json");
        r
    }

    async fn describe_with(status: u16, code: Option<&'static str>) -> PortError {
        let rule = mock!(aws_sdk_iot::Client::describe_certificate)
            .then_http_response(move || response(status, code));
        let client = mocked(&rule);
        let err = client
            .describe_certificate()
            .certificate_id("ab")
            .send()
            .await
            .expect_err("the recorded response is an error");
        assert_eq!(rule.num_calls(), 1);
        classify(Operation::DescribeCertificate, &err)
    }

    #[rstest]
    #[case(429, Some("ThrottlingException"), "throttled")]
    #[case(400, Some("ThrottlingException"), "throttled")]
    #[case(400, Some("TooManyRequestsException"), "throttled")]
    #[case(503, Some("ServiceUnavailableException"), "transient")]
    #[case(500, Some("InternalFailureException"), "transient")]
    #[case(502, None, "transient")]
    #[case(404, Some("ResourceNotFoundException"), "not_found")]
    #[case(409, Some("DeleteConflictException"), "conflict")]
    #[case(406, Some("CertificateStateException"), "conflict")]
    #[case(409, Some("ResourceAlreadyExistsException"), "conflict")]
    #[case(400, Some("InvalidRequestException"), "invalid")]
    #[case(401, Some("UnauthorizedException"), "access_denied")]
    #[case(403, Some("AccessDeniedException"), "access_denied")]
    #[case(403, Some("AuthorizationError"), "access_denied")]
    #[case(418, Some("SomethingElse"), "other")]
    #[tokio::test]
    async fn recorded_iot_errors_are_classified(
        #[case] status: u16,
        #[case] code: Option<&'static str>,
        #[case] kind: &str,
    ) {
        let e = describe_with(status, code).await;
        assert_eq!(e.kind(), kind, "{e}");
        assert_eq!(e.operation(), Operation::DescribeCertificate);
        match code {
            Some(code) => assert!(e.message().starts_with(code), "{e}"),
            None => assert!(e.message().starts_with(&format!("HTTP {status}")), "{e}"),
        }
    }

    #[tokio::test]
    async fn connection_refused_is_transient() {
        // A port nobody listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let client = aws_sdk_iot::Client::from_conf(
            config()
                .endpoint_url(format!("http://127.0.0.1:{port}"))
                .build(),
        );
        let err = client
            .describe_thing()
            .thing_name("t")
            .send()
            .await
            .expect_err("nothing listens");
        let e = classify(Operation::DescribeThing, &err);
        assert!(matches!(e, PortError::Transient { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_timeout_is_transient() {
        // Accepts the connection, never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let _held = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let client = aws_sdk_iot::Client::from_conf(
            config()
                .endpoint_url(format!("http://127.0.0.1:{port}"))
                .timeout_config(
                    TimeoutConfig::builder()
                        .operation_timeout(Duration::from_millis(300))
                        .build(),
                )
                .build(),
        );
        let err = client
            .describe_thing()
            .thing_name("t")
            .send()
            .await
            .expect_err("nothing answers");
        server.abort();
        let e = classify(Operation::DescribeThing, &err);
        assert!(matches!(e, PortError::Transient { .. }), "{e}");
    }

    #[rstest]
    #[case("ThrottlingException", "Throttling")]
    #[case("AWS.SimpleQueueService.NonExistentQueue", "NonExistentQueue")]
    #[case(
        "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
        "ConditionalCheckFailed"
    )]
    #[case("ValidationException:http://internal.amazon.com/coral/", "Validation")]
    fn codes_lose_namespace_and_suffix(#[case] code: &str, #[case] base: &str) {
        assert_eq!(base_code(code), base);
    }

    #[rstest]
    #[case("ProvisionedThroughputExceededException", None, "", "throttled")]
    #[case("RequestLimitExceeded", None, "", "throttled")]
    #[case("ConditionalCheckFailedException", Some(400), "", "condition_failed")]
    #[case(
        "TransactionCanceledException",
        Some(400),
        "Transaction cancelled [ConditionalCheckFailed, None]",
        "condition_failed"
    )]
    #[case(
        "TransactionCanceledException",
        Some(400),
        "Transaction cancelled [None, TransactionConflict]",
        "transient"
    )]
    #[case("AWS.SimpleQueueService.NonExistentQueue", Some(400), "", "not_found")]
    #[case(
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        Some(400),
        "",
        "invalid"
    )]
    #[case("InvalidParameter", Some(400), "", "invalid")]
    // ACM PCA: a certificate still being issued is polled again
    #[case("RequestInProgressException", Some(400), "", "transient")]
    #[case("MalformedCSRException", Some(400), "", "invalid")]
    #[case("InvalidStateException", Some(400), "", "invalid")]
    #[case("ResourceNotFoundException", Some(400), "", "not_found")]
    #[case("LimitExceededException", Some(400), "", "other")]
    #[case("SomethingNew", Some(400), "", "other")]
    #[case("SomethingNew", Some(504), "", "transient")]
    fn codes_of_the_other_services(
        #[case] code: &str,
        #[case] status: Option<u16>,
        #[case] message: &str,
        #[case] kind: &str,
    ) {
        let e = classify_code(
            Operation::UpdateRotation,
            Some(code),
            status,
            message.to_owned(),
        );
        assert_eq!(e.kind(), kind, "{code}: {e}");
    }
}
