//! The certificate-age check rotates certificates nowhere near expiry: a
//! stack synthesized with `audit.age_threshold_days = 30`, devices whose
//! certificates have a year left, the clock moved 31 days on; the audit's
//! age check finds them all (its expiry check none) and every device
//! rotates. Bounded in devices and seconds; 127.0.0.1 only.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use device::AgentEvent;
use emulator::cloud::DEVICE_POLICY;
use emulator::{Cloud, CloudConfig, Deployment, Provisioning};
use harness::simulate::{AgentSettings, Fleet, FleetDevice};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_age_check_rotates_certificates_far_from_expiry() {
    let config = infra::config::Config::from_toml("[audit]\nage_threshold_days = 30")
        .and_then(infra::config::Config::validate)
        .expect("config");
    let template = infra::assembly::template(&config, &[]).expect("template");
    let deployment =
        Deployment::from_template(&template, &Deployment::default_scope()).expect("deployment");
    let mut cloud_config = CloudConfig::new(deployment);
    cloud_config.sweep_every = Some(Duration::from_millis(500));
    let cloud = Cloud::start(cloud_config).await.expect("cloud");
    let n = 10;
    let mut installs = Vec::new();
    for i in 0..n {
        let thing = format!("aged-{i:02}");
        let c = cloud
            .provision_device(&Provisioning {
                thing: &thing,
                common_name: &thing,
                validity_days: 365,
                issued_days_ago: if i < n - 2 { 40 } else { 10 },
                policies: &[DEVICE_POLICY],
                other_things: &[],
            })
            .await
            .expect("device");
        installs.push((
            FleetDevice::new(thing, c.certificate_id, false),
            c.certificate_pem,
            c.private_key_pem,
        ));
    }
    let mut fleet = Fleet::install(None, installs).expect("slots");
    let mut rx = fleet
        .start(&cloud, &AgentSettings::default())
        .expect("agents");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut connected = HashSet::new();
    while connected.len() < n {
        let ev = tokio::time::timeout_at(deadline.into(), rx.recv())
            .await
            .expect("devices connect")
            .expect("events");
        if matches!(ev.event, AgentEvent::Connected { .. }) {
            connected.insert(ev.device);
        }
    }
    let old = n - 2;
    let audit = cloud.audit_now(30).await.expect("audit");
    assert_eq!(
        audit.findings, old,
        "the age check finds the old ones: {audit:?}"
    );
    let mut rotated = HashSet::new();
    while rotated.len() < old {
        let ev = tokio::time::timeout_at(deadline.into(), rx.recv())
            .await
            .expect("devices rotate")
            .expect("events");
        if matches!(ev.event, AgentEvent::Rotated { .. }) {
            rotated.insert(ev.device);
        }
    }
    let registry = cloud.registry();
    let settle = Instant::now() + Duration::from_secs(30);
    while fleet
        .devices
        .iter()
        .take(n - 2)
        .any(|d| registry.certificate(&d.initial_certificate_id).is_some())
        && Instant::now() < settle
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, d) in fleet.devices.iter().enumerate() {
        let current = fleet.current_certificate(i).expect("current");
        if i < old {
            assert!(
                registry.certificate(&d.initial_certificate_id).is_none(),
                "{}",
                d.thing
            );
            assert_ne!(current, d.initial_certificate_id);
        } else {
            // ten days old, a year to live: left alone
            assert_eq!(current, d.initial_certificate_id, "{}", d.thing);
        }
    }
    let rows = cloud.ports().ports.store.rows();
    assert!(
        rows.iter().all(|r| r.state.name() == "COMMITTED"),
        "{rows:?}"
    );
    // the new certificates are young: the next audit finds nothing
    assert_eq!(cloud.audit_now(30).await.expect("audit").findings, 0);
    assert_eq!(cloud.lambda().access_log().denials(), []);
    fleet.stop(Duration::from_secs(10)).await;
}
