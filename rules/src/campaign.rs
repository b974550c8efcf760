//! Rotation campaigns: a set of certificates rotated in waves (a canary,
//! then cohorts, released at a maximum rate) that pauses itself when too
//! many of its rotations fail. Pure: no I/O, time comes in as arguments.
//!
//! A campaign lives in the rotation table beside the rotation rows, as
//! three kinds of item ([`CampaignItem`], JSON in the attribute
//! [`CAMPAIGN_ATTRIBUTE`], keyed by [`CampaignItem::key`]):
//!
//! | key | item |
//! |---|---|
//! | `campaign#active` | [`ActiveCampaigns`]: the ids the sweeper settles |
//! | `campaign#<id>` | [`Campaign`]: rollout, abort rule, state, counts, the recent outcomes |
//! | `campaign#<id>#<n>` | [`MemberChunk`]: members `n*100 ..` (certificate, status, attempt) |
//!
//! Every write is conditional on the item as it was read. The sweeper
//! releases the current wave's pending members onto the work queue (each
//! [`RotationWork`](crate::contracts::RotationWork) names its member, so
//! the rotation id is the member's: [`member_rotation_id`]), reads the
//! rotation rows of the members it released, records their outcomes, and
//! evaluates the [`AbortRule`] over the last outcomes: tripped, the
//! campaign is [`CampaignState::Paused`] with the numbers; the next wave
//! starts only when every member of the current one has settled and the
//! rule holds.
//!
//! | state | event | next |
//! |---|---|---|
//! | RUNNING | wave settled, rule holds, waves left | RUNNING, next wave |
//! | RUNNING | last wave settled, rule holds | FINISHED |
//! | RUNNING | rule trips | PAUSED (tripped), support notified |
//! | RUNNING | operator pauses | PAUSED |
//! | PAUSED | resume | RUNNING, recent outcomes cleared (optionally failed members retried) |
//! | RUNNING / PAUSED | cancel | CANCELLED: nothing more released, open rotations finish |
//! | FINISHED / CANCELLED | anything | [`CampaignError::Closed`] |

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::contracts::CampaignId;

/// Prefix of every campaign item's key in the rotation table (rotation ids
/// are `[A-Za-z0-9_-]`, so no rotation row starts with it).
pub const CAMPAIGN_PREFIX: &str = "campaign#";

/// The key of the list of active campaigns.
pub const ACTIVE_KEY: &str = "campaign#active";

/// The attribute holding a campaign item as JSON.
pub const CAMPAIGN_ATTRIBUTE: &str = "campaign";

/// Members per [`MemberChunk`] (an item of about 7 KB, far below
/// DynamoDB's 400 KB).
pub const CHUNK: u32 = 100;

/// The largest abort window (outcomes kept on the campaign row).
pub const MAX_WINDOW: u32 = 1000;

/// The `checkName` of a campaign's work messages.
pub const CAMPAIGN_CHECK: &str = "FLEETCERT_CAMPAIGN";

/// The most members one campaign holds (10,000 chunks).
pub const MAX_MEMBERS: u32 = 1_000_000;

/// A share of the campaign's members: a percentage (in hundredths of a
/// percent) or a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Share {
    /// Hundredths of a percent: `500` is 5 %.
    BasisPoints(u32),
    /// A number of members.
    Count(u32),
}

impl Share {
    /// Parses `5%`, `2.5%` or `40`.
    ///
    /// # Errors
    /// [`CampaignError::Invalid`] for anything else, 0, or above 100 %.
    pub fn parse(s: &str) -> Result<Share, CampaignError> {
        let s = s.trim();
        let share = match s.strip_suffix('%') {
            Some(p) => Share::BasisPoints(parse_basis_points(p).ok_or_else(|| {
                CampaignError::Invalid(format!(
                    "{s:?} is not a percentage (e.g. 5% or 2.5%, at most 2 decimals)"
                ))
            })?),
            None => Share::Count(s.parse().map_err(|_| {
                CampaignError::Invalid(format!("{s:?} is neither a percentage nor a count"))
            })?),
        };
        match share {
            Share::BasisPoints(0) | Share::Count(0) => Err(CampaignError::Invalid(format!(
                "{s:?}: a share must be above 0"
            ))),
            Share::BasisPoints(bp) if bp > 10_000 => Err(CampaignError::Invalid(format!(
                "{s:?}: a share is at most 100%"
            ))),
            ok => Ok(ok),
        }
    }

