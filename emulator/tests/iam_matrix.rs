//! Proof both ways that the synthesized template grants exactly what AWS
//! would need, by mutation.
//!
//! The scenarios below run the whole cloud half in process on the memory
//! adapters, through the emulated Lambda service (IAM on every call, invoke
//! permissions, event-source mappings, dead letters, rule error actions)
//! and the emulated Device Defender audit: a rotation to the end, a refused
//! CSR, a device error, a stalled rotation swept to expiry and an owed cleanup the
//! sweeper finishes, a JITR registration, every
//! asynchronous function failing into its dead-letter queue, a rule action
//! failing into the rule's error queue, and every function's logs.
//!
//! - The unmodified template passes every scenario with no call denied
//!   (nothing needed is missing).
//! - Removing any one granted action from any role, any managed policy,
//!   any `AWS::Lambda::Permission`, the event-source mapping or any
//!   statement of a KMS key policy, letting another service than the right
//!   one assume a role, or putting an encrypted topic back on SNS's AWS
//!   managed key, makes at least one scenario fail (nothing granted is
//!   unneeded). The matrix is
//!   printed (`cargo test -p emulator --test iam_matrix -- --nocapture`).
//! - The same for a stack whose issuer is AWS Private CA: every scenario
//!   passes, plus a rotation issued by the (memory) Private CA and a
//!   certificate issued but not recorded, revoked at the CA; dropping any
//!   of csr-issuer's issuing grants, scoping them to another CA or pinning
//!   another template is detected.

use std::collections::BTreeMap;
use std::time::Duration;

use emulator::Deployment;
use emulator::cloud::{DEVICE_POLICY, run_alarm, run_audit, run_sweep};
use emulator::lambda::{LambdaService, Trigger};
use lambdas::config::Config as HandlerConfig;
use lambdas::memory::{Fault, MemoryPorts};
use lambdas::ports::{IotRegistry, Operation};
use rcgen::{CertificateParams, DnType, KeyPair};
use rules::functions::Function;
use rules::rotation::RotationState;
use rules::sql::MessageContext;
use serde_json::{Value, json};
use test_support::TestCa;

const DAY_MS: i64 = 86_400_000;

fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key")
}

fn csr(thing: &str) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, thing);
    params
        .serialize_request(&p256())
        .and_then(|c| c.pem())
        .expect("csr")
}

/// The customer CA whose id the template's JITR rule names.
struct Ca {
    ca: TestCa,
    id: String,
}

fn customer_ca() -> Ca {
    let ca = TestCa::new("matrix customer ca").expect("ca");
    let id = rules::csr::certificate_id(&ca.pem).expect("ca id");
    Ca { ca, id }
}

/// The template `cargo run -- synth` writes for a fleet with this JITR CA.
fn template(ca_id: &str) -> Value {
    infra::assembly::default_template(&[ca_id.to_owned()]).unwrap_or_else(|e| panic!("{e}"))
}

/// One run of the cloud on one (possibly mutated) template.
struct World {
    lambda: LambdaService,
    /// The SQS records of the last [`World::deliver_work`], to deliver again.
    delivered: std::sync::Mutex<Vec<Value>>,
}

type Outcome = Result<(), String>;

fn check(ok: bool, what: impl FnOnce() -> String) -> Outcome {
    if ok { Ok(()) } else { Err(what()) }
}

impl World {
    fn new(template: &Value) -> Result<World, String> {
        let deployment = Deployment::from_template(template, &Deployment::default_scope())
            .map_err(|e| format!("template: {e}"))?;
        // csr-issuer's issuer as the template's environment names it
        let (ports, handlers) =
            emulator::cloud::issuer_ports(&deployment, &HandlerConfig::local(DEVICE_POLICY))
                .map_err(|e| e.to_string())?;
        for name in deployment.policy_names() {
            ports.ports.registry.create_policy(name);
        }
        let lambda = LambdaService::new(ports, deployment, handlers, 1, Duration::from_millis(1));
        Ok(World {
            lambda,
            delivered: std::sync::Mutex::default(),
        })
    }

    fn ports(&self) -> &MemoryPorts {
        self.lambda.ports()
    }

    /// A thing with an ACTIVE certificate expiring in `days`, attached to
    /// the device policy (provisioned outside fleetcert's functions).
    async fn device(&self, thing: &str, days: i64) -> (String, String) {
        let registry = &self.ports().ports.registry;
        let now = self.lambda.now_ms();
        // an already expired certificate: issued 30 days ago
        registry.set_now_ms(if days < 0 { now - 30 * DAY_MS } else { now });
        let validity = if days < 0 {
            (30 + days) * DAY_MS
        } else {
            days * DAY_MS
        };
        let created = registry
            .issue_certificate(&csr(thing), true, validity)
            .expect("issue");
        registry.set_now_ms(now);
        registry.add_thing(thing);
        registry
            .attach_policy(DEVICE_POLICY, &created.certificate_arn)
            .await
            .expect("policy");
        registry
            .attach_thing_principal(thing, &created.certificate_arn)
            .await
            .expect("thing");
        (created.certificate_id, created.certificate_arn)
    }

