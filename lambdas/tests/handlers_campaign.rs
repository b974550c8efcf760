//! Campaigns on the memory adapters: waves released by the sweeper, the
//! abort rule pausing a campaign after its canary with the rest untouched
//! and support told the numbers, the starter refusing a paused campaign's
//! members, resume (retrying the failed members) finishing the fleet with
//! nothing orphaned, and every step safe to run twice.

mod common;

use std::collections::BTreeMap;

use common::*;
use lambdas::handlers::{campaign, commit, csr_issuer, error_handler, rotation_starter, sweeper};
use lambdas::ports::Operation;
use rules::campaign::{
    AbortRule, Campaign, CampaignState, NewCampaign, Rollout, Share, member_rotation_id,
};
use rules::contracts::CampaignId;
use rules::functions::Function;
use rules::rotation::RotationState;
use serde_json::Value;

const MINUTE: i64 = 60_000;

fn id() -> CampaignId {
    CampaignId::new("wave-test").expect("id")
}

/// A campaign over the devices' certificates, in order.
fn new_campaign(w: &World, devices: &[Device], canary: &str, cohort: &str) -> Campaign {
    let certs: Vec<String> = devices.iter().map(|d| d.cert_id.clone()).collect();
    let (c, chunks) = Campaign::new(
        NewCampaign {
            id: id(),
            task_id: "fleetcert-rotate-test".into(),
            rollout: Rollout {
                canary: Share::parse(canary).expect("canary"),
                cohort: Share::parse(cohort).expect("cohort"),
                rate_per_second: 100,
            },
            abort: AbortRule {
                above_basis_points: 200,
                window: 50,
            },
            grace_ms: 5 * MINUTE,
        },
        &certs,
        w.now,
    )
    .expect("campaign");
    run(campaign::create(&w.ports.ports.store, &c, &chunks)).expect("create");
    c
}

fn stored(w: &World) -> Campaign {
    run(campaign::get(&w.ports.ports.store, &id()))
        .expect("get")
        .expect("campaign")
}

fn sweep(w: &World) {
    w.ports.instruments.reset_calls();
    let out = run(sweeper::handle(
        &w.ports,
        &w.cfg,
        &bytes(&scheduled_event()),
        w.now,
    ))
    .unwrap_or_else(|e| panic!("sweep: {e}"));
    assert!(!out.is_rejected(), "{out:?}");
    w.assert_calls_within(Function::Sweeper);
}

/// Delivers every queued message to the starter; returns the outcomes'
/// rejection kinds.
fn start(w: &World) -> Vec<Option<&'static str>> {
    let queued = w.ports.ports.queue.drain();
    let mut kinds = Vec::new();
    for chunk in queued.chunks(10) {
        w.ports.instruments.reset_calls();
        let bodies: Vec<Value> = chunk
            .iter()
            .map(|m| serde_json::from_str(&m.body).expect("body"))
            .collect();
        let batch = run(rotation_starter::handle(
            &w.ports,
            &w.cfg,
            &bytes(&sqs_event(&bodies)),
            w.now,
        ));
        assert!(batch.response.batch_item_failures.is_empty(), "{batch:?}");
        w.assert_calls_within(Function::RotationStarter);
        kinds.extend(
            batch
                .outcomes
                .into_iter()
                .map(|(_, o)| o.expect("outcome").rejection_kind()),
        );
    }
    kinds
}

