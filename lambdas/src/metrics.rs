//! fleetcert's CloudWatch metrics, written as CloudWatch **Embedded Metric
//! Format** (EMF) documents on the function's log stream: CloudWatch Logs
//! extracts the metrics, no `PutMetricData` call, no IAM grant, no SDK.
//!
//! A small typed writer rather than `metrics_cloudwatch_embedded`: that
//! crate is a recorder for the `metrics` facade, flushed by its own Lambda
//! layer (`lambda_runtime` service wrapper) and keyed by free-form label
//! strings. fleetcert needs three things it does not give: dimensions that
//! can only come from closed enums (so a thing name or a rotation id can
//! never become a dimension: CloudWatch bills per dimension combination),
//! a flush the tests on the memory adapters can read back as JSON, and no
//! global recorder (the emulator and the tests run many "functions" in one
//! process).
//!
//! The pieces:
//! - [`Metric`]: every metric name with its unit and the dimension names it
//!   carries; [`Dim`]: every dimension value, each from a fixed set.
//! - [`Metrics`]: a per-invocation buffer (cheap to clone, shared by the
//!   [`Metered`] ports decorator and `runtime::dispatch`);
//!   [`Metrics::flush`] turns it into EMF documents, one per metric and
//!   dimension values, counts summed, latencies kept as value arrays.
//! - [`Metered<P>`]: [`Ports`] over any `P` that records what the port
//!   calls say about the fleet: rotations started (`create`), state
//!   transitions and re-sends (`update`), commit latency, throttled and
//!   failed calls per operation.
//!
//! Document shape (the EMF specification, "Embedded metric format document
//! structure"):
//!
//! ```json
//! {"_aws": {"Timestamp": 1733500000000,
//!           "CloudWatchMetrics": [{"Namespace": "fleetcert",
//!                                  "Dimensions": [["Function", "Reason"], []],
//!                                  "Metrics": [{"Name": "RotationsFailed", "Unit": "Count"}]}]},
//!  "Function": "error-handler", "Reason": "device_error_after_issue", "RotationsFailed": 1}
//! ```
//!
//! Each metric is published under its full dimension set and under the
//! empty set (`[]`, the fleet-wide total), so an alarm needs no `SEARCH`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rules::campaign::CampaignItem;
use rules::contracts::AuditFinding;
use rules::functions::Function;
use rules::rotation::{Rotation, RotationState};
use serde_json::{Map, Value, json};

use crate::handlers::{HandlerError, Outcome};
use crate::ports::{
    CaCertificateDescription, CampaignWrite, CertificateDescription, CertificateStatus,
    CreatedCertificate, FailedEntry, IotRegistry, IssueRequest, IssuedCertificate, Notifier,
    Operation, Page, PortError, PortResult, Ports, PrincipalThing, PrivateCa, Publisher,
    QueueMessage, RotationStore, ThingDescription, ThingPrincipalType, WorkQueue,
};

/// The CloudWatch namespace of every fleetcert metric.
pub const NAMESPACE: &str = "fleetcert";

/// A CloudWatch unit (the EMF `Unit` member).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// `Count`: values are summed within one document.
    Count,
    /// `Milliseconds`: values are kept one by one (a distribution).
    Milliseconds,
}

impl Unit {
    /// CloudWatch's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

/// A dimension name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DimName {
    /// The Lambda function ([`Function::name`]).
    Function,
    /// The port operation ([`Operation::name`]).
    Operation,
    /// Why a rotation failed or expired ([`EndReason`]).
    Reason,
    /// A rejection kind or a port error kind (a `&'static str` code).
    Kind,
    /// How an event ended ([`OutcomeKind`]).
    Outcome,
}

impl DimName {
    /// The dimension's name in CloudWatch.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Function => "Function",
            Self::Operation => "Operation",
            Self::Reason => "Reason",
            Self::Kind => "Kind",
            Self::Outcome => "Outcome",
        }
    }
}