    /// How many of `total` members: at least 1 (of a non-empty campaign),
    /// at most `total`; a percentage rounds up.
    pub fn of(self, total: u32) -> u32 {
        let n = match self {
            Share::BasisPoints(bp) => {
                u32::try_from((u64::from(total) * u64::from(bp)).div_ceil(10_000)).unwrap_or(total)
            }
            Share::Count(c) => c,
        };
        n.clamp(total.min(1), total)
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Share::BasisPoints(bp) => write!(f, "{}%", percent(*bp)),
            Share::Count(c) => write!(f, "{c}"),
        }
    }
}

/// Parses a threshold, `2%`, `2.5%` or `0%` (the `%` may be left out),
/// into hundredths of a percent.
///
/// # Errors
/// [`CampaignError::Invalid`] for anything else or above 100 %.
pub fn parse_percent(s: &str) -> Result<u32, CampaignError> {
    let t = s.trim();
    let bp = parse_basis_points(t.strip_suffix('%').unwrap_or(t)).ok_or_else(|| {
        CampaignError::Invalid(format!(
            "{s:?} is not a percentage (e.g. 2% or 2.5%, at most 2 decimals)"
        ))
    })?;
    if bp > 10_000 {
        return Err(CampaignError::Invalid(format!("{s:?} is above 100%")));
    }
    Ok(bp)
}

/// `250` → `2.5`.
fn percent(bp: u32) -> String {
    if bp.is_multiple_of(100) {
        format!("{}", bp / 100)
    } else {
        format!("{}", f64::from(bp) / 100.0)
    }
}

fn parse_basis_points(p: &str) -> Option<u32> {
    let (whole, frac) = p.split_once('.').unwrap_or((p, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !(whole.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let frac: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<2}").parse().ok()?
    };
    whole.checked_mul(100)?.checked_add(frac)
}

/// How a campaign is rolled out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// The first wave.
    pub canary: Share,
    /// Every later wave.
    pub cohort: Share,
    /// At most this many members released per second.
    pub rate_per_second: u32,
}

/// When a campaign pauses itself: failed + expired rotations among the
/// last `window` outcomes above `above_basis_points`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortRule {
    /// The threshold in hundredths of a percent (`200`: 2 %).
    pub above_basis_points: u32,
    /// How many of the last outcomes are counted (1 to [`MAX_WINDOW`]).
    pub window: u32,
}

/// Why a campaign paused itself: the numbers support is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trip {
    /// Failed rotations among the outcomes counted.
    pub failed: u32,
    /// Expired rotations among them.
    pub expired: u32,
    /// How many outcomes were counted.
    pub outcomes: u32,
    /// The rule's window.
    pub window: u32,
    /// The rule's threshold (hundredths of a percent).
    pub above_basis_points: u32,
    /// The wave it tripped in (0: the canary).
    pub wave: u32,
}

impl fmt::Display for Trip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed and {} expired of the last {} rotations (window {}) is above {}% in wave {}",
            self.failed,
            self.expired,
            self.outcomes,
            self.window,
            percent(self.above_basis_points),
            self.wave
        )
    }
}

/// Where a campaign is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum CampaignState {
    /// Releasing the current wave, or waiting for it to settle.
    Running,
    /// Nothing released; open rotations finish. `trip`: the abort rule
    /// paused it (else the operator did).
    Paused {
        /// The numbers when the rule tripped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trip: Option<Trip>,
    },
    /// Every wave settled.
    Finished,
    /// The operator cancelled it: nothing more is released.
    Cancelled,
}

impl CampaignState {
    /// `RUNNING`, `PAUSED`, `FINISHED`, `CANCELLED`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Paused { .. } => "PAUSED",
            Self::Finished => "FINISHED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Finished or cancelled: the sweeper drops it from the active list.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Finished | Self::Cancelled)
    }
}

impl fmt::Display for CampaignState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Outcomes of a campaign's members so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Released onto the work queue (a retried member counts again).
    pub released: u32,
    /// Rotations committed.
    pub committed: u32,
    /// Rotations failed (the device reported `crt_err`).
    pub failed: u32,
    /// Rotations expired (the deadline passed).
    pub expired: u32,
    /// Members released that started no rotation (the starter refused
    /// them: certificate gone, expired, not attached, or the thing had an
    /// open rotation already); support was told by the starter.
    pub skipped: u32,
}

