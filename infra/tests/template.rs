//! Snapshots of the synthesized template and its policies, and the
//! cloud-assembly writer's behaviour on good and bad configurations.

use infra::assembly;
use infra::config::Config;
use serde_json::Value as Json;

fn template() -> Json {
    let v = Config::default()
        .validate()
        .unwrap_or_else(|e| panic!("{e}"));
    assembly::template(&v, &assembly::unbuilt_assets()).unwrap_or_else(|e| panic!("{e}"))
}

// Snapshots sort object keys: the AWS SDK turns on serde_json's
// `preserve_order` in workspace builds, and key order means nothing in JSON.
#[test]
fn whole_template() {
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!(template(), {
            ".Resources.*.Properties.Code.S3Key" => "[asset-hash].zip",
        });
    });
}

#[test]
fn every_iam_policy() {
    let t = template();
    let mut policies = serde_json::Map::new();
    for (id, r) in t["Resources"].as_object().into_iter().flatten() {
        if r["Type"] == "AWS::IAM::Role" {
            policies.insert(
                id.clone(),
                serde_json::json!({
                    "AssumeRolePolicyDocument": r["Properties"]["AssumeRolePolicyDocument"],
                    "Policies": r["Properties"]["Policies"],
                    "ManagedPolicyArns": r["Properties"]["ManagedPolicyArns"],
                }),
            );
        }
    }
    assert_eq!(
        policies.len(),
        10,
        "7 function roles, the audit role, the audit notification role, the rule error role"
    );
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!(Json::Object(policies));
    });
}

#[test]
fn device_policy() {
    let t = template();
    let doc = &t["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"];
    let text = doc.to_string();
    assert!(
        text.contains("${!iot:Connection.Thing.ThingName}"),
        "IoT variables escaped for Fn::Sub"
    );
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!(doc);
    });
}

#[test]
fn every_function_has_a_role_log_group_and_concurrency() {
    let t = template();
    let res = t["Resources"].as_object().cloned().unwrap_or_default();
    let functions: Vec<_> = res
        .values()
        .filter(|r| r["Type"] == "AWS::Lambda::Function")
        .collect();
    assert_eq!(functions.len(), 7);
    for f in functions {
        let p = &f["Properties"];
        assert_eq!(p["Runtime"], "provided.al2023");
        assert_eq!(p["Architectures"], serde_json::json!(["arm64"]));
        assert!(
            p["ReservedConcurrentExecutions"]
                .as_i64()
                .is_some_and(|c| (1..=15).contains(&c))
        );
        assert!(p["LoggingConfig"]["LogGroup"]["Ref"].is_string());
        assert_eq!(
            p["Environment"]["Variables"]["FLEETCERT_CONCURRENCY"],
            serde_json::json!(p["ReservedConcurrentExecutions"].to_string()),
            "the rate limiter divides quotas by the reserved concurrency"
        );
    }
}

