use rstest::rstest;

use super::*;
use crate::topic::MessageKind;

fn scope() -> ArnScope {
    ArnScope {
        partition: "aws".into(),
        region: "eu-west-1".into(),
        account: "123456789012".into(),
    }
}

/// Thing `A`, connected as `A` with a certificate attached to it.
fn thing_a() -> PolicyContext<'static> {
    PolicyContext {
        client_id: "A",
        thing_name: Some("A"),
        is_attached: true,
        certificate_cn: Some("A"),
    }
}

fn mgmt(thing: &str, kind: MessageKind) -> String {
    format!("management/topic/{thing}/{}", kind.suffix())
}

#[derive(Debug, Clone, Copy)]
enum Res {
    Client,
    Topic,
    Filter,
}

fn arn(res: Res, name: &str) -> String {
    match res {
        Res::Client => scope().client_arn(name),
        Res::Topic => scope().topic_arn(name),
        Res::Filter => scope().topicfilter_arn(name),
    }
}

fn decide(
    policies: &[PolicyDocument],
    action: Action,
    resource: &str,
    ctx: &PolicyContext<'_>,
) -> Decision {
    evaluate(policies, &Request { action, resource }, ctx)
}

#[rstest]
// What thing A needs for a rotation.
#[case::connect_as_self(Action::Connect, Res::Client, "A".to_owned(), true)]
#[case::publish_csr_res(Action::Publish, Res::Topic, mgmt("A", MessageKind::CsrRes), true)]
#[case::publish_crt_ack(Action::Publish, Res::Topic, mgmt("A", MessageKind::CrtAck), true)]
#[case::publish_crt_err(Action::Publish, Res::Topic, mgmt("A", MessageKind::CrtErr), true)]
#[case::subscribe_csr_req(Action::Subscribe, Res::Filter, mgmt("A", MessageKind::CsrReq), true)]
#[case::subscribe_crt(Action::Subscribe, Res::Filter, mgmt("A", MessageKind::Crt), true)]
#[case::receive_csr_req(Action::Receive, Res::Topic, mgmt("A", MessageKind::CsrReq), true)]
#[case::receive_crt(Action::Receive, Res::Topic, mgmt("A", MessageKind::Crt), true)]
// Another thing's identity and topics.
#[case::connect_as_other(Action::Connect, Res::Client, "B".to_owned(), false)]
#[case::connect_as_prefix(Action::Connect, Res::Client, "AB".to_owned(), false)]
#[case::publish_other_csr_res(Action::Publish, Res::Topic, mgmt("B", MessageKind::CsrRes), false)]
#[case::publish_other_crt_ack(Action::Publish, Res::Topic, mgmt("B", MessageKind::CrtAck), false)]
#[case::subscribe_other_csr_req(
    Action::Subscribe,
    Res::Filter,
    mgmt("B", MessageKind::CsrReq),
    false
)]
#[case::receive_other_crt(Action::Receive, Res::Topic, mgmt("B", MessageKind::Crt), false)]
// MQTT wildcards are literal characters in a policy.
#[case::subscribe_plus(Action::Subscribe, Res::Filter, "management/topic/+/csr_req".to_owned(), false)]
#[case::subscribe_hash(Action::Subscribe, Res::Filter, "#".to_owned(), false)]
#[case::subscribe_own_hash(Action::Subscribe, Res::Filter, "management/topic/A/#".to_owned(), false)]
// Directions the device must not take.
#[case::publish_own_csr_req(Action::Publish, Res::Topic, mgmt("A", MessageKind::CsrReq), false)]
#[case::publish_own_crt(Action::Publish, Res::Topic, mgmt("A", MessageKind::Crt), false)]
#[case::subscribe_own_csr_res(
    Action::Subscribe,
    Res::Filter,
    mgmt("A", MessageKind::CsrRes),
    false
)]
#[case::receive_own_crt_ack(Action::Receive, Res::Topic, mgmt("A", MessageKind::CrtAck), false)]
#[case::retain_publish(
    Action::RetainPublish,
    Res::Topic,
    mgmt("A", MessageKind::CsrRes),
    false
)]
#[case::publish_outside(Action::Publish, Res::Topic, "A/csr_res".to_owned(), false)]
#[case::publish_suffix(Action::Publish, Res::Topic, format!("{}/x", mgmt("A", MessageKind::CsrRes)), false)]
fn device_policy_grants_only_own_topics(
    #[case] action: Action,
    #[case] res: Res,
    #[case] name: String,
    #[case] allowed: bool,
) {
    let policy = [device_policy(&scope())];
    let decision = decide(&policy, action, &arn(res, &name), &thing_a());
    assert_eq!(
        decision.is_allowed(),
        allowed,
        "{action} {name}: {decision:?}"
    );
}

