//! The AWS adapters against moto (a local AWS API server on 127.0.0.1):
//! every port through the real SDK, then one whole rotation through the
//! real handlers on [`AwsPorts`].
//!
//! Needs `.tools/venv-cfnlint/bin/moto_server` (`bash
//! scripts/install-infra-tools.sh`). Each test starts its own moto on a
//! free port and kills it on drop.
#![cfg(feature = "aws")]

mod common;

use std::net::TcpListener;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType,
    SseSpecification, TimeToLiveSpecification,
};
use aws_sdk_iot::config::Credentials;
use common::{POLICY, TASK, bytes, crt_ack, csr_pem, csr_res, p256_key, sqs_event, work};
use lambdas::aws::{AwsInitError, AwsPorts, AwsRegistry, DynamoStore, from_sdk_config};
use lambdas::config::Config;
use lambdas::config::{
    CERTIFICATE_INDEX, CREATED_AT_ATTRIBUTE, DEADLINE_ATTRIBUTE, DUE_INDEX, DUE_KEY_ATTRIBUTE,
    OLD_CERTIFICATE_ATTRIBUTE,
};
use lambdas::handlers::{commit, csr_issuer, rotation_starter};
use lambdas::ports::{
    CertificateStatus, IotRegistry, Notifier, Operation, PortError, Publisher, QueueMessage,
    RotationStore, WorkQueue,
};
use rules::rotation::{Rotation, RotationState};
use serde_json::Value;

use test_support::Moto;

/// The SDK's configuration for `moto`, with dummy credentials.
async fn sdk_of(moto: &Moto) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(&moto.endpoint)
        .load()
        .await
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

fn now_ms() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    i64::try_from(ms).expect("ms")
}

const DEVICE_POLICY_DOCUMENT: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}"#;

/// The rotation table as infra defines it (`infra/src/fleetcert.rs`):
/// hash key `rotationId` (S), the sparse due index, the certificate index, on demand, encrypted,
/// PITR, TTL `expiresAt`.
async fn create_rotation_table(sdk: &SdkConfig, name: &str) {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .expect("attribute")
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    // projecting `row`, as infra's indexes do
    let index = |name: &str, hash: &str, range: &str| {
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(hash, KeyType::Hash))
            .key_schema(key(range, KeyType::Range))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::Include)
                    .non_key_attributes("row")
                    .build(),
            )
            .build()
            .expect("index")
    };
    ddb.create_table()
        .table_name(name)
        .attribute_definitions(attribute("rotationId", ScalarAttributeType::S))
        .attribute_definitions(attribute(DUE_KEY_ATTRIBUTE, ScalarAttributeType::S))
        .attribute_definitions(attribute(DEADLINE_ATTRIBUTE, ScalarAttributeType::N))
        .attribute_definitions(attribute(OLD_CERTIFICATE_ATTRIBUTE, ScalarAttributeType::S))
        .attribute_definitions(attribute(CREATED_AT_ATTRIBUTE, ScalarAttributeType::N))
        .key_schema(key("rotationId", KeyType::Hash))
        .global_secondary_indexes(index(DUE_INDEX, DUE_KEY_ATTRIBUTE, DEADLINE_ATTRIBUTE))
        .global_secondary_indexes(index(
            CERTIFICATE_INDEX,
            OLD_CERTIFICATE_ATTRIBUTE,
            CREATED_AT_ATTRIBUTE,
        ))
        .billing_mode(BillingMode::PayPerRequest)
        .sse_specification(SseSpecification::builder().enabled(true).build())
        .send()
        .await
        .expect("create table");
    ddb.update_continuous_backups()
        .table_name(name)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .expect("pitr"),
        )
        .send()
        .await
        .expect("pitr");
    ddb.update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expiresAt")
                .enabled(true)
                .build()
                .expect("ttl"),
        )
        .send()
        .await
        .expect("ttl");
}

async fn create_queue(sdk: &SdkConfig, name: &str) -> String {
    aws_sdk_sqs::Client::new(sdk)
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_owned()
}

/// Receives until `want` messages arrived (bounded: 20 receives).
async fn receive(sdk: &SdkConfig, queue_url: &str, want: usize) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut bodies = Vec::new();
    for _ in 0..20 {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        for m in out.messages() {
            bodies.push(m.body().unwrap_or_default().to_owned());
            if let Some(handle) = m.receipt_handle() {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("delete");
            }
        }
        if bodies.len() >= want {
            break;
        }
    }
    bodies
}

async fn create_policy(sdk: &SdkConfig) {
    aws_sdk_iot::Client::new(sdk)
        .create_policy()
        .policy_name(POLICY)
        .policy_document(DEVICE_POLICY_DOCUMENT)
        .send()
        .await
        .expect("create policy");
}

fn config(table: &str, queue_url: &str, topic_arn: &str) -> Config {
    Config {
        rotation_table: table.to_owned(),
        rotation_queue_url: queue_url.to_owned(),
        support_topic_arn: topic_arn.to_owned(),
        ..Config::local(POLICY)
    }
}

/// Follows `list` to the last page (bounded).
async fn all_pages<F, Fut>(mut list: F) -> Vec<String>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<lambdas::ports::Page<String>, PortError>>,
{
    let mut items = Vec::new();
    let mut token = None;
    for _ in 0..100 {
        let page = list(token.take()).await.unwrap_or_else(|e| panic!("{e}"));
        items.extend(page.items);
        token = page.next_token;
        if token.is_none() {
            return items;
        }
    }
    panic!("more than 100 pages");
}