#[test]
fn cargo_run_writes_the_assembly_and_a_bad_config_writes_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = dir.path().join("cdk.out");
    let v = Config::default()
        .validate()
        .unwrap_or_else(|e| panic!("{e}"));
    let done =
        assembly::synth(&v, &dir.path().join("lambda"), &out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.missing_assets.len(), 7);
    let manifest: Json = serde_json::from_str(
        &std::fs::read_to_string(out.join("manifest.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(manifest["version"], assembly::SCHEMA_VERSION);
    assert_eq!(
        manifest["artifacts"]["FleetcertStack"]["type"],
        "aws:cloudformation:stack"
    );
    assert_eq!(
        manifest["artifacts"]["FleetcertStack.assets"]["type"],
        "cdk:asset-manifest"
    );
    assert!(out.join("FleetcertStack.template.json").is_file());

    let bad = Config::from_toml("[audit]\nexpiring_threshold_days = 0").and_then(Config::validate);
    let err = bad.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("audit.expiring_threshold_days"), "{err}");
    let fresh = dir.path().join("never");
    assert!(
        !fresh.exists(),
        "a rejected config never reaches the writer"
    );
}

#[test]
fn present_zips_are_hashed_into_the_asset_manifest() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let lambda = dir.path().join("lambda");
    for f in rules::functions::Function::ALL {
        let d = lambda.join(f.name());
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(d.join("bootstrap.zip"), f.name()).unwrap_or_else(|e| panic!("{e}"));
    }
    let out = dir.path().join("cdk.out");
    let v = Config::default()
        .validate()
        .unwrap_or_else(|e| panic!("{e}"));
    let done = assembly::synth(&v, &lambda, &out).unwrap_or_else(|e| panic!("{e}"));
    assert!(done.missing_assets.is_empty());
    let assets: Json = serde_json::from_str(
        &std::fs::read_to_string(out.join("FleetcertStack.assets.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    // sha256 of the bytes "commit"
    let commit = "9505cacb7c710ed17125fcc6cb3669e8ddca6c8cd8af6a31f6b3cd64604c3098";
    let files = assets["files"].as_object().cloned().unwrap_or_default();
    assert_eq!(
        files.len(),
        7,
        "one zip per function; the template goes inline"
    );
    assert_eq!(
        files[commit]["destinations"]["current_account-current_region"]["objectKey"],
        format!("{commit}.zip")
    );
    let template =
        std::fs::read_to_string(out.join("FleetcertStack.template.json")).unwrap_or_default();
    assert!(
        template.contains(&format!("\"{commit}.zip\"")),
        "the Commit function's S3Key is its zip's hash"
    );
}

#[test]
fn the_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fleetcert.example.toml");
    let c = Config::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c, Config::default(), "the example documents the defaults");
}

#[test]
fn a_configured_ca_adds_the_ca_certificate_and_its_jitr_rule() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ca = rcgen::generate_simple_self_signed(vec!["fleetcert test ca".into()])
        .unwrap_or_else(|e| panic!("{e}"));
    let pem_path = dir.path().join("ca.pem");
    std::fs::write(&pem_path, ca.cert.pem()).unwrap_or_else(|e| panic!("{e}"));
    let mut c = Config::default();
    c.jitr.ca_certificate_pem_file = Some(pem_path);
    let v = c.validate().unwrap_or_else(|e| panic!("{e}"));
    let t = assembly::template(&v, &[]).unwrap_or_else(|e| panic!("{e}"));
    let r = &t["Resources"];
    assert_eq!(
        r["JitrCaCertificate"]["Properties"]["AutoRegistrationStatus"],
        "ENABLE"
    );
    assert_eq!(r["JitrCaCertificate"]["Properties"]["Status"], "ACTIVE");
    assert_eq!(
        r["FleetcertJitrJitrCaCertificatRule"]["Properties"]["TopicRulePayload"]["Sql"],
        serde_json::json!({"Fn::Sub": "SELECT * FROM '$aws/events/certificates/registered/${JitrCaCertificate.Id}'"})
    );
    assert_eq!(
        r["FleetcertJitrJitrCaCertificatRulePermission"]["Properties"]["Principal"],
        "iot.amazonaws.com"
    );
}

