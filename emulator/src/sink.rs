//! Where topic rule actions go: a port the Lambda handlers plug into.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use rules::functions::Function;
use serde_json::Value;
use tokio::sync::mpsc;

/// A boxed future, as [`RuleSink::invoke`] returns.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Takes a topic rule's output to the Lambda function the rule invokes.
/// The broker calls it for each rule action it can queue (at most
/// [`crate::MqttLimits::rule_queue`] waiting; beyond that the action is
/// dropped and logged) and runs the returned futures at most
/// [`crate::MqttLimits::rule_concurrency`] at once, never waiting for one on
/// a connection's reader, as AWS IoT invokes Lambda actions asynchronously.
pub trait RuleSink: Send + Sync + fmt::Debug {
    /// Invokes `function` with the output `event` of the topic rule named
    /// `rule`.
    fn invoke(&self, rule: &str, function: Function, event: Value) -> BoxFuture;
}

/// One rule action the [`ChannelSink`] received.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The rule's name.
    pub rule: String,
    /// The function the rule invokes.
    pub function: Function,
    /// The rule's output.
    pub event: Value,
}

/// A [`RuleSink`] that sends every invocation down a channel (tests, and
/// `emulate` without handlers).
#[derive(Debug)]
pub struct ChannelSink {
    tx: mpsc::UnboundedSender<Invocation>,
}

impl ChannelSink {
    /// A sink and the receiving end of its channel.
    pub fn new() -> (ChannelSink, mpsc::UnboundedReceiver<Invocation>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ChannelSink { tx }, rx)
    }
}

impl RuleSink for ChannelSink {
    fn invoke(&self, rule: &str, function: Function, event: Value) -> BoxFuture {
        // a dropped receiver means nobody listens any more: drop the event
        let _ = self.tx.send(Invocation {
            rule: rule.to_owned(),
            function,
            event,
        });
        Box::pin(async {})
    }
}

/// A [`RuleSink`] that keeps every invocation in memory.
#[derive(Debug, Default)]
pub struct RecordingSink {
    seen: Mutex<Vec<Invocation>>,
}

impl RecordingSink {
    /// Every invocation so far.
    pub fn invocations(&self) -> Vec<Invocation> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl RuleSink for RecordingSink {
    fn invoke(&self, rule: &str, function: Function, event: Value) -> BoxFuture {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Invocation {
                rule: rule.to_owned(),
                function,
                event,
            });
        Box::pin(async {})
    }
}
