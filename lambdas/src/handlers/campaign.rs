//! Campaigns, settled by the sweeper at every sweep (`rules::campaign`):
//! for each active campaign, the outcomes of the members it released
//! (their rotation rows, by the member's rotation id), the current wave's
//! pending members released onto the work queue at the campaign's rate,
//! the abort rule evaluated (tripped: PAUSED and support notified with the
//! numbers), the next wave started once the current one has settled, and
//! finished or cancelled campaigns dropped from the active list.
//!
//! Every write is conditional on the items as read (a chunk and the
//! campaign row in one transaction): a sweep that loses a race changes
//! nothing and the next goes on. Members are released before their status
//! is written, so a lost write re-releases them: the member's rotation id
//! makes the second message a duplicate the starter recognises.

use rules::campaign::{
    ACTIVE_KEY, ActiveCampaigns, CAMPAIGN_CHECK, CHUNK, Campaign, CampaignItem, CampaignState,
    MemberChunk, MemberStatus, Trip, campaign_key, chunk_key, member_rotation_id,
};
use rules::contracts::{CampaignId, CampaignMember, CertificateId, CheckName, RotationWork};
use rules::functions::Function;
use rules::rotation::RotationState;
use serde::Serialize;

use super::{HandlerError, port};
use crate::config::Config;
use crate::ports::{
    CampaignWrite, MAX_QUEUE_BATCH, Notifier, Operation, PortError, Ports, QueueMessage,
    RotationStore, WorkQueue,
};

const FUNCTION: Function = Function::Sweeper;

/// What one sweep did to the campaigns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignSweep {
    /// Members released onto the work queue.
    pub released: usize,
    /// Member outcomes recorded.
    pub settled: usize,
    /// Campaigns paused by their abort rule.
    pub paused: Vec<String>,
    /// Campaigns that finished.
    pub finished: Vec<String>,
}

impl CampaignSweep {
    /// One line for the sweeper's summary (empty when nothing happened).
    pub fn summary(&self) -> String {
        if *self == Self::default() {
            return String::new();
        }
        let mut s = format!(
            "; campaigns: {} members released, {} outcomes recorded",
            self.released, self.settled
        );
        if !self.paused.is_empty() {
            s.push_str(&format!(", paused {}", self.paused.join(", ")));
        }
        if !self.finished.is_empty() {
            s.push_str(&format!(", finished {}", self.finished.join(", ")));
        }
        s
    }
}

/// What support is told when a campaign pauses itself or finishes.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CampaignNotice<'a> {
    kind: &'static str,
    campaign_id: &'a str,
    state: &'static str,
    wave: u32,
    waves: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    trip: Option<&'a Trip>,
    counts: &'a rules::campaign::Counts,
    total: u32,
    detail: String,
}

fn unexpected(key: &str, what: &str) -> HandlerError {
    HandlerError::Port {
        function: FUNCTION.name(),
        source: PortError::Other {
            operation: Operation::GetCampaign,
            message: format!("{key}: {what}"),
        },
    }
}

