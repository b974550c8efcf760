//! The MQTT limits the broker enforces: AWS IoT Core's documented
//! per-connection quotas (the defaults), and the emulator's own bounds on
//! what it queues.
//!
//! AWS IoT Core's values are from the "Message broker and protocol limits
//! and quotas" table of the AWS General Reference, *AWS IoT Core endpoints
//! and quotas* (<https://docs.aws.amazon.com/general/latest/gr/iot-core.html#message-broker-limits>);
//! where that page was not readable in full, the source quoting it is named
//! beside the value.

use std::time::Duration;

/// One limit, as log lines and [`crate::Emulator::limit_refusals`] name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// A PUBLISH payload over [`MqttLimits::max_payload_bytes`] (or a packet
    /// the codec refuses as too large): the connection is closed.
    MessageSize,
    /// More than [`MqttLimits::publishes_per_second`] PUBLISH packets in one
    /// second from one connection: the excess is dropped (no PUBACK, no
    /// rule, no delivery); the connection stays open.
    PublishRate,
    /// More than [`MqttLimits::max_filters_per_subscribe`] topic filters in
    /// one SUBSCRIBE: the connection is closed.
    FiltersPerSubscribe,
    /// A SUBSCRIBE that would take the connection past
    /// [`MqttLimits::max_subscriptions_per_connection`]: SUBACK failure
    /// (0x80) for each filter over the limit.
    SubscriptionsPerConnection,
    /// A topic or topic filter longer than [`MqttLimits::max_topic_bytes`]:
    /// a PUBLISH closes the connection, a filter gets SUBACK failure.
    TopicSize,
    /// A topic or topic filter with more than
    /// [`MqttLimits::max_topic_slashes`] slashes: as [`Limit::TopicSize`].
    TopicDepth,
    /// A CONNECT whose client id is longer than
    /// [`MqttLimits::max_client_id_bytes`]: CONNACK 0x02 (identifier
    /// rejected).
    ClientIdSize,
    /// A subscriber's send queue is full (it does not read): it is
    /// disconnected. The emulator's own bound.
    SendQueue,
    /// A write to a client did not complete within
    /// [`MqttLimits::write_timeout`]: it is disconnected. The emulator's own
    /// bound.
    WriteTimeout,
    /// The rule action queue is full: the rule's invocation is dropped, as
    /// a throttled Lambda action is. The emulator's own bound.
    RuleActionQueue,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Limit; 10] = [
        Limit::MessageSize,
        Limit::PublishRate,
        Limit::FiltersPerSubscribe,
        Limit::SubscriptionsPerConnection,
        Limit::TopicSize,
        Limit::TopicDepth,
        Limit::ClientIdSize,
        Limit::SendQueue,
        Limit::WriteTimeout,
        Limit::RuleActionQueue,
    ];

    /// The name log lines give it (AWS's name for AWS's quotas).
    pub const fn name(self) -> &'static str {
        match self {
            Limit::MessageSize => "message size",
            Limit::PublishRate => "publish requests per second per connection",
            Limit::FiltersPerSubscribe => "topic filters per SUBSCRIBE",
            Limit::SubscriptionsPerConnection => "subscriptions per connection",
            Limit::TopicSize => "topic size",
            Limit::TopicDepth => "maximum number of slashes in topic and topic filter",
            Limit::ClientIdSize => "client ID size",
            Limit::SendQueue => "send queue",
            Limit::WriteTimeout => "write timeout",
            Limit::RuleActionQueue => "rule action queue",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// "Message size": "The payload for every publish request can be no larger
/// than 128 KB. AWS IoT Core rejects publish and connect requests larger
/// than this size." (AWS General Reference, AWS IoT Core quotas, as quoted
/// by an AWS SDK maintainer in aws/aws-iot-device-sdk-cpp-v2#242 and in the
/// AWS IoT blog "Securely ingesting large-sized payloads from IoT devices to
/// the AWS Cloud").
pub const AWS_MAX_PAYLOAD_BYTES: usize = rules::contracts::MAX_PAYLOAD_BYTES;

/// "Publish requests per second per connection": 100, not adjustable
/// (AWS General Reference, AWS IoT Core quotas; the AWS IoT Device SDK for
/// JavaScript v2 `ClientExtendedValidationAndFlowControl.AwsIotCoreDefaults`
/// throttles outbound publishes to the same 100 TPS). A publish over the
/// rate is throttled, not disconnected (AWS re:Post and Classmethod's
/// "behavior of MQTT messages when throttling occurs in AWS IoT Core": the
/// connection stays, a throttled QoS 1 message gets no PUBACK).
pub const AWS_PUBLISHES_PER_SECOND: u32 = 100;

/// "Maximum number of topic filters per SUBSCRIBE": "A single SUBSCRIBE
/// request has a quota of 8 subscriptions" (AWS General Reference, quoted in
/// telefonicaid/iotagent-json#875; the AWS IoT Device SDK for JavaScript v2
/// `AwsIotCoreDefaults`: "No more than 8 subscriptions per SUBSCRIBE
/// packet"). A ninth filter gets the connection closed (dotnet/MQTTnet#1427
/// observed against AWS IoT Core).
pub const AWS_MAX_FILTERS_PER_SUBSCRIBE: usize = 8;

/// "Subscriptions per connection": 50 (AWS General Reference, AWS IoT Core
/// quotas; aws/aws-iot-device-sdk-js#43). Filters over the limit are
/// rejected with a SUBACK failure code (aws-greengrass/aws-greengrass-lite#1176).
pub const AWS_MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 50;

/// "Topic size": 256 bytes of UTF-8, not counting the first three segments
/// of a Basic Ingest topic (`$aws/rules/<rule-name>/`) (AWS General
/// Reference; AWS IoT Device SDK for JavaScript v2 `AwsIotCoreDefaults`:
/// "Topics must be <= 256 bytes in length").
pub const AWS_MAX_TOPIC_BYTES: usize = rules::topic::AWS_MAX_TOPIC_BYTES;

/// "Maximum number of slashes in topic and topic filter": 7, not counting
/// the three of a Basic Ingest prefix `$aws/rules/<rule-name>/` (AWS General
/// Reference; AWS IoT Device SDK for JavaScript v2 `AwsIotCoreDefaults`:
/// "Topics and topic filters have a maximum of 7 slashes (8 segments), not
/// counting any AWS rules prefix"). Other reserved `$aws/` topics count in
/// full.
pub const AWS_MAX_TOPIC_SLASHES: usize = rules::topic::AWS_MAX_TOPIC_SLASHES;

/// "Client ID size": 128 bytes of UTF-8 (AWS General Reference; AWS IoT
/// Device SDK for JavaScript v2 `AwsIotCoreDefaults`: "Client id must be <=
/// 128 bytes in length").
pub const AWS_MAX_CLIENT_ID_BYTES: usize = 128;

/// "Connection inactivity (keep-alive interval)": "a client can request a
/// keep-alive interval between 30 - 1200 seconds [...] AWS IoT will
/// disconnect a client whose keep-alive timer has reached 1.5x the specified
/// keep-alive interval. The default keep-alive interval is 1200 seconds. If a
/// client requests a keep-alive interval of zero, the default keep-alive
/// interval will be used. If a client requests a keep-alive interval greater
/// than 1200 seconds, the default keep-alive interval will be used. If a
/// client requests a keep-alive interval shorter than 30 seconds" it is
/// treated as 30 (AWS service limits page, as quoted in
/// odelot/aws-mqtt-websockets#37 and aws/aws-iot-device-sdk-js#254; "IoT
/// Core will treat any value less than 30 as 30", AWS re:Post answer citing
/// the General Reference).
pub const AWS_MIN_KEEP_ALIVE_SECONDS: u16 = 30;

/// The longest keep-alive AWS IoT Core grants, and what a request of 0 (or
/// of more than this) becomes: 1200 s (see [`AWS_MIN_KEEP_ALIVE_SECONDS`]).
pub const AWS_MAX_KEEP_ALIVE_SECONDS: u16 = 1200;

/// The limits a broker enforces. [`MqttLimits::default`] is AWS IoT Core's
/// documented values and the emulator's own queue bounds; tests lower them
/// to provoke a refusal quickly.
///
/// The per-connection limits never cap the server's throughput: a fleet of
/// thousands of devices (`simulate`) publishes far below 100 messages per
/// second per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MqttLimits {
    /// Largest PUBLISH payload accepted ([`AWS_MAX_PAYLOAD_BYTES`]).
    pub max_payload_bytes: usize,
    /// PUBLISH packets accepted per connection per second
    /// ([`AWS_PUBLISHES_PER_SECOND`]).
    pub publishes_per_second: u32,
    /// Topic filters in one SUBSCRIBE ([`AWS_MAX_FILTERS_PER_SUBSCRIBE`]).
    pub max_filters_per_subscribe: usize,
    /// Distinct topic filters one connection holds
    /// ([`AWS_MAX_SUBSCRIPTIONS_PER_CONNECTION`]).
    pub max_subscriptions_per_connection: usize,
    /// Longest topic or topic filter, bytes ([`AWS_MAX_TOPIC_BYTES`]).
    /// `rules::topic` also refuses anything over AWS's 256 bytes, so this can
    /// be lowered, not raised.
    pub max_topic_bytes: usize,
    /// Most slashes in a topic or filter ([`AWS_MAX_TOPIC_SLASHES`]); as
    /// `max_topic_bytes`, it can be lowered, not raised.
    pub max_topic_slashes: usize,
    /// Longest client id, bytes ([`AWS_MAX_CLIENT_ID_BYTES`]).
    pub max_client_id_bytes: usize,
    /// Shortest keep-alive granted, seconds ([`AWS_MIN_KEEP_ALIVE_SECONDS`]).
    pub min_keep_alive_seconds: u16,
    /// Longest keep-alive granted and what 0 becomes, seconds
    /// ([`AWS_MAX_KEEP_ALIVE_SECONDS`]).
    pub max_keep_alive_seconds: u16,
    /// Messages waiting to be written to one client. AWS documents no such
    /// queue; the emulator's bound is 256 (more than the 100 messages it
    /// keeps for an offline persistent session).
    pub send_queue: usize,
    /// Time allowed for one write to a client (10 s): a client that stops
    /// reading is disconnected. The emulator's own bound.
    pub write_timeout: Duration,
    /// Rule actions waiting for a free invocation slot, beyond the
    /// `rule_concurrency` running (10,000). The emulator's own bound; when
    /// full, a rule's action is dropped (logged), as AWS IoT drops an action
    /// its target throttles.
    pub rule_queue: usize,
    /// Rule actions running at once (1,000, Lambda's default concurrent
    /// executions quota per Region,
    /// <https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>).
    pub rule_concurrency: usize,
}

