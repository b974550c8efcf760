//! `wasm-bindgen` exports: thin wrappers over [`crate::js`], each returning
//! the `{ok, value}` / `{ok: false, error}` envelope as a plain JS object.
//! String arguments are taken as `JsValue`s: a non-string gets a `type`
//! error envelope instead of a trap in the wasm-bindgen glue.

use serde_json::Value;
use wasm_bindgen::prelude::*;

/// Talc instead of the default dlmalloc: the module allocates for every
/// parsed payload and envelope, and dlmalloc was ~6 % of `inbound`'s time.
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

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
/// `Map`s) by handing V8 one JSON string to `JSON.parse`: one string copy
/// across the boundary instead of one call per field and string, which
/// made the export 3-4x slower than the Rust call it wraps. Serializing a
/// `serde_json::Value` cannot fail and its output always parses; if it
/// ever did not, the caller still gets a structured error, not an exception.
fn to_js(value: &Value) -> JsValue {
    // `to_string` writes straight into a buffer; `Display` would go through
    // the `fmt` machinery, one call per fragment.
    let text = serde_json::to_string(value).unwrap_or_default();
    js_sys::JSON::parse(&text).unwrap_or_else(|e| {
        let fallback = serde_json::json!({
            "ok": false,
            "error": { "kind": "internal", "message": format!("{e:?}") }
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

/// What the cloud does with one device message: validate it against the
/// contract its management topic names, then route it (`rules::js::inbound`).
/// `payload` is a `Uint8Array` (a Node `Buffer`, as MQTT clients hand
/// payloads over: one memory copy into wasm) or a string.
#[wasm_bindgen]
pub fn inbound(
    topic: JsValue,
    payload: JsValue,
    client_id: JsValue,
    principal: JsValue,
    timestamp_ms: f64,
) -> JsValue {
    strings!(topic, client_id, principal);
    let payload = if let Some(text) = payload.as_string() {
        text.into_bytes()
    } else if let Some(bytes) = payload.dyn_ref::<js_sys::Uint8Array>() {
        bytes.to_vec()
    } else {
        let found = js_type(&payload);
        return to_js(&serde_json::json!({
            "ok": false,
            "error": {
                "kind": "type",
                "argument": "payload",
                "found": found,
                "message": format!("argument `payload` must be a Uint8Array or a string, found {found}"),
            }
        }));
    };
    to_js(&js::inbound(
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
