//! What a plan is asked: the fleet (size, certificate expiry, behaviour),
//! the stack's configuration (the file `fleetcert synth` reads), the
//! account's quotas; and [`PlanOptions::check`], which refuses what cannot
//! work with the field named.

use std::collections::BTreeMap;

use lambdas::ports::Operation;

/// SQS: "the maximum number of inflight messages is 120,000" for a
/// standard queue (Amazon SQS developer guide, "Amazon SQS message quotas",
/// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html>).
pub const SQS_MAX_IN_FLIGHT: u64 = 120_000;

/// AWS IoT Core persistent sessions: 1 hour by default, configurable up to
/// 7 days ("Persistent session expiry period", AWS IoT Core quotas,
/// <https://docs.aws.amazon.com/general/latest/gr/iot-core.html>).
pub const SESSION_EXPIRY_HOURS: std::ops::RangeInclusive<f64> = 0.0..=168.0;

/// The memory floor a run is held to (the 8 GiB).
pub const MEMORY_FLOOR_BYTES: u64 = 8 << 30;

/// How the devices behave. Shares are fractions of the fleet (0 to 1); a
/// device is in at most one class, the rest are always online and answer.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceMix {
    /// Online once a day for [`daily_window_minutes`](Self::daily_window_minutes)
    /// at a random time of day.
    pub daily_share: f64,
    /// How long a daily device stays online.
    pub daily_window_minutes: u32,
    /// Offline from the start for [`away_days`](Self::away_days), then
    /// always online.
    pub away_share: f64,
    /// How long an away device is offline.
    pub away_days: u32,
    /// Online, never answers a `csr_req` (old firmware).
    pub silent_share: f64,
    /// Answers, then sends `crt_err` for the new certificate.
    pub crt_err_share: f64,
}

impl Default for DeviceMix {
    fn default() -> Self {
        Self {
            daily_share: 0.0,
            daily_window_minutes: 10,
            away_share: 0.0,
            away_days: 14,
            silent_share: 0.0,
            crt_err_share: 0.0,
        }
    }
}

/// One plan's inputs.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// How many devices.
    pub devices: u64,
    /// The seed of every random choice.
    pub seed: u64,
    /// The stack's configuration (as `fleetcert synth` reads it).
    pub config: infra::config::Config,
    /// Account quotas that replace AWS's published defaults, requests per
    /// second. The functions are told them too (`FLEETCERT_QUOTA_<name>`),
    /// as an operator who raised a quota would.
    pub quotas: BTreeMap<Operation, f64>,
    /// Device behaviour.
    pub mix: DeviceMix,
    /// Certificates expire uniformly between these days after the start.
    pub expiry_days: (f64, f64),
    /// AWS IoT's persistent session expiry: how long a QoS 1 message waits
    /// for an offline device, hours.
    pub session_expiry_hours: f64,
    /// When the simulation stops at the latest, days after the start
    /// (default: a day after the last certificate expires).
    pub horizon_days: Option<f64>,
    /// Deploy each function with its fair share of every quota it shares
    /// with other functions ([`crate::bound::QuotaBound::shares`]) instead
    /// of the whole quota: what the report recommends when functions
    /// together overrun a quota.
    pub split_quotas: bool,
    /// Rotate the fleet by a campaign (waves and an abort rule,
    /// `rules::campaign`) instead of the audit: written into the rotation
    /// table at the start over every device's certificate, released by the
    /// sweeper at its schedule.
    pub campaign: Option<PlanCampaign>,
}

/// The campaign a plan rotates the fleet with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanCampaign {
    /// Waves and rate.
    pub rollout: rules::campaign::Rollout,
    /// When it pauses itself (nobody resumes it in a plan).
    pub abort: rules::campaign::AbortRule,
}

impl PlanOptions {
    /// `devices` devices, every other setting at its default.
    pub fn new(devices: u64) -> Self {
        let config = infra::config::Config::default();
        let threshold = f64::from(config.audit.expiring_threshold_days);
        Self {
            devices,
            seed: 1,
            config,
            quotas: BTreeMap::new(),
            mix: DeviceMix::default(),
            expiry_days: (threshold / 2.0, threshold),
            session_expiry_hours: 1.0,
            horizon_days: None,
            split_quotas: false,
            campaign: None,
        }
    }

