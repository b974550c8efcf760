//! The JavaScript-facing API, as plain Rust: strings in, one JSON envelope
//! out. The `wasm` module wraps each function with `wasm-bindgen`; keeping
//! the logic here lets the native tests cover exactly what Node sees.
//!
//! Every function returns either `{"ok": true, "value": …}` or
//! `{"ok": false, "error": {"kind": …, "message": …, …}}`. None panics on
//! any input: a bad input is an `error`, never a thrown exception or an
//! abort of the wasm instance.

use std::sync::OnceLock;

use serde::Serialize;
use serde_json::{Value, json};

use crate::contracts::{self, Contract};
use crate::csr;
use crate::policy::{self, Action, PolicyContext, PolicyDocument, Request};
use crate::routes::{self, Router};
use crate::sql::{self, MessageContext, SqlError};
use crate::topic;

/// Largest input string any function accepts, in bytes (payload, PEM,
/// policy text, statement). Larger inputs are refused before parsing.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// `{"ok": true, "value": value}` for a value that is already JSON: moved
/// into the envelope, not serialized again (payloads carry whole CSRs).
fn ok_json(value: Value) -> Value {
    json!({ "ok": true, "value": value })
}

fn ok(value: impl Serialize) -> Value {
    match serde_json::to_value(value) {
        Ok(value) => json!({ "ok": true, "value": value }),
        Err(e) => fail("internal", e.to_string(), Value::Null),
    }
}

/// `{"ok": false, "error": {"kind", "message", ...extra}}`.
fn fail(kind: &str, message: impl Into<String>, extra: Value) -> Value {
    let mut error = serde_json::Map::new();
    error.insert("kind".into(), kind.into());
    error.insert("message".into(), Value::String(message.into()));
    if let Value::Object(fields) = extra {
        for (k, v) in fields {
            error.entry(k).or_insert(v);
        }
    }
    json!({ "ok": false, "error": error })
}

fn too_large(what: &str, size: usize) -> Option<Value> {
    (size > MAX_INPUT_BYTES).then(|| {
        fail(
            "tooLarge",
            format!("{what} is {size} bytes, over the limit of {MAX_INPUT_BYTES} bytes"),
            json!({ "size": size, "max": MAX_INPUT_BYTES }),
        )
    })
}

fn parse_payload(payload: &str) -> Result<Value, Value> {
    if let Some(err) = too_large("payload", payload.len()) {
        return Err(err);
    }
    serde_json::from_str(payload).map_err(|e| {
        fail(
            "malformed",
            format!("payload is not valid JSON: {e}"),
            json!({ "line": e.line(), "column": e.column() }),
        )
    })
}

/// Validates `payload` against the contract named `contract` (e.g.
/// `csr_res`); the value is the typed message as JSON.
pub fn validate(contract: &str, payload: &str) -> Value {
    let checked =
        Contract::from_name(contract).and_then(|c| contracts::validate(c, payload.as_bytes()));
    match checked {
        Ok(message) => ok_json(message.to_json()),
        Err(e) => json!({ "ok": false, "error": e }),
    }
}

/// Whether `topic` matches the MQTT topic filter `filter`; an invalid
/// filter or topic name is an error (`invalidFilter`, `invalidTopic`).
pub fn topic_matches(filter: &str, topic_name: &str) -> Value {
    if let Err(e) = topic::validate_topic_filter(filter) {
        return fail("invalidFilter", e.to_string(), Value::Null);
    }
    if let Err(e) = topic::validate_topic_name(topic_name) {
        return fail("invalidTopic", e.to_string(), Value::Null);
    }
    ok(topic::matches(filter, topic_name))
}

/// Evaluates an IoT SQL statement on one message. The value is the rule's
/// output object, or `null` when the `FROM` filter or `WHERE` clause does
/// not select the message.
pub fn evaluate_rule(
    statement: &str,
    topic_name: &str,
    payload: &str,
    client_id: &str,
    principal: &str,
    timestamp_ms: f64,
) -> Value {
    let parsed = match sql::parse(statement) {
        Ok(parsed) => parsed,
        Err(e) => return fail("sql", e.to_string(), json!({ "offset": e.offset() })),
    };
    let payload = match parse_payload(payload) {
        Ok(payload) => payload,
        Err(err) => return err,
    };
    let ctx = MessageContext {
        topic: topic_name,
        payload: &payload,
        client_id,
        principal,
        timestamp_ms: timestamp_to_ms(timestamp_ms),
    };
    match parsed.evaluate(&ctx) {
        Ok(out) => ok_json(out.unwrap_or(Value::Null)),
        Err(e) => fail("eval", e.to_string(), Value::Null),
    }
}