#[rstest]
#[case::connect(Action::Connect, Res::Client, "A".to_owned())]
#[case::publish(Action::Publish, Res::Topic, mgmt("A", MessageKind::CsrRes))]
#[case::subscribe(Action::Subscribe, Res::Filter, mgmt("A", MessageKind::CsrReq))]
#[case::receive(Action::Receive, Res::Topic, mgmt("A", MessageKind::Crt))]
fn device_policy_denies_everything_when_not_attached(
    #[case] action: Action,
    #[case] res: Res,
    #[case] name: String,
    #[values(true, false)] thing_known: bool,
) {
    let ctx = PolicyContext {
        thing_name: thing_known.then_some("A"),
        is_attached: false,
        ..thing_a()
    };
    let policy = [device_policy(&scope())];
    assert_eq!(
        decide(&policy, action, &arn(res, &name), &ctx),
        Decision::ImplicitDeny
    );
}

#[test]
fn device_policy_has_no_rights_in_another_partition_or_account() {
    let policy = [device_policy(&scope())];
    let other = ArnScope {
        account: "210987654321".into(),
        ..scope()
    };
    let resource = other.topic_arn(&mgmt("A", MessageKind::CsrRes));
    assert!(!decide(&policy, Action::Publish, &resource, &thing_a()).is_allowed());
}

#[test]
fn device_policy_snapshot() {
    insta::assert_json_snapshot!(device_policy(&ArnScope::cloudformation()));
}

/// Infra wraps every string in `Fn::Sub`, escaping the IoT variables as
/// `${!iot:…}`. This stands in for CloudFormation: it fails on any `${`
/// that is neither an escape nor a known pseudo parameter.
fn fn_sub(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        if let Some(literal) = after.strip_prefix('!') {
            out.push_str("${");
            rest = literal;
            continue;
        }
        let end = after.find('}').ok_or("unterminated")?;
        out.push_str(match &after[..end] {
            "AWS::Partition" => "aws",
            "AWS::Region" => "eu-west-1",
            "AWS::AccountId" => "123456789012",
            other => return Err(format!("unknown parameter {other}")),
        });
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[test]
fn device_policy_survives_fn_sub() {
    let synthesized = serde_json::to_string(&device_policy(&ArnScope::cloudformation())).unwrap();
    let escaped = synthesized.replace("${iot:", "${!iot:");
    let deployed = fn_sub(&escaped).unwrap();
    let deployed = PolicyDocument::parse(&deployed).unwrap();
    assert_eq!(deployed, device_policy(&scope()));
    let resource = scope().topic_arn(&mgmt("A", MessageKind::CsrRes));
    assert!(decide(&[deployed], Action::Publish, &resource, &thing_a()).is_allowed());
}

#[test]
fn device_policy_fits_aws_size_limit_with_the_longest_scope() {
    let scope = ArnScope {
        partition: "aws-iso-b".into(),
        region: "ap-southeast-5".into(),
        account: "123456789012".into(),
    };
    let size = device_policy(&scope).size();
    assert!(size <= MAX_POLICY_CHARS, "{size}");
}

#[test]
fn explicit_deny_beats_allow_in_any_policy() {
    let allow_all = PolicyDocument::parse(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}}"#,
    )
    .unwrap();
    let deny_b = PolicyDocument::parse(
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"iot:Connect","Resource":"*"},
            {"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/management/topic/B/*"}]}"#,
    )
    .unwrap();
    let policies = [allow_all, deny_b];
    let b = scope().topic_arn(&mgmt("B", MessageKind::CsrRes));
    assert_eq!(
        decide(&policies, Action::Publish, &b, &thing_a()),
        Decision::ExplicitDeny {
            policy: 1,
            statement: 1
        }
    );
    let a = scope().topic_arn(&mgmt("A", MessageKind::CsrRes));
    assert_eq!(
        decide(&policies, Action::Publish, &a, &thing_a()),
        Decision::Allow
    );
}

