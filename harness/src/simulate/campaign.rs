//! `simulate --campaign`: the fleet rotated by a campaign (a canary, then
//! cohorts, with an abort rule: `rules::campaign`) instead of the audit,
//! with a share of devices on a broken firmware that refuses every `crt`
//! with `crt_err`. The campaign is written into the cloud's rotation table
//! as `fleetcert rotate --canary …` writes it; the cloud's sweeper (on its
//! schedule) releases the waves. When the abort rule pauses it, the run
//! checks what was left untouched and what support was told, lets the
//! open rotations finish, "fixes" the firmware, resumes the campaign with
//! the failed members retried, and follows it to the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use emulator::Cloud;
use lambdas::handlers::campaign as handlers;
use rules::campaign::{
    AbortRule, Campaign, CampaignItem, CampaignState, MemberStatus, NewCampaign, Rollout, Share,
    Trip, chunk_key,
};
use rules::contracts::CampaignId;
use serde::Serialize;

/// The campaign a simulation rotates the fleet with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampaignOptions {
    /// Waves and rate.
    pub rollout: Rollout,
    /// When it pauses itself.
    pub abort: AbortRule,
}

impl Default for CampaignOptions {
    /// A canary of 5 %, cohorts of 20 % at 50 devices/s, paused above 2 %
    /// of the last 50 rotations failed or expired.
    fn default() -> Self {
        CampaignOptions {
            rollout: Rollout {
                canary: Share::BasisPoints(500),
                cohort: Share::BasisPoints(2000),
                rate_per_second: 50,
            },
            abort: AbortRule {
                above_basis_points: 200,
                window: 50,
            },
        }
    }
}

/// What the campaign did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CampaignReport {
    /// Its id.
    pub id: String,
    /// Members (the devices with expiring certificates).
    pub members: u32,
    /// Wave sizes, the canary first.
    pub waves: Vec<u32>,
    /// Devices on a broken firmware (refusing `crt`) until fixed.
    pub broken_devices: usize,
    /// Of those, members of the canary.
    pub broken_in_canary: usize,
    /// The wave the abort rule paused it in, if it did.
    pub paused_in_wave: Option<u32>,
    /// The numbers the rule tripped on.
    pub trip: Option<Trip>,
    /// Members released before the pause.
    pub released_at_pause: u32,
    /// Members never released when it paused (untouched: no rotation, no
    /// message).
    pub untouched_at_pause: u32,
    /// Devices of those that nonetheless had a rotation (must be 0).
    pub rotated_while_paused: usize,
    /// Support was told of the pause with its numbers.
    pub support_notified: bool,
    /// The campaign finished after the resume.
    pub finished: bool,
    /// Its final counts: committed, failed, expired, skipped.
    pub committed: u32,
    /// Failed rotations (the canary's broken devices' first attempt).
    pub failed: u32,
    /// Expired rotations.
    pub expired: u32,
    /// Members the starter started no rotation for.
    pub skipped: u32,
}

/// Which devices (of `n`) run a broken firmware: `share` of them spread
/// evenly, every `1/share`-th from a quarter of that stride (so with 5 %
/// of 200, devices 5, 25, 45, …: a canary of 5 % holds one).
pub fn broken_devices(n: usize, share: f64) -> Vec<bool> {
    let count = ((n as f64) * share.clamp(0.0, 1.0)).round() as usize;
    let mut broken = vec![false; n];
    if count == 0 {
        return broken;
    }
    let stride = n as f64 / count as f64;
    for k in 0..count {
        let i = ((k as f64 + 0.25) * stride).floor() as usize;
        if let Some(b) = broken.get_mut(i.min(n - 1)) {
            *b = true;
        }
    }
    broken
}

/// The firmware hooks of the broken devices: each refuses `crt` until
/// `fixed` is set.
pub(super) fn firmware_hooks(
    broken: Arc<Vec<bool>>,
    fixed: Arc<AtomicBool>,
) -> Arc<dyn Fn(usize) -> Option<device::FaultHook> + Send + Sync> {
    Arc::new(move |i| {
        if !broken.get(i).copied().unwrap_or(false) {
            return None;
        }
        let fixed = fixed.clone();
        Some(Arc::new(move |step: &str| {
            step == device::agent::REFUSE_CRT && !fixed.load(Ordering::Relaxed)
        }) as device::FaultHook)
    })
}

/// The simulation's campaign id.
pub(super) fn campaign_id() -> CampaignId {
    CampaignId::new("simulate").unwrap_or_else(|_| unreachable!("a valid campaign id"))
}

/// Writes the campaign over `certificates` (in release order) into the
/// cloud's rotation table.
pub(super) async fn create(
    cloud: &Cloud,
    opts: &CampaignOptions,
    certificates: &[String],
) -> anyhow::Result<Campaign> {
    let (campaign, chunks) = Campaign::new(
        NewCampaign {
            id: campaign_id(),
            task_id: "fleetcert-simulate".to_owned(),
            rollout: opts.rollout,
            abort: opts.abort,
            // a member without a rotation a minute after its release was
            // refused by the starter (a released member waits on the queue
            // while `max_open_rotations` are open: the grace must outlast
            // that wait, or the member counts as skipped and rotates
            // uncounted)
            grace_ms: 60_000,
        },
        certificates,
        emulator::cloud::now_ms(),
    )?;
    handlers::create(&cloud.ports().ports.store, &campaign, &chunks).await?;
    Ok(campaign)
}

/// The campaign as stored.
pub(super) async fn stored(cloud: &Cloud) -> anyhow::Result<Campaign> {
    handlers::get(&cloud.ports().ports.store, &campaign_id())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the campaign is gone"))
}

/// The campaign as stored now (read without a counted call), `None` when
/// it is gone.
pub(super) fn stored_now(cloud: &Cloud) -> Option<Campaign> {
    match cloud
        .ports()
        .ports
        .store
        .campaign_item(&rules::campaign::campaign_key(&campaign_id()))
    {
        Some(CampaignItem::Campaign(c)) => Some(c),
        _ => None,
    }
}

/// Members never released, by index.
pub(super) fn pending_members(cloud: &Cloud, c: &Campaign) -> Vec<u32> {
    let store = &cloud.ports().ports.store;
    let mut pending = Vec::new();
    for index in 0..c.total.div_ceil(rules::campaign::CHUNK) {
        if let Some(CampaignItem::Members(m)) = store.campaign_item(&chunk_key(&c.id, index)) {
            for i in 0..m.certificate_ids.len() {
                if m.status_of(i) == MemberStatus::Pending {
                    pending.push(m.first() + i as u32);
                }
            }
        }
    }
    pending
}

/// Resumes the paused campaign, retrying its failed members.
pub(super) async fn resume(cloud: &Cloud) -> anyhow::Result<Campaign> {
    Ok(
        handlers::change(&cloud.ports().ports.store, &campaign_id(), |c| {
            c.resume(true)
        })
        .await?,
    )
}

/// Whether the campaign has paused or finished.
pub(super) fn stopped(c: &Campaign) -> bool {
    !matches!(c.state, CampaignState::Running)
}