/// A JavaScript number of milliseconds as an `i64`: NaN and infinities
/// become 0, anything else is truncated and saturated.
fn timestamp_to_ms(ms: f64) -> i64 {
    if ms.is_finite() {
        // `as` saturates at the i64 bounds.
        ms.trunc() as i64
    } else {
        0
    }
}

/// Routes one message through the rules fleetcert deploys (no JITR CA):
/// the value is a list of `{"function", "event"}`, the Lambda each matching
/// rule invokes and the JSON it is handed.
pub fn route(
    topic_name: &str,
    payload: &str,
    client_id: &str,
    principal: &str,
    timestamp_ms: f64,
) -> Value {
    let payload = match parse_payload(payload) {
        Ok(payload) => payload,
        Err(err) => return err,
    };
    // The deployed statements are compiled once per process (per wasm
    // instance), not on every message: routing is the hot path.
    static ROUTER: OnceLock<Result<Router, SqlError>> = OnceLock::new();
    let router = match ROUTER.get_or_init(|| Router::new(&routes::deployed_rules(&[]))) {
        Ok(router) => router,
        Err(e) => return fail("internal", e.to_string(), Value::Null),
    };
    let ctx = MessageContext {
        topic: topic_name,
        payload: &payload,
        client_id,
        principal,
        timestamp_ms: timestamp_to_ms(timestamp_ms),
    };
    match router.route(&ctx) {
        Ok(routed) => ok_json(Value::Array(
            routed
                .into_iter()
                .map(|(function, event)| json!({ "function": function.name(), "event": event }))
                .collect::<Vec<_>>(),
        )),
        Err(e) => fail("eval", e.to_string(), Value::Null),
    }
}

/// What the cloud does with one message a device publishes, in one call:
/// the contract is named by the management topic's last level (`csr_res`,
/// `crt_ack`, `crt_err`, ...), the payload is validated against it, and a
/// valid message is routed through the deployed rules. The value is
/// `{"contract": name | null, "routed": [{"function", "event"}]}`; a
/// payload the contract refuses is the contract's error and is not routed.
/// A topic outside `management/topic/{clientId}/…` has no contract and is
/// only routed. `payload` is bytes, as an MQTT client hands them over.
pub fn inbound(
    topic_name: &str,
    payload: &[u8],
    client_id: &str,
    principal: &str,
    timestamp_ms: f64,
) -> Value {
    if let Some(err) = too_large("payload", payload.len()) {
        return err;
    }
    let contract = match topic::parse_management_topic(topic_name) {
        Some((_, kind)) => match Contract::from_name(kind.suffix()) {
            Ok(contract) => Some(contract),
            Err(e) => return json!({ "ok": false, "error": e }),
        },
        None => None,
    };
    if let Some(contract) = contract
        && let Err(e) = contracts::validate(contract, payload)
    {
        return json!({ "ok": false, "error": e });
    }
    let text = match std::str::from_utf8(payload) {
        Ok(text) => text,
        Err(e) => {
            return fail(
                "malformed",
                format!("payload is not UTF-8: {e}"),
                json!({ "offset": e.valid_up_to() }),
            );
        }
    };
    let routed = route(topic_name, text, client_id, principal, timestamp_ms);
    match routed {
        Value::Object(mut envelope) if envelope.get("ok") == Some(&Value::Bool(true)) => {
            // Moved, not re-serialized: the events carry the whole payload.
            let routed = envelope.remove("value").unwrap_or(Value::Null);
            let contract = contract.map_or(Value::Null, |c| Value::String(c.to_string()));
            json!({ "ok": true, "value": { "contract": contract, "routed": routed } })
        }
        refused => refused,
    }
}

/// The connection facts a policy decision depends on.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ContextInput {
    client_id: String,
    #[serde(default)]
    thing_name: Option<String>,
    #[serde(default)]
    is_attached: bool,
    #[serde(default)]
    certificate_cn: Option<String>,
}