/// Every metric fleetcert publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// A rotation row was created (`RotationStore::create` succeeded).
    RotationsStarted,
    /// A rotation reached ISSUED (the new certificate was created).
    RotationsIssued,
    /// A rotation reached COMMITTED.
    RotationsCommitted,
    /// A rotation reached FAILED, by [`EndReason`].
    RotationsFailed,
    /// A rotation reached EXPIRED, by [`EndReason`].
    RotationsExpired,
    /// The sweeper sent a stalled rotation's message again.
    MessagesResent,
    /// From a rotation's creation (the audit) to its commit.
    CommitLatency,
    /// A port call that was still throttled after the retries.
    ThrottledCalls,
    /// A port call that failed otherwise, by the error's kind; not
    /// `not_found` and `condition_failed`, which are answers the handlers
    /// act on (an unknown certificate, a duplicate start, a row changed
    /// since it was read), not failures.
    FailedCalls,
    /// An event handled (an invocation; one SQS message for
    /// rotation-starter), by [`OutcomeKind`].
    Outcomes,
    /// An event refused, by the handler's rejection kind.
    Rejections,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 11] = [
        Self::RotationsStarted,
        Self::RotationsIssued,
        Self::RotationsCommitted,
        Self::RotationsFailed,
        Self::RotationsExpired,
        Self::MessagesResent,
        Self::CommitLatency,
        Self::ThrottledCalls,
        Self::FailedCalls,
        Self::Outcomes,
        Self::Rejections,
    ];

    /// The metric's name in CloudWatch.
    pub const fn name(self) -> &'static str {
        match self {
            Self::RotationsStarted => "RotationsStarted",
            Self::RotationsIssued => "RotationsIssued",
            Self::RotationsCommitted => "RotationsCommitted",
            Self::RotationsFailed => "RotationsFailed",
            Self::RotationsExpired => "RotationsExpired",
            Self::MessagesResent => "MessagesResent",
            Self::CommitLatency => "CommitLatency",
            Self::ThrottledCalls => "ThrottledCalls",
            Self::FailedCalls => "FailedCalls",
            Self::Outcomes => "Outcomes",
            Self::Rejections => "Rejections",
        }
    }

    /// Its unit.
    pub const fn unit(self) -> Unit {
        match self {
            Self::CommitLatency => Unit::Milliseconds,
            _ => Unit::Count,
        }
    }

    /// The dimensions each datum of this metric carries (its full
    /// dimension set; the empty set is published too).
    pub const fn dimensions(self) -> &'static [DimName] {
        match self {
            Self::RotationsStarted
            | Self::RotationsIssued
            | Self::RotationsCommitted
            | Self::MessagesResent
            | Self::CommitLatency => &[DimName::Function],
            Self::RotationsFailed | Self::RotationsExpired => &[DimName::Function, DimName::Reason],
            Self::ThrottledCalls => &[DimName::Function, DimName::Operation],
            Self::FailedCalls => &[DimName::Function, DimName::Operation, DimName::Kind],
            Self::Outcomes => &[DimName::Function, DimName::Outcome],
            Self::Rejections => &[DimName::Function, DimName::Kind],
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a rotation ended FAILED or EXPIRED: a fixed set, never the
/// device's own error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndReason {
    /// FAILED: the device sent `crt_err` before a certificate was issued.
    DeviceError,
    /// FAILED: `crt_err` after the new certificate was issued (deleted).
    DeviceErrorAfterIssue,
    /// EXPIRED before any certificate was issued.
    NoCertificate,
    /// EXPIRED; the new certificate was never sent and was deleted.
    CertificateDeleted,
    /// EXPIRED with the new certificate kept beside the old one.
    CertificateKept,
}

impl EndReason {
    /// The reason of a FAILED or EXPIRED state; `None` for the others.
    pub fn of(state: &RotationState) -> Option<Self> {
        match state {
            RotationState::Failed {
                new_certificate_id, ..
            } => Some(if new_certificate_id.is_some() {
                Self::DeviceErrorAfterIssue
            } else {
                Self::DeviceError
            }),
            RotationState::Expired {
                new_certificate_id,
                new_certificate_kept,
            } => Some(match (new_certificate_id, new_certificate_kept) {
                (_, true) => Self::CertificateKept,
                (Some(_), false) => Self::CertificateDeleted,
                (None, false) => Self::NoCertificate,
            }),
            _ => None,
        }
    }