#[test]
fn no_policy_is_implicit_deny() {
    assert_eq!(
        decide(&[], Action::Connect, &scope().client_arn("A"), &thing_a()),
        Decision::ImplicitDeny
    );
}

fn allow(action: &str, resource: &str) -> PolicyDocument {
    PolicyDocument::new(vec![
        Statement::new(Effect::Allow, [action], [resource]).unwrap(),
    ])
}

#[rstest]
#[case::star_matches_slashes(
    "arn:aws:iot:*:*:topic/a/*",
    "arn:aws:iot:eu-west-1:1:topic/a/b/c",
    true
)]
#[case::star_matches_empty("arn:aws:iot:*:*:topic/a/*", "arn:aws:iot:eu-west-1:1:topic/a/", true)]
#[case::star_in_middle("arn:aws:iot:*:*:topic/a/*/z", "arn:aws:iot:x:1:topic/a/b/c/z", true)]
#[case::star_in_middle_no_suffix(
    "arn:aws:iot:*:*:topic/a/*/z",
    "arn:aws:iot:x:1:topic/a/b/c/y",
    false
)]
#[case::question_one_char("arn:aws:iot:*:*:topic/dev-??", "arn:aws:iot:x:1:topic/dev-42", true)]
#[case::question_not_two("arn:aws:iot:*:*:topic/dev-?", "arn:aws:iot:x:1:topic/dev-42", false)]
#[case::question_not_zero("arn:aws:iot:*:*:topic/dev-?", "arn:aws:iot:x:1:topic/dev-", false)]
#[case::resources_case_sensitive("arn:aws:iot:*:*:topic/Dev", "arn:aws:iot:x:1:topic/dev", false)]
#[case::plus_is_literal(
    "arn:aws:iot:*:*:topicfilter/a/+",
    "arn:aws:iot:x:1:topicfilter/a/b",
    false
)]
#[case::plus_matches_plus(
    "arn:aws:iot:*:*:topicfilter/a/+",
    "arn:aws:iot:x:1:topicfilter/a/+",
    true
)]
#[case::hash_is_literal(
    "arn:aws:iot:*:*:topicfilter/#",
    "arn:aws:iot:x:1:topicfilter/a",
    false
)]
#[case::escaped_star_is_literal("arn:aws:iot:*:*:topic/${*}", "arn:aws:iot:x:1:topic/a", false)]
#[case::escaped_star_matches_star("arn:aws:iot:*:*:topic/${*}", "arn:aws:iot:x:1:topic/*", true)]
#[case::everything("*", "arn:aws:iot:x:1:client/anything", true)]
fn resource_wildcards(#[case] pattern: &str, #[case] resource: &str, #[case] allowed: bool) {
    let decision = decide(
        &[allow("iot:Publish", pattern)],
        Action::Publish,
        resource,
        &thing_a(),
    );
    assert_eq!(decision.is_allowed(), allowed);
}

#[rstest]
#[case::star("*", Action::Receive, true)]
#[case::service_star("iot:*", Action::Subscribe, true)]
#[case::prefix("iot:Pub*", Action::Publish, true)]
#[case::prefix_other("iot:Pub*", Action::Subscribe, false)]
#[case::question("iot:?onnect", Action::Connect, true)]
#[case::case_insensitive("IOT:publish", Action::Publish, true)]
#[case::retain_is_not_publish("iot:Publish", Action::RetainPublish, false)]
#[case::other_service("greengrass:*", Action::Connect, false)]
fn action_wildcards(#[case] pattern: &str, #[case] action: Action, #[case] allowed: bool) {
    let decision = decide(
        &[allow(pattern, "*")],
        action,
        "arn:aws:iot:x:1:topic/t",
        &thing_a(),
    );
    assert_eq!(decision.is_allowed(), allowed);
}

#[test]
fn action_names_round_trip() {
    for action in Action::ALL {
        assert_eq!(Action::from_name(action.as_str()), Some(action));
    }
    assert_eq!(Action::from_name("iot:publish"), Some(Action::Publish));
    assert_eq!(Action::from_name("iot:Nope"), None);
}