/// Decides an IoT policy request. `policies` is one policy document or a
/// JSON array of them; `context` is
/// `{"clientId", "thingName"?, "isAttached"?, "certificateCn"?}`. The value
/// is `{"allowed": bool, "decision": "Allow" | {"ExplicitDeny": …} |
/// "ImplicitDeny"}`.
pub fn evaluate_policy(policies: &str, action: &str, resource: &str, context: &str) -> Value {
    if let Some(err) = too_large("policies", policies.len()) {
        return err;
    }
    let docs: Value = match serde_json::from_str(policies) {
        Ok(docs) => docs,
        Err(e) => {
            return fail(
                "policy",
                format!("policies are not valid JSON: {e}"),
                Value::Null,
            );
        }
    };
    let docs: Vec<Value> = match docs {
        Value::Array(docs) => docs,
        doc => vec![doc],
    };
    let mut parsed = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        match PolicyDocument::from_value(doc) {
            Ok(doc) => parsed.push(doc),
            Err(e) => {
                return fail("policy", format!("policy {i}: {e}"), json!({ "policy": i }));
            }
        }
    }
    let Some(action) = Action::from_name(action) else {
        return fail(
            "action",
            format!(
                "unknown action `{action}`, expected iot:Connect, iot:Publish, iot:Subscribe or iot:Receive"
            ),
            Value::Null,
        );
    };
    let context: ContextInput = match serde_json::from_str(context) {
        Ok(context) => context,
        Err(e) => return fail("context", format!("invalid context: {e}"), Value::Null),
    };
    let ctx = PolicyContext {
        client_id: &context.client_id,
        thing_name: context.thing_name.as_deref(),
        is_attached: context.is_attached,
        certificate_cn: context.certificate_cn.as_deref(),
    };
    let decision = policy::evaluate(&parsed, &Request { action, resource }, &ctx);
    ok(json!({ "allowed": decision.is_allowed(), "decision": decision }))
}

