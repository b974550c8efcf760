//! Issue 15 end to end: the device agent (its real slots, over mutual TLS)
//! against the emulated cloud when the commit of its acknowledged rotation
//! never lands (the commit invocation and both Lambda retries fail, the
//! ack was PUBACKed all the same). Before the fix the agent deleted its
//! old key at the PUBACK and the sweeper deleted the new certificate at
//! the deadline: the device was left with no key AWS accepts. One device
//! each, bounded in seconds; 127.0.0.1 only.

use std::time::{Duration, Instant};

use device::AgentEvent;
use emulator::cloud::DEVICE_POLICY;
use emulator::{Cloud, CloudConfig};
use harness::simulate::{AgentSettings, Fleet, FleetDevice, FleetEvent};
use lambdas::ports::{CertificateStatus, IotRegistry};
use tokio::sync::mpsc::UnboundedReceiver;

const THING: &str = "brick-000";
const DEADLINE_MS: i64 = 4_000;
const BOUND: Duration = Duration::from_secs(30);

/// A cloud with a short rotation deadline and no scheduled sweeps, one
/// device started with `confirm_every`, connected; the commit of its next
/// ack fails on every attempt.
async fn setup(confirm_every: Duration) -> (Cloud, Fleet, UnboundedReceiver<FleetEvent>) {
    let (deployment, _) = harness::simulate::synthesized_deployment(&[]).expect("template");
    let mut config = CloudConfig::new(deployment);
    config.sweep_every = None;
    config.handlers.rotation_deadline_ms = DEADLINE_MS;
    let attempts = config.lambda_retries as usize + 1;
    let cloud = Cloud::start(config).await.expect("cloud starts");
    let c = cloud.register_device(THING, 10).await.expect("device");
    let mut fleet = Fleet::install(
        None,
        vec![(
            FleetDevice::new(THING.to_owned(), c.certificate_id, false),
            c.certificate_pem,
            c.private_key_pem,
        )],
    )
    .expect("slots");
    let settings = AgentSettings {
        confirm_every,
        ..AgentSettings::default()
    };
    let mut rx = fleet.start(&cloud, &settings).expect("agent");
    until(&mut rx, "connected", |e| {
        matches!(e, AgentEvent::Connected { .. })
    })
    .await;
    cloud.ports().ports.store.fail_commits(THING, attempts);
    (cloud, fleet, rx)
}

async fn until(
    rx: &mut UnboundedReceiver<FleetEvent>,
    what: &str,
    mut done: impl FnMut(&AgentEvent) -> bool,
) -> AgentEvent {
    let deadline = Instant::now() + BOUND;
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("event channel closed waiting for {what}"));
        if done(&ev.event) {
            return ev.event;
        }
    }
}

