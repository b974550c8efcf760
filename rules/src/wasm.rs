//! `wasm-bindgen` exports: thin wrappers over [`crate::js`], each returning
//! the `{ok, value}` / `{ok: false, error}` envelope as a plain JS object.
//! String arguments are taken as `JsValue`s: a non-string gets a `type`
//! error envelope instead of a trap in the wasm-bindgen glue.

use serde::Serialize;
use serde_json::Value;
use wasm_bindgen::prelude::*;

use crate::js;

/// The JS type of `value`, as `typeof` would say it (`null` for null).
fn js_type(value: &JsValue) -> String {
    if value.is_null() {
        "null".to_owned()
    } else {
        value.js_typeof().as_string().unwrap_or_default()
    }
}

/// `value` as a Rust string, or the envelope of a `type` error naming the
/// argument. wasm-bindgen's own `&str` glue traps (or reads out of bounds)
/// when handed a number or an object, so every string argument is taken as
/// a `JsValue` and checked here.
fn string_arg(name: &str, value: &JsValue) -> Result<String, JsValue> {
    value.as_string().ok_or_else(|| {
        let found = js_type(value);
        to_js(&serde_json::json!({
            "ok": false,
            "error": {
                "kind": "type",
                "argument": name,
                "found": found,
                "message": format!("argument `{name}` must be a string, found {found}"),
            }
        }))
    })
}

/// Binds each named argument to its string value, or returns the `type`
/// error envelope from the function.
macro_rules! strings {
    ($($arg:ident),+) => {
        $( let $arg = match string_arg(stringify!($arg), &$arg) {
            Ok(s) => s,
            Err(envelope) => return envelope,
        }; )+
    };
}

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
pub fn validate(contract: JsValue, payload: JsValue) -> JsValue {
    strings!(contract, payload);
    to_js(&js::validate(&contract, &payload))
}

/// Whether an MQTT topic name matches a topic filter.
#[wasm_bindgen(js_name = topicMatches)]
pub fn topic_matches(filter: JsValue, topic: JsValue) -> JsValue {
    strings!(filter, topic);
    to_js(&js::topic_matches(&filter, &topic))
}

/// Evaluates an IoT SQL statement on one message.
#[wasm_bindgen(js_name = evaluateRule)]
pub fn evaluate_rule(
    statement: JsValue,
    topic: JsValue,
    payload: JsValue,
    client_id: JsValue,
    principal: JsValue,
    timestamp_ms: f64,
) -> JsValue {
    strings!(statement, topic, payload, client_id, principal);
    to_js(&js::evaluate_rule(
        &statement,
        &topic,
        &payload,
        &client_id,
        &principal,
        timestamp_ms,
    ))
}

/// Routes one message through the topic rules fleetcert deploys.
#[wasm_bindgen]
pub fn route(
    topic: JsValue,
    payload: JsValue,
    client_id: JsValue,
    principal: JsValue,
    timestamp_ms: f64,
) -> JsValue {
    strings!(topic, payload, client_id, principal);
    to_js(&js::route(
        &topic,
        &payload,
        &client_id,
        &principal,
        timestamp_ms,
    ))
}

/// Decides an IoT policy request.
#[wasm_bindgen(js_name = evaluatePolicy)]
pub fn evaluate_policy(
    policies: JsValue,
    action: JsValue,
    resource: JsValue,
    context: JsValue,
) -> JsValue {
    strings!(policies, action, resource, context);
    to_js(&js::evaluate_policy(
        &policies, &action, &resource, &context,
    ))
}

/// Inspects a PEM CSR (verifying its own signature).
#[wasm_bindgen(js_name = inspectCsr)]
pub fn inspect_csr(pem: JsValue) -> JsValue {
    strings!(pem);
    to_js(&js::inspect_csr(&pem))
}