    /// A device's publish through the deployed topic rules; a handler's
    /// rejection is a failure.
    async fn publish(&self, topic: &str, payload: &Value, thing: &str, principal: &str) -> Outcome {
        self.publish_as(topic, payload, thing, principal, false)
            .await
    }

    /// [`publish`](Self::publish), rejections allowed (a late message).
    async fn publish_as(
        &self,
        topic: &str,
        payload: &Value,
        thing: &str,
        principal: &str,
        rejection_ok: bool,
    ) -> Outcome {
        let ctx = MessageContext {
            topic,
            payload,
            client_id: thing,
            principal,
            timestamp_ms: self.lambda.now_ms(),
        };
        let deployment = self.lambda.deployment();
        let routed = deployment
            .router()
            .route_named(&ctx)
            .map_err(|e| e.to_string())?;
        check(!routed.is_empty(), || format!("no rule takes {topic}"))?;
        for (rule, function, event) in routed {
            let invoked = self
                .lambda
                .invoke(
                    &Trigger::Rule(rule.to_owned()),
                    function,
                    serde_json::to_vec(&event).unwrap_or_default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            let rejected = matches!(invoked.outcome, lambdas::handlers::Outcome::Rejected { .. });
            check(rejection_ok || !rejected, || {
                format!(
                    "{} rejected {topic}: {:?}",
                    function.name(),
                    invoked.outcome
                )
            })?;
        }
        Ok(())
    }

    /// The queued rotation work, to rotation-starter through its SQS event
    /// source.
    async fn deliver_work(&self) -> Outcome {
        let queue = self.ports().ports.queue.clone();
        let messages = queue.drain_up_to(usize::MAX);
        check(!messages.is_empty(), || {
            "no rotation work was queued".into()
        })?;
        let arn = self.lambda.work_queue_arn().unwrap_or_default();
        let records: Vec<Value> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                json!({"messageId": format!("m{i}"), "receiptHandle": format!("r{i}"),
                    "body": m.body, "attributes": {"ApproximateReceiveCount": "1"},
                    "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                    "eventSourceARN": arn, "awsRegion": "us-east-1"})
            })
            .collect();
        self.delivered
            .lock()
            .map_err(|e| e.to_string())?
            .clone_from(&records);
        self.invoke_starter(records).await
    }

    /// The last delivery again, as SQS may deliver a message twice.
    async fn deliver_again(&self) -> Outcome {
        let records = self.delivered.lock().map_err(|e| e.to_string())?.clone();
        self.invoke_starter(records).await
    }

    async fn invoke_starter(&self, records: Vec<Value>) -> Outcome {
        let arn = self.lambda.work_queue_arn().unwrap_or_default();
        let invoked = self
            .lambda
            .invoke(
                &Trigger::Queue(arn.clone()),
                Function::RotationStarter,
                serde_json::to_vec(&json!({"Records": records})).unwrap_or_default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        check(invoked.batch_item_failures.is_empty(), || {
            format!("rotation-starter failed {:?}", invoked.batch_item_failures)
        })
    }

    fn last(&self, topic: &str) -> Option<Value> {
        self.ports()
            .ports
            .publisher
            .published_to(topic)
            .pop()
            .and_then(|p| serde_json::from_slice(&p.payload).ok())
    }

    /// Audit → fan-out → starter: the thing gets a `csr_req`.
    async fn start_rotation(&self, thing: &str) -> Outcome {
        let report = run_audit(&self.lambda, thing, 30)
            .await
            .map_err(|e| e.to_string())?;
        check(report.findings > 0, || {
            format!("audit found nothing: {report:?}")
        })?;
        self.deliver_work().await?;
        check(
            self.last(&format!("management/topic/{thing}/csr_req"))
                .is_some(),
            || format!("no csr_req reached {thing}"),
        )
    }

    /// The device answers with a CSR; returns the new certificate's id.
    async fn issue(&self, thing: &str, old_id: &str) -> Result<String, String> {
        let req = self
            .last(&format!("management/topic/{thing}/csr_req"))
            .ok_or("no csr_req")?;
        let mut res = json!({"CSR": csr(thing)});
        if let Some(id) = req.get("rotationId") {
            res["rotationId"] = id.clone();
        }
        self.publish(
            &format!("management/topic/{thing}/csr_res"),
            &res,
            thing,
            old_id,
        )
        .await?;
        let crt = self
            .last(&format!("management/topic/{thing}/crt"))
            .ok_or("no crt was published")?;
        crt["certificateId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "crt without certificateId".into())
    }
}

/// Audit to commit: the old certificate gone, the new one active with the
/// device policy and the thing.
async fn rotation(w: &World) -> Outcome {
    let (old, _) = w.device("matrix-rotate", 5).await;
    w.start_rotation("matrix-rotate").await?;
    // SQS delivers the work again: the same rotation's csr_req is sent again
    let sent = |w: &World| {
        w.ports()
            .ports
            .publisher
            .published_to("management/topic/matrix-rotate/csr_req")
            .len()
    };
    let before = sent(w);
    w.deliver_again().await?;
    check(sent(w) == before + 1, || {
        "a redelivered request did not send csr_req again".into()
    })?;
    // the next audit finds it again: the open rotation is found, not doubled
    w.start_rotation("matrix-rotate").await?;
    let new = w.issue("matrix-rotate", &old).await?;
    w.publish(
        "management/topic/matrix-rotate/crt_ack",
        &json!({}),
        "matrix-rotate",
        &new,
    )
    .await?;
    let registry = &w.ports().ports.registry;
    check(registry.certificate(&old).is_none(), || {
        "the old certificate was not deleted".into()
    })?;
    let cert = registry
        .certificate(&new)
        .ok_or("the new certificate is gone")?;
    check(
        cert.status == lambdas::ports::CertificateStatus::Active
            && cert.policies.contains(DEVICE_POLICY)
            && cert.things.contains("matrix-rotate"),
        || format!("the new certificate is not in service: {cert:?}"),
    )?;
    let rows = w.ports().ports.store.rows();
    check(
        rows.iter().any(|r| {
            r.thing_name == "matrix-rotate" && matches!(r.state, RotationState::Committed { .. })
        }),
        || "the rotation is not COMMITTED".into(),
    )
}

/// A CSR the policy refuses fails the rotation at once and tells support.
async fn refused_csr(w: &World) -> Outcome {
    let (old, _) = w.device("matrix-refused", 5).await;
    w.start_rotation("matrix-refused").await?;
    let before = w.ports().ports.notifier.sent().len();
    let unreadable =
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
    w.publish_as(
        "management/topic/matrix-refused/csr_res",
        &json!({"CSR": unreadable}),
        "matrix-refused",
        &old,
        true,
    )
    .await?;
    let rows = w.ports().ports.store.rows();
    check(
        rows.iter()
            .any(|r| r.thing_name == "matrix-refused" && r.state.is_terminal()),
        || "the refused csr did not end the rotation".into(),
    )?;
    check(w.ports().ports.notifier.sent().len() > before, || {
        "support was not told of the refused csr".into()
    })
}

/// `crt_err`: the new certificate deleted, support told.
async fn device_error(w: &World) -> Outcome {
    let (old, _) = w.device("matrix-error", 5).await;
    w.start_rotation("matrix-error").await?;
    let new = w.issue("matrix-error", &old).await?;
    let before = w.ports().ports.notifier.sent().len();
    w.publish(
        "management/topic/matrix-error/crt_err",
        &json!({"error": "flash full"}),
        "matrix-error",
        &old,
    )
    .await?;
    check(w.ports().ports.registry.certificate(&new).is_none(), || {
        "the refused certificate was not deleted".into()
    })?;
    check(w.ports().ports.notifier.sent().len() > before, || {
        "support was not told".into()
    })
}

/// A device that never answers: the sweeper re-sends at the half mark,
/// then expires the rotation and tells support.
async fn stalled(w: &World) -> Outcome {
    let (old, _) = w.device("matrix-stall", 5).await;
    w.start_rotation("matrix-stall").await?;
    let new = w.issue("matrix-stall", &old).await?;
    let crts = || {
        w.ports()
            .ports
            .publisher
            .published_to("management/topic/matrix-stall/crt")
            .len()
    };
    let sent = crts();
    // a second rotation ends FAILED with its cleanup owed (the error
    // handler's detach failed on every attempt): the sweeper finishes it
    let (owed_old, _) = w.device("matrix-owed", 5).await;
    w.start_rotation("matrix-owed").await?;
    let owed_new = w.issue("matrix-owed", &owed_old).await?;
    let instruments = w.ports().instruments.clone();
    instruments.fail_next(Operation::DetachPolicy, 20, Fault::Transient);
    let _ = w
        .publish(
            "management/topic/matrix-owed/crt_err",
            &json!({"error": "flash full"}),
            "matrix-owed",
            &owed_old,
        )
        .await;
    instruments.clear_faults();
    let deadline = w.lambda.config().rotation_deadline_ms;
    w.lambda.advance_clock(Duration::from_millis(
        u64::try_from(deadline / 2 + 1000).unwrap_or(0),
    ));
    run_sweep(&w.lambda).await.map_err(|e| e.to_string())?;
    check(crts() > sent, || {
        "the sweeper did not send the crt again".into()
    })?;
    let before = w.ports().ports.notifier.sent().len();
    w.lambda
        .advance_clock(Duration::from_millis(u64::try_from(deadline).unwrap_or(0)));
    run_sweep(&w.lambda).await.map_err(|e| e.to_string())?;
    let rows = w.ports().ports.store.rows();
    check(
        rows.iter()
            .any(|r| r.thing_name == "matrix-stall" && r.state.is_terminal() && !r.cleanup_pending),
        || format!("the stalled rotation did not end cleanly: {rows:?}"),
    )?;
    let _ = new;
    check(
        w.ports().ports.registry.certificate(&owed_new).is_none(),
        || "the sweeper did not finish the owed cleanup".into(),
    )?;
    check(w.ports().ports.notifier.sent().len() > before, || {
        "support was not told".into()
    })
}

/// A campaign of one device (written as `fleetcert rotate --canary` writes
/// it): the sweeper releases it onto the work queue, the starter checks
/// the campaign and starts it, and after the commit the sweeper counts it
/// and finishes the campaign.
async fn campaign(w: &World) -> Outcome {
    use rules::campaign::{AbortRule, Campaign, CampaignState, NewCampaign, Rollout, Share};
    let (old, _) = w.device("matrix-campaign", 300).await;
    let id = rules::contracts::CampaignId::new("matrix").map_err(|e| e.to_string())?;
    let (c, chunks) = Campaign::new(
        NewCampaign {
            id: id.clone(),
            task_id: "matrix".into(),
            rollout: Rollout {
                canary: Share::Count(1),
                cohort: Share::Count(1),
                rate_per_second: 10,
            },
            abort: AbortRule {
                above_basis_points: 200,
                window: 10,
            },
            grace_ms: 60_000,
        },
        std::slice::from_ref(&old),
        w.lambda.now_ms(),
    )
    .map_err(|e| e.to_string())?;
    let store = &w.ports().ports.store;
    lambdas::handlers::campaign::create(store, &c, &chunks)
        .await
        .map_err(|e| e.to_string())?;
    run_sweep(&w.lambda).await.map_err(|e| e.to_string())?;
    w.deliver_work().await?;
    let new = w.issue("matrix-campaign", &old).await?;
    w.publish(
        "management/topic/matrix-campaign/crt_ack",
        &json!({}),
        "matrix-campaign",
        &new,
    )
    .await?;
    run_sweep(&w.lambda).await.map_err(|e| e.to_string())?;
    let state = lambdas::handlers::campaign::get(store, &id)
        .await
        .map_err(|e| e.to_string())?
        .map(|c| c.state);
    check(state == Some(CampaignState::Finished), || {
        format!("the campaign did not finish: {state:?}")
    })
}

/// A device certificate of the customer CA registers just in time.
async fn jitr(w: &World, ca: &Ca) -> Outcome {
    let registry = &w.ports().ports.registry;
    registry
        .register_ca_certificate(&ca.ca.pem)
        .map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "matrix-jitr");
    let pem = params
        .signed_by(&p256(), ca.ca.issuer())
        .expect("device")
        .pem();
    let id = registry.auto_register(&pem).map_err(|e| e.to_string())?;
    let topic = format!("$aws/events/certificates/registered/{}", ca.id);
    let event = json!({"certificateId": id, "caCertificateId": ca.id, "timestamp": w.lambda.now_ms(),
        "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": "123456789012",
        "certificateRegistrationTimestamp": null});
    w.publish(&topic, &event, "", "").await?;
    let cert = registry.certificate(&id).ok_or("the certificate is gone")?;
    check(
        cert.status == lambdas::ports::CertificateStatus::Active
            && cert.policies.contains(DEVICE_POLICY),
        || format!("jitr did not activate it: {cert:?}"),
    )
}

/// Device Defender reports the expiring check FAILED: audit-fanout tells
/// support.
async fn failed_check(w: &World) -> Outcome {
    let topic = w
        .lambda
        .deployment()
        .wiring()
        .audit
        .as_ref()
        .and_then(|a| a.notification.clone())
        .map(|(_, t)| t)
        .ok_or("no audit notification topic")?;
    let message = json!({"accountId": "123456789012", "taskId": "failed", "taskStatus": "COMPLETED",
        "taskType": "SCHEDULED_AUDIT_TASK", "failedChecksCount": 1, "canceledChecksCount": 0,
        "nonCompliantChecksCount": 0, "compliantChecksCount": 0, "totalChecksCount": 1,
        "taskStartTime": 1, "auditDetails": [{"checkName": "DEVICE_CERTIFICATE_EXPIRING_CHECK",
        "checkRunStatus": "FAILED", "nonCompliantResourcesCount": 0, "totalResourcesCount": 0,
        "errorCode": "INSUFFICIENT_PERMISSIONS"}]});
    let event = json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{topic}:s"), "Sns": {"Type": "Notification",
        "MessageId": "m", "TopicArn": topic, "Subject": null, "Message": message.to_string(),
        "Timestamp": "1970-01-01T00:00:00.000Z"}}]});
    let before = w.ports().ports.notifier.sent().len();
    w.lambda
        .invoke(
            &Trigger::Sns(topic.clone()),
            Function::AuditFanout,
            serde_json::to_vec(&event).unwrap_or_default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    check(w.ports().ports.notifier.sent().len() > before, || {
        "the failed check was not reported".into()
    })
}