#[rstest]
#[case::client_id("client/${iot:ClientId}", "client/A", true)]
#[case::client_id_other("client/${iot:ClientId}", "client/B", false)]
#[case::cn("topic/cn/${iot:Certificate.Subject.CommonName}", "topic/cn/A", true)]
#[case::is_attached("topic/${iot:Connection.Thing.IsAttached}", "topic/true", true)]
#[case::mixed_with_wildcard("topic/${iot:ClientId}/*", "topic/A/x/y", true)]
fn policy_variables_substitute(
    #[case] pattern: &str,
    #[case] resource: &str,
    #[case] allowed: bool,
) {
    let policy = allow("iot:*", &format!("arn:aws:iot:x:1:{pattern}"));
    let resource = format!("arn:aws:iot:x:1:{resource}");
    assert_eq!(
        decide(&[policy], Action::Publish, &resource, &thing_a()).is_allowed(),
        allowed
    );
}

#[test]
fn substituted_values_are_literal_not_wildcards() {
    let ctx = PolicyContext {
        client_id: "*",
        ..thing_a()
    };
    let policy = allow("iot:Publish", "arn:aws:iot:x:1:topic/${iot:ClientId}/out");
    assert!(
        !decide(
            std::slice::from_ref(&policy),
            Action::Publish,
            "arn:aws:iot:x:1:topic/B/out",
            &ctx
        )
        .is_allowed()
    );
    assert!(
        decide(
            &[policy],
            Action::Publish,
            "arn:aws:iot:x:1:topic/*/out",
            &ctx
        )
        .is_allowed()
    );
}

#[test]
fn undefined_variable_statement_matches_nothing_allow_or_deny() {
    let no_thing = PolicyContext {
        thing_name: None,
        certificate_cn: None,
        ..thing_a()
    };
    let policy = PolicyDocument::parse(
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
            {"Effect":"Allow","Action":"iot:Publish","Resource":"*"},
            {"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/${iot:Certificate.Subject.CommonName}"}]}"#,
    )
    .unwrap();
    let policies = [policy];
    assert_eq!(
        decide(
            &policies,
            Action::Connect,
            "arn:aws:iot:x:1:client/A",
            &no_thing
        ),
        Decision::ImplicitDeny
    );
    // the Deny's variable is undefined: it denies nothing, the Allow stands
    assert_eq!(
        decide(
            &policies,
            Action::Publish,
            "arn:aws:iot:x:1:topic/A",
            &no_thing
        ),
        Decision::Allow
    );
    assert_eq!(
        decide(
            &policies,
            Action::Publish,
            "arn:aws:iot:x:1:topic/A",
            &thing_a()
        ),
        Decision::ExplicitDeny {
            policy: 0,
            statement: 2
        }
    );
}

#[rstest]
#[case::string_equals(r#"{"StringEquals":{"iot:ClientId":"A"}}"#, true)]
#[case::string_equals_any_of(r#"{"StringEquals":{"iot:ClientId":["X","A"]}}"#, true)]
#[case::string_equals_no_wildcards(r#"{"StringEquals":{"iot:ClientId":"*"}}"#, false)]
#[case::string_equals_variable(
    r#"{"StringEquals":{"iot:ClientId":"${iot:Connection.Thing.ThingName}"}}"#,
    true
)]
#[case::string_like(r#"{"StringLike":{"iot:Certificate.Subject.CommonName":"?"}}"#, true)]
#[case::string_like_miss(r#"{"StringLike":{"iot:ClientId":"B*"}}"#, false)]
#[case::bool_true(r#"{"Bool":{"iot:Connection.Thing.IsAttached":"true"}}"#, true)]
#[case::bool_json_true(r#"{"Bool":{"iot:Connection.Thing.IsAttached":true}}"#, true)]
#[case::bool_false(r#"{"Bool":{"iot:Connection.Thing.IsAttached":"false"}}"#, false)]
#[case::all_must_hold(
    r#"{"Bool":{"iot:Connection.Thing.IsAttached":"true"},"StringEquals":{"iot:ClientId":"B"}}"#,
    false
)]
fn conditions(#[case] condition: &str, #[case] allowed: bool) {
    let text = format!(
        r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Action":"*","Resource":"*","Condition":{condition}}}}}"#
    );
    let policy = PolicyDocument::parse(&text).unwrap();
    assert_eq!(
        decide(
            &[policy],
            Action::Connect,
            "arn:aws:iot:x:1:client/A",
            &thing_a()
        )
        .is_allowed(),
        allowed
    );
}