/// Audit → rotation → the agent acks over the new certificate (PUBACK) →
/// the commit fails on the invocation and every retry. Returns the new
/// certificate's id.
async fn ack_whose_commit_never_lands(
    cloud: &Cloud,
    rx: &mut UnboundedReceiver<FleetEvent>,
) -> String {
    assert_eq!(cloud.audit_now(30).await.expect("audit").findings, 1);
    let rotated = until(rx, "rotated", |e| matches!(e, AgentEvent::Rotated { .. })).await;
    let AgentEvent::Rotated { certificate_id, .. } = rotated else {
        unreachable!("matched above")
    };
    let deadline = Instant::now() + BOUND;
    while cloud.stats().failures == 0 {
        assert!(Instant::now() < deadline, "the commit never failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let row = cloud.ports().ports.store.row_for_thing(THING).expect("row");
    assert_eq!(row.state.name(), "ISSUED", "{row:?}");
    certificate_id
}

fn usable(cloud: &Cloud, id: &str) -> bool {
    cloud.registry().certificate(id).is_some_and(|c| {
        c.status == CertificateStatus::Active
            && c.things.iter().any(|t| t == THING)
            && c.policies.contains(DEVICE_POLICY)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_commit_never_landed_keeps_a_working_certificate_past_the_expiry() {
    let (cloud, mut fleet, mut rx) = setup(Duration::from_secs(60)).await;
    let initial = fleet.devices[0].initial_certificate_id.clone();
    let new_id = ack_whose_commit_never_lands(&cloud, &mut rx).await;
    assert_eq!(
        fleet.current_certificate(0).as_deref(),
        Some(new_id.as_str())
    );

    // Past the deadline the sweeper expires the rotation.
    let row = cloud.ports().ports.store.row_for_thing(THING).expect("row");
    let wait = row.deadline_ms - emulator::cloud::now_ms() + 50;
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
    cloud.sweep_now().await.expect("sweep");
    let row = cloud.ports().ports.store.row_for_thing(THING).expect("row");
    assert_eq!(row.state.name(), "EXPIRED", "{row:?}");
    // Give a closed connection its reconnect.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let current = fleet.current_certificate(0).expect("current");
    assert!(
        usable(&cloud, &current),
        "bricked: the device's certificate {current} is not usable"
    );
    assert!(usable(&cloud, &initial), "both kept: the old one too");
    assert!(
        cloud
            .notifications()
            .iter()
            .any(|n| n.subject.contains("both certificates kept")),
        "{:?}",
        cloud.notifications()
    );
    fleet.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_keeps_its_old_key_and_falls_back_when_the_new_certificate_is_removed() {
    let (cloud, mut fleet, mut rx) = setup(Duration::from_secs(60)).await;
    let initial = fleet.devices[0].initial_certificate_id.clone();
    let new_id = ack_whose_commit_never_lands(&cloud, &mut rx).await;

    // The cloud removes the new certificate (what the sweeper did before
    // the fix, and what a `crt_err` sent before a crash still does): its
    // connection is closed and it is refused from now on.
    let registry = cloud.registry();
    let arn = registry
        .describe_certificate(&new_id)
        .await
        .expect("new")
        .certificate_arn;
    registry
        .detach_policy(DEVICE_POLICY, &arn)
        .await
        .expect("detach policy");
    registry
        .detach_thing_principal(THING, &arn)
        .await
        .expect("detach thing");
    registry
        .update_certificate(&new_id, CertificateStatus::Inactive)
        .await
        .expect("deactivate");
    registry.delete_certificate(&new_id).await.expect("delete");

    until(
        &mut rx,
        "the fall-back to the old certificate",
        |e| matches!(e, AgentEvent::FellBack { certificate_id, .. } if *certificate_id == initial),
    )
    .await;
    assert_eq!(fleet.current_certificate(0), Some(initial.clone()));
    assert!(usable(&cloud, &initial));
    fleet.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_key_is_deleted_once_the_repeated_ack_has_committed() {
    let (cloud, mut fleet, mut rx) = setup(Duration::from_millis(500)).await;
    let initial = fleet.devices[0].initial_certificate_id.clone();
    let new_id = ack_whose_commit_never_lands(&cloud, &mut rx).await;
    assert_eq!(
        fleet.held_certificates(0),
        [new_id.clone(), initial.clone()],
        "the old key is kept while the commit is not proven"
    );
    // The agent reconnects, acks again (the commit lands this time), and
    // at its next look finds the old certificate refused.
    until(&mut rx, "the commit confirmed", |e| {
        matches!(e, AgentEvent::CommitConfirmed { .. })
    })
    .await;
    let row = cloud.ports().ports.store.row_for_thing(THING).expect("row");
    assert_eq!(row.state.name(), "COMMITTED", "{row:?}");
    assert!(
        cloud.registry().certificate(&initial).is_none(),
        "old retired"
    );
    assert_eq!(fleet.held_certificates(0), vec![new_id.clone()]);
    assert!(usable(&cloud, &new_id));
    fleet.stop(Duration::from_secs(10)).await;
}

/// A cloud whose commit lands on the last Lambda retry (≈ 1 s after the
/// ack) and whose `crt_err` never lands, and one agent that loses the
/// PUBACK of its first `crt_ack` (the broker has it).
async fn lost_puback_setup() -> (Cloud, Fleet, UnboundedReceiver<FleetEvent>, String) {
    let (deployment, _) = harness::simulate::synthesized_deployment(&[]).expect("template");
    let mut config = CloudConfig::new(deployment);
    config.sweep_every = None;
    config.retry_delay = Duration::from_millis(300);
    let attempts = config.lambda_retries as usize + 1;
    let cloud = Cloud::start(config).await.expect("cloud starts");
    let store = &cloud.ports().ports.store;
    store.fail_commits(THING, attempts - 1);
    store.fail_transitions(THING, "FAILED", attempts);
    let c = cloud.register_device(THING, 10).await.expect("device");
    let initial = c.certificate_id.clone();
    let mut fleet = Fleet::install(
        None,
        vec![(
            FleetDevice::new(THING.to_owned(), c.certificate_id, false),
            c.certificate_pem,
            c.private_key_pem,
        )],
    )
    .expect("slots");
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let settings = AgentSettings {
        confirm_every: Duration::from_millis(500),
        crash: Some(std::sync::Arc::new(move |_| {
            let lost = lost.clone();
            Some(std::sync::Arc::new(move |step: &str| {
                step == "agent: crt_ack puback lost"
                    && !lost.swap(true, std::sync::atomic::Ordering::SeqCst)
            }) as device::FaultHook)
        })),
        ..AgentSettings::default()
    };
    let mut rx = fleet.start(&cloud, &settings).expect("agent");
    until(&mut rx, "connected", |e| {
        matches!(e, AgentEvent::Connected { .. })
    })
    .await;
    (cloud, fleet, rx, initial)
}

/// The rotation commits and the agent ends on the new certificate.
async fn ends_committed_on_the_new_certificate(cloud: &Cloud, fleet: &Fleet, initial: &str) {
    let deadline = Instant::now() + BOUND;
    loop {
        let row = cloud.ports().ports.store.row_for_thing(THING);
        let committed = row.is_some_and(|r| r.state.name() == "COMMITTED" && !r.cleanup_pending);
        let current = fleet.current_certificate(0).expect("current");
        if committed && current != initial && usable(cloud, &current) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "bricked or stuck: current {current}, usable {}, rows {:?}",
            usable(cloud, &current),
            cloud.ports().ports.store.rows_for_thing(THING)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Found by the model checker (`tests::model`): the agent acks over the new
/// certificate, the broker has the ack (the commit lands and retires the
/// old certificate) but the PUBACK is lost; the agent used to roll back
/// then, sending `crt_err` and deleting the new key: left with the retired
/// old certificate only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_puback_of_the_ack_does_not_make_the_agent_drop_its_new_key() {
    let (cloud, mut fleet, _rx, initial) = lost_puback_setup().await;
    assert_eq!(cloud.audit_now(30).await.expect("audit").findings, 1);
    ends_committed_on_the_new_certificate(&cloud, &fleet, &initial).await;
    fleet.stop(Duration::from_secs(10)).await;
}

/// Found by the model checker next: while the agent keeps the new
/// certificate after the lost PUBACK, a `csr_req` the sweeper sent earlier
/// arrives; the agent used to answer it with a new key that replaced the
/// kept certificate in `next/`, and the commit then left it with nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_csr_req_does_not_replace_a_kept_new_certificate() {
    let (cloud, mut fleet, mut rx, initial) = lost_puback_setup().await;
    assert_eq!(cloud.audit_now(30).await.expect("audit").findings, 1);
    until(
        &mut rx,
        "the lost puback",
        |e| matches!(e, AgentEvent::Disconnected { reason } if reason.contains("puback")),
    )
    .await;
    until(
        &mut rx,
        "back on the old certificate",
        |e| matches!(e, AgentEvent::Connected { certificate_id, .. } if *certificate_id == initial),
    )
    .await;
    let row = cloud.ports().ports.store.row_for_thing(THING).expect("row");
    let req = serde_json::json!({"rotationId": row.rotation_id}).to_string();
    let topic = rules::topic::management_topic(THING, rules::topic::MessageKind::CsrReq);
    lambdas::ports::Publisher::publish(&cloud.ports().ports.publisher, &topic, req.as_bytes(), 1)
        .await
        .expect("csr_req");
    ends_committed_on_the_new_certificate(&cloud, &fleet, &initial).await;
    fleet.stop(Duration::from_secs(10)).await;
}