/// Settles every active campaign. A campaign whose write lost a race is
/// left to the next sweep; the first retryable error is returned after the
/// other campaigns were settled.
///
/// # Errors
/// A [`HandlerError`] from a port call.
pub async fn settle_all<P: Ports>(
    ports: &P,
    cfg: &Config,
    now_ms: i64,
) -> Result<CampaignSweep, HandlerError> {
    let mut sweep = CampaignSweep::default();
    let stored = ports
        .store()
        .get_campaign(ACTIVE_KEY)
        .await
        .map_err(port(FUNCTION))?;
    let active = match &stored {
        None => return Ok(sweep),
        Some(CampaignItem::Active(a)) => a.clone(),
        Some(_) => return Err(unexpected(ACTIVE_KEY, "not the list of active campaigns")),
    };
    let mut closed = Vec::new();
    let mut first_error = None;
    for id in &active.ids {
        match settle_one(ports, cfg, id, now_ms, &mut sweep).await {
            Ok(true) => closed.push(id.clone()),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(function = FUNCTION.name(), campaign = %id, error = %e, "campaign not settled");
                first_error.get_or_insert(e);
            }
        }
    }
    if !closed.is_empty() {
        let next = ActiveCampaigns {
            ids: active
                .ids
                .iter()
                .filter(|id| !closed.contains(id))
                .cloned()
                .collect(),
        };
        let write = CampaignWrite {
            expected: stored,
            next: CampaignItem::Active(next),
        };
        match ports.store().put_campaign(&[write]).await {
            Ok(()) => {}
            // a campaign was added meanwhile: the next sweep drops them
            Err(e) if e.is_condition_failed() => {}
            Err(e) => {
                first_error.get_or_insert(port(FUNCTION)(e));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(sweep),
    }
}

/// Settles one campaign; `Ok(true)` when it is closed (drop it from the
/// active list).
async fn settle_one<P: Ports>(
    ports: &P,
    cfg: &Config,
    id: &CampaignId,
    now_ms: i64,
    sweep: &mut CampaignSweep,
) -> Result<bool, HandlerError> {
    let store = ports.store();
    let key = campaign_key(id);
    let mut stored = match store.get_campaign(&key).await.map_err(port(FUNCTION))? {
        Some(CampaignItem::Campaign(c)) => c,
        None => {
            tracing::warn!(function = FUNCTION.name(), campaign = %id, "listed as active but absent: dropped");
            return Ok(true);
        }
        Some(_) => return Err(unexpected(&key, "not a campaign")),
    };
    if stored.state.is_closed() {
        return Ok(true);
    }
    if stored.retry_failed {
        match retry_failed(ports, stored).await? {
            Some(c) => stored = c,
            None => return Ok(false),
        }
    }
    let mut c = stored.clone();
    let wave = c.wave_range();
    let running = c.state == CampaignState::Running;
    let cap = u32::try_from(cfg.campaign_max_members).unwrap_or(u32::MAX);
    let mut release = if running {
        c.release_budget(now_ms, cap)
    } else {
        0
    };
    let mut reads = cfg.campaign_max_members;
    let mut wave_settled = true;
    let mut advancing = true;
    let mut tripped = None;
    let mut first_error = None;
    for index in c.settled_below / CHUNK..wave.end.div_ceil(CHUNK) {
        let ckey = chunk_key(id, index);
        let chunk0 = match store.get_campaign(&ckey).await.map_err(port(FUNCTION))? {
            Some(CampaignItem::Members(m)) => m,
            _ => return Err(unexpected(&ckey, "member chunk missing")),
        };
        let mut chunk = chunk0.clone();
        let mut work = Vec::new();
        for i in 0..chunk0.certificate_ids.len() {
            let member = chunk.first() + u32::try_from(i).unwrap_or(u32::MAX);
            if member < c.settled_below || member >= wave.end {
                continue;
            }
            match chunk.status_of(i) {
                MemberStatus::Pending if release > 0 => {
                    release -= 1;
                    chunk.set_status(i, MemberStatus::Released);
                    work.push(i);
                }
                MemberStatus::Released if reads > 0 => {
                    reads -= 1;
                    let attempt = chunk.attempts.get(i).copied().unwrap_or(0);
                    let rotation_id = member_rotation_id(id, member, attempt);
                    let row = store.get(&rotation_id).await.map_err(port(FUNCTION))?;
                    let outcome = match row.map(|r| r.state) {
                        Some(RotationState::Committed { .. }) => Some(MemberStatus::Committed),
                        Some(RotationState::Failed { .. }) => Some(MemberStatus::Failed),
                        Some(RotationState::Expired { .. }) => Some(MemberStatus::Expired),
                        Some(_) => None,
                        // the starter started nothing (yet): after the
                        // grace, skipped while running; released again
                        // after a resume while paused
                        None if now_ms.saturating_sub(chunk.released_at_ms.unwrap_or(0))
                            >= c.grace_ms =>
                        {
                            Some(if running {
                                MemberStatus::Skipped
                            } else {
                                MemberStatus::Pending
                            })
                        }
                        None => None,
                    };
                    if let Some(outcome) = outcome {
                        chunk.set_status(i, outcome);
                        if outcome != MemberStatus::Pending {
                            c.record(outcome);
                            sweep.settled += 1;
                        }
                    }
                }
                _ => {}
            }
            let settled = chunk.status_of(i).is_settled();
            wave_settled &= settled;
            if advancing && member == c.settled_below && settled {
                c.settled_below += 1;
            } else {
                advancing = false;
            }
        }
        let sent = release_members(ports, &c, &mut chunk, &work).await;
        let sent = match sent {
            Ok(n) => n,
            Err((n, e)) => {
                first_error.get_or_insert(e);
                wave_settled = false;
                n
            }
        };
        if sent > 0 {
            chunk.released_at_ms = Some(now_ms);
            c.released_at_ms = Some(now_ms);
            c.counts.released += u32::try_from(sent).unwrap_or(u32::MAX);
            sweep.released += sent;
        }
        if chunk != chunk0 || c != stored {
            let writes = [
                CampaignWrite {
                    expected: Some(CampaignItem::Members(chunk0)),
                    next: CampaignItem::Members(chunk),
                },
                CampaignWrite {
                    expected: Some(CampaignItem::Campaign(stored.clone())),
                    next: CampaignItem::Campaign(c.clone()),
                },
            ];
            match store.put_campaign(&writes).await {
                Ok(()) => stored = c.clone(),
                Err(e) if e.is_condition_failed() => {
                    tracing::info!(function = FUNCTION.name(), campaign = %id, "campaign changed meanwhile (a resume, a cancel, another sweep): the next sweep goes on");
                    return Ok(false);
                }
                Err(e) => return Err(port(FUNCTION)(e)),
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if running && let Some(trip) = c.check_abort(false) {
            tripped = Some(trip);
            break;
        }
    }
    if !running {
        return Ok(false);
    }
    let wave_done = tripped.is_none() && wave_settled && c.settled_below >= wave.end;
    let trip = tripped.or_else(|| if wave_done { c.check_abort(true) } else { None });
    let waves = c.waves().len();
    let (next, kind) = match trip {
        Some(trip) => (
            Campaign {
                state: CampaignState::Paused { trip: Some(trip) },
                ..c.clone()
            },
            "campaign_paused",
        ),
        None if wave_done && c.wave as usize + 1 >= waves => (
            Campaign {
                state: CampaignState::Finished,
                ..c.clone()
            },
            "campaign_finished",
        ),
        None if wave_done => {
            let next = Campaign {
                wave: c.wave + 1,
                ..c.clone()
            };
            return write_campaign(ports, &stored, &next).await.map(|_| false);
        }
        None => return Ok(false),
    };
    // Support first, the state after: a lost write notifies again at the
    // next sweep, never not at all.
    let detail = match &next.state {
        CampaignState::Paused { trip: Some(trip) } => format!(
            "campaign {id} paused itself: {trip}; no member is released until `fleetcert campaign resume {id}`, open rotations finish"
        ),
        _ => format!("campaign {id} finished: every wave settled"),
    };
    let notice = CampaignNotice {
        kind,
        campaign_id: id.as_ref(),
        state: next.state.name(),
        wave: next.wave,
        waves,
        trip: match &next.state {
            CampaignState::Paused { trip } => trip.as_ref(),
            _ => None,
        },
        counts: &next.counts,
        total: next.total,
        detail,
    };
    let subject = match &notice.trip {
        Some(t) => format!(
            "fleetcert: campaign {id} paused: {} failed, {} expired of {}",
            t.failed, t.expired, t.outcomes
        ),
        None => format!("fleetcert: campaign {id} finished"),
    };
    let body = serde_json::to_string(&notice).unwrap_or_else(|_| notice.detail.clone());
    ports
        .notifier()
        .notify(&subject, &body)
        .await
        .map_err(port(FUNCTION))?;
    let closed = next.state.is_closed();
    if closed {
        sweep.finished.push(id.to_string());
    } else {
        sweep.paused.push(id.to_string());
    }
    Ok(write_campaign(ports, &stored, &next).await? && closed)
}

/// Writes the campaign row alone; `Ok(false)` when it changed meanwhile.
async fn write_campaign<P: Ports>(
    ports: &P,
    expected: &Campaign,
    next: &Campaign,
) -> Result<bool, HandlerError> {
    let write = CampaignWrite {
        expected: Some(CampaignItem::Campaign(expected.clone())),
        next: CampaignItem::Campaign(next.clone()),
    };
    match ports.store().put_campaign(&[write]).await {
        Ok(()) => Ok(true),
        Err(e) if e.is_condition_failed() => Ok(false),
        Err(e) => Err(port(FUNCTION)(e)),
    }
}

/// Sends the members at positions `positions` of `chunk` (marked released)
/// as work; a member whose message was not sent is marked pending again.
/// `Err((sent, error))` after a failed batch.
async fn release_members<P: Ports>(
    ports: &P,
    c: &Campaign,
    chunk: &mut MemberChunk,
    positions: &[usize],
) -> Result<usize, (usize, HandlerError)> {
    let mut sent = 0;
    let mut error = None;
    for batch in positions.chunks(MAX_QUEUE_BATCH) {
        if error.is_some() {
            for &i in batch {
                chunk.set_status(i, MemberStatus::Pending);
            }
            continue;
        }
        let mut messages = Vec::with_capacity(batch.len());
        for &i in batch {
            let member = chunk.first() + u32::try_from(i).unwrap_or(u32::MAX);
            let Ok(certificate_id) = CertificateId::new(chunk.certificate_ids[i].clone()) else {
                // not a certificate id: nothing to rotate
                chunk.set_status(i, MemberStatus::Skipped);
                continue;
            };
            let work = RotationWork {
                certificate_id,
                task_id: c.task_id.clone(),
                check_name: CheckName::from(CAMPAIGN_CHECK),
                expiration_time_ms: None,
                past_expiration: false,
                campaign: Some(CampaignMember {
                    id: c.id.clone(),
                    member,
                    attempt: chunk.attempts.get(i).copied().unwrap_or(0),
                }),
            };
            messages.push(QueueMessage {
                id: format!("m{i}"),
                body: serde_json::to_string(&work).unwrap_or_default(),
            });
        }
        if messages.is_empty() {
            continue;
        }
        match ports.queue().send_batch(&messages).await {
            Ok(failed) => {
                for f in &failed {
                    if let Some(i) = f.id.strip_prefix('m').and_then(|n| n.parse().ok()) {
                        chunk.set_status(i, MemberStatus::Pending);
                    }
                }
                sent += messages.len() - failed.len();
                if let Some(f) = failed.last() {
                    error = Some(HandlerError::QueueRejected {
                        function: FUNCTION.name(),
                        failed: failed.len(),
                        last_error: f.error.clone(),
                    });
                }
            }
            Err(e) => {
                for &i in batch {
                    chunk.set_status(i, MemberStatus::Pending);
                }
                error = Some(port(FUNCTION)(e));
            }
        }
    }
    match error {
        None => Ok(sent),
        Some(e) => Err((sent, e)),
    }
}

/// After a resume that retries: every failed member of the waves so far
/// is pending again with its next attempt (a new rotation id). Returns the
/// campaign as written, `None` when it changed meanwhile.
async fn retry_failed<P: Ports>(
    ports: &P,
    mut stored: Campaign,
) -> Result<Option<Campaign>, HandlerError> {
    let store = ports.store();
    let end = stored.wave_range().end.max(stored.settled_below);
    for index in 0..end.div_ceil(CHUNK) {
        let ckey = chunk_key(&stored.id, index);
        let chunk0 = match store.get_campaign(&ckey).await.map_err(port(FUNCTION))? {
            Some(CampaignItem::Members(m)) => m,
            _ => return Err(unexpected(&ckey, "member chunk missing")),
        };
        let mut chunk = chunk0.clone();
        let mut first = None;
        for i in 0..chunk.certificate_ids.len() {
            if chunk.status_of(i) == MemberStatus::Failed {
                chunk.set_status(i, MemberStatus::Pending);
                if let Some(a) = chunk.attempts.get_mut(i) {
                    *a += 1;
                }
                first.get_or_insert(chunk.first() + u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        let Some(first) = first else { continue };
        let next = Campaign {
            settled_below: stored.settled_below.min(first),
            ..stored.clone()
        };
        let writes = [
            CampaignWrite {
                expected: Some(CampaignItem::Members(chunk0)),
                next: CampaignItem::Members(chunk),
            },
            CampaignWrite {
                expected: Some(CampaignItem::Campaign(stored.clone())),
                next: CampaignItem::Campaign(next.clone()),
            },
        ];
        match store.put_campaign(&writes).await {
            Ok(()) => stored = next,
            Err(e) if e.is_condition_failed() => return Ok(None),
            Err(e) => return Err(port(FUNCTION)(e)),
        }
    }
    let next = Campaign {
        retry_failed: false,
        ..stored.clone()
    };
    Ok(write_campaign(ports, &stored, &next).await?.then_some(next))
}

/// Writes a new campaign (its member chunks, then the campaign row and
/// its place in the active list in one transaction), as
/// `fleetcert rotate --canary …` does against DynamoDB; the harness and
/// the tests call it on the memory store.
///
/// # Errors
/// [`PortError::ConditionFailed`] when a campaign with this id exists.
pub async fn create<S: RotationStore>(
    store: &S,
    campaign: &Campaign,
    chunks: &[MemberChunk],
) -> Result<(), PortError> {
    if store
        .get_campaign(&campaign_key(&campaign.id))
        .await?
        .is_some()
    {
        return Err(PortError::ConditionFailed {
            operation: Operation::PutCampaign,
            message: format!("campaign {} exists", campaign.id),
        });
    }
    for chunk in chunks {
        let key = chunk_key(&chunk.campaign_id, chunk.index);
        let write = CampaignWrite {
            expected: store.get_campaign(&key).await?,
            next: CampaignItem::Members(chunk.clone()),
        };
        store.put_campaign(&[write]).await?;
    }
    for _ in 0..5 {
        let active = store.get_campaign(ACTIVE_KEY).await?;
        let mut ids = match &active {
            Some(CampaignItem::Active(a)) => a.ids.clone(),
            _ => Vec::new(),
        };
        ids.push(campaign.id.clone());
        let writes = [
            CampaignWrite {
                expected: None,
                next: CampaignItem::Campaign(campaign.clone()),
            },
            CampaignWrite {
                expected: active,
                next: CampaignItem::Active(ActiveCampaigns { ids }),
            },
        ];
        match store.put_campaign(&writes).await {
            Err(e) if e.is_condition_failed() => {
                if store
                    .get_campaign(&campaign_key(&campaign.id))
                    .await?
                    .is_some()
                {
                    return Err(e);
                }
            }
            other => return other,
        }
    }
    Err(PortError::ConditionFailed {
        operation: Operation::PutCampaign,
        message: "the list of active campaigns kept changing".to_owned(),
    })
}

/// The campaign `id` as stored, if any.
///
/// # Errors
/// A port error.
pub async fn get<S: RotationStore>(
    store: &S,
    id: &CampaignId,
) -> Result<Option<Campaign>, PortError> {
    match store.get_campaign(&campaign_key(id)).await? {
        Some(CampaignItem::Campaign(c)) => Ok(Some(c)),
        _ => Ok(None),
    }
}

/// Applies an operator's change (`Campaign::resume`, `cancel`, `pause`)
/// to campaign `id` with a conditional write, reading again when it lost
/// a race with a sweep. Returns the campaign as written.
///
/// # Errors
/// [`ChangeError`].
pub async fn change<S: RotationStore>(
    store: &S,
    id: &CampaignId,
    f: impl Fn(&Campaign) -> Result<Campaign, rules::campaign::CampaignError>,
) -> Result<Campaign, ChangeError> {
    for _ in 0..10 {
        let Some(current) = get(store, id).await? else {
            return Err(ChangeError::Unknown(id.to_string()));
        };
        let next = f(&current)?;
        if next == current {
            return Ok(next);
        }
        let write = CampaignWrite {
            expected: Some(CampaignItem::Campaign(current)),
            next: CampaignItem::Campaign(next.clone()),
        };
        match store.put_campaign(&[write]).await {
            Ok(()) => return Ok(next),
            Err(e) if e.is_condition_failed() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(ChangeError::Contended(id.to_string()))
}

/// Why an operator's change was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// No such campaign.
    #[error("no campaign {0}")]
    Unknown(String),
    /// The change does not apply (closed, running already).
    #[error(transparent)]
    Refused(#[from] rules::campaign::CampaignError),
    /// A port call failed.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The campaign kept changing under the change (sweeps).
    #[error("campaign {0} kept changing; try again")]
    Contended(String),
}