    /// The dimension value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DeviceError => "device_error",
            Self::DeviceErrorAfterIssue => "device_error_after_issue",
            Self::NoCertificate => "no_certificate",
            Self::CertificateDeleted => "certificate_deleted",
            Self::CertificateKept => "certificate_kept",
        }
    }
}

/// How an event ended, as `runtime::dispatch` maps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutcomeKind {
    /// Acted on.
    Done,
    /// Refused (not retried).
    Rejected,
    /// Failed (retried by Lambda or redelivered by SQS).
    Failed,
}

impl OutcomeKind {
    /// The dimension value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }
}

/// One dimension value. Every variant holds a value from a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// `Function`.
    Function(Function),
    /// `Operation`.
    Operation(Operation),
    /// `Reason`.
    Reason(EndReason),
    /// `Kind`: a rejection kind ([`Outcome::Rejected`]'s `&'static str`)
    /// or a [`PortError::kind`]; both are codes written in fleetcert's
    /// source, not data.
    Kind(&'static str),
    /// `Outcome`.
    Outcome(OutcomeKind),
}

impl Dim {
    /// Its name.
    pub const fn name(self) -> DimName {
        match self {
            Self::Function(_) => DimName::Function,
            Self::Operation(_) => DimName::Operation,
            Self::Reason(_) => DimName::Reason,
            Self::Kind(_) => DimName::Kind,
            Self::Outcome(_) => DimName::Outcome,
        }
    }

    /// Its value.
    pub fn value(self) -> &'static str {
        match self {
            Self::Function(f) => f.name(),
            Self::Operation(o) => o.name(),
            Self::Reason(r) => r.as_str(),
            Self::Kind(k) => k,
            Self::Outcome(o) => o.as_str(),
        }
    }
}

/// The clock [`Metrics`] reads (ms since the Unix epoch): the EMF
/// timestamp and the commit latency.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}

type Key = (Metric, Vec<Dim>);

/// The metrics of one function's invocations until the next
/// [`flush`](Self::flush). Clones share the buffer.
#[derive(Clone)]
pub struct Metrics {
    function: Function,
    clock: Clock,
    buffer: Arc<Mutex<BTreeMap<Key, Vec<f64>>>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("function", &self.function)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// An empty buffer for `function`, on the system clock.
    pub fn new(function: Function) -> Self {
        Self::with_clock(function, system_clock())
    }

    /// An empty buffer for `function`, on `clock`.
    pub fn with_clock(function: Function, clock: Clock) -> Self {
        Self {
            function,
            clock,
            buffer: Arc::default(),
        }
    }

    /// The function the metrics are about.
    pub fn function(&self) -> Function {
        self.function
    }

    /// The clock's time (ms).
    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    /// Records `value` of `metric` with the dimensions besides `Function`
    /// (which is added). Dimensions the metric does not carry are a defect
    /// of the caller (`debug_assert`).
    pub fn record(&self, metric: Metric, dims: &[Dim], value: f64) {
        let mut all = Vec::with_capacity(dims.len() + 1);
        all.push(Dim::Function(self.function));
        all.extend_from_slice(dims);
        all.sort();
        debug_assert_eq!(
            all.iter().map(|d| d.name()).collect::<Vec<_>>(),
            metric.dimensions(),
            "dimensions of {metric}"
        );
        self.buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((metric, all))
            .or_default()
            .push(value);
    }

    /// Records one of a count.
    pub fn count(&self, metric: Metric, dims: &[Dim]) {
        self.record(metric, dims, 1.0);
    }

    /// Records how one event ended ([`OutcomeKind`], and the rejection
    /// kind when refused).
    pub fn outcome(&self, result: &Result<Outcome, HandlerError>) {
        match result {
            Ok(Outcome::Done { .. }) => {
                self.count(Metric::Outcomes, &[Dim::Outcome(OutcomeKind::Done)]);
            }
            Ok(Outcome::Rejected { kind, .. }) => {
                self.count(Metric::Outcomes, &[Dim::Outcome(OutcomeKind::Rejected)]);
                self.count(Metric::Rejections, &[Dim::Kind(kind)]);
            }
            Err(_) => self.count(Metric::Outcomes, &[Dim::Outcome(OutcomeKind::Failed)]),
        }
    }