/// A certificate that expired already cannot connect: support is told
/// instead of a csr_req.
async fn expired(w: &World) -> Outcome {
    let _ = w.device("matrix-expired", -1).await;
    let before = w.ports().ports.notifier.sent().len();
    run_audit(&w.lambda, "expired", 30)
        .await
        .map_err(|e| e.to_string())?;
    w.deliver_work().await?;
    check(w.ports().ports.notifier.sent().len() > before, || {
        "support was not told of the expired certificate".into()
    })
}

/// The error handler's cleanup fails on every attempt (the rotation is
/// FAILED with its cleanup owed); a late `csr_res` or `crt_ack` finds it
/// and finishes the cleanup.
async fn late_messages(w: &World) -> Outcome {
    let instruments = w.ports().instruments.clone();
    for (thing, late) in [
        ("matrix-late-csr", "csr_res"),
        ("matrix-late-ack", "crt_ack"),
    ] {
        let (old, _) = w.device(thing, 5).await;
        w.start_rotation(thing).await?;
        let new = w.issue(thing, &old).await?;
        instruments.fail_next(Operation::DetachPolicy, 20, Fault::Transient);
        let _ = w
            .publish(
                &format!("management/topic/{thing}/crt_err"),
                &json!({"error": "flash full"}),
                thing,
                &old,
            )
            .await;
        instruments.clear_faults();
        let owed = |w: &World| {
            w.ports()
                .ports
                .store
                .rows()
                .iter()
                .any(|r| r.thing_name == thing && r.state.is_terminal() && r.cleanup_pending)
        };
        check(owed(w), || format!("{thing}: no cleanup is owed"))?;
        let told = w.ports().ports.notifier.sent().len();
        let (payload, principal) = if late == "csr_res" {
            (json!({"CSR": csr(thing)}), old.clone())
        } else {
            (json!({}), new.clone())
        };
        w.publish_as(
            &format!("management/topic/{thing}/{late}"),
            &payload,
            thing,
            &principal,
            true,
        )
        .await?;
        check(!owed(w), || {
            format!("{thing}: the late {late} did not finish the cleanup")
        })?;
        check(w.ports().ports.registry.certificate(&new).is_none(), || {
            format!("{thing}: the new certificate was not deleted")
        })?;
        check(w.ports().ports.notifier.sent().len() > told, || {
            format!("{thing}: support was not told of the failed rotation")
        })?;
    }
    Ok(())
}

