//! [`SqsQueue`]: the rotation work queue over SQS `SendMessageBatch` (IAM
//! action `sqs:SendMessage`) to `ROTATION_QUEUE_URL`.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use super::error::{classify, classify_code, unexpected};
use crate::ports::{
    FailedEntry, MAX_QUEUE_BATCH, Operation, PortError, PortResult, QueueMessage, WorkQueue,
};

/// Sends batches to one queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    /// A queue sending to `queue_url` through `client`.
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl WorkQueue for SqsQueue {
    async fn send_batch(&self, messages: &[QueueMessage]) -> PortResult<Vec<FailedEntry>> {
        let op = Operation::SendMessageBatch;
        if messages.is_empty() || messages.len() > MAX_QUEUE_BATCH {
            return Err(PortError::Invalid {
                operation: op,
                message: format!(
                    "a batch holds 1 to {MAX_QUEUE_BATCH} messages, not {}",
                    messages.len()
                ),
            });
        }
        let entries = messages
            .iter()
            .map(|m| {
                SendMessageBatchRequestEntry::builder()
                    .id(&m.id)
                    .message_body(&m.body)
                    .build()
                    .map_err(|e| PortError::Invalid {
                        operation: op,
                        message: e.to_string(),
                    })
            })
            .collect::<PortResult<Vec<_>>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        let failed = out
            .failed()
            .iter()
            .map(|f| {
                let message = match f.message() {
                    Some(m) => format!("{}: {m}", f.code()),
                    None => f.code().to_owned(),
                };
                let error = if f.sender_fault() {
                    PortError::Invalid {
                        operation: op,
                        message,
                    }
                } else {
                    match classify_code(op, Some(f.code()), None, message) {
                        e @ PortError::Throttled { .. } => e,
                        e => PortError::Transient {
                            operation: op,
                            message: e.message().to_owned(),
                        },
                    }
                };
                FailedEntry {
                    id: f.id().to_owned(),
                    error,
                }
            })
            .collect::<Vec<_>>();
        for f in &failed {
            if !messages.iter().any(|m| m.id == f.id) {
                return Err(unexpected(
                    op,
                    format_args!("failed entry {} was not sent", f.id),
                ));
            }
        }
        Ok(failed)
    }
}