    /// Whether nothing was recorded since the last flush.
    pub fn is_empty(&self) -> bool {
        self.buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Empties the buffer into EMF documents: one per metric and dimension
    /// values, timestamped now.
    pub fn flush(&self) -> Vec<Value> {
        let taken =
            std::mem::take(&mut *self.buffer.lock().unwrap_or_else(PoisonError::into_inner));
        let timestamp = self.now_ms();
        taken
            .into_iter()
            .map(|((metric, dims), values)| document(timestamp, metric, &dims, &values))
            .collect()
    }

    /// [`flush`](Self::flush), each document one line on stdout, where
    /// Lambda's log capture (and so CloudWatch Logs' EMF extraction) reads
    /// it.
    pub fn flush_to_stdout(&self) {
        use std::io::Write;
        let docs = self.flush();
        if docs.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        for doc in docs {
            let _ = writeln!(out, "{doc}");
        }
        let _ = out.flush();
    }

    fn port_error(&self, error: &PortError) {
        let op = Dim::Operation(error.operation());
        match error {
            PortError::Throttled { .. } => self.count(Metric::ThrottledCalls, &[op]),
            PortError::NotFound { .. } | PortError::ConditionFailed { .. } => {}
            _ => self.count(Metric::FailedCalls, &[op, Dim::Kind(error.kind())]),
        }
    }

    fn observe<T>(&self, result: PortResult<T>) -> PortResult<T> {
        if let Err(e) = &result {
            self.port_error(e);
        }
        result
    }

    /// What an accepted `update(expected, next)` says about the rotation.
    fn transition(&self, expected: &Rotation, next: &Rotation) {
        if next.resent_at_ms.is_some() && next.resent_at_ms != expected.resent_at_ms {
            self.count(Metric::MessagesResent, &[]);
        }
        if expected.state.name() == next.state.name() {
            return;
        }
        match &next.state {
            RotationState::Issued { .. } => self.count(Metric::RotationsIssued, &[]),
            RotationState::Committed { .. } => {
                self.count(Metric::RotationsCommitted, &[]);
                let latency = self.now_ms().saturating_sub(next.created_at_ms).max(0);
                // ms since the audit; f64 is exact far beyond any rotation
                #[allow(clippy::cast_precision_loss)]
                self.record(Metric::CommitLatency, &[], latency as f64);
            }
            state @ RotationState::Failed { .. } => {
                if let Some(r) = EndReason::of(state) {
                    self.count(Metric::RotationsFailed, &[Dim::Reason(r)]);
                }
            }
            state @ RotationState::Expired { .. } => {
                if let Some(r) = EndReason::of(state) {
                    self.count(Metric::RotationsExpired, &[Dim::Reason(r)]);
                }
            }
            RotationState::Requested | RotationState::Issuing { .. } => {}
        }
    }
}

/// One EMF document.
fn document(timestamp: i64, metric: Metric, dims: &[Dim], values: &[f64]) -> Value {
    let names: Vec<&str> = dims.iter().map(|d| d.name().as_str()).collect();
    let mut root = Map::new();
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names, Vec::<&str>::new()],
                "Metrics": [{ "Name": metric.name(), "Unit": metric.unit().as_str() }],
            }],
        }),
    );
    for d in dims {
        root.insert(d.name().as_str().to_owned(), json!(d.value()));
    }
    let value = match metric.unit() {
        Unit::Count => json!(values.iter().sum::<f64>()),
        Unit::Milliseconds if values.len() == 1 => json!(values[0]),
        // EMF takes up to 100 values per metric in one document
        Unit::Milliseconds => json!(values.iter().take(100).collect::<Vec<_>>()),
    };
    root.insert(metric.name().to_owned(), value);
    Value::Object(root)
}

/// [`Ports`] over `P` that records [`Metrics`] from the port calls
/// (module documentation). Wrap it around `limits::Limited` so that a
/// throttled call counts once, after the retries gave up.
pub struct Metered<P> {
    inner: P,
    metrics: Metrics,
}