/// A certificate of the customer CA whose name cannot be a thing's is
/// revoked and reported.
async fn jitr_refused(w: &World, ca: &Ca) -> Outcome {
    let registry = &w.ports().ports.registry;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "not a thing name");
    let pem = params
        .signed_by(&p256(), ca.ca.issuer())
        .expect("device")
        .pem();
    let id = registry.auto_register(&pem).map_err(|e| e.to_string())?;
    let topic = format!("$aws/events/certificates/registered/{}", ca.id);
    let event = json!({"certificateId": id, "caCertificateId": ca.id, "timestamp": w.lambda.now_ms(),
        "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": "123456789012",
        "certificateRegistrationTimestamp": null});
    let before = w.ports().ports.notifier.sent().len();
    w.publish_as(&topic, &event, "", "", true).await?;
    check(w.ports().ports.notifier.sent().len() > before, || {
        "the refused certificate was not reported".into()
    })
}

/// Every asynchronously invoked function, failing on every attempt, ends in
/// its dead-letter queue.
async fn dead_letters(w: &World, ca: &Ca) -> Outcome {
    let instruments = w.ports().instruments.clone();
    let rule = |suffix: &str| {
        w.lambda
            .deployment()
            .rules()
            .iter()
            .find(|r| r.name.ends_with(suffix))
            .map(|r| r.name.clone())
            .unwrap_or_default()
    };
    let ops = [
        Operation::GetRotation,
        Operation::LatestRotationForThing,
        Operation::DescribeCertificate,
        Operation::DescribeCaCertificate,
        Operation::ListAuditFindings,
        Operation::ListDueRotations,
    ];
    let cases: [(Function, Trigger, Value); 5] = [
        (
            Function::CsrIssuer,
            Trigger::Rule(rule("csr_res")),
            json!({"clientid": "t", "topicClientId": "t", "CSR": csr("t")}),
        ),
        (
            Function::Commit,
            Trigger::Rule(rule("crt_ack")),
            json!({"clientid": "t", "topicClientId": "t", "principal": "a".repeat(64)}),
        ),
        (
            Function::ErrorHandler,
            Trigger::Rule(rule("crt_err")),
            json!({"clientid": "t", "topicClientId": "t", "principal": "a".repeat(64), "error": "x"}),
        ),
        (
            Function::JitrActivator,
            Trigger::Rule(rule(&ca.id[..16])),
            json!({"certificateId": "b".repeat(64), "caCertificateId": ca.id, "timestamp": 1,
                "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": "123456789012",
                "certificateRegistrationTimestamp": null}),
        ),
        (
            Function::Sweeper,
            Trigger::Schedule,
            json!({"version": "0", "id": "s", "detail-type": "Scheduled Event",
                "source": "aws.events", "account": "123456789012", "time": "1970-01-01T00:00:00Z",
                "region": "us-east-1", "resources": [], "detail": {}}),
        ),
    ];
    for (function, trigger, event) in cases {
        for op in ops {
            instruments.fail_next(op, 20, Fault::Transient);
        }
        let before = w.lambda.dead_letters().len();
        let result = w
            .lambda
            .invoke(
                &trigger,
                function,
                serde_json::to_vec(&event).unwrap_or_default(),
            )
            .await;
        instruments.clear_faults();
        check(result.is_err(), || {
            format!("{} did not fail", function.name())
        })?;
        check(w.lambda.dead_letters().len() > before, || {
            format!(
                "{}'s failed event is not in its dead-letter queue",
                function.name()
            )
        })?;
    }
    // audit-fanout, through the audit's notification
    let _ = w.device("matrix-dlq", 5).await;
    instruments.fail_next(Operation::ListAuditFindings, 20, Fault::Transient);
    let before = w.lambda.dead_letters().len();
    let _ = run_audit(&w.lambda, "dlq", 30).await;
    instruments.clear_faults();
    check(w.lambda.dead_letters().len() > before, || {
        "audit-fanout's failed event is not in its dead-letter queue".into()
    })
}

