//! Inputs the fuzzers (`fuzz/`, run by `scripts/fuzz.sh`) found to break a
//! property, kept as plain tests. Each names its target and what broke.

use rules::sql;

/// fuzz target `sql`: a number literal with more significant digits than an
/// f64 holds was rounded differently by the parser (serde_json's fast float
/// path) than by `str::parse`, so `parse(display(s)) != s`. Caveat: this
/// test build turns on serde_json's `float_roundtrip` through a
/// dev-dependency, which hides the bug here; the wasm build does not, and
/// `rules/wasm-tests/regressions.test.mjs` fails without the fix.
#[test]
fn sql_long_float_literal_survives_display_round_trip() {
    for text in [
        "SELECT 4444444444444444244207398 AS n FROM 'a'",
        "SELECT 4444444444207397100291444444207398 AS n FROM 'a'",
        "SELECT * FROM 'a' WHERE n > -0.30000000000000000000000000001",
        "SELECT 1.00000000000000011102230246251565404236316680908203125 AS n FROM 'a'",
    ] {
        let statement = sql::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let printed = statement.to_string();
        let again = sql::parse(&printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
        assert_eq!(again, statement, "{text} printed as {printed}");
    }
    // The literal is the correctly rounded f64 of its text.
    let statement = sql::parse("SELECT 4444444444444444244207398 AS n FROM 'a'")
        .unwrap_or_else(|e| panic!("{e}"));
    let payload = serde_json::json!({});
    let out = statement
        .evaluate(&sql::MessageContext {
            topic: "a",
            payload: &payload,
            client_id: "c",
            principal: "p",
            timestamp_ms: 0,
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let n = out.and_then(|o| o["n"].as_f64());
    assert_eq!(n, "4444444444444444244207398".parse::<f64>().ok());
}