impl<P: fmt::Debug> fmt::Debug for Metered<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metered")
            .field("inner", &self.inner)
            .field("metrics", &self.metrics)
            .finish()
    }
}

impl<P: Ports> Metered<P> {
    /// Records the calls made through `inner` into `metrics`.
    pub fn new(inner: P, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }

    /// The wrapped ports.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The buffer this records into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl<P: Ports> IotRegistry for Metered<P> {
    async fn describe_certificate(
        &self,
        certificate_id: &str,
    ) -> PortResult<CertificateDescription> {
        let r = self
            .inner
            .registry()
            .describe_certificate(certificate_id)
            .await;
        self.metrics.observe(r)
    }

    async fn create_certificate_from_csr(
        &self,
        csr_pem: &str,
        set_as_active: bool,
    ) -> PortResult<CreatedCertificate> {
        let r = self
            .inner
            .registry()
            .create_certificate_from_csr(csr_pem, set_as_active)
            .await;
        self.metrics.observe(r)
    }

    async fn register_certificate(
        &self,
        certificate_pem: &str,
        ca_certificate_pem: &str,
        status: CertificateStatus,
    ) -> PortResult<CreatedCertificate> {
        let r = self
            .inner
            .registry()
            .register_certificate(certificate_pem, ca_certificate_pem, status)
            .await;
        self.metrics.observe(r)
    }

    async fn update_certificate(
        &self,
        certificate_id: &str,
        status: CertificateStatus,
    ) -> PortResult<()> {
        let r = self
            .inner
            .registry()
            .update_certificate(certificate_id, status)
            .await;
        self.metrics.observe(r)
    }

    async fn delete_certificate(&self, certificate_id: &str) -> PortResult<()> {
        let r = self
            .inner
            .registry()
            .delete_certificate(certificate_id)
            .await;
        self.metrics.observe(r)
    }

