//! Client-side rate limiting and retries around any [`Ports`] bundle
//! (feature `limits`, part of `aws`; no AWS SDK needed).
//!
//! [`Limited`] decorates every port call: it first takes a token from the
//! operation's own token bucket (`governor`, one bucket per [`Operation`])
//! and then makes the call; a failed call is retried with jittered
//! exponential back-off (`backon`) while [`should_retry`] says so, at most
//! [`LimitsConfig::max_retries`] times and [`LimitsConfig::max_total_delay`]
//! in all, and then the last error is returned to the handler (which fails
//! the invocation so that Lambda retries it later).
//!
//! Each bucket refills at the operation's account quota
//! ([`Operation::default_quota_per_second`], or `FLEETCERT_QUOTA_<name>`,
//! or [`LimitsConfig::default_rate`] for operations without a published
//! quota) divided by `FLEETCERT_CONCURRENCY`, the function's reserved
//! concurrency: N instances each at 1/N of the quota stay under it
//! together.
//!
//! **Writes that are not idempotent.** `CreateCertificateFromCsr` makes a
//! new certificate on every call that succeeds. It is retried only when it
//! was [`PortError::Throttled`]: a throttled request was refused before it
//! was processed, so nothing was created. A [`PortError::Transient`]
//! failure (timeout, dropped connection, 5xx) may come after the
//! certificate was created, so it is **never** retried here: the error goes
//! back to the CSR issuer, whose rotation row records the claim and whose
//! retry finds and removes a certificate created but not recorded. Every
//! other operation is idempotent (or conditional) and is retried on both.

use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use rules::campaign::CampaignItem;
use rules::contracts::AuditFinding;
use rules::rotation::Rotation;

use crate::ports::{
    CaCertificateDescription, CampaignWrite, CertificateDescription, CertificateStatus,
    CreatedCertificate, FailedEntry, IotRegistry, IssueRequest, IssuedCertificate, Notifier,
    Operation, Page, PortError, PortResult, Ports, PrincipalThing, PrivateCa, Publisher,
    QueueMessage, RotationStore, ThingDescription, ThingPrincipalType, WorkQueue,
};

/// Requests per second for an operation without a published quota.
pub const DEFAULT_RATE: f64 = 50.0;
/// Retries after the first attempt (6 attempts in all).
pub const DEFAULT_MAX_RETRIES: usize = 5;
/// Upper bound on the time spent sleeping between attempts of one call.
pub const DEFAULT_MAX_TOTAL_DELAY: Duration = Duration::from_secs(20);
/// The first back-off delay (doubled each retry, plus up to 100% jitter).
pub const DEFAULT_MIN_DELAY: Duration = Duration::from_millis(100);
/// The largest single back-off delay.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(5);

/// Largest rate a bucket accepts (higher values are clamped).
const MAX_RATE: f64 = 1_000_000.0;
/// Bound on the waits for one token (each wait lasts until the bucket's
/// next free token; only competing callers make a second one necessary).
const MAX_TOKEN_WAITS: usize = 1_000;

/// Environment variable prefix of per-operation quotas:
/// `FLEETCERT_QUOTA_<Operation::name()>=<requests per second>`.
pub const QUOTA_PREFIX: &str = "FLEETCERT_QUOTA_";

/// Rate limits and retry bounds for [`Limited`].
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// Account-wide requests per second per operation set explicitly
    /// (`FLEETCERT_QUOTA_<name>`); they replace the published defaults.
    pub quotas: BTreeMap<Operation, f64>,
    /// `FLEETCERT_DEFAULT_QUOTA`: requests per second for operations with
    /// neither a published nor a configured quota.
    pub default_rate: f64,
    /// `FLEETCERT_CONCURRENCY`: how many instances of the function may run
    /// at once (its reserved concurrency); each takes 1/N of every quota.
    pub concurrency: u32,
    /// `FLEETCERT_MAX_RETRIES`: retries after the first attempt.
    pub max_retries: usize,
    /// Upper bound on the total back-off sleep of one call.
    pub max_total_delay: Duration,
    /// The first back-off delay.
    pub min_delay: Duration,
    /// The largest single back-off delay.
    pub max_delay: Duration,
    /// Seed of the back-off jitter; `None` (the deployed default): a random
    /// seed. A simulation sets it so that the same run retries the same way.
    pub jitter_seed: Option<u64>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            quotas: BTreeMap::new(),
            default_rate: DEFAULT_RATE,
            concurrency: 1,
            max_retries: DEFAULT_MAX_RETRIES,
            max_total_delay: DEFAULT_MAX_TOTAL_DELAY,
            min_delay: DEFAULT_MIN_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            jitter_seed: None,
        }
    }
}