/// A rule action the Lambda service cannot run is recorded by the rule's
/// error action.
async fn rule_error(w: &World) -> Outcome {
    w.lambda.fail_next_invocations(Function::Commit, 1);
    let before = w.lambda.rule_errors().len();
    let _ = w
        .publish(
            "management/topic/t/crt_ack",
            &json!({}),
            "t",
            &"c".repeat(64),
        )
        .await;
    check(w.lambda.rule_errors().len() > before, || {
        "the rule error action recorded nothing".into()
    })
}

/// Every alarm, firing and clearing, reaches support: CloudWatch may use
/// the support topic's key.
async fn alarms(w: &World) -> Outcome {
    let alarms = w.lambda.deployment().wiring().alarms.clone();
    check(!alarms.is_empty(), || "the template has no alarm".into())?;
    for alarm in alarms {
        for state in ["ALARM", "OK"] {
            let before = w.ports().ports.notifier.sent().len();
            let notified = run_alarm(&w.lambda, &alarm.logical_id, state)
                .await
                .map_err(|e| e.to_string())?;
            check(notified.refused.is_empty(), || {
                format!(
                    "{} {state}: {}",
                    alarm.logical_id,
                    notified.refused.join("; ")
                )
            })?;
            check(w.ports().ports.notifier.sent().len() > before, || {
                format!("{} {state} did not reach support", alarm.logical_id)
            })?;
        }
    }
    Ok(())
}