#[test]
fn registry_certificates_policies_and_things() {
    let moto = Moto::start();
    run(async {
        let sdk = sdk_of(&moto).await;
        create_policy(&sdk).await;
        let r = AwsRegistry::new(aws_sdk_iot::Client::new(&sdk)).with_page_size(1);

        // A certificate from a CSR made here.
        let created = r
            .create_certificate_from_csr(&csr_pem(&p256_key(), "thing-1"), true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(created.certificate_id.len(), 64);
        assert!(created.certificate_pem.contains("BEGIN CERTIFICATE"));
        let d = r
            .describe_certificate(&created.certificate_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.certificate_id, created.certificate_id);
        assert_eq!(d.certificate_arn, created.certificate_arn);
        assert_eq!(d.status, CertificateStatus::Active);
        assert_eq!(d.certificate_pem, created.certificate_pem);
        assert!(
            d.not_before_ms < now_ms() && now_ms() < d.not_after_ms,
            "{d:?}"
        );
        let arn = &created.certificate_arn;

        // Policy attach / list / detach.
        r.attach_policy(POLICY, arn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        r.attach_policy(POLICY, arn)
            .await
            .expect("attach is idempotent");
        let policies = all_pages(|t| r.list_attached_policies(arn, t)).await;
        assert_eq!(policies, [POLICY]);

        // Things: create (idempotent), describe, attach three, list to the end.
        let t = r
            .create_thing("thing-1")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.thing_name, "thing-1");
        assert!(t.thing_arn.ends_with(":thing/thing-1"), "{}", t.thing_arn);
        assert_eq!(r.create_thing("thing-1").await.expect("again"), t);
        assert_eq!(r.describe_thing("thing-1").await.expect("describe"), t);
        for thing in ["thing-1", "thing-2", "thing-3"] {
            r.create_thing(thing).await.expect("create thing");
            r.attach_thing_principal(thing, arn)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut things = all_pages(|t| r.list_principal_things(arn, t)).await;
        things.sort();
        assert_eq!(things, ["thing-1", "thing-2", "thing-3"]);

        // Delete conflicts: ACTIVE, then still attached.
        let e = r
            .delete_certificate(&created.certificate_id)
            .await
            .expect_err("active");
        assert!(matches!(e, PortError::Conflict { .. }), "{e:?}");
        r.update_certificate(&created.certificate_id, CertificateStatus::Inactive)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.describe_certificate(&created.certificate_id)
                .await
                .expect("d")
                .status,
            CertificateStatus::Inactive
        );
        let e = r
            .delete_certificate(&created.certificate_id)
            .await
            .expect_err("attached");
        assert!(matches!(e, PortError::Conflict { .. }), "{e:?}");

        for thing in ["thing-1", "thing-2", "thing-3"] {
            r.detach_thing_principal(thing, arn)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(
            all_pages(|t| r.list_principal_things(arn, t))
                .await
                .is_empty()
        );
        r.detach_policy(POLICY, arn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            all_pages(|t| r.list_attached_policies(arn, t))
                .await
                .is_empty()
        );
        r.delete_certificate(&created.certificate_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let e = r
            .describe_certificate(&created.certificate_id)
            .await
            .expect_err("deleted");
        assert!(e.is_not_found(), "{e:?}");
    });
}

#[test]
fn registry_unknown_ids_are_not_found() {
    let moto = Moto::start();
    run(async {
        let sdk = sdk_of(&moto).await;
        let r = AwsRegistry::new(aws_sdk_iot::Client::new(&sdk));
        let unknown = "0".repeat(64);
        let e = r.describe_certificate(&unknown).await.expect_err("unknown");
        assert!(
            matches!(
                e,
                PortError::NotFound {
                    operation: Operation::DescribeCertificate,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = r
            .describe_thing("no-such-thing")
            .await
            .expect_err("unknown");
        assert!(e.is_not_found(), "{e:?}");
        let e = r.delete_certificate(&unknown).await.expect_err("unknown");
        assert!(e.is_not_found(), "{e:?}");
        let e = r
            .describe_ca_certificate(&unknown)
            .await
            .expect_err("unknown");
        assert!(e.is_not_found(), "{e:?}");
    });
}

#[test]
fn rotation_store_conditions_and_pages() {
    let moto = Moto::start();
    run(async {
        let sdk = sdk_of(&moto).await;
        create_rotation_table(&sdk, "rotations").await;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), "rotations");
        let old = "a".repeat(64);

        let r1 = Rotation::requested("r-1", "thing-1", &old, 1_000, 5_000);
        store.create(&r1).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.get("r-1").await.expect("get"), Some(r1.clone()));
        assert_eq!(store.get("r-nope").await.expect("get"), None);
        assert_eq!(store.get("thing#thing-1").await.expect("get"), None);
        assert_eq!(
            store.latest_for_thing("thing-1").await.expect("latest"),
            Some(r1.clone())
        );
        assert_eq!(
            store.latest_for_thing("thing-9").await.expect("latest"),
            None
        );

        // Duplicate create, and a second open rotation for the thing.
        let e = store.create(&r1).await.expect_err("duplicate");
        assert!(e.is_condition_failed(), "{e:?}");
        assert!(e.message().contains("rotation r-1 exists"), "{e}");
        let r2 = Rotation::requested("r-2", "thing-1", &old, 2_000, 6_000);
        let e = store.create(&r2).await.expect_err("second open");
        assert!(e.is_condition_failed(), "{e:?}");
        assert!(e.message().contains("open rotation"), "{e}");
        assert_eq!(
            store.get("r-2").await.expect("get"),
            None,
            "nothing written"
        );

        // Update from the row as read; a stale expected row is refused.
        let issuing = Rotation {
            state: RotationState::Issuing {
                csr_fingerprint: "f".repeat(64),
            },
            ..r1.clone()
        };
        store
            .update(&r1, &issuing)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let e = store.update(&r1, &issuing).await.expect_err("stale");
        assert!(e.is_condition_failed(), "{e:?}");
        assert_eq!(store.get("r-1").await.expect("get"), Some(issuing.clone()));

        // A terminal update frees the thing for its next rotation.
        let failed = Rotation {
            state: RotationState::Failed {
                reason: "device said no".to_owned(),
                new_certificate_id: None,
            },
            ..issuing.clone()
        };
        store
            .update(&issuing, &failed)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store.latest_for_thing("thing-1").await.expect("latest"),
            Some(failed.clone())
        );
        // Open rows never expire; a finished row and its thing's pointer get
        // the table's TTL attribute, 90 days (the default) after the deadline.
        let expires = expires_at(&sdk, "rotations", "r-1").await;
        assert_eq!(expires, Some(5 + 90 * 24 * 60 * 60), "finished row");
        assert_eq!(
            expires_at(&sdk, "rotations", "thing#thing-1").await,
            expires,
            "closed pointer"
        );
        store.create(&r2).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store.latest_for_thing("thing-1").await.expect("latest"),
            Some(r2.clone())
        );
        assert_eq!(expires_at(&sdk, "rotations", "r-2").await, None, "open row");
        // The certificate index: the newest rotation of the certificate.
        assert_eq!(
            store
                .latest_for_certificate(&old)
                .await
                .expect("by certificate"),
            Some(r2.clone())
        );
        assert_eq!(
            store
                .latest_for_certificate(&"b".repeat(64))
                .await
                .expect("by certificate"),
            None
        );
        assert_eq!(
            expires_at(&sdk, "rotations", "thing#thing-1").await,
            None,
            "the pointer of an open rotation"
        );
        let e = store
            .update(
                &r2,
                &Rotation {
                    thing_name: "thing-2".into(),
                    ..r2.clone()
                },
            )
            .await
            .expect_err("moved");
        assert!(matches!(e, PortError::Invalid { .. }), "{e:?}");

        // open_due over several pages: 12 more open rows, due or not.
        for i in 0..12 {
            let r = Rotation::requested(format!("d-{i:02}"), format!("due-{i}"), &old, 0, 100 + i);
            store.create(&r).await.unwrap_or_else(|e| panic!("{e}"));
        }
        let paged = store.clone().with_page_size(3);
        let mut due = Vec::new();
        let mut token = None;
        let mut pages = 0;
        for _ in 0..100 {
            let page = paged
                .open_due(106, token.take())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            pages += 1;
            due.extend(page.items.into_iter().map(|r| r.rotation_id));
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        assert!(token.is_none());
        // Six due rows, three per page: the query reads only due rows.
        assert!((2..=3).contains(&pages), "{pages} pages");
        due.sort();
        // d-00..d-05 (deadline 100..105); r-2 (6000) and r-1 (closed) not.
        assert_eq!(due, ["d-00", "d-01", "d-02", "d-03", "d-04", "d-05"]);
        let all = store.open_due(i64::MAX, None).await.expect("one page");
        assert_eq!(all.items.len(), 13, "every open row, no pointer rows");
        let e = store
            .open_due(0, Some("not a token".to_owned()))
            .await
            .expect_err("bad token");
        assert!(matches!(e, PortError::Invalid { .. }), "{e:?}");

        // A closed row whose cleanup is pending is due as well, until settled.
        let p1 = Rotation::requested("p-1", "pending-1", &old, 0, 50);
        store.create(&p1).await.unwrap_or_else(|e| panic!("{e}"));
        let owed = Rotation {
            state: RotationState::Expired {
                new_certificate_id: Some("c".repeat(64)),
                new_certificate_kept: false,
            },
            cleanup_pending: true,
            ..p1.clone()
        };
        store
            .update(&p1, &owed)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            expires_at(&sdk, "rotations", "p-1").await,
            None,
            "a row whose cleanup is pending must not expire"
        );
        let due_ids = |page: lambdas::ports::Page<Rotation>| {
            page.items
                .into_iter()
                .map(|r| r.rotation_id)
                .collect::<Vec<_>>()
        };
        let due = due_ids(store.open_due(106, None).await.expect("due"));
        assert!(due.contains(&"p-1".to_owned()), "{due:?}");
        assert!(
            !due_ids(store.open_due(50, None).await.expect("due")).contains(&"p-1".to_owned()),
            "not before its deadline"
        );
        let settled = Rotation {
            cleanup_pending: false,
            ..owed.clone()
        };
        store
            .update(&owed, &settled)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let due = due_ids(store.open_due(106, None).await.expect("due"));
        assert!(!due.contains(&"p-1".to_owned()), "{due:?}");
        let short = store.clone().with_ttl_days(1);
        let p2 = Rotation::requested("p-2", "pending-2", &old, 0, 60_000);
        short.create(&p2).await.unwrap_or_else(|e| panic!("{e}"));
        let finished = Rotation {
            state: RotationState::Expired {
                new_certificate_id: None,
                new_certificate_kept: false,
            },
            ..p2.clone()
        };
        short
            .update(&p2, &finished)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            expires_at(&sdk, "rotations", "p-2").await,
            Some(60 + 24 * 60 * 60),
            "ROTATION_TTL_DAYS=1"
        );
    });
}