/// Each function's role allows exactly the IAM actions of the operations
/// its handler calls (`lambdas::handlers::operations`), the init and event
/// source extras, its own logs and its dead-letter queue: nothing missing,
/// nothing else.
#[test]
fn each_role_allows_exactly_what_its_handler_calls() {
    use std::collections::BTreeSet;

    use rules::functions::Function;

    let t = template();
    for f in Function::ALL {
        let id: String = f
            .name()
            .split('-')
            .map(|w| w[..1].to_uppercase() + &w[1..])
            .collect();
        let role = &t["Resources"][format!("{id}Role")];
        let statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array()
            .unwrap_or_else(|| panic!("{id}Role has no policy"));
        let mut allowed = BTreeSet::new();
        for s in statements {
            assert_eq!(s["Effect"], "Allow");
            let resources = s["Resource"].as_array().expect("resource list");
            assert!(
                !resources.is_empty(),
                "{id}Role {} has no resource",
                s["Sid"]
            );
            for a in s["Action"].as_array().expect("action list") {
                let a = a.as_str().expect("action").to_owned();
                // AWS's Service Authorization Reference decides: an action
                // it authorizes on no resource type is granted on `*` only,
                // any other never on `*`.
                let star_only = rules::iam::AwsIamData::get()
                    .action(&a)
                    .unwrap_or_else(|e| panic!("{e}"))
                    .resource_types
                    .is_empty();
                assert_eq!(
                    resources.iter().any(|r| r == "*"),
                    star_only,
                    "{id}Role grants {a} on {resources:?}"
                );
                allowed.insert(a);
            }
        }
        let mut expected: BTreeSet<String> = lambdas::handlers::operations(f)
            .iter()
            .flat_map(|op| op.iam_actions().iter().map(|a| (*a).to_owned()))
            .collect();
        if lambdas::handlers::operations(f).contains(&lambdas::ports::Operation::Publish) {
            expected.insert("iot:DescribeEndpoint".to_owned());
        }
        if f == Function::RotationStarter {
            expected.extend(
                [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                ]
                .map(str::to_owned),
            );
        }
        // Every function writes its own logs; those Lambda invokes
        // asynchronously dead-letter the events every retry failed on.
        expected.extend(["logs:CreateLogStream", "logs:PutLogEvents"].map(str::to_owned));
        if f != Function::RotationStarter {
            expected.insert("sqs:SendMessage".to_owned());
        }
        if lambdas::handlers::closes_rotations(f) {
            expected.insert("dynamodb:UpdateItem".to_owned());
        }
        // SNS uses the support topic's key with the publisher's
        // credentials.
        if lambdas::handlers::operations(f).contains(&lambdas::ports::Operation::NotifySupport) {
            expected.extend(["kms:GenerateDataKey", "kms:Decrypt"].map(str::to_owned));
        }
        assert_eq!(allowed, expected, "{}", f.name());
    }
}

/// The publishing functions may publish only their own message kind.
#[test]
fn publish_is_scoped_to_the_functions_topics() {
    let t = template();
    let publish_resources = |role: &str| -> Vec<String> {
        t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| {
                s["Action"]
                    .as_array()
                    .is_some_and(|a| a.contains(&"iot:Publish".into()))
            })
            .flat_map(|s| s["Resource"].as_array().cloned().unwrap_or_default())
            .map(|r| r.to_string())
            .collect()
    };
    let starter = publish_resources("RotationStarterRole");
    assert_eq!(starter.len(), 1);
    assert!(
        starter[0].contains("topic/management/topic/*/csr_req"),
        "{starter:?}"
    );
    let issuer = publish_resources("CsrIssuerRole");
    assert_eq!(issuer.len(), 1);
    assert!(
        issuer[0].contains("topic/management/topic/*/crt"),
        "{issuer:?}"
    );
    assert!(publish_resources("CommitRole").is_empty());
}

/// The `[rotation]`, `[csr]` and `[jitr]` settings reach the functions that
/// read them, under the names `lambdas::config::Config::from_env` parses.
#[test]
fn configured_settings_reach_each_function_as_its_handler_reads_them() {
    let toml = r#"
        [rotation]
        deadline_hours = 48
        sweep_max_rows = 50
        [csr]
        min_rsa_bits = 3072
        allow_p256 = false
        require_cn_matches_thing = true
        [jitr]
        create_thing = false
    "#;
    let v = Config::from_toml(toml)
        .and_then(Config::validate)
        .unwrap_or_else(|e| panic!("{e}"));
    let t = assembly::template(&v, &[]).unwrap_or_else(|e| panic!("{e}"));
    let mut seen = 0;
    for r in t["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, r)| r)
    {
        if r["Type"] != "AWS::Lambda::Function" {
            continue;
        }
        let p = &r["Properties"];
        let name = p["Description"]
            .as_str()
            .and_then(|d| d.strip_prefix("fleetcert "))
            .expect("description names the function")
            .to_owned();
        // Intrinsics (Ref of the table, queue, topic, policy) resolve at
        // deploy time; any value stands in for them here.
        let env: std::collections::HashMap<String, String> = p["Environment"]["Variables"]
            .as_object()
            .expect("variables")
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().unwrap_or("resolved-at-deploy").to_owned(),
                )
            })
            .collect();
        let c = lambdas::config::Config::from_lookup(|k| env.get(k).cloned())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let defaults = lambdas::config::Config::local("p");
        match name.as_str() {
            "rotation-starter" => assert_eq!(c.rotation_deadline_ms, 48 * 3_600_000),
            "sweeper" => {
                assert_eq!(c.rotation_deadline_ms, 48 * 3_600_000);
                assert_eq!(c.sweep_max_rows, 50);
            }
            "csr-issuer" => assert_eq!(
                c.csr_policy,
                rules::csr::CsrPolicy {
                    min_rsa_bits: 3072,
                    allow_p256: false,
                    require_cn_matches_thing: true,
                    ..rules::csr::CsrPolicy::default()
                }
            ),
            "jitr-activator" => assert!(!c.jitr.create_thing),
            _ => {
                assert_eq!(c.csr_policy, defaults.csr_policy, "{name}");
                assert_eq!(
                    c.rotation_deadline_ms, defaults.rotation_deadline_ms,
                    "{name}"
                );
            }
        }
        seen += 1;
    }
    assert_eq!(seen, 7);
}