#[test]
fn condition_on_undefined_key_does_not_hold() {
    let policy = PolicyDocument::parse(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*",
            "Condition":{"StringLike":{"iot:Connection.Thing.ThingName":"*"}}}}"#,
    )
    .unwrap();
    let no_thing = PolicyContext {
        thing_name: None,
        ..thing_a()
    };
    let resource = "arn:aws:iot:x:1:client/A";
    assert!(
        decide(
            std::slice::from_ref(&policy),
            Action::Connect,
            resource,
            &thing_a()
        )
        .is_allowed()
    );
    assert!(!decide(&[policy], Action::Connect, resource, &no_thing).is_allowed());
}

#[test]
fn aws_json_round_trips() {
    let aws = r#"{
        "Version": "2012-10-17",
        "Statement": {
            "Sid": "one",
            "Effect": "Deny",
            "Action": "iot:Publish",
            "Resource": ["arn:aws:iot:*:*:topic/a", "arn:aws:iot:*:*:topic/b"],
            "Condition": {"StringLike": {"iot:ClientId": ["x*", "y?"]}, "Bool": {"iot:Connection.Thing.IsAttached": true}}
        }
    }"#;
    let doc = PolicyDocument::parse(aws).unwrap();
    let json = serde_json::to_value(&doc).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "one",
                "Effect": "Deny",
                "Action": "iot:Publish",
                "Resource": ["arn:aws:iot:*:*:topic/a", "arn:aws:iot:*:*:topic/b"],
                "Condition": {
                    "Bool": {"iot:Connection.Thing.IsAttached": "true"},
                    "StringLike": {"iot:ClientId": ["x*", "y?"]}
                }
            }]
        })
    );
    let again: PolicyDocument = serde_json::from_value(json).unwrap();
    assert_eq!(again, doc);
}

#[test]
fn device_policy_round_trips() {
    let doc = device_policy(&scope());
    let text = serde_json::to_string_pretty(&doc).unwrap();
    assert_eq!(PolicyDocument::parse(&text).unwrap(), doc);
}

fn with_statement(statement: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{statement}]}}"#)
}

const OK: &str = r#""Effect":"Allow","Action":"iot:Connect","Resource":"*""#;

