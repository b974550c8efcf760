use super::*;
use rstest::rstest;
use serde_json::json;

fn ctx<'a>(topic: &'a str, payload: &'a Value) -> MessageContext<'a> {
    MessageContext {
        topic,
        payload,
        client_id: "thing-1",
        principal: "cert-new",
        timestamp_ms: 1_700_000_000_000,
    }
}

fn eval_on(sql: &str, topic: &str, payload: Value) -> Option<Value> {
    let stmt = parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    stmt.evaluate(&ctx(topic, &payload))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[rstest]
#[case::seed_rule("SELECT clientid() as clientid, * FROM 'management/topic/+/csr_res'")]
#[case::lower_case("select * from 'a/#'")]
#[case::mixed_case("SeLeCt a As b FrOm 'a'")]
#[case::nested_field("SELECT state.reported.color FROM 'a/+'")]
#[case::topic_levels(
    "SELECT topic() AS t, topic(1) AS t1, timestamp() AS ts, principal() AS p FROM 'a'"
)]
#[case::literals(
    "SELECT 'x' AS s, 1 AS i, -2.5 AS f, 1e3 AS e, true AS t, false AS n, null AS z FROM 'a'"
)]
#[case::where_guard("SELECT * FROM 'management/topic/+/csr_res' WHERE topic(3) = clientid()")]
#[case::where_all_ops(
    "SELECT * FROM 'a' WHERE a = 1 AND b <> 2 AND c != 3 AND d < 4 AND e <= 5 AND f > 6 AND g >= 7"
)]
#[case::where_bool_logic("SELECT * FROM 'a' WHERE NOT (a = 1 OR b = 2) AND (c = 3 OR NOT d)")]
#[case::where_nested_parens("SELECT * FROM 'a' WHERE ((a = 1))")]
#[case::where_not_not("SELECT * FROM 'a' WHERE NOT NOT a")]
#[case::where_right_nested_and("SELECT * FROM 'a' WHERE a AND (b AND c)")]
#[case::where_compare_of_compare("SELECT * FROM 'a' WHERE (a = 1) = true")]
#[case::jitr("SELECT * FROM '$aws/events/certificates/registered/abc123'")]
fn display_round_trips(#[case] sql: &str) {
    let stmt = parse(sql).expect("parses");
    let printed = stmt.to_string();
    assert_eq!(parse(&printed).as_ref(), Ok(&stmt), "printed as {printed}");
    // Printing is canonical: printing the re-parsed statement changes nothing.
    assert_eq!(parse(&printed).map(|s| s.to_string()), Ok(printed));
}

#[test]
fn display_is_canonical() {
    let stmt = parse(
        "select clientid() as clientid, topic(3) as topicClientId, * from 'management/topic/+/csr_res' \
         where not (a = 1 or b.c <> 'x') and d >= -2",
    )
    .expect("parses");
    insta::assert_snapshot!(stmt.to_string(), @"SELECT clientid() AS clientid, topic(3) AS topicClientId, * FROM 'management/topic/+/csr_res' WHERE NOT (a = 1 OR b.c <> 'x') AND d >= -2");
}

#[test]
fn ast_is_exposed() {
    let stmt = parse("SELECT a.b, clientid() AS c FROM 'x/+' WHERE a.b = 1").expect("parses");
    assert_eq!(stmt.from_filter(), "x/+");
    assert_eq!(
        stmt.select(),
        &[
            SelectItem::Expr {
                expr: Expr::Field(vec!["a".into(), "b".into()]),
                alias: None
            },
            SelectItem::Expr {
                expr: Expr::Call(Builtin::ClientId),
                alias: Some("c".into())
            },
        ]
    );
    assert_eq!(stmt.select()[0].output_name(), Some("b"));
    assert!(matches!(
        stmt.where_clause(),
        Some(Expr::Compare {
            op: CompareOp::Eq,
            ..
        })
    ));
}