/// Runs every scenario on `template`; the failures by scenario.
async fn scenarios(template: &Value, ca: &Ca) -> BTreeMap<&'static str, String> {
    let mut failures = BTreeMap::new();
    let w = match World::new(template) {
        Ok(w) => w,
        Err(e) => {
            failures.insert("deploy", e);
            return failures;
        }
    };
    let runs: [(&'static str, Outcome); 13] = [
        ("rotation", rotation(&w).await),
        ("campaign", campaign(&w).await),
        ("device_error", device_error(&w).await),
        ("refused_csr", refused_csr(&w).await),
        ("stalled", stalled(&w).await),
        ("failed_check", failed_check(&w).await),
        ("expired", expired(&w).await),
        ("late_messages", late_messages(&w).await),
        ("jitr", jitr(&w, ca).await),
        ("jitr_refused", jitr_refused(&w, ca).await),
        ("dead_letters", dead_letters(&w, ca).await),
        ("rule_error", rule_error(&w).await),
        ("alarms", alarms(&w).await),
    ];
    for (name, outcome) in runs {
        if let Err(e) = outcome {
            failures.insert(name, e);
        }
    }
    let lost: Vec<&str> = Function::ALL
        .into_iter()
        .filter(|f| !w.lambda.logs_delivered(*f))
        .map(Function::name)
        .collect();
    if !lost.is_empty() {
        failures.insert("logs", format!("logs lost for {}", lost.join(", ")));
    }
    failures
}

/// One removal from the template.
struct Mutation {
    what: String,
    template: Value,
}

