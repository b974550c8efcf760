//! `topic::matches` and the name/filter validators, on a filter and a topic
//! split at the first NUL byte. Checks MQTT 3.1.1 §4.7 properties: a valid
//! name matches itself; `#` matches every valid name not starting with `$`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rules::topic::{matches, validate_topic_filter, validate_topic_name};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (filter, topic) = text.split_once('\0').unwrap_or((text, text));
    let filter_ok = validate_topic_filter(filter).is_ok();
    let topic_ok = validate_topic_name(topic).is_ok();
    let matched = matches(filter, topic);
    if topic_ok {
        assert!(matches(topic, topic), "{topic:?} does not match itself");
        assert_eq!(
            matches("#", topic),
            !topic.starts_with('$'),
            "# vs {topic:?}"
        );
    }
    if matched && filter_ok {
        assert!(
            !topic.contains(['+', '#']),
            "{filter:?} matched wildcard name {topic:?}"
        );
    }
    let _ = validate_topic_name(filter);
    let _ = validate_topic_filter(topic);
});