/// A limits variable that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsConfigError {
    /// The value is not what the variable takes.
    #[error("environment variable {name}={value:?} is not {expected}")]
    Invalid {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// `FLEETCERT_QUOTA_<name>` names no [`Operation`].
    #[error(
        "environment variable {name} names no operation (expected {QUOTA_PREFIX}<operation>, e.g. {QUOTA_PREFIX}CreateCertificateFromCsr)"
    )]
    UnknownOperation {
        /// The variable.
        name: String,
    },
}

impl LimitsConfig {
    /// Reads the limits from the process environment.
    ///
    /// # Errors
    /// A [`LimitsConfigError`] for the first variable that does not parse.
    pub fn from_env() -> Result<Self, LimitsConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the limits from `(name, value)` pairs (the environment in
    /// [`from_env`](Self::from_env)); other variables are ignored.
    ///
    /// # Errors
    /// A [`LimitsConfigError`] for the first variable that does not parse.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, LimitsConfigError> {
        let mut config = Self::default();
        for (name, value) in vars {
            if let Some(op_name) = name.strip_prefix(QUOTA_PREFIX) {
                let Some(op) = Operation::from_name(op_name) else {
                    return Err(LimitsConfigError::UnknownOperation { name });
                };
                let rate = parse_rate(&name, &value)?;
                config.quotas.insert(op, rate);
            } else if name == "FLEETCERT_DEFAULT_QUOTA" {
                config.default_rate = parse_rate(&name, &value)?;
            } else if name == "FLEETCERT_CONCURRENCY" {
                config.concurrency = match value.trim().parse::<u32>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(invalid(name, value, "a positive whole number")),
                };
            } else if name == "FLEETCERT_MAX_RETRIES" {
                config.max_retries = match value.trim().parse::<usize>() {
                    Ok(n) if n <= 100 => n,
                    _ => return Err(invalid(name, value, "a whole number from 0 to 100")),
                };
            }
        }
        Ok(config)
    }

    /// The account-wide quota of `operation` in requests per second: the
    /// configured one, else the published one, else the default rate.
    pub fn account_rate(&self, operation: Operation) -> f64 {
        self.quotas
            .get(&operation)
            .copied()
            .or_else(|| operation.default_quota_per_second().map(f64::from))
            .unwrap_or(self.default_rate)
    }

    /// This instance's share of [`account_rate`](Self::account_rate):
    /// divided by [`concurrency`](Self::concurrency).
    pub fn instance_rate(&self, operation: Operation) -> f64 {
        self.account_rate(operation) / f64::from(self.concurrency.max(1))
    }

    fn backoff(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::default()
            .with_jitter()
            .with_factor(2.0)
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_total_delay(Some(self.max_total_delay));
        match self.jitter_seed {
            Some(seed) => builder.with_jitter_seed(seed),
            None => builder,
        }
    }
}

fn invalid(name: String, value: String, expected: &'static str) -> LimitsConfigError {
    LimitsConfigError::Invalid {
        name,
        value,
        expected,
    }
}

fn parse_rate(name: &str, value: &str) -> Result<f64, LimitsConfigError> {
    match value.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(invalid(
            name.to_owned(),
            value.to_owned(),
            "a positive number of requests per second",
        )),
    }
}

/// Whether [`Limited`] tries `operation` again after `error`: retryable
/// errors ([`PortError::is_retryable`]), except that
/// `CreateCertificateFromCsr` is retried only when throttled (see the
/// module documentation).
pub fn should_retry(operation: Operation, error: &PortError) -> bool {
    match operation {
        Operation::CreateCertificateFromCsr => matches!(error, PortError::Throttled { .. }),
        _ => error.is_retryable(),
    }
}

/// The time source of [`Limited`]: the token buckets' clock (time since a
/// fixed start) and the sleep between attempts.
pub trait Timer: Clock<Instant = Duration> + Clone + Send + Sync + 'static {
    /// Waits for `duration`.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static + use<Self>;
}

/// Real time through tokio (`tokio::time`).
#[derive(Debug, Clone, Copy)]
pub struct TokioTimer {
    start: tokio::time::Instant,
}