/// A brownfield fleet's stack: no device policy of fleetcert's, an
/// allow-list and an added policy for csr-issuer, a customer policy for
/// JITR; IAM names no policy (AWS authorizes AttachPolicy on the
/// certificate only).
#[test]
fn a_fleet_with_its_own_policies_gets_no_device_policy_and_an_allow_list() {
    let toml = r#"
        [policies]
        device_policy = "none"
        copy = ["CustomerDevice", "legacy-*"]
        add = ["fleetcert-management"]
        [jitr]
        policy_name = "CustomerJitr"
        ca_certificate_ids = ["0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"]
    "#;
    let v = Config::from_toml(toml)
        .and_then(Config::validate)
        .unwrap_or_else(|e| panic!("{e}"));
    let t = assembly::template(&v, &[]).unwrap_or_else(|e| panic!("{e}"));
    let resources = t["Resources"].as_object().expect("resources");
    assert!(
        !resources.values().any(|r| r["Type"] == "AWS::IoT::Policy"),
        "no IoT policy is created"
    );
    let text = t.to_string();
    assert!(
        !text.contains("DevicePolicy"),
        "nothing refers to a device policy"
    );
    let env = |function: &str| {
        resources
            .values()
            .find(|r| r["Properties"]["Description"] == format!("fleetcert {function}"))
            .map(|r| r["Properties"]["Environment"]["Variables"].clone())
            .expect("function")
    };
    let issuer = env("csr-issuer");
    assert_eq!(issuer["COPY_POLICIES"], "CustomerDevice,legacy-*");
    assert_eq!(issuer["ADD_POLICIES"], "fleetcert-management");
    assert_eq!(env("jitr-activator")["DEVICE_POLICY_NAME"], "CustomerJitr");
    // intrinsics (the table, queue and topic refs) resolve at deploy time
    let lookup = |k: &str| {
        issuer
            .get(k)
            .map(|v| v.as_str().unwrap_or("resolved-at-deploy").to_owned())
    };
    let c = lambdas::config::Config::from_lookup(lookup).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.policy_copy.allows("legacy-3") && !c.policy_copy.allows("Admin"));
    assert_eq!(c.policy_copy.add, ["fleetcert-management"]);
}

/// `audit.age_threshold_days` turns on Device Defender's certificate-age
/// check with its threshold and schedules it beside the expiry check.
#[test]
fn an_age_threshold_enables_and_schedules_the_age_check() {
    let v = Config::from_toml("[audit]\nage_threshold_days = 365")
        .and_then(Config::validate)
        .unwrap_or_else(|e| panic!("{e}"));
    let t = assembly::template(&v, &[]).unwrap_or_else(|e| panic!("{e}"));
    let checks = &t["Resources"]["AuditConfiguration"]["Properties"]["AuditCheckConfigurations"];
    assert_eq!(
        checks["DeviceCertificateAgeCheck"],
        serde_json::json!({"Enabled": true, "Configuration": {"CertAgeThresholdInDays": "365"}})
    );
    assert_eq!(
        t["Resources"]["ScheduledAudit"]["Properties"]["TargetCheckNames"],
        serde_json::json!([
            "DEVICE_CERTIFICATE_EXPIRING_CHECK",
            "DEVICE_CERTIFICATE_AGE_CHECK"
        ])
    );
    // off by default, as on AWS
    let t = template();
    assert!(
        t["Resources"]["AuditConfiguration"]["Properties"]["AuditCheckConfigurations"]
            .get("DeviceCertificateAgeCheck")
            .is_none()
    );
}