impl Default for MqttLimits {
    fn default() -> Self {
        MqttLimits {
            max_payload_bytes: AWS_MAX_PAYLOAD_BYTES,
            publishes_per_second: AWS_PUBLISHES_PER_SECOND,
            max_filters_per_subscribe: AWS_MAX_FILTERS_PER_SUBSCRIBE,
            max_subscriptions_per_connection: AWS_MAX_SUBSCRIPTIONS_PER_CONNECTION,
            max_topic_bytes: AWS_MAX_TOPIC_BYTES,
            max_topic_slashes: AWS_MAX_TOPIC_SLASHES,
            max_client_id_bytes: AWS_MAX_CLIENT_ID_BYTES,
            min_keep_alive_seconds: AWS_MIN_KEEP_ALIVE_SECONDS,
            max_keep_alive_seconds: AWS_MAX_KEEP_ALIVE_SECONDS,
            send_queue: 256,
            write_timeout: Duration::from_secs(10),
            rule_queue: 10_000,
            rule_concurrency: 1_000,
        }
    }
}

/// The Basic Ingest prefix, whose three slashes AWS does not count.
const BASIC_INGEST_PREFIX: &str = "$aws/rules/";

impl MqttLimits {
    /// The keep-alive the broker grants for a CONNECT's `requested`
    /// seconds: 0 or more than the maximum becomes the maximum, less than
    /// the minimum becomes the minimum (AWS IoT Core's rule, see
    /// [`AWS_MIN_KEEP_ALIVE_SECONDS`]).
    pub fn keep_alive(&self, requested: u16) -> Duration {
        let max = self.max_keep_alive_seconds;
        let granted = if requested == 0 || requested > max {
            max
        } else {
            requested.max(self.min_keep_alive_seconds)
        };
        Duration::from_secs(u64::from(granted))
    }