/// One campaign: the `campaign#<id>` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Campaign {
    /// Its id.
    pub id: CampaignId,
    /// The `taskId` its work messages carry (where it came from, e.g.
    /// `fleetcert-rotate-…` or an audit task id).
    pub task_id: String,
    /// When it was created (ms since the Unix epoch).
    pub created_at_ms: i64,
    /// How many members.
    pub total: u32,
    /// Waves and rate.
    pub rollout: Rollout,
    /// When it pauses itself.
    pub abort: AbortRule,
    /// Where it is.
    #[serde(flatten)]
    pub state: CampaignState,
    /// The current wave (0: the canary).
    pub wave: u32,
    /// Every member below this index has settled (the sweeper starts
    /// reading there).
    pub settled_below: u32,
    /// When members were last released (the rate's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at_ms: Option<i64>,
    /// A released member without a rotation row after this long counts
    /// as skipped (as released again after a pause).
    pub grace_ms: i64,
    /// The outcomes so far.
    pub counts: Counts,
    /// The last outcomes, oldest first, at most the rule's window: `c`
    /// committed, `f` failed, `e` expired.
    pub recent: String,
    /// Set by a resume that retries failed and expired members: the
    /// sweeper releases them again (next attempt), then clears it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_failed: bool,
}

/// A member's status in its [`MemberChunk`] (one character each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    /// Not released yet (`p`).
    Pending,
    /// On the work queue or rotating (`r`).
    Released,
    /// Its rotation committed (`c`).
    Committed,
    /// Its rotation failed (`f`).
    Failed,
    /// Its rotation expired (`e`).
    Expired,
    /// The starter started no rotation for it (`s`).
    Skipped,
}

impl MemberStatus {
    /// The stored character.
    pub const fn code(self) -> char {
        match self {
            Self::Pending => 'p',
            Self::Released => 'r',
            Self::Committed => 'c',
            Self::Failed => 'f',
            Self::Expired => 'e',
            Self::Skipped => 's',
        }
    }

    /// The status stored as `c`.
    pub fn from_code(c: char) -> Option<Self> {
        Some(match c {
            'p' => Self::Pending,
            'r' => Self::Released,
            'c' => Self::Committed,
            'f' => Self::Failed,
            'e' => Self::Expired,
            's' => Self::Skipped,
            _ => return None,
        })
    }

    /// Whether the member is done with (for this attempt).
    pub fn is_settled(self) -> bool {
        !matches!(self, Self::Pending | Self::Released)
    }
}

/// Members `index * CHUNK ..` of a campaign: the `campaign#<id>#<index>` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberChunk {
    /// The campaign.
    pub campaign_id: CampaignId,
    /// Which chunk.
    pub index: u32,
    /// The members' certificates.
    pub certificate_ids: Vec<String>,
    /// One [`MemberStatus::code`] per member.
    pub status: String,
    /// Each member's attempt (its rotation id's last part).
    pub attempts: Vec<u32>,
    /// When a member of this chunk was last released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at_ms: Option<i64>,
}

impl MemberChunk {
    /// The status of the member at position `i` of the chunk.
    pub fn status_of(&self, i: usize) -> MemberStatus {
        self.status
            .chars()
            .nth(i)
            .and_then(MemberStatus::from_code)
            .unwrap_or(MemberStatus::Pending)
    }

    /// Sets the status of the member at position `i`.
    pub fn set_status(&mut self, i: usize, status: MemberStatus) {
        let mut chars: Vec<char> = self.status.chars().collect();
        if let Some(c) = chars.get_mut(i) {
            *c = status.code();
        }
        self.status = chars.into_iter().collect();
    }

    /// The first member's index in the campaign.
    pub fn first(&self) -> u32 {
        self.index * CHUNK
    }
}

/// The campaigns the sweeper settles: the `campaign#active` item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveCampaigns {
    /// Their ids, oldest first.
    pub ids: Vec<CampaignId>,
}

/// One campaign item of the rotation table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum CampaignItem {
    /// `campaign#active`.
    Active(ActiveCampaigns),
    /// `campaign#<id>`.
    Campaign(Campaign),
    /// `campaign#<id>#<index>`.
    Members(MemberChunk),
}

