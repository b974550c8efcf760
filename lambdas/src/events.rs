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
