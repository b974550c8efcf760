//! `policy::PolicyDocument::parse`; a document that parses must serialize
//! to JSON that parses to the same document, and evaluate without panicking
//! for a few requests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rules::policy::{Action, PolicyContext, PolicyDocument, Request, evaluate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = PolicyDocument::parse(text) else {
        return;
    };
    let json = serde_json::to_string(&doc).expect("a policy serializes");
    match PolicyDocument::parse(&json) {
        Ok(again) => assert_eq!(again, doc, "{text:?} serialized as {json:?}"),
        Err(e) => panic!("{text:?} serialized as {json:?}, which does not parse: {e}"),
    }
    let ctx = PolicyContext {
        client_id: "d1",
        thing_name: Some("d1"),
        is_attached: true,
        certificate_cn: Some("d1"),
    };
    let docs = [doc];
    for (action, resource) in [
        (
            Action::Connect,
            "arn:aws:iot:eu-west-1:123456789012:client/d1",
        ),
        (
            Action::Publish,
            "arn:aws:iot:eu-west-1:123456789012:topic/management/topic/d1/csr_res",
        ),
        (
            Action::Subscribe,
            "arn:aws:iot:eu-west-1:123456789012:topicfilter/management/topic/d1/#",
        ),
        (
            Action::Receive,
            "arn:aws:iot:eu-west-1:123456789012:topic/$aws/things/d1/shadow",
        ),
    ] {
        let _ = evaluate(&docs, &Request { action, resource }, &ctx);
    }
});
