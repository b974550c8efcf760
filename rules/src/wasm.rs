//! `wasm-bindgen` exports: thin wrappers over [`crate::js`], each returning
//! the `{ok, value}` / `{ok: false, error}` envelope as a plain JS object.

use serde::Serialize;
use serde_json::Value;
use wasm_bindgen::prelude::*;

use crate::js;

/// Converts the envelope to a JS object (maps as plain objects, never
/// `Map`s). Converting a `serde_json::Value` cannot fail; if it ever did,
/// the caller still gets a structured error rather than an exception.
fn to_js(value: &Value) -> JsValue {
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    value.serialize(&serializer).unwrap_or_else(|e| {
        let fallback = serde_json::json!({
            "ok": false,
            "error": { "kind": "internal", "message": e.to_string() }
        });
        JsValue::from_str(&fallback.to_string())
    })
}

/// Validates a payload (the MQTT message text) against a contract.
#[wasm_bindgen]
pub fn validate(contract: &str, payload: &str) -> JsValue {
    to_js(&js::validate(contract, payload))
}

/// Whether an MQTT topic name matches a topic filter.
#[wasm_bindgen(js_name = topicMatches)]
pub fn topic_matches(filter: &str, topic: &str) -> JsValue {
    to_js(&js::topic_matches(filter, topic))
}

/// Evaluates an IoT SQL statement on one message.
#[wasm_bindgen(js_name = evaluateRule)]
pub fn evaluate_rule(
    statement: &str,
    topic: &str,
    payload: &str,
    client_id: &str,
    principal: &str,
    timestamp_ms: f64,
) -> JsValue {
    to_js(&js::evaluate_rule(
        statement,
        topic,
        payload,
        client_id,
        principal,
        timestamp_ms,
    ))
}

/// Routes one message through the topic rules fleetcert deploys.
#[wasm_bindgen]
pub fn route(
    topic: &str,
    payload: &str,
    client_id: &str,
    principal: &str,
    timestamp_ms: f64,
) -> JsValue {
    to_js(&js::route(
        topic,
        payload,
        client_id,
        principal,
        timestamp_ms,
    ))
}

/// Decides an IoT policy request.
#[wasm_bindgen(js_name = evaluatePolicy)]
pub fn evaluate_policy(policies: &str, action: &str, resource: &str, context: &str) -> JsValue {
    to_js(&js::evaluate_policy(policies, action, resource, context))
}

/// Inspects a PEM CSR (verifying its own signature).
#[wasm_bindgen(js_name = inspectCsr)]
pub fn inspect_csr(pem: &str) -> JsValue {
    to_js(&js::inspect_csr(pem))
}