/// Every device with an open REQUESTED rotation answers: a CSR, then the
/// `crt` is acked over the new certificate, or (broken firmware) refused
/// with `crt_err` over the old one.
fn devices_answer(w: &World, devices: &mut [Device], broken: &[usize]) {
    for (i, dev) in devices.iter_mut().enumerate() {
        let Some(row) = w.ports.ports.store.row_for_thing(&dev.thing) else {
            continue;
        };
        if row.state != RotationState::Requested {
            continue;
        }
        let rid = row.rotation_id.clone();
        let key = p256_key();
        let out = run(csr_issuer::handle(
            &w.ports,
            &w.cfg,
            &bytes(&csr_res(&dev.thing, &csr_pem(&key, &dev.thing), Some(&rid))),
            w.now,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.is_rejected(), "{out:?}");
        let crt = w.receive_crt(dev).expect("crt");
        let new_id = crt["certificateId"].as_str().expect("id").to_owned();
        if broken.contains(&i) {
            let out = run(error_handler::handle(
                &w.ports,
                &w.cfg,
                &bytes(&crt_err(
                    &dev.thing,
                    &dev.cert_id,
                    "bad firmware",
                    Some(&rid),
                )),
                w.now,
            ))
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(!out.is_rejected(), "{out:?}");
            dev.held.remove(&new_id);
        } else {
            let out = run(commit::handle(
                &w.ports,
                &w.cfg,
                &bytes(&crt_ack(&dev.thing, &new_id, Some(&rid))),
                w.now,
            ))
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(!out.is_rejected(), "{out:?}");
            dev.held.remove(&dev.cert_id);
            dev.cert_id = new_id;
        }
        w.assert_invariants(dev);
    }
}

fn notices(w: &World, kind: &str) -> Vec<Value> {
    w.ports
        .ports
        .notifier
        .sent()
        .iter()
        .filter_map(|n| serde_json::from_str::<Value>(&n.message).ok())
        .filter(|v| v["kind"] == kind)
        .collect()
}

fn statuses(w: &World, c: &Campaign) -> BTreeMap<char, usize> {
    let mut out = BTreeMap::new();
    for index in 0..c.total.div_ceil(rules::campaign::CHUNK) {
        let key = rules::campaign::chunk_key(&c.id, index);
        let Some(rules::campaign::CampaignItem::Members(m)) =
            w.ports.ports.store.campaign_item(&key)
        else {
            panic!("chunk {key}")
        };
        for ch in m.status.chars() {
            *out.entry(ch).or_default() += 1;
        }
    }
    out
}

#[test]
fn a_broken_canary_pauses_the_campaign_and_a_resume_finishes_the_fleet() {
    let mut w = World::new();
    let mut devices: Vec<Device> = (0..40)
        .map(|i| w.provision(&format!("dev-{i:02}")))
        .collect();
    let originals: Vec<String> = devices.iter().map(|d| d.cert_id.clone()).collect();
    // 5 % broken: the 4th device (in the canary) and the 26th
    let broken = [3usize, 25];
    let c = new_campaign(&w, &devices, "20", "25%");
    assert_eq!(c.waves().len(), 3, "a canary of 20, then two cohorts of 10");

    // the canary: 20 released, started, answered
    sweep(&w);
    assert_eq!(w.ports.ports.queue.len(), 20);
    // a second sweep at the same instant releases nothing more
    sweep(&w);
    assert_eq!(w.ports.ports.queue.len(), 20);
    assert!(start(&w).iter().all(Option::is_none));
    devices_answer(&w, &mut devices, &broken);

    // the sweep counts the canary's outcomes: 1 failed of 20 is above 2 %
    w.now += MINUTE;
    sweep(&w);
    let paused = stored(&w);
    let CampaignState::Paused { trip: Some(trip) } = &paused.state else {
        panic!("{:?}", paused.state)
    };
    assert_eq!(
        (trip.failed, trip.expired, trip.outcomes, trip.wave),
        (1, 0, 20, 0)
    );
    assert_eq!(paused.counts.committed, 19);
    let told = notices(&w, "campaign_paused");
    assert_eq!(told.len(), 1, "support is told once");
    assert_eq!(told[0]["trip"]["failed"], 1);
    assert_eq!(told[0]["counts"]["committed"], 19);
    // the rest is untouched: no member released, no rotation, same certificate
    assert!(w.ports.ports.queue.is_empty());
    for (i, dev) in devices.iter().enumerate().skip(20) {
        assert!(
            w.ports.ports.store.row_for_thing(&dev.thing).is_none(),
            "{i}"
        );
        assert_eq!(dev.cert_id, originals[i]);
    }
    assert_eq!(statuses(&w, &paused)[&'p'], 20);

    // paused sweeps release nothing and tell support nothing more
    w.now += 10 * MINUTE;
    sweep(&w);
    assert!(w.ports.ports.queue.is_empty());
    assert_eq!(notices(&w, "campaign_paused").len(), 1);

    // resuming a running campaign is refused; a resume retrying the failed
    let refused = run(campaign::change(&w.ports.ports.store, &id(), |c| {
        c.resume(false)
    }));
    assert!(refused.is_ok(), "paused: resumable");
    let again = run(campaign::change(&w.ports.ports.store, &id(), |c| {
        c.resume(false)
    }));
    assert!(matches!(
        again,
        Err(campaign::ChangeError::Refused(
            rules::campaign::CampaignError::AlreadyRunning(_)
        ))
    ));
    // pause by hand, then resume with the failed members retried, the
    // devices fixed
    run(campaign::change(
        &w.ports.ports.store,
        &id(),
        Campaign::pause,
    ))
    .expect("pause");
    run(campaign::change(&w.ports.ports.store, &id(), |c| {
        c.resume(true)
    }))
    .expect("resume");
    for _ in 0..6 {
        w.now += MINUTE;
        sweep(&w);
        start(&w);
        devices_answer(&w, &mut devices, &[]);
    }
    w.now += MINUTE;
    sweep(&w);
    let done = stored(&w);
    assert_eq!(done.state, CampaignState::Finished, "{done:?}");
    assert_eq!(done.counts.committed, 40, "19 + the retried one + 20");
    assert_eq!(done.counts.failed, 1, "the canary's failure stays counted");
    assert_eq!(statuses(&w, &done), BTreeMap::from([('c', 40)]));
    assert_eq!(notices(&w, "campaign_finished").len(), 1);
    // the retried member rotated under its next attempt's id
    let retried = w
        .ports
        .ports
        .store
        .row(&member_rotation_id(&id(), 3, 1))
        .expect("retry row");
    assert!(matches!(retried.state, RotationState::Committed { .. }));
    for (i, dev) in devices.iter().enumerate() {
        assert_ne!(dev.cert_id, originals[i], "device {i} rotated");
        w.assert_invariants(dev);
    }
    w.assert_no_orphans(&devices.iter().collect::<Vec<_>>());
    // dropped from the active list: later sweeps read one item
    w.ports.instruments.reset_calls();
    run(sweeper::handle(
        &w.ports,
        &w.cfg,
        &bytes(&scheduled_event()),
        w.now,
    ))
    .expect("sweep");
    assert_eq!(w.calls(Operation::GetCampaign), 1);
}

#[test]
fn a_paused_campaign_starts_nothing_and_releases_its_queued_members_again() {
    let mut w = World::new();
    let mut devices: Vec<Device> = (0..10)
        .map(|i| w.provision(&format!("dev-{i:02}")))
        .collect();
    new_campaign(&w, &devices, "4", "3");
    sweep(&w);
    assert_eq!(w.ports.ports.queue.len(), 4);
    // the operator pauses while the members wait on the queue
    run(campaign::change(
        &w.ports.ports.store,
        &id(),
        Campaign::pause,
    ))
    .expect("pause");
    let kinds = start(&w);
    assert_eq!(kinds, vec![Some("campaign_not_running"); 4]);
    assert!(
        devices
            .iter()
            .all(|d| w.ports.ports.store.row_for_thing(&d.thing).is_none())
    );
    assert!(
        last_csr_req(&w, "dev-00").is_none(),
        "no csr_req while paused"
    );
    // within the grace they stay released; after it, pending again
    w.now += MINUTE;
    sweep(&w);
    assert_eq!(statuses(&w, &stored(&w))[&'r'], 4);
    w.now += 5 * MINUTE;
    sweep(&w);
    assert_eq!(statuses(&w, &stored(&w))[&'p'], 10);
    assert_eq!(
        stored(&w).counts.skipped,
        0,
        "paused members are not skipped"
    );
    // resumed, they are released again and rotate
    run(campaign::change(&w.ports.ports.store, &id(), |c| {
        c.resume(false)
    }))
    .expect("resume");
    for _ in 0..5 {
        w.now += MINUTE;
        sweep(&w);
        start(&w);
        devices_answer(&w, &mut devices, &[]);
    }
    w.now += MINUTE;
    sweep(&w);
    assert_eq!(stored(&w).state, CampaignState::Finished);
    assert_eq!(stored(&w).counts.committed, 10);
    w.assert_no_orphans(&devices.iter().collect::<Vec<_>>());
}

#[test]
fn a_member_the_starter_refuses_is_skipped_and_a_cancel_stops_the_release() {
    let mut w = World::new();
    let mut devices: Vec<Device> = (0..6)
        .map(|i| w.provision(&format!("dev-{i:02}")))
        .collect();
    // dev-01 already has an open rotation (the audit's): its member is skipped
    let audit = run(rotation_starter::start_one(
        &w.ports,
        &w.cfg,
        &bytes(&work(&devices[1].cert_id, false)),
        w.now,
    ))
    .expect("start");
    assert!(!audit.is_rejected());
    new_campaign(&w, &devices, "2", "2");
    sweep(&w);
    let kinds = start(&w);
    assert_eq!(kinds, vec![None, Some("rotation_open")]);
    devices_answer(&w, &mut devices[..1], &[]);
    w.now += 6 * MINUTE;
    sweep(&w);
    let c = stored(&w);
    assert_eq!((c.counts.committed, c.counts.skipped, c.wave), (1, 1, 1));
    assert_eq!(c.state, CampaignState::Running, "a skip is no failure");
    // the second wave is released; cancelled, nothing more is
    w.now += MINUTE;
    sweep(&w);
    assert_eq!(w.ports.ports.queue.len(), 2);
    run(campaign::change(
        &w.ports.ports.store,
        &id(),
        Campaign::cancel,
    ))
    .expect("cancel");
    let kinds = start(&w);
    assert_eq!(kinds, vec![Some("campaign_not_running"); 2]);
    w.now += MINUTE;
    sweep(&w);
    assert!(w.ports.ports.queue.is_empty());
    assert!(matches!(
        run(campaign::change(&w.ports.ports.store, &id(), |c| c.resume(false))),
        Err(campaign::ChangeError::Refused(_))
    ));
    assert_eq!(
        statuses(&w, &stored(&w)).get(&'p').copied().unwrap_or(0),
        2,
        "the last wave never released"
    );
}

#[test]
fn a_lost_campaign_write_releases_members_again_without_a_second_rotation() {
    let mut w = World::new();
    let mut devices: Vec<Device> = (0..3)
        .map(|i| w.provision(&format!("dev-{i:02}")))
        .collect();
    new_campaign(&w, &devices, "3", "1");
    // the messages go out, the write recording them fails
    w.ports
        .instruments
        .fail_next(Operation::PutCampaign, 1, lambdas::memory::Fault::Throttled);
    let out = run(sweeper::handle(
        &w.ports,
        &w.cfg,
        &bytes(&scheduled_event()),
        w.now,
    ));
    assert!(out.is_err(), "retryable: {out:?}");
    assert_eq!(w.ports.ports.queue.len(), 3);
    w.now += 1000;
    sweep(&w);
    assert_eq!(w.ports.ports.queue.len(), 6, "released again");
    let kinds = start(&w);
    assert_eq!(kinds.iter().filter(|k| k.is_none()).count(), 6, "{kinds:?}");
    assert_eq!(
        w.ports.ports.store.rows().len(),
        3,
        "one rotation per member"
    );
    devices_answer(&w, &mut devices, &[]);
    w.now += MINUTE;
    sweep(&w);
    assert_eq!(stored(&w).state, CampaignState::Finished);
    assert_eq!(stored(&w).counts.committed, 3);
}