#[rstest]
#[case::empty("", SqlError::Unexpected { offset: 0, expected: "SELECT", found: "end of statement".into() })]
#[case::not_select("DELETE FROM 'a'", SqlError::Unexpected { offset: 0, expected: "SELECT", found: "`DELETE`".into() })]
#[case::no_from("SELECT *", SqlError::Unexpected { offset: 8, expected: "`,` or FROM", found: "end of statement".into() })]
#[case::from_unquoted("SELECT * FROM a", SqlError::Unexpected { offset: 14, expected: "a quoted topic filter", found: "`a`".into() })]
#[case::bad_filter("SELECT * FROM 'a/#/b'", SqlError::InvalidFromFilter { offset: 14, source: topic::TopicError::MisplacedWildcard { wildcard: '#', offset: 2 } })]
#[case::unknown_function("SELECT upper(a) AS u FROM 'a'", SqlError::UnsupportedFunction { offset: 7, name: "upper".into() })]
#[case::function_args("SELECT clientid(1) AS c FROM 'a'", SqlError::Unexpected { offset: 16, expected: "`)` (this function takes no arguments)", found: "`1`".into() })]
#[case::topic_zero("SELECT topic(0) AS t FROM 'a'", SqlError::InvalidTopicLevel { offset: 13, found: "0".into() })]
#[case::topic_string("SELECT topic('a') AS t FROM 'a'", SqlError::InvalidTopicLevel { offset: 13, found: "'a'".into() })]
#[case::topic_fraction("SELECT topic(1.5) AS t FROM 'a'", SqlError::InvalidTopicLevel { offset: 13, found: "1.5".into() })]
#[case::missing_alias_call("SELECT clientid() FROM 'a'", SqlError::MissingAlias { offset: 7, item: "clientid()".into() })]
#[case::missing_alias_literal("SELECT 1 FROM 'a'", SqlError::MissingAlias { offset: 7, item: "1".into() })]
#[case::keyword_alias("SELECT a AS from FROM 'a'", SqlError::Unexpected { offset: 12, expected: "an alias name", found: "`from`".into() })]
#[case::keyword_field("SELECT where FROM 'a'", SqlError::Unexpected { offset: 7, expected: "a field, literal or function call", found: "`where`".into() })]
#[case::unterminated("SELECT * FROM 'a", SqlError::UnterminatedString { offset: 14 })]
#[case::doubled_quote("SELECT 'it''s' AS s FROM 'a'", SqlError::UnsupportedEscape { offset: 10 })]
#[case::backslash("SELECT 'a\\n' AS s FROM 'a'", SqlError::UnsupportedEscape { offset: 9 })]
#[case::bad_char("SELECT a + b AS c FROM 'a'", SqlError::InvalidCharacter { offset: 9, found: '+' })]
#[case::double_quoted_ident("SELECT \"a-b\" FROM 'a'", SqlError::InvalidCharacter { offset: 7, found: '"' })]
#[case::bad_number("SELECT 01 AS n FROM 'a'", SqlError::InvalidNumber { offset: 7, text: "01".into() })]
#[case::number_then_letters("SELECT 5x AS n FROM 'a'", SqlError::InvalidNumber { offset: 7, text: "5x".into() })]
#[case::trailing("SELECT * FROM 'a' LIMIT 1", SqlError::Unexpected { offset: 18, expected: "WHERE or end of statement", found: "`LIMIT`".into() })]
#[case::where_trailing("SELECT * FROM 'a' WHERE a = 1 b", SqlError::Unexpected { offset: 30, expected: "an operator or end of statement", found: "`b`".into() })]
#[case::where_empty("SELECT * FROM 'a' WHERE", SqlError::Unexpected { offset: 23, expected: "a field, literal or function call", found: "end of statement".into() })]
#[case::unclosed_paren("SELECT * FROM 'a' WHERE (a = 1", SqlError::Unexpected { offset: 30, expected: "`)` or an operator", found: "end of statement".into() })]
#[case::chained_compare("SELECT * FROM 'a' WHERE a = b = c", SqlError::Unexpected { offset: 30, expected: "an operator or end of statement", found: "`=`".into() })]
#[case::minus_field("SELECT * FROM 'a' WHERE a = -b", SqlError::Unexpected { offset: 29, expected: "a number after `-`", found: "`b`".into() })]
#[case::trailing_dot("SELECT a. FROM 'a'", SqlError::Unexpected { offset: 10, expected: "a field name after `.`", found: "`FROM`".into() })]
#[case::case_expr("SELECT CASE a WHEN 1 THEN 2 END AS c FROM 'a'", SqlError::Unexpected { offset: 12, expected: "`,` or FROM", found: "`a`".into() })]
#[case::non_ascii("SELECT é FROM 'a'", SqlError::InvalidCharacter { offset: 7, found: 'é' })]
fn outside_the_subset_is_a_positioned_error(#[case] sql: &str, #[case] expected: SqlError) {
    assert_eq!(parse(sql), Err(expected));
}

