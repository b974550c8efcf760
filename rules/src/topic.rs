//! Topic names of the rotation protocol and MQTT topic-filter matching.

/// The management topics of the rotation protocol live under
/// `management/topic/{clientId}/`; the client id is the thing name.
pub const MANAGEMENT_PREFIX: &str = "management/topic/";

/// The five messages of the rotation protocol, named by their topic suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageKind {
    /// cloud → device: send a CSR.
    CsrReq,
    /// device → cloud: here is the CSR.
    CsrRes,
    /// cloud → device: here is the new certificate.
    Crt,
    /// device → cloud, on the new certificate: it works.
    CrtAck,
    /// device → cloud, on the old certificate: it does not.
    CrtErr,
}

impl MessageKind {
    /// Every kind, in protocol order.
    pub const ALL: [MessageKind; 5] = [
        MessageKind::CsrReq,
        MessageKind::CsrRes,
        MessageKind::Crt,
        MessageKind::CrtAck,
        MessageKind::CrtErr,
    ];

    /// The topic suffix, which is also the contract's name.
    pub const fn suffix(self) -> &'static str {
        match self {
            MessageKind::CsrReq => "csr_req",
            MessageKind::CsrRes => "csr_res",
            MessageKind::Crt => "crt",
            MessageKind::CrtAck => "crt_ack",
            MessageKind::CrtErr => "crt_err",
        }
    }

    /// The kind named by a topic suffix.
    pub fn from_suffix(suffix: &str) -> Option<MessageKind> {
        MessageKind::ALL.into_iter().find(|k| k.suffix() == suffix)
    }
}

/// Prefix of the AWS IoT JITR registration events, followed by the CA
/// certificate id.
pub const JITR_REGISTERED_PREFIX: &str = "$aws/events/certificates/registered/";

/// MQTT 3.1.1 §1.5.3: a UTF-8 encoded string is at most 65,535 bytes.
pub const MQTT_MAX_TOPIC_BYTES: usize = 65_535;

/// AWS IoT Core quota "Topic size": a topic passed to the message broker is
/// at most 256 bytes of UTF-8.
pub const AWS_MAX_TOPIC_BYTES: usize = 256;

/// AWS IoT Core quota "Maximum number of slashes in topic and topic
/// filter": at most 7 forward slashes, i.e. at most 8 levels.
pub const AWS_MAX_TOPIC_SLASHES: usize = 7;

/// The management topic of one message kind for one client (thing):
/// `management/topic/{clientId}/{suffix}`.
pub fn management_topic(client_id: &str, kind: MessageKind) -> String {
    format!("{MANAGEMENT_PREFIX}{client_id}/{}", kind.suffix())
}

/// The client id and message kind of a management topic, or `None` when the
/// topic is not `management/topic/{clientId}/{suffix}` with a non-empty,
/// single-level client id and a known suffix.
pub fn parse_management_topic(topic: &str) -> Option<(&str, MessageKind)> {
    let rest = topic.strip_prefix(MANAGEMENT_PREFIX)?;
    let (client_id, suffix) = rest.split_once('/')?;
    if client_id.is_empty() || client_id.contains(['+', '#']) {
        return None;
    }
    Some((client_id, MessageKind::from_suffix(suffix)?))
}

/// The topic AWS IoT publishes a JITR registration event on for a
/// certificate signed by the given CA:
/// `$aws/events/certificates/registered/{caCertificateId}`.
pub fn jitr_registered_topic(ca_certificate_id: &str) -> String {
    format!("{JITR_REGISTERED_PREFIX}{ca_certificate_id}")
}