impl CampaignItem {
    /// The item's key (`rotationId`).
    pub fn key(&self) -> String {
        match self {
            Self::Active(_) => ACTIVE_KEY.to_owned(),
            Self::Campaign(c) => campaign_key(&c.id),
            Self::Members(m) => chunk_key(&m.campaign_id, m.index),
        }
    }
}

/// The key of campaign `id`.
pub fn campaign_key(id: &CampaignId) -> String {
    format!("{CAMPAIGN_PREFIX}{id}")
}

/// The key of chunk `index` of campaign `id`.
pub fn chunk_key(id: &CampaignId, index: u32) -> String {
    format!("{CAMPAIGN_PREFIX}{id}#{index}")
}

/// The rotation id of a campaign member's attempt:
/// `c-<campaign>-<member>-<attempt>` (at most 2 + 32 + 1 + 10 + 1 + 10 = 56
/// characters of `[A-Za-z0-9_-]`, a valid rotation id). A redelivered or
/// re-released member names the same rotation, so it never starts twice.
pub fn member_rotation_id(id: &CampaignId, member: u32, attempt: u32) -> String {
    format!("c-{id}-{member}-{attempt}")
}

/// A refused campaign change or a bad parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CampaignError {
    /// A parameter out of range.
    #[error("invalid campaign: {0}")]
    Invalid(String),
    /// The campaign is finished or cancelled.
    #[error("campaign {id} is {state}: nothing to do")]
    Closed {
        /// The campaign.
        id: String,
        /// Its state.
        state: &'static str,
    },
    /// Resume of a running campaign.
    #[error("campaign {0} is running already")]
    AlreadyRunning(String),
}

/// What a new campaign is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCampaign {
    /// Its id.
    pub id: CampaignId,
    /// Its work's `taskId`.
    pub task_id: String,
    /// Waves and rate.
    pub rollout: Rollout,
    /// When it pauses itself.
    pub abort: AbortRule,
    /// A released member without a rotation row after this long counts
    /// as skipped.
    pub grace_ms: i64,
}