#[test]
fn errors_read_well() {
    let err = parse("SELECT upper(a) AS u FROM 'a'").unwrap_err();
    assert_eq!(
        err.to_string(),
        "at byte 7: unsupported function upper(), expected clientid(), principal(), topic(), topic(n) or timestamp()"
    );
}

#[test]
fn hostile_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!(
        "SELECT * FROM 'a' WHERE {}a{}",
        "(".repeat(5_000),
        ")".repeat(5_000)
    );
    assert!(matches!(
        parse(&deep),
        Err(SqlError::TooDeep {
            max: MAX_NESTING,
            ..
        })
    ));
    let nots = format!("SELECT * FROM 'a' WHERE {}a", "NOT ".repeat(3_000));
    assert!(matches!(parse(&nots), Err(SqlError::TooDeep { .. })));
    let long = format!(
        "SELECT * FROM 'a' WHERE a = '{}'",
        "x".repeat(MAX_STATEMENT_BYTES)
    );
    assert!(matches!(parse(&long), Err(SqlError::TooLong { .. })));
    let ok = format!(
        "SELECT * FROM 'a' WHERE {}a = 1{}",
        "(".repeat(60),
        ")".repeat(60)
    );
    assert!(parse(&ok).is_ok());
}

#[test]
fn the_seed_rule_adds_clientid_to_the_payload() {
    let out = eval_on(
        "SELECT clientid() as clientid, * FROM 'management/topic/+/csr_res'",
        "management/topic/thing-1/csr_res",
        json!({"CSR": "-----BEGIN CERTIFICATE REQUEST-----"}),
    );
    assert_eq!(
        out,
        Some(json!({"clientid": "thing-1", "CSR": "-----BEGIN CERTIFICATE REQUEST-----"}))
    );
}

#[rstest]
#[case::star_first("SELECT *, clientid() AS clientid FROM 'a/+'")]
#[case::star_last("SELECT clientid() AS clientid, * FROM 'a/+'")]
fn explicit_items_win_over_star_whatever_the_order(#[case] sql: &str) {
    let out = eval_on(sql, "a/b", json!({"clientid": "spoofed", "x": 1}));
    assert_eq!(out, Some(json!({"clientid": "thing-1", "x": 1})));
}

#[test]
fn an_undefined_explicit_item_removes_the_star_field_of_that_name() {
    let out = eval_on(
        "SELECT topic(9) AS topicClientId, * FROM 'a/+'",
        "a/b",
        json!({"topicClientId": "spoofed", "x": 1}),
    );
    assert_eq!(out, Some(json!({"x": 1})));
}

#[test]
fn builtins_evaluate_from_the_context() {
    let out = eval_on(
        "SELECT clientid() AS c, principal() AS p, topic() AS t, topic(1) AS t1, topic(3) AS t3, \
         topic(4) AS t4, timestamp() AS ts FROM 'management/topic/+/crt_ack'",
        "management/topic/thing-1/crt_ack",
        json!({}),
    );
    assert_eq!(
        out,
        Some(json!({
            "c": "thing-1",
            "p": "cert-new",
            "t": "management/topic/thing-1/crt_ack",
            "t1": "management",
            "t3": "thing-1",
            "t4": "crt_ack",
            "ts": 1_700_000_000_000_i64,
        }))
    );
}

#[test]
fn topic_level_out_of_range_is_omitted() {
    let out = eval_on(
        "SELECT topic(5) AS t5, topic(1) AS t1 FROM 'a/+'",
        "a/b",
        json!({}),
    );
    assert_eq!(out, Some(json!({"t1": "a"})));
}

#[test]
fn fields_literals_and_missing_fields() {
    let out = eval_on(
        "SELECT state.reported.color, state.missing, n AS number, 'lit' AS s, 2.5 AS f, \
         -3 AS i, true AS b, null AS z, obj FROM 'a'",
        "a",
        json!({"state": {"reported": {"color": "red"}}, "n": 7, "obj": {"k": [1, 2]}}),
    );
    assert_eq!(
        out,
        Some(json!({
            "color": "red",
            "number": 7,
            "s": "lit",
            "f": 2.5,
            "i": -3,
            "b": true,
            "z": null,
            "obj": {"k": [1, 2]},
        }))
    );
}