/// Why a topic name or topic filter is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// MQTT 3.1.1 §4.7.3: topic names and filters are at least one character.
    #[error("topic is empty")]
    Empty,
    /// MQTT 3.1.1 §1.5.3 (65,535 bytes) or the AWS IoT topic size quota (256 bytes).
    #[error("topic is {len} bytes long, at most {max} are allowed")]
    TooLong {
        /// Length of the topic in bytes.
        len: usize,
        /// The limit that was exceeded.
        max: usize,
    },
    /// AWS IoT quota: at most 7 slashes in a topic or topic filter.
    #[error("topic has {slashes} slashes, at most {max} are allowed")]
    TooManyLevels {
        /// Number of `/` in the topic.
        slashes: usize,
        /// The limit that was exceeded.
        max: usize,
    },
    /// MQTT 3.1.1 §1.5.3: U+0000 must not appear in a UTF-8 string.
    #[error("topic contains a nul character at byte {offset}")]
    NulCharacter {
        /// Byte offset of the nul character.
        offset: usize,
    },
    /// MQTT 3.1.1 §4.7.1: wildcards are not allowed in a topic name.
    #[error("topic name contains wildcard '{wildcard}' at byte {offset}")]
    WildcardInName {
        /// The wildcard character.
        wildcard: char,
        /// Byte offset of the wildcard.
        offset: usize,
    },
    /// MQTT 3.1.1 §4.7.1.2/§4.7.1.3: a wildcard must occupy a whole level, and
    /// `#` must be the last level.
    #[error("misplaced wildcard '{wildcard}' at byte {offset}: it must fill a whole level{}", if *wildcard == '#' { " and be the last level" } else { "" })]
    MisplacedWildcard {
        /// The wildcard character.
        wildcard: char,
        /// Byte offset of the wildcard.
        offset: usize,
    },
}

/// Checks the rules common to names and filters: length (MQTT and AWS),
/// slash count (AWS) and no NUL (MQTT).
fn validate_common(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    let len = topic.len();
    if len > MQTT_MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong {
            len,
            max: MQTT_MAX_TOPIC_BYTES,
        });
    }
    if len > AWS_MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong {
            len,
            max: AWS_MAX_TOPIC_BYTES,
        });
    }
    if let Some(offset) = topic.find('\0') {
        return Err(TopicError::NulCharacter { offset });
    }
    let slashes = topic.bytes().filter(|&b| b == b'/').count();
    if slashes > AWS_MAX_TOPIC_SLASHES {
        return Err(TopicError::TooManyLevels {
            slashes,
            max: AWS_MAX_TOPIC_SLASHES,
        });
    }
    Ok(())
}

/// Validates a topic name (what a message is published on): MQTT 3.1.1
/// §4.7 (non-empty, no NUL, no wildcards, ≤ 65,535 bytes) and the AWS IoT
/// quotas (≤ 256 bytes, ≤ 7 slashes).
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    validate_common(topic)?;
    if let Some(offset) = topic.find(['+', '#']) {
        let wildcard = if topic.as_bytes()[offset] == b'+' {
            '+'
        } else {
            '#'
        };
        return Err(TopicError::WildcardInName { wildcard, offset });
    }
    Ok(())
}

/// Validates a topic filter (what is subscribed to, or a rule's `FROM`):
/// MQTT 3.1.1 §4.7 (`+` fills a whole level, `#` fills the last level,
/// non-empty, no NUL, ≤ 65,535 bytes) and the AWS IoT quotas (≤ 256 bytes,
/// ≤ 7 slashes).
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    validate_common(filter)?;
    let mut offset = 0;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if let Some(i) = level.find(['+', '#']) {
            let wildcard = if level.as_bytes()[i] == b'+' {
                '+'
            } else {
                '#'
            };
            let whole_level = level.len() == 1;
            if !whole_level || (wildcard == '#' && !is_last) {
                return Err(TopicError::MisplacedWildcard {
                    wildcard,
                    offset: offset + i,
                });
            }
        }
        offset += level.len() + 1;
    }
    Ok(())
}

