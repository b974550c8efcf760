//! `sql::parse`; a statement that parses must print (Display) as text that
//! parses to the same statement, and evaluate on a fixed message without
//! panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rules::sql::{MessageContext, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(statement) = parse(text) else {
        return;
    };
    let printed = statement.to_string();
    match parse(&printed) {
        Ok(again) => assert_eq!(again, statement, "{text:?} printed as {printed:?}"),
        Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
    }
    let payload = serde_json::json!({
        "CSR": "pem", "rotationId": "r1", "n": 5, "f": 1.5, "b": true,
        "nested": {"a": [1, 2, {"b": null}]}, "s": "management"
    });
    for topic in [
        "management/topic/d1/csr_res",
        "management/topic/d1/crt_ack",
        "$aws/events/certificates/registered/ab",
        "a",
    ] {
        let ctx = MessageContext {
            topic,
            payload: &payload,
            client_id: "d1",
            principal: "0123abcd",
            timestamp_ms: 1_700_000_000_000,
        };
        let _ = statement.evaluate(&ctx);
    }
});