#[rstest]
#[case::not_json("{", "policy is not valid JSON at line 1, column 1: EOF while parsing an object at line 1 column 1".into())]
#[case::not_object("[]", "policy: expected an object, found a list".into())]
#[case::missing_version(r#"{"Statement":[]}"#, "policy: missing field `Version`".into())]
#[case::old_version(r#"{"Version":"2008-10-17","Statement":[]}"#, "Version: unsupported policy version `2008-10-17`, expected `2012-10-17`".into())]
#[case::version_type(r#"{"Version":2012,"Statement":[]}"#, "Version: expected a string, found a number".into())]
#[case::missing_statement(r#"{"Version":"2012-10-17"}"#, "policy: missing field `Statement`".into())]
#[case::empty_statement(&with_statement(""), "Statement: must not be empty".into())]
#[case::unknown_top(r#"{"Version":"2012-10-17","Statement":[],"Extra":1}"#, "policy: unsupported field `Extra`".into())]
#[case::statement_type(&with_statement("1"), "Statement[0]: expected an object, found a number".into())]
#[case::not_action(&with_statement(r#"{"Effect":"Allow","NotAction":"iot:Connect","Resource":"*"}"#), "Statement[0]: unsupported field `NotAction`".into())]
#[case::principal(&with_statement(&format!(r#"{{{OK},"Principal":"*"}}"#)), "Statement[0]: unsupported field `Principal`".into())]
#[case::missing_effect(&with_statement(r#"{"Action":"iot:Connect","Resource":"*"}"#), "Statement[0]: missing field `Effect`".into())]
#[case::missing_resource(&with_statement(r#"{"Effect":"Allow","Action":"iot:Connect"}"#), "Statement[0]: missing field `Resource`".into())]
#[case::bad_effect(&with_statement(r#"{"Effect":"allow","Action":"iot:Connect","Resource":"*"}"#), "Statement[0].Effect: effect must be `Allow` or `Deny`, found `allow`".into())]
#[case::empty_action(&with_statement(r#"{"Effect":"Allow","Action":[],"Resource":"*"}"#), "Statement[0].Action: must not be empty".into())]
#[case::action_type(&with_statement(r#"{"Effect":"Allow","Action":["iot:Connect",3],"Resource":"*"}"#), "Statement[0].Action[1]: expected a string, found a number".into())]
#[case::bad_action(&with_statement(r#"{"Effect":"Allow","Action":"Connect","Resource":"*"}"#), "Statement[0].Action[0]: invalid action `Connect`, expected `*` or `service:Name` such as `iot:Publish`".into())]
#[case::bad_resource(&with_statement(r#"{"Effect":"Allow","Action":"iot:Connect","Resource":"topic/a"}"#), "Statement[0].Resource[0]: invalid resource `topic/a`, expected `*` or an ARN starting with `arn:`".into())]
#[case::unterminated(&with_statement(r#"{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:x/${iot:ClientId"}"#), "Statement[0].Resource[0]: unterminated policy variable in `arn:x/${iot:ClientId`".into())]
#[case::unknown_variable(&with_statement(r#"{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:x/${iot:Connection.Thing.Attributes[a]}"}"#), "Statement[0].Resource[0]: unsupported policy variable `${iot:Connection.Thing.Attributes[a]}`".into())]
#[case::operator(&with_statement(&format!(r#"{{{OK},"Condition":{{"StringNotEquals":{{"iot:ClientId":"a"}}}}}}"#)), "Statement[0].Condition: unsupported condition operator `StringNotEquals`, expected one of Bool, StringEquals, StringLike".into())]
#[case::if_exists(&with_statement(&format!(r#"{{{OK},"Condition":{{"StringEqualsIfExists":{{"iot:ClientId":"a"}}}}}}"#)), "Statement[0].Condition: unsupported condition operator `StringEqualsIfExists`, expected one of Bool, StringEquals, StringLike".into())]
#[case::condition_key(&with_statement(&format!(r#"{{{OK},"Condition":{{"StringEquals":{{"aws:SourceIp":"a"}}}}}}"#)), "Statement[0].Condition.StringEquals: unsupported condition key `aws:SourceIp`".into())]
#[case::bool_value(&with_statement(&format!(r#"{{{OK},"Condition":{{"Bool":{{"iot:Connection.Thing.IsAttached":"yes"}}}}}}"#)), "Statement[0].Condition.Bool.iot:Connection.Thing.IsAttached[0]: Bool condition value must be `true` or `false`, found `yes`".into())]
#[case::condition_variable(&with_statement(&format!(r#"{{{OK},"Condition":{{"StringEquals":{{"iot:ClientId":"${{aws:username}}"}}}}}}"#)), "Statement[0].Condition.StringEquals.iot:ClientId[0]: unsupported policy variable `${aws:username}`".into())]
#[case::condition_type(&with_statement(&format!(r#"{{{OK},"Condition":[]}}"#)), "Statement[0].Condition: expected an object, found a list".into())]
fn malformed_documents_are_typed_errors_naming_the_field(
    #[case] text: &str,
    #[case] message: String,
) {
    let err = PolicyDocument::parse(text).unwrap_err();
    assert_eq!(err.to_string(), message);
}

#[test]
fn oversized_document_is_rejected_before_parsing() {
    let resources: Vec<String> = (0..100)
        .map(|i| format!("\"arn:aws:iot:x:1:topic/{i:030}\""))
        .collect();
    let text = with_statement(&format!(
        r#"{{"Effect":"Allow","Action":"iot:Publish","Resource":[{}]}}"#,
        resources.join(",")
    ));
    assert!(matches!(
        PolicyDocument::parse(&text),
        Err(PolicyError::TooLarge {
            max: MAX_POLICY_CHARS,
            ..
        })
    ));
}

#[test]
fn deserialize_reports_the_same_errors() {
    let err = serde_json::from_str::<PolicyDocument>(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow"}}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("missing field `Action`"), "{err}");
}

#[test]
fn statement_new_validates() {
    assert!(matches!(
        Statement::new(Effect::Allow, ["iot:Publish"], ["topic/a"]),
        Err(PolicyError::InvalidResource { .. })
    ));
    assert!(matches!(
        Statement::new(Effect::Allow, Vec::<String>::new(), ["*"]),
        Err(PolicyError::Empty { .. })
    ));
}

#[test]
fn glob_does_not_blow_up_on_many_stars() {
    let pattern = format!("arn:{}b", "*a".repeat(200));
    let resource = format!("arn:{}", "a".repeat(5000));
    let decision = decide(
        &[allow("*", &pattern)],
        Action::Publish,
        &resource,
        &thing_a(),
    );
    assert_eq!(decision, Decision::ImplicitDeny);
}