impl TokioTimer {
    /// A timer starting now.
    pub fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioTimer {
    type Instant = Duration;
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

impl Timer for TokioTimer {
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static + use<> {
        tokio::time::sleep(duration)
    }
}

/// A mock clock for tests: it stands still until something sleeps, and a
/// sleep returns at once after moving the clock forward by its duration.
/// [`elapsed`](Self::elapsed) is then the time the calls would have taken.
#[derive(Debug, Clone, Default)]
pub struct ManualTimer {
    nanos: Arc<AtomicU64>,
}

impl ManualTimer {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The time slept so far.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualTimer {
    type Instant = Duration;
    fn now(&self) -> Duration {
        self.elapsed()
    }
}

impl Timer for ManualTimer {
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static + use<> {
        self.advance(duration);
        std::future::ready(())
    }
}

type Bucket<T> = RateLimiter<NotKeyed, InMemoryState, T, NoOpMiddleware<Duration>>;

/// The token bucket for `rate` requests per second: one token every
/// `1/rate` seconds, holding at most `max(1, ⌊rate⌋)` (one second's worth).
fn quota(rate: f64) -> Quota {
    let rate = if rate.is_finite() && rate > 0.0 {
        rate.min(MAX_RATE)
    } else {
        DEFAULT_RATE
    };
    let period = Duration::from_secs_f64(1.0 / rate);
    // `rate` is at most MAX_RATE, so the floor fits in u32.
    let burst = NonZeroU32::new((rate.floor() as u32).max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(burst))
        .allow_burst(burst)
}

/// [`Ports`] (and each port trait) over `P`, with a token bucket per
/// operation and bounded, jittered retries (module documentation).
pub struct Limited<P, T: Timer = TokioTimer> {
    inner: P,
    timer: T,
    buckets: BTreeMap<Operation, Bucket<T>>,
    rates: BTreeMap<Operation, f64>,
    backoff: ExponentialBuilder,
}

impl<P: std::fmt::Debug, T: Timer> std::fmt::Debug for Limited<P, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limited")
            .field("inner", &self.inner)
            .field("rates", &self.rates)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl<P: Ports> Limited<P> {
    /// Wraps `inner` with the limits of `config`, on real time.
    pub fn new(inner: P, config: &LimitsConfig) -> Self {
        Self::with_timer(inner, config, TokioTimer::new())
    }
}

impl<P: Ports, T: Timer> Limited<P, T> {
    /// Wraps `inner` with the limits of `config`, on `timer`.
    pub fn with_timer(inner: P, config: &LimitsConfig, timer: T) -> Self {
        let rates: BTreeMap<Operation, f64> = Operation::ALL
            .into_iter()
            .map(|op| (op, config.instance_rate(op)))
            .collect();
        let buckets = rates
            .iter()
            .map(|(op, rate)| {
                (
                    *op,
                    RateLimiter::direct_with_clock(quota(*rate), timer.clone()),
                )
            })
            .collect();
        Self {
            inner,
            timer,
            buckets,
            rates,
            backoff: config.backoff(),
        }
    }

    /// The wrapped ports.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// This instance's rate for `operation`, requests per second.
    pub fn rate(&self, operation: Operation) -> f64 {
        self.rates.get(&operation).copied().unwrap_or(DEFAULT_RATE)
    }

    /// Waits for a token of `operation`'s bucket.
    async fn acquire(&self, operation: Operation) {
        let Some(bucket) = self.buckets.get(&operation) else {
            return;
        };
        for _ in 0..MAX_TOKEN_WAITS {
            match bucket.check() {
                Ok(()) => return,
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.timer.now());
                    self.timer.sleep(wait).await;
                }
            }
        }
        tracing::warn!(%operation, "rate limiter still busy after {MAX_TOKEN_WAITS} waits, calling anyway");
    }

    /// Runs `call` (one attempt per invocation) through the bucket and the
    /// retry policy.
    async fn call<R, F, Fut>(&self, operation: Operation, mut call: F) -> PortResult<R>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = PortResult<R>> + Send,
        R: Send,
    {
        let timer = self.timer.clone();
        let attempt = || {
            let fut = call();
            async move {
                self.acquire(operation).await;
                fut.await
            }
        };
        attempt
            .retry(self.backoff)
            .sleep(move |d| timer.sleep(d))
            .when(|e| should_retry(operation, e))
            .notify(|e, delay| {
                tracing::warn!(%operation, error = %e, ?delay, "retrying");
            })
            .await
    }
}

impl<P: Ports, T: Timer> IotRegistry for Limited<P, T> {
    async fn describe_certificate(
        &self,
        certificate_id: &str,
    ) -> PortResult<CertificateDescription> {
        let r = self.inner.registry();
        self.call(Operation::DescribeCertificate, || {
            r.describe_certificate(certificate_id)
        })
        .await
    }

