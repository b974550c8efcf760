//! The Lambda event and response envelopes the handlers read that `rules`
//! has no contract for: the SQS batch event and its partial-failure
//! response, and the EventBridge scheduled event. Fields fleetcert does not
//! use are kept verbatim (`extra`) so that an event round-trips unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The SQS event source's Lambda event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqsEvent {
    /// The batch.
    #[serde(rename = "Records")]
    pub records: Vec<SqsMessage>,
}

/// One message of an [`SqsEvent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsMessage {
    /// The message id (reported back in `batchItemFailures`).
    pub message_id: String,
    /// The message body (for fleetcert a `rotation_work` JSON document).
    pub body: String,
    /// Every other field as SQS sent it.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The SQS partial batch response (`ReportBatchItemFailures`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsBatchResponse {
    /// The messages to redeliver; empty: the whole batch succeeded.
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// One entry of [`SqsBatchResponse::batch_item_failures`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    /// The failed message's [`SqsMessage::message_id`].
    pub item_identifier: String,
}

/// The EventBridge scheduled event (`"detail-type": "Scheduled Event"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledEvent {
    /// The event id.
    pub id: String,
    /// `Scheduled Event`.
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// `aws.events`.
    pub source: String,
    /// The event time, RFC 3339.
    pub time: String,
    /// Every other field as EventBridge sent it.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A `ListAuditFindings` response as the AWS API returns it (JSON).
/// Findings keep only the fields fleetcert reads (`rules` drops the rest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAuditFindingsResponse {
    /// The page's findings.
    pub findings: Vec<rules::contracts::AuditFinding>,
    /// The next page's token, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// A `DescribeCertificate` response as the AWS API returns it (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeCertificateResponse {
    /// The description.
    pub certificate_description: CertificateDescriptionJson,
}

/// `certificateDescription` of a [`DescribeCertificateResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateDescriptionJson {
    /// The ARN.
    pub certificate_arn: String,
    /// The id.
    pub certificate_id: String,
    /// The registering CA, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate_id: Option<String>,
    /// The status.
    pub status: String,
    /// The PEM.
    pub certificate_pem: String,
    /// Validity, in epoch seconds.
    pub validity: ValidityJson,
    /// Every other field as AWS sent it.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `validity` of a certificate description: epoch seconds (fractional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidityJson {
    /// Start of validity.
    pub not_before: f64,
    /// End of validity.
    pub not_after: f64,
}

impl From<CertificateDescriptionJson> for crate::ports::CertificateDescription {
    fn from(d: CertificateDescriptionJson) -> Self {
        // Saturating float → integer conversion: out-of-range times clamp.
        let ms = |s: f64| (s * 1000.0).round() as i64;
        Self {
            status: crate::ports::CertificateStatus::from(d.status.as_str()),
            not_before_ms: ms(d.validity.not_before),
            not_after_ms: ms(d.validity.not_after),
            certificate_id: d.certificate_id,
            certificate_arn: d.certificate_arn,
            certificate_pem: d.certificate_pem,
            ca_certificate_id: d.ca_certificate_id,
        }
    }
}
