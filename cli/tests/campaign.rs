//! `fleetcert rotate --canary` and `fleetcert campaign` against moto: the
//! command writes a campaign over a thing group's ACTIVE certificates into
//! a rotation table created as the stack creates it; the real sweeper on
//! the DynamoDB adapter (`lambdas::aws::DynamoStore`) reads it, releases
//! the canary onto the work queue and, when the canary's rotation fails,
//! pauses it and tells support; `campaign status|pause|resume|cancel` read
//! and change it as the sweeper sees it. Bad input is refused with nothing
//! written. 127.0.0.1 only.

use std::process::{Command, Output, Stdio};

mod common;

use common::*;
use lambdas::aws::DynamoStore;
use lambdas::config::Config;
use lambdas::handlers::sweeper;
use lambdas::memory::MemoryPorts;
use lambdas::ports::{PortSet, RotationStore};
use rules::campaign::{ACTIVE_KEY, CampaignItem, member_rotation_id};
use rules::contracts::{CampaignId, RotationWork};
use rules::rotation::{Rotation, RotationState};
use serde_json::{Value, json};
use test_support::{IsolatedAws, Moto};

fn fleetcert(moto: &Moto, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetcert"))
        .args(args)
        .args(["--endpoint-url", &moto.endpoint, "--region", REGION])
        .isolated_aws()
        .env_remove("FLEETCERT_TABLE")
        .stdin(Stdio::null())
        .output()
        .expect("run fleetcert");
    eprintln!(
        "$ fleetcert {}\n-> {:?}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_of(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0));
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

fn refused(out: &Output, says: &str) {
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(says), "{stderr}");
}

async fn sweep(p: &Ports, cfg: &Config, now: i64) {
    let event = json!({
        "version": "0", "id": "e-1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-01-02T00:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/fleetcert-sweeper"], "detail": {}
    });
    let out = sweeper::handle(p, cfg, &serde_json::to_vec(&event).expect("json"), now)
        .await
        .unwrap_or_else(|e| panic!("sweep: {e}"));
    assert!(!out.is_rejected(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_written_by_rotate_is_released_paused_and_resumed_through_the_table() {
    let moto = Moto::start();
    let sdk = sdk(&moto).await;
    create_rotation_table(&sdk).await;
    let iot = aws_sdk_iot::Client::new(&sdk);
    iot.create_thing_group()
        .thing_group_name("plant-7")
        .send()
        .await
        .expect("group");
    let mut certificates = Vec::new();
    for thing in ["pump-1", "pump-2", "pump-3"] {
        iot.create_thing()
            .thing_name(thing)
            .send()
            .await
            .expect("thing");
        let cert = iot
            .create_keys_and_certificate()
            .set_as_active(true)
            .send()
            .await
            .expect("certificate");
        iot.attach_thing_principal()
            .thing_name(thing)
            .principal(cert.certificate_arn().expect("arn"))
            .send()
            .await
            .expect("attach");
        iot.add_thing_to_thing_group()
            .thing_group_name("plant-7")
            .thing_name(thing)
            .send()
            .await
            .expect("member");
        certificates.push(cert.certificate_id().expect("id").to_owned());
    }
    certificates.sort();
    let rotate_with = |cohort: &str, window: &str, extra: &[&str]| {
        let mut args = vec![
            "rotate",
            "--thing-group",
            "plant-7",
            "--canary",
            "1",
            "--cohort",
            cohort,
            "--abort-above",
            "2%",
            "--abort-window",
            window,
            "--table",
            TABLE,
        ];
        args.extend_from_slice(extra);
        fleetcert(&moto, &args)
    };
    let rotate = |extra: &[&str]| rotate_with("50%", "10", extra);

    // bad input: refused before anything is listed or written
    refused(&rotate_with("0%", "10", &["--yes"]), "--cohort");
    refused(
        &rotate(&["--campaign-id", "not ok!", "--yes"]),
        "--campaign-id",
    );
    refused(
        &rotate_with("50%", "0", &["--campaign-id", "w0", "--yes"]),
        "abort window",
    );
    refused(&rotate(&["--campaign-id", "plant7"]), "--yes");
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), TABLE);
    assert_eq!(store.get_campaign(ACTIVE_KEY).await.expect("get"), None);
    assert_eq!(store.get_campaign("campaign#w0").await.expect("get"), None);

    // --dry-run shows the waves and writes nothing
    let dry = json_of(&rotate(&["--campaign-id", "plant7", "--dry-run", "--json"]));
    assert_eq!(
        dry["campaign"],
        json!({"id": "plant7", "waves": [1, 2], "written": false})
    );
    let out = json_of(&rotate(&["--campaign-id", "plant7", "--yes", "--json"]));
    assert_eq!(
        out["campaign"],
        json!({"id": "plant7", "waves": [1, 2], "written": true})
    );
    assert_eq!(out["queued"], 0, "a campaign queues nothing itself");
    // the id is taken: refused, the campaign unchanged
    refused(
        &rotate(&["--campaign-id", "plant7", "--yes"]),
        "exists already",
    );

    let status = json_of(&fleetcert(
        &moto,
        &["campaign", "status", "plant7", "--table", TABLE, "--json"],
    ));
    assert_eq!(status["state"], "RUNNING");
    assert_eq!(status["total"], 3);
    assert_eq!(status["waves"], json!([1, 2]));

    // the real sweeper on the DynamoDB adapter releases the canary
    let memory = MemoryPorts::new();
    let p: Ports = PortSet {
        registry: memory.ports.registry.clone(),
        publisher: memory.ports.publisher.clone(),
        store,
        notifier: memory.ports.notifier.clone(),
        queue: memory.ports.queue.clone(),
        private_ca: memory.ports.private_ca.clone(),
    };
    let mut cfg = Config::local("fleetcert-device");
    cfg.rotation_table = TABLE.to_owned();
    let now = now_ms() + 1000;
    sweep(&p, &cfg, now).await;
    let released = p.queue.drain();
    assert_eq!(released.len(), 1, "the canary of one");
    let work: RotationWork = serde_json::from_str(&released[0].body).expect("work");
    let member = work.campaign.clone().expect("a campaign member");
    assert_eq!(
        (member.id.as_ref(), member.member, member.attempt),
        ("plant7", 0, 0)
    );
    assert_eq!(work.certificate_id.as_str(), certificates[0]);
    // the canary's rotation fails (as rotation-starter and error-handler
    // would write it)
    let id = CampaignId::new("plant7").expect("id");
    let row = Rotation::requested(
        member_rotation_id(&id, 0, 0),
        "pump-x",
        &certificates[0],
        now,
        now + 3_600_000,
    );
    p.store.create(&row).await.expect("create");
    let failed = Rotation {
        state: RotationState::Failed {
            reason: "bad firmware".into(),
            new_certificate_id: None,
        },
        ..row.clone()
    };
    p.store.update(&row, &failed).await.expect("fail");
    sweep(&p, &cfg, now + 1000).await;
    assert!(p.queue.is_empty(), "paused: nothing more released");
    let told: Vec<Value> = p
        .notifier
        .sent()
        .iter()
        .filter_map(|n| serde_json::from_str(&n.message).ok())
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["kind"], "campaign_paused");
    assert_eq!(told[0]["trip"]["failed"], 1);

    let status = json_of(&fleetcert(
        &moto,
        &["campaign", "status", "plant7", "--table", TABLE, "--json"],
    ));
    assert_eq!(status["state"], "PAUSED");
    assert_eq!(status["trip"]["failed"], 1);
    assert_eq!(status["counts"]["failed"], 1);
    let text = fleetcert(&moto, &["campaign", "status", "plant7", "--table", TABLE]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("paused by    its abort rule: 1 failed")
    );

    // resume: running, the failed member retried at the next sweep
    let resumed = json_of(&fleetcert(
        &moto,
        &["campaign", "resume", "plant7", "--table", TABLE, "--json"],
    ));
    assert_eq!(resumed["state"], "RUNNING");
    assert_eq!(resumed["retryFailed"], true);
    refused(
        &fleetcert(&moto, &["campaign", "resume", "plant7", "--table", TABLE]),
        "running already",
    );
    sweep(&p, &cfg, now + 2000).await;
    let again = p.queue.drain();
    assert_eq!(again.len(), 1, "the failed member, next attempt");
    let work: RotationWork = serde_json::from_str(&again[0].body).expect("work");
    assert_eq!(work.campaign.expect("member").attempt, 1);

    // pause, cancel; a cancelled campaign takes no change and is dropped
    // from the active list at the next sweep
    let paused = json_of(&fleetcert(
        &moto,
        &["campaign", "pause", "plant7", "--table", TABLE, "--json"],
    ));
    assert_eq!(paused["state"], "PAUSED");
    let cancelled = json_of(&fleetcert(
        &moto,
        &["campaign", "cancel", "plant7", "--table", TABLE, "--json"],
    ));
    assert_eq!(cancelled["state"], "CANCELLED");
    refused(
        &fleetcert(&moto, &["campaign", "cancel", "plant7", "--table", TABLE]),
        "CANCELLED",
    );
    refused(
        &fleetcert(&moto, &["campaign", "status", "nope", "--table", TABLE]),
        "no campaign nope",
    );
    refused(
        &fleetcert(&moto, &["campaign", "status", "plant7"]),
        "--table",
    );
    sweep(&p, &cfg, now + 3000).await;
    assert!(p.queue.is_empty());
    assert_eq!(
        p.store.get_campaign(ACTIVE_KEY).await.expect("get"),
        Some(CampaignItem::Active(Default::default()))
    );
}