/// Inspects a PEM CSR, verifying its own signature: the value is its key
/// algorithm and size, subject CN and public-key fingerprint.
pub fn inspect_csr(pem: &str) -> Value {
    if let Some(err) = too_large("CSR", pem.len()) {
        return err;
    }
    match csr::inspect_csr(pem) {
        Ok(info) => ok(info),
        Err(e) => fail("csr", e.to_string(), Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_kind(v: &Value) -> &str {
        assert_eq!(v["ok"], false, "{v}");
        v["error"]["kind"].as_str().unwrap_or_default()
    }

    #[test]
    fn validate_accepts_seed_wire_format_and_names_bad_fields() {
        assert_eq!(validate("csr_req", "{}")["ok"], true);
        let bad = validate("crt_err", r#"{"error": 5}"#);
        assert_eq!(error_kind(&bad), "invalid");
        assert_eq!(bad["error"]["path"], "/error");
        assert_eq!(error_kind(&validate("nope", "{}")), "unknownContract");
        assert_eq!(error_kind(&validate("csr_req", "{")), "malformed");
    }

    #[test]
    fn topic_matches_checks_both_arguments() {
        assert_eq!(topic_matches("a/+/c", "a/b/c")["value"], true);
        assert_eq!(topic_matches("#", "$aws/events")["value"], false);
        assert_eq!(error_kind(&topic_matches("a/#/c", "a")), "invalidFilter");
        assert_eq!(error_kind(&topic_matches("a", "a/+")), "invalidTopic");
    }

    #[test]
    fn evaluate_rule_reports_sql_offsets_and_payload_errors() {
        let sql = "SELECT clientid() as clientid, * FROM 'management/topic/+/csr_res'";
        let out = evaluate_rule(
            sql,
            "management/topic/d1/csr_res",
            r#"{"CSR":"x","clientid":"spoof"}"#,
            "d1",
            "p",
            0.0,
        );
        assert_eq!(out["value"]["clientid"], "d1");
        let other = evaluate_rule(sql, "elsewhere", "{}", "d1", "p", 0.0);
        assert_eq!(other, json!({ "ok": true, "value": null }));
        let bad = evaluate_rule("SELECT foo() FROM 'a'", "a", "{}", "c", "p", 0.0);
        assert_eq!(error_kind(&bad), "sql");
        assert_eq!(bad["error"]["offset"], 7);
        assert_eq!(
            error_kind(&evaluate_rule(sql, "a", "not json", "c", "p", 0.0)),
            "malformed"
        );
        let array = evaluate_rule(sql, "management/topic/d1/csr_res", "[1]", "d1", "p", 0.0);
        assert_eq!(error_kind(&array), "eval");
        assert_eq!(timestamp_to_ms(f64::NAN), 0);
        assert_eq!(timestamp_to_ms(1e300), i64::MAX);
    }

    #[test]
    fn route_hands_the_csr_issuer_the_rule_output() {
        let out = route(
            "management/topic/d1/csr_res",
            r#"{"CSR":"x"}"#,
            "d1",
            "p",
            1.0,
        );
        let routed = out["value"].as_array().cloned().unwrap_or_default();
        assert_eq!(routed.len(), 1, "{out}");
        assert_eq!(routed[0]["function"], "csr-issuer");
        assert_eq!(routed[0]["event"]["clientid"], "d1");
        assert_eq!(routed[0]["event"]["topicClientId"], "d1");
    }

    #[test]
    fn inbound_validates_against_the_topic_contract_then_routes() {
        let topic = "management/topic/thing-1/csr_res";
        let principal = "0".repeat(64);
        let good = br#"{"CSR":"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n","rotationId":"r-1"}"#;
        let out = inbound(topic, good, "thing-1", &principal, 0.0);
        assert_eq!(out["ok"], true, "{out}");
        assert_eq!(out["value"]["contract"], "csr_res");
        let routed = out["value"]["routed"].as_array().unwrap();
        assert_eq!(routed.len(), 1);
        assert_eq!(routed[0]["function"], "csr-issuer");
        assert_eq!(routed[0]["event"]["clientid"], "thing-1");
        assert_eq!(routed[0]["event"]["rotationId"], "r-1");

        // Refused by the contract: not routed, the contract's error.
        let out = inbound(topic, br#"{"CSR": 7}"#, "thing-1", &principal, 0.0);
        assert_eq!(out["ok"], false);
        assert_eq!(error_kind(&out), "invalid");
        assert_eq!(out["error"]["path"], "/CSR");
        let out = inbound(topic, b"{\"CSR\": \xff}", "thing-1", &principal, 0.0);
        assert_eq!(error_kind(&out), "malformed");

        // No contract for a topic outside the management tree: routed only.
        let out = inbound("telemetry/thing-1", b"{}", "thing-1", &principal, 0.0);
        assert_eq!(out["value"]["contract"], Value::Null);
        assert_eq!(out["value"]["routed"], json!([]));

        let big = vec![b' '; MAX_INPUT_BYTES + 1];
        assert_eq!(
            error_kind(&inbound(topic, &big, "thing-1", &principal, 0.0)),
            "tooLarge"
        );
    }

    #[test]
    fn evaluate_policy_uses_the_device_policy() {
        let doc = serde_json::to_string(&policy::device_policy(&policy::ArnScope {
            partition: "aws".into(),
            region: "eu-west-1".into(),
            account: "123456789012".into(),
        }))
        .unwrap_or_default();
        let own = "arn:aws:iot:eu-west-1:123456789012:topic/management/topic/d1/csr_res";
        let other = "arn:aws:iot:eu-west-1:123456789012:topic/management/topic/d2/csr_res";
        let ctx = r#"{"clientId":"d1","thingName":"d1","isAttached":true}"#;
        assert_eq!(
            evaluate_policy(&doc, "iot:Publish", own, ctx)["value"]["allowed"],
            true
        );
        let denied = evaluate_policy(&doc, "iot:Publish", other, ctx);
        assert_eq!(denied["value"]["decision"], "ImplicitDeny");
        assert_eq!(
            error_kind(&evaluate_policy("{}", "iot:Publish", own, ctx)),
            "policy"
        );
        assert_eq!(
            error_kind(&evaluate_policy(&doc, "iot:Fly", own, ctx)),
            "action"
        );
        assert_eq!(
            error_kind(&evaluate_policy(&doc, "iot:Publish", own, "{}")),
            "context"
        );
    }

    #[test]
    fn inspect_csr_refuses_garbage_and_oversized_input() {
        assert_eq!(error_kind(&inspect_csr("hello")), "csr");
        let huge = "A".repeat(MAX_INPUT_BYTES + 1);
        assert_eq!(error_kind(&inspect_csr(&huge)), "tooLarge");
    }
}
