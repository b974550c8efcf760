//! A campaign stops itself: 200 devices rotated by a campaign (a canary of
//! 5 %, then cohorts of 20 %, paused above 2 % of the last 50 rotations
//! failed or expired) with 5 % of them on a broken firmware that refuses
//! every `crt` (spread evenly, one of them in the canary). The campaign
//! pauses after the canary with the other 190 untouched and support told
//! the numbers; resumed after the firmware is fixed (the failed member
//! retried), it finishes the fleet with nothing bricked or orphaned. In its
//! own test binary; bounded in devices and seconds; 127.0.0.1 only.

use std::time::Duration;

use harness::simulate::{CampaignOptions, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_canary_pauses_the_campaign_and_the_resume_finishes_the_fleet() {
    let report = harness::simulate::simulate(&Options {
        devices: 200,
        broken_share: 0.05,
        campaign: Some(CampaignOptions::default()),
        timeout: Duration::from_secs(240),
        ..Options::default()
    })
    .await
    .expect("simulation runs");
    eprintln!("{}", report.render());
    let c = report.campaign.as_ref().expect("campaign report");
    assert_eq!(c.waves, vec![10, 40, 40, 40, 40, 30]);
    assert_eq!((c.broken_devices, c.broken_in_canary), (10, 1));
    assert_eq!(c.paused_in_wave, Some(0), "paused after the canary: {c:?}");
    let trip = c.trip.as_ref().expect("trip");
    assert_eq!((trip.failed, trip.outcomes), (1, 10), "{trip:?}");
    assert_eq!(c.released_at_pause, 10);
    assert_eq!(c.untouched_at_pause, 190, "the rest untouched");
    assert_eq!(c.rotated_while_paused, 0);
    assert!(c.support_notified, "support told the numbers");
    assert!(c.finished, "{c:?}");
    assert_eq!(
        (c.committed, c.failed, c.expired, c.skipped),
        (200, 1, 0, 0)
    );
    assert_eq!(report.rotated, 200);
    assert_eq!(report.bricked, 0, "{report:?}");
    assert_eq!(report.orphaned_certificates, 0, "{report:?}");
    assert!(report.converged && report.ok(), "{report:?}");
    assert!(report.rollbacks == 0 || report.rollbacks >= 1);
}