#[test]
fn field_of_a_non_object_payload_is_undefined() {
    assert_eq!(
        eval_on("SELECT a FROM 'a'", "a", json!([1, 2])),
        Some(json!({}))
    );
}

#[rstest]
#[case::string(json!("hello"), "string")]
#[case::array(json!([1]), "array")]
#[case::null(json!(null), "null")]
#[case::number(json!(1), "number")]
fn star_on_a_non_object_payload_is_an_error(#[case] payload: Value, #[case] found: &'static str) {
    let stmt = parse("SELECT * FROM 'a'").expect("parses");
    assert_eq!(
        stmt.evaluate(&ctx("a", &payload)),
        Err(EvalError::PayloadNotObject { found })
    );
}

#[test]
fn from_filter_that_does_not_match_gives_none() {
    assert_eq!(eval_on("SELECT * FROM 'a/+'", "b/c", json!({})), None);
    // §4.7.2: a `$` topic is not matched by a leading wildcard.
    assert_eq!(
        eval_on("SELECT * FROM '#'", "$aws/events/x", json!({})),
        None
    );
}

#[rstest]
// the topic-spoofing guard
#[case::guard_pass("topic(3) = clientid()", "management/topic/thing-1/csr_res", true)]
#[case::guard_reject("topic(3) = clientid()", "management/topic/thing-2/csr_res", false)]
// numbers compare numerically, across integer and float
#[case::num_eq("n = 7", "t", true)]
#[case::num_eq_float("n = 7.0", "t", true)]
#[case::num_ne("n <> 8", "t", true)]
#[case::num_bang_ne("n != 7", "t", false)]
#[case::num_lt("n < 7.5", "t", true)]
#[case::num_le("n <= 7", "t", true)]
#[case::num_gt("n > -1", "t", true)]
#[case::num_ge("n >= 8", "t", false)]
#[case::big_ints_exact("big = 9007199254740993", "t", true)]
#[case::big_ints_differ("big = 9007199254740992", "t", false)]
#[case::timestamp("timestamp() > 0", "t", true)]
// strings compare by bytes
#[case::str_eq("s = 'abc'", "t", true)]
#[case::str_lt("s < 'abd'", "t", true)]
#[case::str_case("s = 'ABC'", "t", false)]
// booleans from the payload
#[case::bool_field("flag", "t", true)]
#[case::bool_eq("flag = true", "t", true)]
#[case::not_bool("NOT flag", "t", false)]
#[case::and("flag AND n = 7", "t", true)]
#[case::or("n = 1 OR s = 'abc'", "t", true)]
#[case::precedence("n = 1 AND s = 'x' OR flag", "t", true)]
#[case::parens("n = 1 AND (s = 'x' OR flag)", "t", false)]
#[case::not_compare("NOT n = 1", "t", true)]
// undefined is never true, and NOT undefined is still undefined
#[case::missing_field("missing = 1", "t", false)]
#[case::not_missing("NOT missing = 1", "t", false)]
#[case::missing_ne("missing <> 1", "t", false)]
#[case::type_mismatch("n = '7'", "t", false)]
#[case::type_mismatch_ne("n <> '7'", "t", false)]
#[case::non_bool_where("s", "t", false)]
#[case::bool_ordering_undefined("flag > false", "t", false)]
#[case::and_with_undefined("flag AND missing", "t", false)]
#[case::or_with_undefined("flag OR missing", "t", false)]
#[case::null_eq("z = null", "t", true)]
#[case::object_eq("o = o", "t", true)]
#[case::object_lt("o < o", "t", false)]
fn where_conditions(#[case] condition: &str, #[case] topic: &str, #[case] passes: bool) {
    let payload = json!({
        "n": 7, "s": "abc", "flag": true, "z": null, "o": {"a": 1},
        "big": 9_007_199_254_740_993_u64,
    });
    let sql = format!("SELECT n FROM '#' WHERE {condition}");
    let stmt = parse(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let out = stmt.evaluate(&ctx(topic, &payload)).expect("evaluates");
    assert_eq!(out.is_some(), passes, "{sql}");
}
