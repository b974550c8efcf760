//! [`SnsNotifier`]: support notifications through SNS `Publish` (IAM
//! action `sns:Publish`) to `SUPPORT_TOPIC_ARN`.

use aws_sdk_sns::Client;

use super::error::classify;
use crate::ports::{Notifier, Operation, PortResult};

/// SNS's limit on a subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 100;

/// Publishes support notifications to one topic.
#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    /// A notifier publishing to `topic_arn` through `client`.
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

/// `subject` as SNS accepts it: printable ASCII on one line (anything else
/// becomes a space or `?`), trimmed, at most [`MAX_SUBJECT_CHARS`]
/// characters. `None` when nothing is left.
pub fn sns_subject(subject: &str) -> Option<String> {
    let one_line: String = subject
        .chars()
        .map(|c| match c {
            c if c.is_ascii_control() || c.is_whitespace() => ' ',
            c if c.is_ascii() => c,
            _ => '?',
        })
        .collect();
    let trimmed: String = one_line.trim().chars().take(MAX_SUBJECT_CHARS).collect();
    let trimmed = trimmed.trim_end();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

impl Notifier for SnsNotifier {
    async fn notify(&self, subject: &str, message: &str) -> PortResult<()> {
        let op = Operation::NotifySupport;
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .set_subject(sns_subject(subject))
            .message(message)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_become_one_trimmed_ascii_line() {
        assert_eq!(
            sns_subject("  rotation r1\nfailed: bad\tcsr  ").as_deref(),
            Some("rotation r1 failed: bad csr")
        );
        assert_eq!(sns_subject("thing é").as_deref(), Some("thing ?"));
        assert_eq!(sns_subject(" \n "), None);
        let long = "x".repeat(150);
        assert_eq!(sns_subject(&long).map(|s| s.len()), Some(MAX_SUBJECT_CHARS));
    }
}