/// The rotation table's TTL attribute of item `key`, as stored.
/// Campaign items beside the rotation rows: a conditional create (absent),
/// a conditional replace (as read) in one transaction with another item,
/// both refused with nothing written when one condition fails; the due
/// index (and so the sweeper's rotation reads) never sees them.
#[test]
fn campaign_items_conditions_on_dynamodb() {
    use lambdas::ports::{CampaignWrite, PortError};
    use rules::campaign::{
        AbortRule, ActiveCampaigns, Campaign, CampaignItem, NewCampaign, Rollout, Share,
    };
    let moto = Moto::start();
    run(async {
        let sdk = sdk_of(&moto).await;
        create_rotation_table(&sdk, "rotations").await;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), "rotations");
        let (c, chunks) = Campaign::new(
            NewCampaign {
                id: rules::contracts::CampaignId::new("moto").expect("id"),
                task_id: "t".into(),
                rollout: Rollout {
                    canary: Share::Count(1),
                    cohort: Share::BasisPoints(5000),
                    rate_per_second: 1,
                },
                abort: AbortRule {
                    above_basis_points: 200,
                    window: 10,
                },
                grace_ms: 60_000,
            },
            &["a".repeat(64), "b".repeat(64)],
            1_000,
        )
        .expect("campaign");
        let campaign = CampaignItem::Campaign(c.clone());
        let chunk = CampaignItem::Members(chunks[0].clone());
        let active = CampaignItem::Active(ActiveCampaigns {
            ids: vec![c.id.clone()],
        });
        let create = |next: &CampaignItem| CampaignWrite {
            expected: None,
            next: next.clone(),
        };
        store
            .put_campaign(&[create(&chunk), create(&campaign), create(&active)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store.get_campaign("campaign#moto").await.expect("get"),
            Some(campaign.clone())
        );
        assert_eq!(
            store.get_campaign("campaign#moto#0").await.expect("get"),
            Some(chunk.clone())
        );
        assert_eq!(
            store.get_campaign("campaign#none").await.expect("get"),
            None
        );
        // created twice: refused
        let err = store.put_campaign(&[create(&campaign)]).await.unwrap_err();
        assert!(matches!(err, PortError::ConditionFailed { .. }), "{err}");
        // one stale expectation fails the whole transaction
        let paused = CampaignItem::Campaign(c.pause().expect("pause"));
        let stale = CampaignWrite {
            expected: Some(paused.clone()),
            next: campaign.clone(),
        };
        let good = CampaignWrite {
            expected: Some(campaign.clone()),
            next: paused.clone(),
        };
        let err = store
            .put_campaign(&[
                good.clone(),
                CampaignWrite {
                    expected: Some(active.clone()),
                    next: CampaignItem::Active(ActiveCampaigns::default()),
                },
                stale,
            ])
            .await
            .unwrap_err();
        assert!(
            err.is_condition_failed() || matches!(err, PortError::Invalid { .. }),
            "{err}"
        );
        assert_eq!(
            store.get_campaign("campaign#moto").await.expect("get"),
            Some(campaign.clone()),
            "nothing written"
        );
        store
            .put_campaign(&[good])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store.get_campaign("campaign#moto").await.expect("get"),
            Some(paused)
        );
        // not rotation rows: the due index and the row reads ignore them
        assert!(
            store
                .open_due(i64::MAX, None)
                .await
                .expect("due")
                .items
                .is_empty()
        );
        let err = store.get_campaign("r-1").await.unwrap_err();
        assert!(matches!(err, PortError::Invalid { .. }), "{err}");
    });
}