    /// The last instant simulated, days after the start.
    pub fn horizon(&self) -> f64 {
        self.horizon_days.unwrap_or(self.expiry_days.1 + 1.0)
    }

    /// The account's quota of `operation`: the override, else AWS's
    /// published default, else `lambdas::limits::DEFAULT_RATE` (what the
    /// functions assume for an operation without a published quota).
    pub fn quota(&self, operation: Operation) -> f64 {
        self.quotas
            .get(&operation)
            .copied()
            .or_else(|| operation.default_quota_per_second().map(f64::from))
            .unwrap_or(lambdas::limits::DEFAULT_RATE)
    }

    /// What the memory of a run of this size is estimated at, bytes
    /// (measured per device on this machine, see BENCHMARKS.md).
    pub fn memory_estimate(&self) -> u64 {
        BASE_BYTES + self.devices.saturating_mul(BYTES_PER_DEVICE)
    }

    /// Refuses a plan that cannot work, naming the field.
    ///
    /// # Errors
    /// The first [`PlanError`].
    pub fn check(&self) -> Result<infra::config::Validated, PlanError> {
        let field = |field: &str, reason: String| PlanError::Invalid {
            field: field.to_owned(),
            reason,
        };
        if self.devices == 0 {
            return Err(field("--devices", "a plan needs at least 1 device".into()));
        }
        for (op, rate) in &self.quotas {
            if !(rate.is_finite() && *rate > 0.0) {
                return Err(field(
                    &format!("--quota {op}"),
                    format!("{rate} requests per second: nothing would ever be called"),
                ));
            }
        }
        let c = &self.config;
        let threshold_hours = u64::from(c.audit.expiring_threshold_days) * 24;
        if let Some(hours) = c.rotation.deadline_hours
            && u64::from(hours) >= threshold_hours
        {
            return Err(field(
                "rotation.deadline_hours",
                format!(
                    "{hours} h is not shorter than audit.expiring_threshold_days ({threshold_hours} h): a rotation would outlive the warning"
                ),
            ));
        }
        let validated = c.clone().validate().map_err(|e| match e {
            infra::config::ConfigError::Invalid { field: f, reason } => field(f, reason),
            other => field("--config", other.to_string()),
        })?;
        let (lo, hi) = self.expiry_days;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi && hi > 0.0) {
            return Err(field(
                "--expiry-days",
                format!("{lo}..{hi} is not a range of days after the start"),
            ));
        }
        if !SESSION_EXPIRY_HOURS.contains(&self.session_expiry_hours) {
            return Err(field(
                "--session-expiry-hours",
                format!(
                    "{} is outside AWS IoT's 0 to 168 hours",
                    self.session_expiry_hours
                ),
            ));
        }
        let m = &self.mix;
        for (name, share) in [
            ("--online-daily", m.daily_share),
            ("--offline", m.away_share),
            ("--silent", m.silent_share),
            ("--crt-err", m.crt_err_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(field(name, format!("{share} is not a share from 0 to 1")));
            }
        }
        let total = m.daily_share + m.away_share + m.silent_share + m.crt_err_share;
        if total > 1.0 + 1e-9 {
            return Err(field(
                "--online-daily/--offline/--silent/--crt-err",
                format!("the shares add up to {total}, more than the whole fleet"),
            ));
        }
        if m.daily_window_minutes == 0 || m.daily_window_minutes >= 24 * 60 {
            return Err(field(
                "--online-minutes",
                format!("{} is not 1 to 1439 minutes", m.daily_window_minutes),
            ));
        }
        if let Some(h) = self.horizon_days
            && !(h.is_finite() && h > 0.0)
        {
            return Err(field(
                "--horizon-days",
                format!("{h} is not a positive number of days"),
            ));
        }
        Ok(validated)
    }
}

/// Fixed memory of a run (the process, the synthesized template, the chart).
pub const BASE_BYTES: u64 = 64 << 20;
/// Memory per device at the peak: its certificates in the registry (PEM and
/// snapshot, old and new), its rotation row, its model and its finding.
pub const BYTES_PER_DEVICE: u64 = 4 << 10;

/// A plan refused before it runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// An input that cannot work.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The flag or config field.
        field: String,
        /// Why.
        reason: String,
    },
}

impl PlanError {
    /// The field named.
    pub fn field(&self) -> &str {
        match self {
            Self::Invalid { field, .. } => field,
        }
    }
}