    async fn list_attached_policies(
        &self,
        target_arn: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<String>> {
        let r = self
            .inner
            .registry()
            .list_attached_policies(target_arn, next_token)
            .await;
        self.metrics.observe(r)
    }

    async fn attach_policy(&self, policy_name: &str, target_arn: &str) -> PortResult<()> {
        let r = self
            .inner
            .registry()
            .attach_policy(policy_name, target_arn)
            .await;
        self.metrics.observe(r)
    }

    async fn detach_policy(&self, policy_name: &str, target_arn: &str) -> PortResult<()> {
        let r = self
            .inner
            .registry()
            .detach_policy(policy_name, target_arn)
            .await;
        self.metrics.observe(r)
    }

    async fn list_principal_things(
        &self,
        principal_arn: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<String>> {
        let r = self
            .inner
            .registry()
            .list_principal_things(principal_arn, next_token)
            .await;
        self.metrics.observe(r)
    }

    async fn list_principal_things_v2(
        &self,
        principal_arn: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<PrincipalThing>> {
        let r = self
            .inner
            .registry()
            .list_principal_things_v2(principal_arn, next_token)
            .await;
        self.metrics.observe(r)
    }

    async fn attach_thing_principal_as(
        &self,
        thing_name: &str,
        principal_arn: &str,
        kind: ThingPrincipalType,
    ) -> PortResult<()> {
        let r = self
            .inner
            .registry()
            .attach_thing_principal_as(thing_name, principal_arn, kind)
            .await;
        self.metrics.observe(r)
    }

    async fn detach_thing_principal(
        &self,
        thing_name: &str,
        principal_arn: &str,
    ) -> PortResult<()> {
        let r = self
            .inner
            .registry()
            .detach_thing_principal(thing_name, principal_arn)
            .await;
        self.metrics.observe(r)
    }

    async fn describe_thing(&self, thing_name: &str) -> PortResult<ThingDescription> {
        let r = self.inner.registry().describe_thing(thing_name).await;
        self.metrics.observe(r)
    }

    async fn create_thing(&self, thing_name: &str) -> PortResult<ThingDescription> {
        let r = self.inner.registry().create_thing(thing_name).await;
        self.metrics.observe(r)
    }

    async fn describe_ca_certificate(
        &self,
        ca_certificate_id: &str,
    ) -> PortResult<CaCertificateDescription> {
        let r = self
            .inner
            .registry()
            .describe_ca_certificate(ca_certificate_id)
            .await;
        self.metrics.observe(r)
    }

    async fn list_audit_findings(
        &self,
        task_id: &str,
        check_name: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<AuditFinding>> {
        let r = self
            .inner
            .registry()
            .list_audit_findings(task_id, check_name, next_token)
            .await;
        self.metrics.observe(r)
    }
}

impl<P: Ports> Publisher for Metered<P> {
    async fn publish(&self, topic: &str, payload: &[u8], qos: u8) -> PortResult<()> {
        let r = self.inner.publisher().publish(topic, payload, qos).await;
        self.metrics.observe(r)
    }
}

impl<P: Ports> RotationStore for Metered<P> {
    async fn create(&self, rotation: &Rotation) -> PortResult<()> {
        let r = self.inner.store().create(rotation).await;
        if r.is_ok() {
            self.metrics.count(Metric::RotationsStarted, &[]);
        }
        self.metrics.observe(r)
    }

    async fn get(&self, rotation_id: &str) -> PortResult<Option<Rotation>> {
        let r = self.inner.store().get(rotation_id).await;
        self.metrics.observe(r)
    }

    async fn latest_for_thing(&self, thing_name: &str) -> PortResult<Option<Rotation>> {
        let r = self.inner.store().latest_for_thing(thing_name).await;
        self.metrics.observe(r)
    }

    async fn latest_for_certificate(
        &self,
        old_certificate_id: &str,
    ) -> PortResult<Option<Rotation>> {
        let r = self
            .inner
            .store()
            .latest_for_certificate(old_certificate_id)
            .await;
        self.metrics.observe(r)
    }

    async fn update(&self, expected: &Rotation, next: &Rotation) -> PortResult<()> {
        let r = self.inner.store().update(expected, next).await;
        if r.is_ok() {
            self.metrics.transition(expected, next);
        }
        self.metrics.observe(r)
    }

    async fn open_due(
        &self,
        before_ms: i64,
        next_token: Option<String>,
    ) -> PortResult<Page<Rotation>> {
        let r = self.inner.store().open_due(before_ms, next_token).await;
        self.metrics.observe(r)
    }

    async fn get_campaign(&self, key: &str) -> PortResult<Option<CampaignItem>> {
        let r = self.inner.store().get_campaign(key).await;
        self.metrics.observe(r)
    }

    async fn put_campaign(&self, writes: &[CampaignWrite]) -> PortResult<()> {
        let r = self.inner.store().put_campaign(writes).await;
        self.metrics.observe(r)
    }
}

impl<P: Ports> Notifier for Metered<P> {
    async fn notify(&self, subject: &str, message: &str) -> PortResult<()> {
        let r = self.inner.notifier().notify(subject, message).await;
        self.metrics.observe(r)
    }
}

impl<P: Ports> WorkQueue for Metered<P> {
    async fn send_batch(&self, messages: &[QueueMessage]) -> PortResult<Vec<FailedEntry>> {
        let r = self.inner.queue().send_batch(messages).await;
        if let Ok(failed) = &r {
            for entry in failed {
                self.metrics.port_error(&entry.error);
            }
        }
        self.metrics.observe(r)
    }
}

impl<P: Ports> PrivateCa for Metered<P> {
    async fn issue_certificate(&self, request: &IssueRequest<'_>) -> PortResult<String> {
        let r = self.inner.private_ca().issue_certificate(request).await;
        self.metrics.observe(r)
    }

    async fn get_certificate(
        &self,
        ca_arn: &str,
        certificate_arn: &str,
    ) -> PortResult<IssuedCertificate> {
        let r = self
            .inner
            .private_ca()
            .get_certificate(ca_arn, certificate_arn)
            .await;
        self.metrics.observe(r)
    }

    async fn revoke_certificate(&self, ca_arn: &str, certificate_serial: &str) -> PortResult<()> {
        let r = self
            .inner
            .private_ca()
            .revoke_certificate(ca_arn, certificate_serial)
            .await;
        self.metrics.observe(r)
    }
}

impl<P: Ports> Ports for Metered<P> {
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
#[path = "metrics_tests.rs"]
mod tests;