async fn expires_at(sdk: &SdkConfig, table: &str, key: &str) -> Option<i64> {
    let item = aws_sdk_dynamodb::Client::new(sdk)
        .get_item()
        .table_name(table)
        .key("rotationId", AttributeValue::S(key.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("get item")
        .item
        .unwrap_or_else(|| panic!("no item {key}"));
    item.get(lambdas::config::ROTATION_TTL_ATTRIBUTE)
        .map(|v| v.as_n().expect("a number").parse().expect("epoch seconds"))
}

#[test]
fn sns_notification_reaches_a_subscribed_queue() {
    let moto = Moto::start();
    run(async {
        let sdk = sdk_of(&moto).await;
        let sns = aws_sdk_sns::Client::new(&sdk);
        let topic_arn = sns
            .create_topic()
            .name("support")
            .send()
            .await
            .expect("topic")
            .topic_arn()
            .expect("arn")
            .to_owned();
        let queue_url = create_queue(&sdk, "support-inbox").await;
        let queue_arn = aws_sdk_sqs::Client::new(&sdk)
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("attributes")
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .expect("queue arn")
            .to_owned();
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(&queue_arn)
            .send()
            .await
            .expect("subscribe");
        let ports = from_sdk_config(&sdk, &config("t", &queue_url, &topic_arn), &moto.endpoint);
        let subject = format!(
            "fleetcert: rotation failed\nfor thing-1 {}",
            "x".repeat(120)
        );
        let message = r#"{"kind":"rotation_failed","thingName":"thing-1"}"#;
        ports
            .notifier
            .notify(&subject, message)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let bodies = receive(&sdk, &queue_url, 1).await;
        assert_eq!(bodies.len(), 1, "{bodies:?}");
        let envelope: Value = serde_json::from_str(&bodies[0]).expect("sns envelope");
        assert_eq!(envelope["Message"], message);
        assert_eq!(envelope["TopicArn"], topic_arn.as_str());
        let got = envelope["Subject"].as_str().expect("subject");
        assert_eq!(got.len(), 100);
        assert!(
            got.starts_with("fleetcert: rotation failed for thing-1 xxx"),
            "{got}"
        );
    });
}

#[test]
fn sqs_batches_of_ten_arrive_and_eleven_is_invalid() {
    let moto = Moto::start();
    run(async {
        let sdk = sdk_of(&moto).await;
        let queue_url = create_queue(&sdk, "rotations").await;
        let ports = from_sdk_config(&sdk, &config("t", &queue_url, "arn:x"), &moto.endpoint);
        let batch: Vec<QueueMessage> = (0..11)
            .map(|i| QueueMessage {
                id: format!("m-{i}"),
                body: format!(r#"{{"n":{i}}}"#),
            })
            .collect();
        let e = ports.queue.send_batch(&batch).await.expect_err("11");
        assert!(matches!(e, PortError::Invalid { .. }), "{e:?}");
        let failed = ports
            .queue
            .send_batch(&batch[..10])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(failed.is_empty(), "{failed:?}");
        let mut bodies = receive(&sdk, &queue_url, 10).await;
        bodies.sort();
        let mut want: Vec<String> = batch[..10].iter().map(|m| m.body.clone()).collect();
        want.sort();
        assert_eq!(bodies, want);

        let missing = from_sdk_config(
            &sdk,
            &config(
                "t",
                &format!("{}/123456789012/nope", moto.endpoint),
                "arn:x",
            ),
            &moto.endpoint,
        );
        let e = missing
            .queue
            .send_batch(&batch[..1])
            .await
            .expect_err("no queue");
        assert!(e.is_not_found(), "{e:?}");
    });
}

#[test]
fn iot_data_accepts_a_publish() {
    let moto = Moto::start();
    run(async {
        let sdk = sdk_of(&moto).await;
        let endpoint = lambdas::aws::describe_data_endpoint(&aws_sdk_iot::Client::new(&sdk))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(endpoint.contains("iot"), "{endpoint}");
        let ports = from_sdk_config(&sdk, &config("t", "q", "s"), &moto.endpoint);
        ports
            .publisher
            .publish(
                "management/topic/thing-1/csr_req",
                br#"{"rotationId":"r-1"}"#,
                1,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let e = ports
            .publisher
            .publish("management/topic/thing-1/csr_req", b"{}", 2)
            .await
            .expect_err("qos 2");
        assert!(matches!(e, PortError::Invalid { .. }), "{e:?}");
    });
}

/// A thing with an ACTIVE certificate attached with the device policy.
/// The stack's table, queue and support topic in moto, as infra defines
/// them: `(queue url, topic arn)`.
async fn create_stack(sdk: &SdkConfig) -> (String, String) {
    create_rotation_table(sdk, "fleetcert-rotations").await;
    let queue_url = create_queue(sdk, "fleetcert-rotations").await;
    let topic_arn = aws_sdk_sns::Client::new(sdk)
        .create_topic()
        .name("fleetcert-support")
        .send()
        .await
        .expect("topic")
        .topic_arn()
        .expect("arn")
        .to_owned();
    (queue_url, topic_arn)
}

async fn provision(ports: &AwsPorts, thing: &str) -> (String, String) {
    let r = &ports.registry;
    r.create_thing(thing).await.expect("thing");
    let cert = r
        .create_certificate_from_csr(&csr_pem(&p256_key(), thing), true)
        .await
        .expect("certificate");
    r.attach_policy(POLICY, &cert.certificate_arn)
        .await
        .expect("policy");
    r.attach_thing_principal(thing, &cert.certificate_arn)
        .await
        .expect("attach");
    (cert.certificate_id, cert.certificate_arn)
}

#[test]
fn one_rotation_through_the_handlers_on_aws_ports() {
    let moto = Moto::start();
    run(async {
        let sdk = sdk_of(&moto).await;
        create_policy(&sdk).await;
        let (queue_url, topic_arn) = create_stack(&sdk).await;
        let cfg = config("fleetcert-rotations", &queue_url, &topic_arn);
        let ports = from_sdk_config(&sdk, &cfg, &moto.endpoint);
        let (old_id, old_arn) = provision(&ports, "thing-1").await;
        let now = now_ms();

        // rotation-starter: the audit work item opens a rotation.
        let batch = rotation_starter::handle(
            &ports,
            &cfg,
            &bytes(&sqs_event(&[work(&old_id, false)])),
            now,
        )
        .await;
        assert!(batch.response.batch_item_failures.is_empty(), "{batch:?}");
        assert!(
            batch
                .outcomes
                .iter()
                .all(|(_, o)| o.as_ref().is_ok_and(|o| !o.is_rejected())),
            "{batch:?}"
        );
        let id = rotation_starter::rotation_id("thing-1", &old_id, TASK);
        let row = ports.store.get(&id).await.expect("get").expect("row");
        assert_eq!(row.state, RotationState::Requested);

        // csr-issuer: the device's CSR becomes an attached certificate.
        let csr = csr_pem(&p256_key(), "thing-1");
        let out = csr_issuer::handle(
            &ports,
            &cfg,
            &bytes(&csr_res("thing-1", &csr, Some(&id))),
            now,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.is_rejected(), "{out:?}");
        let row = ports.store.get(&id).await.expect("get").expect("row");
        let new_id = match &row.state {
            RotationState::Issued {
                new_certificate_id, ..
            } => new_certificate_id.clone(),
            other => panic!("not issued: {other:?}"),
        };
        assert_ne!(new_id, old_id);

        // commit: the device acks on the new certificate.
        let out = commit::handle(
            &ports,
            &cfg,
            &bytes(&crt_ack("thing-1", &new_id, Some(&id))),
            now,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.is_rejected(), "{out:?}");

        let r = &ports.registry;
        let e = r
            .describe_certificate(&old_id)
            .await
            .expect_err("old deleted");
        assert!(e.is_not_found(), "{e:?}");
        let new = r
            .describe_certificate(&new_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(new.status, CertificateStatus::Active);
        let things = all_pages(|t| r.list_principal_things(&new.certificate_arn, t)).await;
        assert_eq!(things, ["thing-1"]);
        let policies = all_pages(|t| r.list_attached_policies(&new.certificate_arn, t)).await;
        assert_eq!(policies, [POLICY]);
        assert_ne!(new.certificate_arn, old_arn);
        let row = ports
            .store
            .latest_for_thing("thing-1")
            .await
            .expect("latest")
            .expect("row");
        assert_eq!(row.rotation_id, id);
        assert_eq!(
            row.state,
            RotationState::Committed {
                new_certificate_id: new_id.clone()
            }
        );
        assert!(
            ports
                .store
                .open_due(i64::MAX, None)
                .await
                .expect("due")
                .items
                .is_empty(),
            "the committed rotation is closed"
        );

        // A redelivered ack changes nothing.
        let again = commit::handle(
            &ports,
            &cfg,
            &bytes(&crt_ack("thing-1", &new_id, Some(&id))),
            now,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = again;
        assert_eq!(
            r.describe_certificate(&new_id)
                .await
                .expect("still there")
                .status,
            CertificateStatus::Active
        );
    });
}

/// Runs this test binary's ignored `load_child` with only `envs` set.
fn run_load_child(envs: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("test binary");
    let base = [
        ("AWS_CONFIG_FILE", "/nonexistent/fleetcert-config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/fleetcert-credentials",
        ),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("ROTATION_TABLE", "fleetcert-rotations"),
        ("ROTATION_QUEUE_URL", "http://127.0.0.1:1/123456789012/q"),
        (
            "SUPPORT_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:support",
        ),
        ("DEVICE_POLICY_NAME", POLICY),
    ];
    let out = Command::new(exe)
        .args(["load_child", "--exact", "--ignored", "--nocapture"])
        .env_clear()
        .envs(base.iter().chain(envs).copied())
        .output()
        .expect("run child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child with {envs:?} failed:\n{text}");
    assert!(text.contains("1 passed"), "child did not run:\n{text}");
}

/// `aws::load` reads the process environment: each case runs in a child
/// process with its own environment (no test mutates its own).
#[test]
fn load_builds_the_ports_from_the_environment() {
    let moto = Moto::start();
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let closed = format!("http://127.0.0.1:{closed}");
    // The endpoint from DescribeEndpoint, the registry on AWS_ENDPOINT_URL.
    run_load_child(&[
        ("FLEETCERT_LOAD_EXPECT", "ok"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", &moto.endpoint),
    ]);
    // IOT_DATA_ENDPOINT wins over DescribeEndpoint (which would fail here).
    run_load_child(&[
        ("FLEETCERT_LOAD_EXPECT", "publish"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", &closed),
        ("AWS_ENDPOINT_URL_IOT_DATA_PLANE", &closed),
        ("IOT_DATA_ENDPOINT", &moto.endpoint),
    ]);
    run_load_child(&[("FLEETCERT_LOAD_EXPECT", "no_region")]);
    // A function that never publishes makes no start-up call (its role has
    // no iot:DescribeEndpoint): it loads with the endpoint unreachable.
    run_load_child(&[
        ("FLEETCERT_LOAD_EXPECT", "non_publisher"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", &closed),
        ("AWS_MAX_ATTEMPTS", "1"),
    ]);
    run_load_child(&[
        ("FLEETCERT_LOAD_EXPECT", "describe_failed"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", &closed),
        ("AWS_MAX_ATTEMPTS", "1"),
    ]);
    run(async {
        let sdk = sdk_of(&moto).await;
        let thing = aws_sdk_iot::Client::new(&sdk)
            .describe_thing()
            .thing_name("loaded-from-env")
            .send()
            .await
            .expect("the child created the thing in this moto");
        assert_eq!(thing.thing_name(), Some("loaded-from-env"));
    });
}

#[test]
#[ignore = "run by load_builds_the_ports_from_the_environment in a child process"]
fn load_child() {
    let Ok(expect) = std::env::var("FLEETCERT_LOAD_EXPECT") else {
        return;
    };
    let cfg = Config::from_env().unwrap_or_else(|e| panic!("{e}"));
    if expect == "non_publisher" {
        for f in rules::functions::Function::ALL {
            let loaded = run(lambdas::aws::load_for(f, &cfg));
            assert_eq!(
                loaded.is_ok(),
                !lambdas::handlers::publishes(f),
                "{}: {:?}",
                f.name(),
                loaded.err()
            );
        }
        return;
    }
    let loaded = run(lambdas::aws::load(&cfg));
    match expect.as_str() {
        "ok" => {
            let ports = loaded.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(ports.store.table(), "fleetcert-rotations");
            run(ports.registry.create_thing("loaded-from-env")).unwrap_or_else(|e| panic!("{e}"));
        }
        "publish" => {
            let ports = loaded.unwrap_or_else(|e| panic!("{e}"));
            run(ports
                .publisher
                .publish("management/topic/t/csr_req", b"{}", 1))
            .unwrap_or_else(|e| panic!("{e}"));
        }
        "no_region" => assert_eq!(loaded.err(), Some(AwsInitError::NoRegion)),
        "describe_failed" => {
            let e = loaded.err();
            assert!(
                matches!(
                    e,
                    Some(AwsInitError::DescribeEndpoint {
                        kind: "transient",
                        ..
                    })
                ),
                "{e:?}"
            );
        }
        other => panic!("unknown FLEETCERT_LOAD_EXPECT {other}"),
    }
}

/// A brownfield device on moto through the real SDK: its certificate is
/// shared by a second thing and carries a customer policy besides the
/// device policy; with an allow-list, the rotation keeps both things and
/// both policies. A policy outside the allow-list fails the next rotation
/// before any certificate is created.
#[test]
fn a_shared_certificate_with_a_customer_policy_rotates_on_aws_ports() {
    let moto = Moto::start();
    run(async {
        let sdk = sdk_of(&moto).await;
        create_policy(&sdk).await;
        let iot = aws_sdk_iot::Client::new(&sdk);
        for name in ["Customer-Telemetry", "Admin"] {
            iot.create_policy()
                .policy_name(name)
                .policy_document(DEVICE_POLICY_DOCUMENT)
                .send()
                .await
                .expect("customer policy");
        }
        let (queue_url, topic_arn) = create_stack(&sdk).await;
        let mut cfg = config("fleetcert-rotations", &queue_url, &topic_arn);
        cfg.policy_copy =
            rules::policy_copy::PolicyCopy::from_lists(&format!("{POLICY},Customer-*"), "")
                .expect("copy rule");
        let ports = from_sdk_config(&sdk, &cfg, &moto.endpoint);
        let r = &ports.registry;
        let (old_id, old_arn) = provision(&ports, "gw-1").await;
        r.create_thing("gw-1-sensor").await.expect("thing");
        r.attach_thing_principal("gw-1-sensor", &old_arn)
            .await
            .expect("attach second thing");
        r.attach_policy("Customer-Telemetry", &old_arn)
            .await
            .expect("attach customer policy");
        let now = now_ms();
        let batch = rotation_starter::handle(
            &ports,
            &cfg,
            &bytes(&sqs_event(&[work(&old_id, false)])),
            now,
        )
        .await;
        assert!(batch.response.batch_item_failures.is_empty(), "{batch:?}");
        let id = rotation_starter::rotation_id("gw-1", &old_id, TASK);
        let out = csr_issuer::handle(
            &ports,
            &cfg,
            &bytes(&csr_res("gw-1", &csr_pem(&p256_key(), "gw-1"), Some(&id))),
            now,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.is_rejected(), "{out:?}");
        let row = ports.store.get(&id).await.expect("get").expect("row");
        let new_id = row.state.new_certificate_id().expect("issued").to_owned();
        let out = commit::handle(
            &ports,
            &cfg,
            &bytes(&crt_ack("gw-1", &new_id, Some(&id))),
            now,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.is_rejected(), "{out:?}");
        let new = r.describe_certificate(&new_id).await.expect("new");
        let mut things = all_pages(|t| r.list_principal_things(&new.certificate_arn, t)).await;
        things.sort();
        assert_eq!(things, ["gw-1", "gw-1-sensor"]);
        let mut policies = all_pages(|t| r.list_attached_policies(&new.certificate_arn, t)).await;
        policies.sort();
        assert_eq!(policies, ["Customer-Telemetry", POLICY]);
        assert!(
            r.describe_certificate(&old_id).await.is_err(),
            "old deleted"
        );

        // the next rotation meets a policy outside the allow-list
        r.attach_policy("Admin", &new.certificate_arn)
            .await
            .expect("attach admin");
        let task = "task-0002";
        let mut item = work(&new_id, false);
        item["taskId"] = serde_json::json!(task);
        let batch = rotation_starter::handle(&ports, &cfg, &bytes(&sqs_event(&[item])), now).await;
        assert!(batch.response.batch_item_failures.is_empty(), "{batch:?}");
        let second = rotation_starter::rotation_id("gw-1", &new_id, task);
        let out = csr_issuer::handle(
            &ports,
            &cfg,
            &bytes(&csr_res(
                "gw-1",
                &csr_pem(&p256_key(), "gw-1"),
                Some(&second),
            )),
            now,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.rejection_kind(), Some("policy_not_allowed"), "{out:?}");
        let row = ports.store.get(&second).await.expect("get").expect("row");
        assert_eq!(row.state.name(), "FAILED");
        let certs = iot.list_certificates().send().await.expect("list");
        assert_eq!(certs.certificates().len(), 1, "no certificate was created");
    });
}

/// A root CA in moto's ACM PCA, activated as a deployment activates one
/// (its CSR signed with the root template, the certificate imported):
/// `(ca arn, ca certificate pem)`.
async fn moto_private_ca(sdk: &SdkConfig) -> (String, String) {
    use aws_sdk_acmpca::primitives::Blob;
    use aws_sdk_acmpca::types::{
        Asn1Subject, CertificateAuthorityConfiguration, CertificateAuthorityType, KeyAlgorithm,
        SigningAlgorithm, Validity, ValidityPeriodType,
    };
    let pca = aws_sdk_acmpca::Client::new(sdk);
    let arn = pca
        .create_certificate_authority()
        .certificate_authority_type(CertificateAuthorityType::Root)
        .certificate_authority_configuration(
            CertificateAuthorityConfiguration::builder()
                .key_algorithm(KeyAlgorithm::Rsa2048)
                .signing_algorithm(SigningAlgorithm::Sha256Withrsa)
                .subject(Asn1Subject::builder().common_name("Fleet PCA").build())
                .build()
                .expect("configuration"),
        )
        .send()
        .await
        .expect("create ca")
        .certificate_authority_arn()
        .expect("arn")
        .to_owned();
    let csr = pca
        .get_certificate_authority_csr()
        .certificate_authority_arn(&arn)
        .send()
        .await
        .expect("ca csr")
        .csr()
        .expect("csr")
        .to_owned();
    let root = pca
        .issue_certificate()
        .certificate_authority_arn(&arn)
        .csr(Blob::new(csr.as_bytes()))
        .signing_algorithm(SigningAlgorithm::Sha256Withrsa)
        .template_arn("arn:aws:acm-pca:::template/RootCACertificate/V1")
        .validity(
            Validity::builder()
                .value(10)
                .r#type(ValidityPeriodType::Years)
                .build()
                .expect("validity"),
        )
        .send()
        .await
        .expect("issue root")
        .certificate_arn()
        .expect("root arn")
        .to_owned();
    let root_pem = pca
        .get_certificate()
        .certificate_authority_arn(&arn)
        .certificate_arn(&root)
        .send()
        .await
        .expect("get root")
        .certificate()
        .expect("pem")
        .to_owned();
    pca.import_certificate_authority_certificate()
        .certificate_authority_arn(&arn)
        .certificate(Blob::new(root_pem.as_bytes()))
        .send()
        .await
        .expect("import");
    (arn, root_pem.trim().to_owned())
}

/// csr-issuer with AWS Private CA on the AWS adapters against moto (which
/// models acmpca's IssueCertificate, GetCertificate, RevokeCertificate and
/// IoT's RegisterCertificate; it ignores the idempotency token, signing
/// algorithm and validity, so those are proven on the memory adapters):
/// the certificate comes from the CA, is registered in AWS IoT with it,
/// attached and activated; the adapter revokes by serial.
#[test]
fn a_rotation_issued_by_a_private_ca_on_aws_ports() {
    let moto = Moto::start();
    run(async {
        let sdk = sdk_of(&moto).await;
        create_policy(&sdk).await;
        create_rotation_table(&sdk, "fleetcert-rotations").await;
        let queue_url = create_queue(&sdk, "fleetcert-rotations").await;
        let (ca_arn, ca_pem) = moto_private_ca(&sdk).await;
        let iot = aws_sdk_iot::Client::new(&sdk);
        let ca_id = iot
            .register_ca_certificate()
            .ca_certificate(&ca_pem)
            .set_as_active(true)
            .send()
            .await
            .expect("register the ca in iot")
            .certificate_id()
            .expect("ca id")
            .to_owned();
        let mut cfg = config(
            "fleetcert-rotations",
            &queue_url,
            "arn:aws:sns:us-east-1:123456789012:none",
        );
        cfg.issuer = lambdas::config::IssuerConfig::PrivateCa(
            rules::issuer::PrivateCaSettings::new(&ca_arn, "SHA256WITHRSA", 30, None)
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let ports = from_sdk_config(&sdk, &cfg, &moto.endpoint);
        let (old_id, _) = provision(&ports, "thing-1").await;
        let now = now_ms();
        let batch = rotation_starter::handle(
            &ports,
            &cfg,
            &bytes(&sqs_event(&[work(&old_id, false)])),
            now,
        )
        .await;
        assert!(batch.response.batch_item_failures.is_empty(), "{batch:?}");
        let id = rotation_starter::rotation_id("thing-1", &old_id, TASK);
        let csr = csr_pem(&p256_key(), "thing-1");
        let out = csr_issuer::handle(
            &ports,
            &cfg,
            &bytes(&csr_res("thing-1", &csr, Some(&id))),
            now,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.is_rejected(), "{out:?}");
        let row = ports.store.get(&id).await.expect("get").expect("row");
        let RotationState::Issued {
            new_certificate_id, ..
        } = &row.state
        else {
            panic!("not issued: {}", row.state)
        };
        let r = &ports.registry;
        let new = r
            .describe_certificate(new_certificate_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(new.status, CertificateStatus::Active);
        // moto's DescribeCertificate leaves caCertificateId out; its
        // ListCertificatesByCA has it
        let by_ca = iot
            .list_certificates_by_ca()
            .ca_certificate_id(&ca_id)
            .send()
            .await
            .expect("list by ca");
        assert!(
            by_ca
                .certificates()
                .iter()
                .any(|c| c.certificate_id() == Some(new_certificate_id.as_str())),
            "registered with its ca: {by_ca:?}"
        );
        let info = rules::csr::inspect_certificate(&new.certificate_pem).expect("certificate");
        assert_eq!(info.issuer_cn.as_deref(), Some("Fleet PCA"));
        rules::csr::verify_issued_by(&new.certificate_pem, &ca_pem).expect("signed by the ca");
        let things = all_pages(|t| r.list_principal_things(&new.certificate_arn, t)).await;
        assert_eq!(things, ["thing-1"]);

        // Revocation by serial, as the issuer cleans up.
        let serial = lambdas::ports::certificate_serial(&new.certificate_pem).expect("serial");
        lambdas::ports::PrivateCa::revoke_certificate(&ports.private_ca, &ca_arn, &serial)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Another CA's ARN is not found.
        let other = format!("{}0", &ca_arn[..ca_arn.len() - 1]);
        let e = lambdas::ports::PrivateCa::get_certificate(&ports.private_ca, &other, "x")
            .await
            .expect_err("unknown ca");
        assert!(
            matches!(e, PortError::NotFound { .. } | PortError::Invalid { .. }),
            "{e:?}"
        );
    });
}