impl Campaign {
    /// A running campaign over `certificate_ids` (in release order) and its
    /// member chunks.
    ///
    /// # Errors
    /// [`CampaignError::Invalid`]: no member, too many, a repeated
    /// certificate, a window outside 1 to [`MAX_WINDOW`], a threshold
    /// above 100 %, a rate of 0, a grace below 1 s.
    pub fn new(
        new: NewCampaign,
        certificate_ids: &[String],
        now_ms: i64,
    ) -> Result<(Campaign, Vec<MemberChunk>), CampaignError> {
        let invalid = |m: String| Err(CampaignError::Invalid(m));
        let total = u32::try_from(certificate_ids.len()).unwrap_or(u32::MAX);
        if total == 0 {
            return invalid("a campaign needs at least one certificate".to_owned());
        }
        if total > MAX_MEMBERS {
            return invalid(format!(
                "{total} certificates: a campaign holds at most {MAX_MEMBERS}"
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = certificate_ids.iter().find(|c| !seen.insert(c.as_str())) {
            return invalid(format!("certificate {dup} is listed twice"));
        }
        if !(1..=MAX_WINDOW).contains(&new.abort.window) {
            return invalid(format!(
                "abort window {}: 1 to {MAX_WINDOW} rotations",
                new.abort.window
            ));
        }
        if new.abort.above_basis_points > 10_000 {
            return invalid("the abort threshold is at most 100%".to_owned());
        }
        if new.rollout.rate_per_second == 0 {
            return invalid("the rate must be at least 1 per second".to_owned());
        }
        if new.grace_ms < 1000 {
            return invalid("the grace must be at least 1 s".to_owned());
        }
        let chunks = certificate_ids
            .chunks(CHUNK as usize)
            .enumerate()
            .map(|(i, ids)| MemberChunk {
                campaign_id: new.id.clone(),
                index: u32::try_from(i).unwrap_or(u32::MAX),
                certificate_ids: ids.to_vec(),
                status: "p".repeat(ids.len()),
                attempts: vec![0; ids.len()],
                released_at_ms: None,
            })
            .collect();
        let campaign = Campaign {
            id: new.id,
            task_id: new.task_id,
            created_at_ms: now_ms,
            total,
            rollout: new.rollout,
            abort: new.abort,
            state: CampaignState::Running,
            wave: 0,
            settled_below: 0,
            released_at_ms: None,
            grace_ms: new.grace_ms,
            counts: Counts::default(),
            recent: String::new(),
            retry_failed: false,
        };
        Ok((campaign, chunks))
    }

    /// The waves' member ranges: the canary, then cohorts to the end.
    pub fn waves(&self) -> Vec<Range<u32>> {
        let mut waves = Vec::new();
        let mut start = 0;
        let mut size = self.rollout.canary.of(self.total);
        while start < self.total {
            let end = start.saturating_add(size.max(1)).min(self.total);
            waves.push(start..end);
            start = end;
            size = self.rollout.cohort.of(self.total);
        }
        waves
    }

    /// The current wave's members (empty past the last wave).
    pub fn wave_range(&self) -> Range<u32> {
        self.waves()
            .get(self.wave as usize)
            .cloned()
            .unwrap_or(self.total..self.total)
    }

    /// Records one member's outcome (committed, failed, expired, skipped).
    pub fn record(&mut self, outcome: MemberStatus) {
        let code = match outcome {
            MemberStatus::Committed => {
                self.counts.committed += 1;
                'c'
            }
            MemberStatus::Failed => {
                self.counts.failed += 1;
                'f'
            }
            MemberStatus::Expired => {
                self.counts.expired += 1;
                'e'
            }
            MemberStatus::Skipped => {
                self.counts.skipped += 1;
                return;
            }
            MemberStatus::Pending | MemberStatus::Released => return,
        };
        self.recent.push(code);
        let window = self.abort.window as usize;
        let len = self.recent.chars().count();
        if len > window {
            self.recent = self.recent.chars().skip(len - window).collect();
        }
    }

    /// Whether the abort rule trips: failed + expired among the last
    /// outcomes above the threshold, judged once the window is full or the
    /// wave has settled (`wave_settled`), or earlier when the failures
    /// already exceed the threshold of a full window (certain to trip).
    pub fn check_abort(&self, wave_settled: bool) -> Option<Trip> {
        let failed = self.recent.chars().filter(|c| *c == 'f').count();
        let expired = self.recent.chars().filter(|c| *c == 'e').count();
        let n = self.recent.chars().count() as u64;
        let bad = (failed + expired) as u64;
        let above = u64::from(self.abort.above_basis_points);
        let window = u64::from(self.abort.window);
        let certain = bad * 10_000 > above * window;
        let judged = (n >= window || wave_settled) && n > 0 && bad * 10_000 > above * n;
        (certain || judged).then_some(Trip {
            failed: failed as u32,
            expired: expired as u32,
            outcomes: n as u32,
            window: self.abort.window,
            above_basis_points: self.abort.above_basis_points,
            wave: self.wave,
        })
    }

    /// Resumes a paused campaign: the recent outcomes are cleared (they
    /// were the reason it paused), and with `retry_failed` its failed and
    /// expired members are released again.
    ///
    /// # Errors
    /// [`CampaignError::AlreadyRunning`], [`CampaignError::Closed`].
    pub fn resume(&self, retry_failed: bool) -> Result<Campaign, CampaignError> {
        match self.state {
            CampaignState::Paused { .. } => Ok(Campaign {
                state: CampaignState::Running,
                recent: String::new(),
                retry_failed,
                ..self.clone()
            }),
            CampaignState::Running => Err(CampaignError::AlreadyRunning(self.id.to_string())),
            _ => Err(self.closed()),
        }
    }

    /// Pauses a running campaign by hand.
    ///
    /// # Errors
    /// [`CampaignError::Closed`]; pausing a paused campaign is no error.
    pub fn pause(&self) -> Result<Campaign, CampaignError> {
        match self.state {
            CampaignState::Running => Ok(Campaign {
                state: CampaignState::Paused { trip: None },
                ..self.clone()
            }),
            CampaignState::Paused { .. } => Ok(self.clone()),
            _ => Err(self.closed()),
        }
    }

    /// Cancels a running or paused campaign.
    ///
    /// # Errors
    /// [`CampaignError::Closed`].
    pub fn cancel(&self) -> Result<Campaign, CampaignError> {
        if self.state.is_closed() {
            return Err(self.closed());
        }
        Ok(Campaign {
            state: CampaignState::Cancelled,
            ..self.clone()
        })
    }

    fn closed(&self) -> CampaignError {
        CampaignError::Closed {
            id: self.id.to_string(),
            state: self.state.name(),
        }
    }

    /// How many members the rate allows now: `rate × seconds since the
    /// last release` (the first time: since the campaign's creation, and at
    /// least one second's worth), at most `cap`. Sweeps more often than
    /// once a second release no more than the rate; after a pause or a
    /// wave that took long to settle, up to `cap` go at once (the rate is
    /// an average since the last release, the starter's concurrency and the
    /// API quotas pace the rotations themselves).
    pub fn release_budget(&self, now_ms: i64, cap: u32) -> u32 {
        let rate = u64::from(self.rollout.rate_per_second);
        let since = self.released_at_ms.unwrap_or(self.created_at_ms);
        let elapsed = u64::try_from(now_ms.saturating_sub(since)).unwrap_or(0);
        let mut allowed = rate * elapsed / 1000;
        if self.released_at_ms.is_none() {
            allowed = allowed.max(rate);
        }
        u32::try_from(allowed.min(u64::from(cap))).unwrap_or(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> CampaignId {
        CampaignId::new("cmp1").unwrap()
    }

    fn campaign(total: usize, canary: &str, cohort: &str, above: &str, window: u32) -> Campaign {
        let certs: Vec<String> = (0..total).map(|i| format!("{i:064x}")).collect();
        let Share::BasisPoints(above) = Share::parse(above).unwrap() else {
            panic!()
        };
        Campaign::new(
            NewCampaign {
                id: id(),
                task_id: "t".into(),
                rollout: Rollout {
                    canary: Share::parse(canary).unwrap(),
                    cohort: Share::parse(cohort).unwrap(),
                    rate_per_second: 10,
                },
                abort: AbortRule {
                    above_basis_points: above,
                    window,
                },
                grace_ms: 60_000,
            },
            &certs,
            0,
        )
        .unwrap()
        .0
    }

    #[test]
    fn shares_parse_and_apply() {
        assert_eq!(Share::parse("5%").unwrap(), Share::BasisPoints(500));
        assert_eq!(Share::parse("2.5%").unwrap(), Share::BasisPoints(250));
        assert_eq!(Share::parse("40").unwrap(), Share::Count(40));
        for bad in ["0", "0%", "101%", "x", "1.234%", "%", "-5%", ".5%"] {
            assert!(Share::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Share::BasisPoints(500).of(200), 10);
        assert_eq!(Share::BasisPoints(500).of(3), 1);
        assert_eq!(Share::Count(40).of(10), 10);
        assert_eq!(Share::BasisPoints(250).to_string(), "2.5%");
        assert_eq!(parse_percent("2%").unwrap(), 200);
        assert_eq!(parse_percent("0.5").unwrap(), 50);
        assert_eq!(parse_percent("0%").unwrap(), 0);
        assert!(parse_percent("100.01%").is_err());
        assert!(parse_percent("two").is_err());
    }

    #[test]
    fn waves_are_the_canary_then_cohorts_to_the_end() {
        let c = campaign(200, "5%", "20%", "2%", 50);
        assert_eq!(
            c.waves(),
            vec![0..10, 10..50, 50..90, 90..130, 130..170, 170..200]
        );
        let c = campaign(3, "50", "1", "2%", 50);
        assert_eq!(c.waves(), vec![0..3]);
    }

    #[test]
    fn the_rule_judges_a_full_window_or_a_settled_wave() {
        let mut c = campaign(200, "20", "20%", "2%", 50);
        for _ in 0..19 {
            c.record(MemberStatus::Committed);
        }
        c.record(MemberStatus::Failed);
        // 1 of 20 is 5 %, but the window is not full and the wave goes on
        assert_eq!(c.check_abort(false), None);
        let trip = c
            .check_abort(true)
            .expect("1/20 > 2% once the wave settled");
        assert_eq!((trip.failed, trip.outcomes), (1, 20));
        // 2 failures in a window of 50 is 4 % whatever comes: certain
        c.record(MemberStatus::Expired);
        assert!(c.check_abort(false).is_some());
        // a clean window holds
        let mut c = campaign(200, "20", "20%", "2%", 50);
        for _ in 0..60 {
            c.record(MemberStatus::Committed);
        }
        c.record(MemberStatus::Failed);
        assert_eq!(c.recent.len(), 50);
        assert_eq!(c.check_abort(true), None, "1/50 is 2 %, not above");
        c.record(MemberStatus::Skipped);
        assert_eq!(c.counts.skipped, 1);
        assert_eq!(c.recent.len(), 50, "a skip is no rotation outcome");
    }

    #[test]
    fn resume_cancel_and_closed_campaigns() {
        let mut c = campaign(10, "1", "5", "2%", 5);
        assert!(matches!(
            c.resume(false),
            Err(CampaignError::AlreadyRunning(_))
        ));
        c.record(MemberStatus::Failed);
        c.state = CampaignState::Paused {
            trip: c.check_abort(true),
        };
        let r = c.resume(true).unwrap();
        assert_eq!(r.state, CampaignState::Running);
        assert!(r.recent.is_empty() && r.retry_failed);
        assert_eq!(r.counts.failed, 1, "counts are kept");
        let x = r.cancel().unwrap();
        assert!(matches!(x.resume(false), Err(CampaignError::Closed { .. })));
        assert!(matches!(x.cancel(), Err(CampaignError::Closed { .. })));
        assert!(matches!(x.pause(), Err(CampaignError::Closed { .. })));
    }

    #[test]
    fn the_rate_is_kept_across_sweeps() {
        let mut c = campaign(1000, "100", "10%", "2%", 50);
        assert_eq!(c.release_budget(0, 1000), 10, "a second's worth at once");
        c.released_at_ms = Some(0);
        assert_eq!(c.release_budget(500, 1000), 5, "half a second: half");
        assert_eq!(c.release_budget(60_000, 1000), 600);
        assert_eq!(c.release_budget(3_600_000, 1000), 1000, "at most the cap");
    }

    #[test]
    fn bad_campaigns_are_refused() {
        let new = |window, rate| NewCampaign {
            id: id(),
            task_id: "t".into(),
            rollout: Rollout {
                canary: Share::Count(1),
                cohort: Share::Count(1),
                rate_per_second: rate,
            },
            abort: AbortRule {
                above_basis_points: 200,
                window,
            },
            grace_ms: 60_000,
        };
        let one = vec!["a".repeat(64)];
        assert!(Campaign::new(new(50, 1), &[], 0).is_err());
        assert!(Campaign::new(new(0, 1), &one, 0).is_err());
        assert!(Campaign::new(new(MAX_WINDOW + 1, 1), &one, 0).is_err());
        assert!(Campaign::new(new(50, 0), &one, 0).is_err());
        let two = vec!["a".repeat(64), "a".repeat(64)];
        assert!(Campaign::new(new(50, 1), &two, 0).is_err());
        assert!(CampaignId::new("active").is_err());
        assert!(CampaignId::new("x".repeat(33)).is_err());
    }

    #[test]
    fn items_have_their_keys_and_member_rotation_ids_are_rotation_ids() {
        let certs: Vec<String> = (0..250).map(|i| format!("{i:064x}")).collect();
        let c = campaign(1, "1", "1", "2%", 1);
        let (c, chunks) = Campaign::new(
            NewCampaign {
                id: c.id.clone(),
                task_id: c.task_id.clone(),
                rollout: c.rollout,
                abort: c.abort,
                grace_ms: c.grace_ms,
            },
            &certs,
            0,
        )
        .unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2].certificate_ids.len(), 50);
        assert_eq!(
            CampaignItem::Members(chunks[2].clone()).key(),
            "campaign#cmp1#2"
        );
        assert_eq!(CampaignItem::Campaign(c.clone()).key(), "campaign#cmp1");
        let json = serde_json::to_string(&CampaignItem::Campaign(c.clone())).unwrap();
        assert_eq!(
            serde_json::from_str::<CampaignItem>(&json).unwrap(),
            CampaignItem::Campaign(c)
        );
        let longest = CampaignId::new("x".repeat(32)).unwrap();
        let rid = member_rotation_id(&longest, u32::MAX, u32::MAX);
        assert!(crate::contracts::RotationId::new(rid).is_ok());
        let mut m = chunks[0].clone();
        m.set_status(3, MemberStatus::Released);
        assert_eq!(m.status_of(3), MemberStatus::Released);
        assert_eq!(m.status_of(2), MemberStatus::Pending);
    }
}