    async fn create_certificate_from_csr(
        &self,
        csr_pem: &str,
        set_as_active: bool,
    ) -> PortResult<CreatedCertificate> {
        let r = self.inner.registry();
        self.call(Operation::CreateCertificateFromCsr, || {
            r.create_certificate_from_csr(csr_pem, set_as_active)
        })
        .await
    }

    async fn register_certificate(
        &self,
        certificate_pem: &str,
        ca_certificate_pem: &str,
        status: CertificateStatus,
    ) -> PortResult<CreatedCertificate> {
        let r = self.inner.registry();
        self.call(Operation::RegisterCertificate, || {
            r.register_certificate(certificate_pem, ca_certificate_pem, status.clone())
        })
        .await
    }

    async fn update_certificate(
        &self,
        certificate_id: &str,
        status: CertificateStatus,
    ) -> PortResult<()> {
        let r = self.inner.registry();
        self.call(Operation::UpdateCertificate, || {
            r.update_certificate(certificate_id, status.clone())
        })
        .await
    }

    async fn delete_certificate(&self, certificate_id: &str) -> PortResult<()> {
        let r = self.inner.registry();
        self.call(Operation::DeleteCertificate, || {
            r.delete_certificate(certificate_id)
        })
        .await
    }

    async fn list_attached_policies(
        &self,
        target_arn: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<String>> {
        let r = self.inner.registry();
        self.call(Operation::ListAttachedPolicies, || {
            r.list_attached_policies(target_arn, next_token.clone())
        })
        .await
    }

    async fn attach_policy(&self, policy_name: &str, target_arn: &str) -> PortResult<()> {
        let r = self.inner.registry();
        self.call(Operation::AttachPolicy, || {
            r.attach_policy(policy_name, target_arn)
        })
        .await
    }

    async fn detach_policy(&self, policy_name: &str, target_arn: &str) -> PortResult<()> {
        let r = self.inner.registry();
        self.call(Operation::DetachPolicy, || {
            r.detach_policy(policy_name, target_arn)
        })
        .await
    }

    async fn list_principal_things(
        &self,
        principal_arn: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<String>> {
        let r = self.inner.registry();
        self.call(Operation::ListPrincipalThings, || {
            r.list_principal_things(principal_arn, next_token.clone())
        })
        .await
    }

    async fn list_principal_things_v2(
        &self,
        principal_arn: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<PrincipalThing>> {
        let r = self.inner.registry();
        self.call(Operation::ListPrincipalThingsV2, || {
            r.list_principal_things_v2(principal_arn, next_token.clone())
        })
        .await
    }

    async fn attach_thing_principal_as(
        &self,
        thing_name: &str,
        principal_arn: &str,
        kind: ThingPrincipalType,
    ) -> PortResult<()> {
        let r = self.inner.registry();
        self.call(Operation::AttachThingPrincipal, || {
            r.attach_thing_principal_as(thing_name, principal_arn, kind)
        })
        .await
    }

    async fn detach_thing_principal(
        &self,
        thing_name: &str,
        principal_arn: &str,
    ) -> PortResult<()> {
        let r = self.inner.registry();
        self.call(Operation::DetachThingPrincipal, || {
            r.detach_thing_principal(thing_name, principal_arn)
        })
        .await
    }

    async fn describe_thing(&self, thing_name: &str) -> PortResult<ThingDescription> {
        let r = self.inner.registry();
        self.call(Operation::DescribeThing, || r.describe_thing(thing_name))
            .await
    }

    async fn create_thing(&self, thing_name: &str) -> PortResult<ThingDescription> {
        let r = self.inner.registry();
        self.call(Operation::CreateThing, || r.create_thing(thing_name))
            .await
    }

    async fn describe_ca_certificate(
        &self,
        ca_certificate_id: &str,
    ) -> PortResult<CaCertificateDescription> {
        let r = self.inner.registry();
        self.call(Operation::DescribeCaCertificate, || {
            r.describe_ca_certificate(ca_certificate_id)
        })
        .await
    }

    async fn list_audit_findings(
        &self,
        task_id: &str,
        check_name: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<AuditFinding>> {
        let r = self.inner.registry();
        self.call(Operation::ListAuditFindings, || {
            r.list_audit_findings(task_id, check_name, next_token.clone())
        })
        .await
    }
}

impl<P: Ports, T: Timer> Publisher for Limited<P, T> {
    async fn publish(&self, topic: &str, payload: &[u8], qos: u8) -> PortResult<()> {
        let p = self.inner.publisher();
        self.call(Operation::Publish, || p.publish(topic, payload, qos))
            .await
    }
}

impl<P: Ports, T: Timer> RotationStore for Limited<P, T> {
    async fn create(&self, rotation: &Rotation) -> PortResult<()> {
        let s = self.inner.store();
        self.call(Operation::CreateRotation, || s.create(rotation))
            .await
    }

    async fn get(&self, rotation_id: &str) -> PortResult<Option<Rotation>> {
        let s = self.inner.store();
        self.call(Operation::GetRotation, || s.get(rotation_id))
            .await
    }

    async fn latest_for_thing(&self, thing_name: &str) -> PortResult<Option<Rotation>> {
        let s = self.inner.store();
        self.call(Operation::LatestRotationForThing, || {
            s.latest_for_thing(thing_name)
        })
        .await
    }

    async fn latest_for_certificate(
        &self,
        old_certificate_id: &str,
    ) -> PortResult<Option<Rotation>> {
        let s = self.inner.store();
        self.call(Operation::LatestRotationForCertificate, || {
            s.latest_for_certificate(old_certificate_id)
        })
        .await
    }

    async fn update(&self, expected: &Rotation, next: &Rotation) -> PortResult<()> {
        let s = self.inner.store();
        self.call(Operation::UpdateRotation, || s.update(expected, next))
            .await
    }

    async fn open_due(
        &self,
        before_ms: i64,
        next_token: Option<String>,
    ) -> PortResult<Page<Rotation>> {
        let s = self.inner.store();
        self.call(Operation::ListDueRotations, || {
            s.open_due(before_ms, next_token.clone())
        })
        .await
    }

    async fn get_campaign(&self, key: &str) -> PortResult<Option<CampaignItem>> {
        let s = self.inner.store();
        self.call(Operation::GetCampaign, || s.get_campaign(key))
            .await
    }

    async fn put_campaign(&self, writes: &[CampaignWrite]) -> PortResult<()> {
        let s = self.inner.store();
        self.call(Operation::PutCampaign, || s.put_campaign(writes))
            .await
    }
}

impl<P: Ports, T: Timer> Notifier for Limited<P, T> {
    async fn notify(&self, subject: &str, message: &str) -> PortResult<()> {
        let n = self.inner.notifier();
        self.call(Operation::NotifySupport, || n.notify(subject, message))
            .await
    }
}

impl<P: Ports, T: Timer> WorkQueue for Limited<P, T> {
    async fn send_batch(&self, messages: &[QueueMessage]) -> PortResult<Vec<FailedEntry>> {
        let q = self.inner.queue();
        self.call(Operation::SendMessageBatch, || q.send_batch(messages))
            .await
    }
}

// `IssueCertificate` carries the claim's idempotency token, so a retry
// after a transient failure gets the same certificate; `GetCertificate`'s
// `RequestInProgressException` is transient: the back-off polls it.
impl<P: Ports, T: Timer> PrivateCa for Limited<P, T> {
    async fn issue_certificate(&self, request: &IssueRequest<'_>) -> PortResult<String> {
        let c = self.inner.private_ca();
        self.call(Operation::IssueCertificate, || c.issue_certificate(request))
            .await
    }

    async fn get_certificate(
        &self,
        ca_arn: &str,
        certificate_arn: &str,
    ) -> PortResult<IssuedCertificate> {
        let c = self.inner.private_ca();
        self.call(Operation::GetCertificate, || {
            c.get_certificate(ca_arn, certificate_arn)
        })
        .await
    }

    async fn revoke_certificate(&self, ca_arn: &str, certificate_serial: &str) -> PortResult<()> {
        let c = self.inner.private_ca();
        self.call(Operation::RevokeCertificate, || {
            c.revoke_certificate(ca_arn, certificate_serial)
        })
        .await
    }
}

impl<P: Ports, T: Timer> Ports for Limited<P, T> {
    type Registry = Self;
    type Publisher = Self;
    type Store = Self;
    type Notifier = Self;
    type Queue = Self;
    type PrivateCa = Self;

    fn registry(&self) -> &Self {
        self
    }
    fn private_ca(&self) -> &Self {
        self
    }
    fn publisher(&self) -> &Self {
        self
    }
    fn store(&self) -> &Self {
        self
    }
    fn notifier(&self) -> &Self {
        self
    }
    fn queue(&self) -> &Self {
        self
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