/// Whether a topic filter matches a topic name, per MQTT 3.1.1 §4.7:
///
/// - `+` matches exactly one level, which may be empty (§4.7.1.3);
/// - `#` matches its parent level and any number of levels below it, so
///   `sport/#` matches `sport` (§4.7.1.2);
/// - a topic starting with `$` is not matched by a filter starting with a
///   wildcard (§4.7.2), so `#` does not match `$aws/events/...`;
/// - matching is byte-exact and case-sensitive (§4.7.3).
///
/// Returns `false` for a topic name containing a wildcard and for an empty
/// filter or topic. Does not allocate.
pub fn matches(filter: &str, topic: &str) -> bool {
    if filter.is_empty() || topic.is_empty() || topic.contains(['+', '#']) {
        return false;
    }
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            // `#` must be the last level of the filter (§4.7.1.2).
            (Some("#"), _) => return filter_levels.next().is_none(),
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    // §4.7.1.2 multi-level wildcard
    #[case::hash_matches_children("sport/tennis/player1/#", "sport/tennis/player1/ranking", true)]
    #[case::hash_matches_grandchildren(
        "sport/tennis/player1/#",
        "sport/tennis/player1/score/wimbledon",
        true
    )]
    #[case::hash_matches_parent("sport/#", "sport", true)]
    #[case::hash_alone_matches_all("#", "sport/tennis", true)]
    #[case::hash_matches_empty_last_level("sport/#", "sport/", true)]
    #[case::hash_not_other_branch("sport/tennis/#", "sport/golf", false)]
    // §4.7.1.3 single-level wildcard
    #[case::plus_matches_one_level("sport/tennis/+", "sport/tennis/player1", true)]
    #[case::plus_not_two_levels("sport/tennis/+", "sport/tennis/player1/ranking", false)]
    #[case::plus_not_parent("sport/+", "sport", false)]
    #[case::plus_matches_empty_level("sport/+", "sport/", true)]
    #[case::plus_plus_leading_slash("+/+", "/finance", true)]
    #[case::slash_plus("/+", "/finance", true)]
    #[case::plus_not_leading_slash("+", "/finance", false)]
    #[case::plus_then_hash("+/tennis/#", "sport/tennis/player1", true)]
    #[case::management_rule("management/topic/+/csr_res", "management/topic/thing-1/csr_res", true)]
    #[case::management_rule_other_kind(
        "management/topic/+/csr_res",
        "management/topic/thing-1/crt_ack",
        false
    )]
    // §4.7.2 topics beginning with $
    #[case::hash_not_dollar("#", "$SYS/monitor/Clients", false)]
    #[case::plus_not_dollar("+/monitor/Clients", "$SYS/monitor/Clients", false)]
    #[case::dollar_hash("$SYS/#", "$SYS/monitor/Clients", true)]
    #[case::dollar_plus("$SYS/monitor/+", "$SYS/monitor/Clients", true)]
    #[case::plus_not_aws_events(
        "+/events/certificates/registered/+",
        "$aws/events/certificates/registered/abc",
        false
    )]
    #[case::jitr_exact(
        "$aws/events/certificates/registered/abc",
        "$aws/events/certificates/registered/abc",
        true
    )]
    // §4.7.3 case-sensitive, exact
    #[case::case_sensitive("ACCOUNTS", "Accounts", false)]
    #[case::space_is_a_character("Accounts payable", "Accounts payable", true)]
    #[case::trailing_slash_is_a_level("a/b", "a/b/", false)]
    // wildcards in a topic name never match (§4.7.1: names carry no wildcards)
    #[case::topic_with_wildcard("a/+", "a/+", false)]
    #[case::empty_topic("#", "", false)]
    #[case::hash_not_last_is_malformed("a/#/b", "a/x/b", false)]
    fn matches_follows_mqtt_3_1_1(
        #[case] filter: &str,
        #[case] topic: &str,
        #[case] expected: bool,
    ) {
        assert_eq!(matches(filter, topic), expected, "{filter} vs {topic}");
    }

    #[rstest]
    #[case::plain("sport/tennis", Ok(()))]
    #[case::only_slash("/", Ok(()))] // §4.7.3
    #[case::dollar("$aws/events/certificates/registered/ab12", Ok(()))]
    #[case::empty("", Err(TopicError::Empty))] // §4.7.3
    #[case::plus("a/+/b", Err(TopicError::WildcardInName { wildcard: '+', offset: 2 }))] // §4.7.1
    #[case::hash("a/#", Err(TopicError::WildcardInName { wildcard: '#', offset: 2 }))]
    #[case::nul("a\0b", Err(TopicError::NulCharacter { offset: 1 }))] // §1.5.3
    #[case::eight_slashes("a/b/c/d/e/f/g/h/i", Err(TopicError::TooManyLevels { slashes: 8, max: 7 }))]
    #[case::seven_slashes("a/b/c/d/e/f/g/h", Ok(()))]
    fn topic_names(#[case] topic: &str, #[case] expected: Result<(), TopicError>) {
        assert_eq!(validate_topic_name(topic), expected);
    }

    #[rstest]
    #[case::plain("sport/tennis", Ok(()))]
    #[case::hash_alone("#", Ok(()))] // §4.7.1.2
    #[case::plus_alone("+", Ok(()))] // §4.7.1.3
    #[case::plus_hash("+/tennis/#", Ok(()))]
    #[case::management("management/topic/+/csr_res", Ok(()))]
    #[case::hash_not_last("sport/#/ranking", Err(TopicError::MisplacedWildcard { wildcard: '#', offset: 6 }))] // §4.7.1.2
    #[case::hash_in_level("sport/tennis#", Err(TopicError::MisplacedWildcard { wildcard: '#', offset: 12 }))] // §4.7.1.2
    #[case::plus_in_level("sport+", Err(TopicError::MisplacedWildcard { wildcard: '+', offset: 5 }))] // §4.7.1.3
    #[case::empty("", Err(TopicError::Empty))] // §4.7.3
    #[case::nul("a/\0", Err(TopicError::NulCharacter { offset: 2 }))] // §1.5.3
    fn topic_filters(#[case] filter: &str, #[case] expected: Result<(), TopicError>) {
        assert_eq!(validate_topic_filter(filter), expected);
    }

    #[test]
    fn aws_topic_size_quota_is_256_bytes() {
        let ok = "a".repeat(256);
        let too_long = "a".repeat(257);
        assert_eq!(validate_topic_name(&ok), Ok(()));
        assert_eq!(
            validate_topic_filter(&too_long),
            Err(TopicError::TooLong { len: 257, max: 256 })
        );
        let huge = "a".repeat(70_000);
        assert_eq!(
            validate_topic_name(&huge),
            Err(TopicError::TooLong {
                len: 70_000,
                max: 65_535
            })
        );
    }

    #[test]
    fn management_topics_round_trip() {
        for kind in MessageKind::ALL {
            let topic = management_topic("thing-1", kind);
            assert_eq!(validate_topic_name(&topic), Ok(()));
            assert_eq!(parse_management_topic(&topic), Some(("thing-1", kind)));
        }
        assert_eq!(
            management_topic("thing-1", MessageKind::CsrRes),
            "management/topic/thing-1/csr_res"
        );
    }

    #[rstest]
    #[case::unknown_kind("management/topic/thing-1/reboot")]
    #[case::empty_client("management/topic//csr_res")]
    #[case::extra_level("management/topic/thing-1/csr_res/x")]
    #[case::no_kind("management/topic/thing-1")]
    #[case::other_prefix("devices/thing-1/csr_res")]
    #[case::wildcard_client("management/topic/+/csr_res")]
    fn non_management_topics_are_rejected(#[case] topic: &str) {
        assert_eq!(parse_management_topic(topic), None);
    }

    #[test]
    fn jitr_topic_is_the_documented_one() {
        assert_eq!(
            jitr_registered_topic("0123abcd"),
            "$aws/events/certificates/registered/0123abcd"
        );
    }
}