fn mutations(template: &Value) -> Vec<Mutation> {
    let mut out = Vec::new();
    let resources = template["Resources"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (id, r) in &resources {
        match r["Type"].as_str() {
            Some("AWS::IAM::Role") => {
                let policies = r["Properties"]["Policies"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for (p, policy) in policies.iter().enumerate() {
                    let statements = policy["PolicyDocument"]["Statement"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    for (s, statement) in statements.iter().enumerate() {
                        let actions: Vec<String> = match &statement["Action"] {
                            Value::String(a) => vec![a.clone()],
                            Value::Array(a) => a
                                .iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect(),
                            _ => Vec::new(),
                        };
                        for action in &actions {
                            let mut t = template.clone();
                            let list = &mut t["Resources"][id]["Properties"]["Policies"][p]["PolicyDocument"]
                                ["Statement"];
                            let remaining: Vec<Value> = actions
                                .iter()
                                .filter(|a| *a != action)
                                .map(|a| json!(a))
                                .collect();
                            if remaining.is_empty() {
                                if let Some(list) = list.as_array_mut() {
                                    list.remove(s);
                                }
                            } else {
                                list[s]["Action"] = Value::Array(remaining);
                            }
                            out.push(Mutation {
                                what: format!(
                                    "{id} {} {action}",
                                    statement["Sid"].as_str().unwrap_or("-")
                                ),
                                template: t,
                            });
                        }
                    }
                }
                let mut t = template.clone();
                t["Resources"][id]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
                    ["Service"] = json!("ec2.amazonaws.com");
                out.push(Mutation {
                    what: format!("{id} trust policy names another service"),
                    template: t,
                });
                let managed = r["Properties"]["ManagedPolicyArns"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for (i, _) in managed.iter().enumerate() {
                    let mut t = template.clone();
                    if let Some(list) =
                        t["Resources"][id]["Properties"]["ManagedPolicyArns"].as_array_mut()
                    {
                        list.remove(i);
                    }
                    out.push(Mutation {
                        what: format!("{id} managed policy {i}"),
                        template: t,
                    });
                }
            }
            Some("AWS::KMS::Key") => {
                let statements = r["Properties"]["KeyPolicy"]["Statement"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for (i, statement) in statements.iter().enumerate() {
                    let mut t = template.clone();
                    if let Some(list) =
                        t["Resources"][id]["Properties"]["KeyPolicy"]["Statement"].as_array_mut()
                    {
                        list.remove(i);
                    }
                    out.push(Mutation {
                        what: format!(
                            "{id} key policy {}",
                            statement["Sid"].as_str().unwrap_or("-")
                        ),
                        template: t,
                    });
                }
            }
            Some("AWS::SNS::Topic")
                if r["Properties"]["KmsMasterKeyId"]
                    .get("Fn::GetAtt")
                    .is_some()
                    || r["Properties"]["KmsMasterKeyId"].get("Ref").is_some() =>
            {
                let mut t = template.clone();
                t["Resources"][id]["Properties"]["KmsMasterKeyId"] = json!({"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:alias/aws/sns"});
                out.push(Mutation {
                    what: format!("{id} on the AWS managed key alias/aws/sns"),
                    template: t,
                });
            }
            Some("AWS::Lambda::Permission" | "AWS::Lambda::EventSourceMapping") => {
                let mut t = template.clone();
                if let Some(m) = t["Resources"].as_object_mut() {
                    m.remove(id);
                }
                out.push(Mutation {
                    what: format!("{id} (removed)"),
                    template: t,
                });
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_grant_of_the_template_is_needed_and_nothing_needed_is_missing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ca = customer_ca();
    let base = template(&ca.id);

    // nothing needed is missing
    let failures = rt.block_on(scenarios(&base, &ca));
    assert!(
        failures.is_empty(),
        "the synthesized template fails: {failures:#?}"
    );

    // nothing granted is unneeded
    let mutations = mutations(&base);
    assert!(mutations.len() > 60, "only {} mutations", mutations.len());
    let mut undetected = Vec::new();
    println!("{:<70} detected by", "removed");
    for m in &mutations {
        let failures = rt.block_on(scenarios(&m.template, &ca));
        match failures.iter().next() {
            Some((scenario, reason)) => {
                let reason: String = reason.chars().take(110).collect();
                println!("{:<70} {scenario}: {reason}", m.what);
            }
            None => {
                println!("{:<70} NOTHING", m.what);
                undetected.push(m.what.clone());
            }
        }
    }
    println!(
        "{} removals, {} undetected",
        mutations.len(),
        undetected.len()
    );
    assert!(
        undetected.is_empty(),
        "grants no scenario needs: {undetected:#?}"
    );
}

/// The CA of the Private CA matrix below (any ARN: the memory CA takes the
/// template's).
const PCA_ARN: &str = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/0b9e8f1c-5a0d-4c8e-9a1b-2f3c4d5e6f70";

/// The template for a fleet whose issuer is AWS Private CA.
fn private_ca_template(ca_id: &str) -> Value {
    let toml = format!(
        "[issuer]\nkind = \"private_ca\"\nca_arn = \"{PCA_ARN}\"\nsigning_algorithm = \"SHA256WITHECDSA\"\n[jitr]\nca_certificate_ids = [\"{ca_id}\"]\n"
    );
    let v = infra::config::Config::from_toml(&toml)
        .and_then(infra::config::Config::validate)
        .unwrap_or_else(|e| panic!("{e}"));
    infra::assembly::template(&v, &infra::assembly::unbuilt_assets())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A rotation whose certificate came from the Private CA.
async fn rotation_by_private_ca(w: &World) -> Outcome {
    rotation(w).await?;
    let pca = &w.ports().ports.private_ca;
    check(pca.issued_count() == 1, || {
        format!("the private ca issued {} certificates", pca.issued_count())
    })?;
    check(
        w.ports()
            .instruments
            .calls(Operation::CreateCertificateFromCsr)
            == 0,
        || "CreateCertificateFromCsr was called".into(),
    )
}

/// The ISSUED write fails once after the Private CA issued: the
/// certificate is removed from AWS IoT and revoked at the CA, the retry
/// issues the one the rotation keeps.
async fn unrecorded_by_private_ca(w: &World) -> Outcome {
    let (old, _) = w.device("matrix-pca-unrecorded", 5).await;
    w.start_rotation("matrix-pca-unrecorded").await?;
    w.ports()
        .instruments
        .fail_after(Operation::UpdateRotation, 1, 1, Fault::Throttled);
    let result = w.issue("matrix-pca-unrecorded", &old).await;
    w.ports().instruments.clear_faults();
    result?;
    let pca = &w.ports().ports.private_ca;
    check(pca.revoked_count() == 1, || {
        format!("{} certificates revoked, not 1", pca.revoked_count())
    })
}

/// Scenarios of a Private CA stack: every scenario of the default stack,
/// plus the Private CA's own.
async fn private_ca_scenarios(template: &Value, ca: &Ca) -> BTreeMap<&'static str, String> {
    let mut failures = scenarios(template, ca).await;
    let w = match World::new(template) {
        Ok(w) => w,
        Err(e) => {
            failures.insert("deploy", e);
            return failures;
        }
    };
    for (name, outcome) in [
        ("rotation_by_private_ca", rotation_by_private_ca(&w).await),
        (
            "unrecorded_by_private_ca",
            unrecorded_by_private_ca(&w).await,
        ),
    ] {
        if let Err(e) = outcome {
            failures.insert(name, e);
        }
    }
    failures
}

/// With `[issuer] kind = "private_ca"`: the template passes every scenario
/// with no call denied, and each change to csr-issuer's issuing grants is
/// detected: dropping an acm-pca action or RegisterCertificate, scoping
/// the acm-pca statements to another CA, pinning another template.
#[test]
fn a_private_ca_issuer_needs_exactly_its_grants_on_its_ca() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ca = customer_ca();
    let base = private_ca_template(&ca.id);
    let failures = rt.block_on(private_ca_scenarios(&base, &ca));
    assert!(
        failures.is_empty(),
        "the private ca template fails: {failures:#?}"
    );

    let issuing = |what: &str| {
        what.starts_with("CsrIssuerRole ")
            && (what.contains("acm-pca:") || what.contains("iot:RegisterCertificate"))
    };
    let mut mutated: Vec<Mutation> = mutations(&base)
        .into_iter()
        .filter(|m| issuing(&m.what))
        .collect();
    assert_eq!(
        mutated.len(),
        4,
        "IssueCertificate, GetCertificate, RevokeCertificate, RegisterCertificate"
    );
    let statements = base["Resources"]["CsrIssuerRole"]["Properties"]["Policies"][0]
        ["PolicyDocument"]["Statement"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let other_ca = PCA_ARN.replace("0b9e8f1c", "ffffffff");
    for (i, statement) in statements.iter().enumerate() {
        let pca = statement["Action"].as_array().is_some_and(|a| {
            a.iter()
                .any(|a| a.as_str().is_some_and(|a| a.starts_with("acm-pca:")))
        });
        if !pca {
            continue;
        }
        let sid = statement["Sid"].as_str().unwrap_or("-").to_owned();
        let mut t = base.clone();
        t["Resources"]["CsrIssuerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            [i]["Resource"] = json!([other_ca]);
        mutated.push(Mutation {
            what: format!("CsrIssuerRole {sid} scoped to another ca"),
            template: t,
        });
        if statement.get("Condition").is_some() {
            let mut t = base.clone();
            t["Resources"]["CsrIssuerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
                [i]["Condition"]["StringEquals"]["acm-pca:TemplateArn"] =
                json!("arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen0/V1");
            mutated.push(Mutation {
                what: format!("CsrIssuerRole {sid} pinned to another template"),
                template: t,
            });
        }
    }
    let mut undetected = Vec::new();
    for m in &mutated {
        let failures = rt.block_on(private_ca_scenarios(&m.template, &ca));
        match failures.iter().next() {
            Some((scenario, reason)) => {
                let reason: String = reason.chars().take(110).collect();
                println!("{:<70} {scenario}: {reason}", m.what);
            }
            None => {
                println!("{:<70} NOTHING", m.what);
                undetected.push(m.what.clone());
            }
        }
    }
    assert!(mutated.len() >= 7, "{} mutations", mutated.len());
    assert!(undetected.is_empty(), "not detected: {undetected:#?}");
}