    /// The limit a topic or topic filter breaks, if any, with its measure:
    /// size or slash count, Basic Ingest's `$aws/rules/<rule>/` not counted.
    pub fn topic_violation(&self, topic: &str) -> Option<(Limit, usize)> {
        let counted = basic_ingest_rest(topic).unwrap_or(topic);
        if counted.len() > self.max_topic_bytes {
            return Some((Limit::TopicSize, counted.len()));
        }
        let slashes = counted.bytes().filter(|&b| b == b'/').count();
        (slashes > self.max_topic_slashes).then_some((Limit::TopicDepth, slashes))
    }
}

/// What follows `$aws/rules/<rule>/` in a Basic Ingest topic.
fn basic_ingest_rest(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix(BASIC_INGEST_PREFIX)?;
    rest.split_once('/').map(|(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::zero_is_the_default(0, 1200)]
    #[case::below_the_minimum(5, 30)]
    #[case::the_minimum(30, 30)]
    #[case::in_range(600, 600)]
    #[case::the_maximum(1200, 1200)]
    #[case::above_the_maximum(3600, 1200)]
    fn keep_alive_as_aws_grants_it(#[case] requested: u16, #[case] granted: u64) {
        assert_eq!(
            MqttLimits::default().keep_alive(requested),
            Duration::from_secs(granted)
        );
    }

    #[rstest]
    #[case::short("management/topic/thing-1/csr_res", None)]
    #[case::seven_slashes("a/b/c/d/e/f/g/h", None)]
    #[case::eight_slashes("a/b/c/d/e/f/g/h/i", Some((Limit::TopicDepth, 8)))]
    #[case::basic_ingest_prefix_not_counted("$aws/rules/r/a/b/c/d/e/f/g/h", None)]
    #[case::basic_ingest_over("$aws/rules/r/a/b/c/d/e/f/g/h/i", Some((Limit::TopicDepth, 8)))]
    #[case::other_reserved_topics_count_in_full(
        "$aws/events/a/b/c/d/e/f/g",
        Some((Limit::TopicDepth, 8))
    )]
    fn topic_depth(#[case] topic: &str, #[case] violation: Option<(Limit, usize)>) {
        assert_eq!(MqttLimits::default().topic_violation(topic), violation);
    }

    #[test]
    fn topic_size_counts_bytes_after_a_basic_ingest_prefix() {
        let limits = MqttLimits::default();
        let at_limit = "x".repeat(256);
        assert_eq!(limits.topic_violation(&at_limit), None);
        assert_eq!(
            limits.topic_violation(&format!("{at_limit}y")),
            Some((Limit::TopicSize, 257))
        );
        assert_eq!(
            limits.topic_violation(&format!("$aws/rules/rule/{at_limit}")),
            None
        );
    }

    #[test]
    fn every_limit_has_a_distinct_name_and_index() {
        let names: std::collections::HashSet<_> = Limit::ALL.iter().map(|l| l.name()).collect();
        assert_eq!(names.len(), Limit::ALL.len());
        for (i, l) in Limit::ALL.iter().enumerate() {
            assert_eq!(l.index(), i);
        }
    }
}