const PCA_CA: &str = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/0b9e8f1c-5a0d-4c8e-9a1b-2f3c4d5e6f70";

fn private_ca_template() -> Json {
    let toml = format!(
        r#"
        [issuer]
        kind = "private_ca"
        ca_arn = "{PCA_CA}"
        signing_algorithm = "SHA256WITHECDSA"
        validity_days = 90
    "#
    );
    let v = Config::from_toml(&toml)
        .and_then(Config::validate)
        .unwrap_or_else(|e| panic!("{e}"));
    assembly::template(&v, &assembly::unbuilt_assets()).unwrap_or_else(|e| panic!("{e}"))
}

/// `[issuer] kind = "private_ca"`: csr-issuer's role calls that CA only
/// (IssueCertificate pinned to the template), registers certificates, and
/// no longer creates them from CSRs; csr-issuer reads the issuer back from
/// its environment; every other role and function is as with AWS IoT's CA.
#[test]
fn a_private_ca_issuer_grants_csr_issuer_that_ca_only() {
    use std::collections::BTreeSet;

    let (t, plain) = (private_ca_template(), template());
    let role = &t["Resources"]["CsrIssuerRole"]["Properties"]["Policies"][0]["PolicyDocument"];
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!(role);
    });
    let statements = role["Statement"].as_array().expect("statements");
    let mut actions = BTreeSet::new();
    for s in statements {
        for a in s["Action"].as_array().expect("actions") {
            let a = a.as_str().expect("action");
            actions.insert(a.to_owned());
            if a.starts_with("acm-pca:") {
                assert_eq!(s["Resource"], serde_json::json!([PCA_CA]), "{a}");
            }
            if a == "acm-pca:IssueCertificate" {
                assert_eq!(
                    s["Condition"],
                    serde_json::json!({"StringEquals": {
                        "acm-pca:TemplateArn": "arn:aws:acm-pca:::template/EndEntityCertificate/V1"
                    }})
                );
            }
        }
    }
    let pca_ops = lambdas::handlers::operations_for(
        rules::functions::Function::CsrIssuer,
        rules::functions::Issuer::PrivateCa,
    );
    for op in pca_ops {
        for a in op.iam_actions() {
            assert!(actions.contains(*a), "{a} missing");
        }
    }
    assert!(!actions.contains("iot:CreateCertificateFromCsr"));
    assert!(actions.contains("iot:RegisterCertificate"));

    let env: std::collections::HashMap<String, String> = t["Resources"]["CsrIssuer"]["Properties"]
        ["Environment"]["Variables"]
        .as_object()
        .expect("variables")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().unwrap_or("resolved-at-deploy").to_owned(),
            )
        })
        .collect();
    let c = lambdas::config::Config::from_lookup(|k| env.get(k).cloned())
        .unwrap_or_else(|e| panic!("{e}"));
    let lambdas::config::IssuerConfig::PrivateCa(pca) = &c.issuer else {
        panic!("{:?}", c.issuer)
    };
    assert_eq!((pca.ca_arn.as_str(), pca.validity_days), (PCA_CA, 90));
    // RegisterCertificate's 10 per second bounds csr-issuer
    assert_eq!(
        t["Resources"]["CsrIssuer"]["Properties"]["ReservedConcurrentExecutions"],
        10
    );

    // Nothing else changes.
    for (id, r) in t["Resources"].as_object().expect("resources") {
        if id == "CsrIssuerRole" || id == "CsrIssuer" {
            continue;
        }
        let mut r = r.clone();
        let mut p = plain["Resources"][id].clone();
        for x in [&mut r, &mut p] {
            if let Some(props) = x.get_mut("Properties").and_then(Json::as_object_mut) {
                props.remove("Code");
            }
        }
        assert_eq!(r, p, "{id}");
    }
}
