//! The AWS account the functions run in, on virtual time: every port call
//! is counted, takes its service's round trip, and is refused as throttled
//! when the account's token bucket for its operation is empty (AWS enforces
//! a quota per account, whichever function calls). Behind it, the real
//! in-memory registry and rotation store of `lambdas::memory`; the MQTT
//! publishes, queue sends and support notifications are handed to the
//! event loop ([`Cloud::drain`]), which delivers them as IoT Core, SQS and
//! SNS would.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lambdas::limits::Timer;
use lambdas::memory::{MemoryPrivateCa, MemoryRegistry, MemoryRotationStore};
use lambdas::ports::{
    CaCertificateDescription, CampaignWrite, CertificateDescription, CertificateStatus,
    CreatedCertificate, FailedEntry, IotRegistry, IssueRequest, IssuedCertificate, MAX_QUEUE_BATCH,
    Notifier, Operation, Page, PortError, PortKind, PortResult, Ports, PrincipalThing, PrivateCa,
    Publisher, QueueMessage, RotationStore, ThingDescription, ThingPrincipalType, WorkQueue,
    port_of,
};
use rules::campaign::CampaignItem;
use rules::contracts::AuditFinding;
use rules::functions::Function;
use rules::rotation::Rotation;

use crate::clock::VirtualTimer;

/// The run's epoch: 2026-01-01T00:00:00Z (the memory registry's own
/// start), in ms since the Unix epoch. Virtual time 0 is this instant.
pub const START_MS: i64 = 1_767_225_600_000;

/// The round trip of one call, by service: in-region p50 latencies
/// assumed for the plan (not measured against AWS; see README).
pub fn latency(operation: Operation) -> Duration {
    Duration::from_millis(match port_of(operation) {
        PortKind::Registry => 30,
        PortKind::Publisher => 15,
        PortKind::RotationStore => 8,
        PortKind::Notifier => 20,
        PortKind::WorkQueue => 12,
        PortKind::PrivateCa => 40,
    })
}

/// 32 bytes from `seed` and a purpose (splitmix64).
pub fn seed_bytes(seed: u64, purpose: u64) -> [u8; 32] {
    let mut rng = crate::rng::Rng::new(seed ^ purpose.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    out
}

/// The hour of the run an instant falls in.
pub fn hour_of(ns: u64) -> usize {
    usize::try_from(ns / 3_600_000_000_000).unwrap_or(usize::MAX)
}

/// An account quota: `rate` tokens a second, at most one second's worth.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last_ns: u64,
}

impl Bucket {
    fn new(rate: f64) -> Self {
        let capacity = rate.max(1.0);
        Self {
            rate,
            capacity,
            tokens: capacity,
            last_ns: 0,
        }
    }

    fn take(&mut self, now_ns: u64) -> bool {
        let dt = now_ns.saturating_sub(self.last_ns) as f64 / 1e9;
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.last_ns = now_ns;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the account saw, by operation.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Calls made (throttled ones included).
    pub calls: BTreeMap<Operation, u64>,
    /// Calls refused as throttled.
    pub throttled: BTreeMap<Operation, u64>,
    /// Calls admitted, by the function that made them.
    pub admitted: BTreeMap<(Function, Operation), u64>,
    /// Calls per hour of the run, by operation.
    pub hourly: BTreeMap<Operation, Vec<u64>>,
    /// Support notifications by kind.
    pub notices: BTreeMap<String, u64>,
    /// Rotations closed, by the state they closed in (`COMMITTED`,
    /// `FAILED`, `EXPIRED`), per hour of the run.
    pub closed_hourly: BTreeMap<&'static str, Vec<u64>>,
}

/// What the functions sent out since the last [`Cloud::drain`].
#[derive(Debug, Default)]
pub struct Outbox {
    /// MQTT messages (topic, payload) for the devices.
    pub published: Vec<(String, Vec<u8>)>,
    /// Queue message bodies for the rotation queue.
    pub queued: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    buckets: BTreeMap<Operation, Bucket>,
    counters: Counters,
    outbox: Outbox,
}

/// The simulated account.
#[derive(Debug)]
pub struct Cloud {
    /// The clock.
    pub timer: VirtualTimer,
    /// The IoT registry (memory adapter).
    pub registry: MemoryRegistry,
    /// The rotation table (memory adapter).
    pub store: MemoryRotationStore,
    /// An AWS Private CA (memory adapter), for stacks that issue from one.
    pub private_ca: MemoryPrivateCa,
    state: Mutex<State>,
}

impl Cloud {
    /// An empty account with `quota(op)` requests per second per operation.
    pub fn new(timer: VirtualTimer, seed: u64, quota: impl Fn(Operation) -> f64) -> Arc<Cloud> {
        let instruments = Arc::default();
        let state = State {
            buckets: Operation::ALL
                .into_iter()
                .map(|op| (op, Bucket::new(quota(op))))
                .collect(),
            ..State::default()
        };
        let registry = MemoryRegistry::seeded(Arc::clone(&instruments), seed_bytes(seed, 0));
        let private_ca = MemoryPrivateCa::new(
            Arc::clone(&instruments),
            registry.clone(),
            "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/planner",
        );
        Arc::new(Cloud {
            timer,
            registry,
            store: MemoryRotationStore::new(instruments),
            private_ca,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a call and takes its token: whether the account admits it.
    fn admit(&self, function: Function, operation: Operation) -> bool {
        let now = self.timer.now_ns();
        let hour = hour_of(now);
        let mut s = self.lock();
        let admitted = s.buckets.get_mut(&operation).is_none_or(|b| b.take(now));
        let c = &mut s.counters;
        *c.calls.entry(operation).or_default() += 1;
        if admitted {
            *c.admitted.entry((function, operation)).or_default() += 1;
        } else {
            *c.throttled.entry(operation).or_default() += 1;
        }
        let hourly = c.hourly.entry(operation).or_default();
        if hourly.len() <= hour {
            hourly.resize(hour + 1, 0);
        }
        hourly[hour] += 1;
        admitted
    }

    /// Takes what the functions sent out.
    pub fn drain(&self) -> Outbox {
        std::mem::take(&mut self.lock().outbox)
    }

    /// A copy of the counters.
    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    /// The virtual time as the handlers see it, ms since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        START_MS + i64::try_from(self.timer.now_ns() / 1_000_000).unwrap_or(i64::MAX)
    }

    /// Replaces the findings of the audit task (Device Defender's part).
    pub fn set_findings(&self, task_id: &str, check: &str, findings: Vec<AuditFinding>) {
        self.registry.set_audit_findings(task_id, check, findings);
    }
}

/// The ports one function instance sees: the account, through which every
/// call goes, and the function calling.
#[derive(Debug, Clone)]
pub struct SimPorts(pub Arc<Cloud>, pub Function);

impl SimPorts {
    /// One call of `operation`: its round trip, then admitted or throttled.
    async fn enter(&self, operation: Operation) -> PortResult<()> {
        let admitted = self.0.admit(self.1, operation);
        self.0.timer.sleep(latency(operation)).await;
        if admitted {
            Ok(())
        } else {
            Err(PortError::Throttled {
                operation,
                message: "Rate exceeded (simulated account quota)".to_owned(),
            })
        }
    }
}

impl IotRegistry for SimPorts {
    async fn describe_certificate(&self, id: &str) -> PortResult<CertificateDescription> {
        self.enter(Operation::DescribeCertificate).await?;
        self.0.registry.describe_certificate(id).await
    }
    async fn create_certificate_from_csr(
        &self,
        csr_pem: &str,
        set_as_active: bool,
    ) -> PortResult<CreatedCertificate> {
        self.enter(Operation::CreateCertificateFromCsr).await?;
        self.0.registry.set_now_ms(self.0.now_ms());
        self.0
            .registry
            .create_certificate_from_csr(csr_pem, set_as_active)
            .await
    }
    async fn update_certificate(&self, id: &str, status: CertificateStatus) -> PortResult<()> {
        self.enter(Operation::UpdateCertificate).await?;
        self.0.registry.update_certificate(id, status).await
    }
    async fn delete_certificate(&self, id: &str) -> PortResult<()> {
        self.enter(Operation::DeleteCertificate).await?;
        self.0.registry.delete_certificate(id).await
    }
    async fn list_attached_policies(
        &self,
        target: &str,
        token: Option<String>,
    ) -> PortResult<Page<String>> {
        self.enter(Operation::ListAttachedPolicies).await?;
        self.0.registry.list_attached_policies(target, token).await
    }
    async fn attach_policy(&self, policy: &str, target: &str) -> PortResult<()> {
        self.enter(Operation::AttachPolicy).await?;
        self.0.registry.attach_policy(policy, target).await
    }
    async fn detach_policy(&self, policy: &str, target: &str) -> PortResult<()> {
        self.enter(Operation::DetachPolicy).await?;
        self.0.registry.detach_policy(policy, target).await
    }
    async fn list_principal_things(
        &self,
        principal: &str,
        token: Option<String>,
    ) -> PortResult<Page<String>> {
        self.enter(Operation::ListPrincipalThings).await?;
        self.0
            .registry
            .list_principal_things(principal, token)
            .await
    }
    async fn list_principal_things_v2(
        &self,
        principal: &str,
        token: Option<String>,
    ) -> PortResult<Page<PrincipalThing>> {
        self.enter(Operation::ListPrincipalThingsV2).await?;
        self.0
            .registry
            .list_principal_things_v2(principal, token)
            .await
    }
    async fn attach_thing_principal_as(
        &self,
        thing: &str,
        principal: &str,
        kind: ThingPrincipalType,
    ) -> PortResult<()> {
        self.enter(Operation::AttachThingPrincipal).await?;
        self.0
            .registry
            .attach_thing_principal_as(thing, principal, kind)
            .await
    }
    async fn register_certificate(
        &self,
        certificate_pem: &str,
        ca_certificate_pem: &str,
        status: CertificateStatus,
    ) -> PortResult<CreatedCertificate> {
        self.enter(Operation::RegisterCertificate).await?;
        self.0
            .registry
            .register_certificate(certificate_pem, ca_certificate_pem, status)
            .await
    }
    async fn detach_thing_principal(&self, thing: &str, principal: &str) -> PortResult<()> {
        self.enter(Operation::DetachThingPrincipal).await?;
        self.0
            .registry
            .detach_thing_principal(thing, principal)
            .await
    }
    async fn describe_thing(&self, thing: &str) -> PortResult<ThingDescription> {
        self.enter(Operation::DescribeThing).await?;
        self.0.registry.describe_thing(thing).await
    }
    async fn create_thing(&self, thing: &str) -> PortResult<ThingDescription> {
        self.enter(Operation::CreateThing).await?;
        self.0.registry.create_thing(thing).await
    }
    async fn describe_ca_certificate(&self, id: &str) -> PortResult<CaCertificateDescription> {
        self.enter(Operation::DescribeCaCertificate).await?;
        self.0.registry.describe_ca_certificate(id).await
    }
    async fn list_audit_findings(
        &self,
        task_id: &str,
        check_name: &str,
        token: Option<String>,
    ) -> PortResult<Page<AuditFinding>> {
        self.enter(Operation::ListAuditFindings).await?;
        self.0
            .registry
            .list_audit_findings(task_id, check_name, token)
            .await
    }
}

impl Publisher for SimPorts {
    async fn publish(&self, topic: &str, payload: &[u8], qos: u8) -> PortResult<()> {
        self.enter(Operation::Publish).await?;
        if qos > 1 || rules::topic::validate_topic_name(topic).is_err() {
            return Err(PortError::Invalid {
                operation: Operation::Publish,
                message: format!("topic {topic:?} qos {qos} refused"),
            });
        }
        self.0
            .lock()
            .outbox
            .published
            .push((topic.to_owned(), payload.to_vec()));
        Ok(())
    }
}

impl RotationStore for SimPorts {
    async fn create(&self, rotation: &Rotation) -> PortResult<()> {
        self.enter(Operation::CreateRotation).await?;
        self.0.store.create(rotation).await
    }
    async fn get(&self, rotation_id: &str) -> PortResult<Option<Rotation>> {
        self.enter(Operation::GetRotation).await?;
        self.0.store.get(rotation_id).await
    }
    async fn latest_for_thing(&self, thing: &str) -> PortResult<Option<Rotation>> {
        self.enter(Operation::LatestRotationForThing).await?;
        self.0.store.latest_for_thing(thing).await
    }
    async fn latest_for_certificate(&self, old: &str) -> PortResult<Option<Rotation>> {
        self.enter(Operation::LatestRotationForCertificate).await?;
        self.0.store.latest_for_certificate(old).await
    }
    async fn update(&self, expected: &Rotation, next: &Rotation) -> PortResult<()> {
        self.enter(Operation::UpdateRotation).await?;
        self.0.store.update(expected, next).await?;
        if expected.state.is_open() && next.state.is_terminal() {
            let hour = hour_of(self.0.timer.now_ns());
            let mut s = self.0.lock();
            let hourly = s
                .counters
                .closed_hourly
                .entry(next.state.name())
                .or_default();
            if hourly.len() <= hour {
                hourly.resize(hour + 1, 0);
            }
            hourly[hour] += 1;
        }
        Ok(())
    }
    async fn open_due(&self, before_ms: i64, token: Option<String>) -> PortResult<Page<Rotation>> {
        self.enter(Operation::ListDueRotations).await?;
        self.0.store.open_due(before_ms, token).await
    }
    async fn get_campaign(&self, key: &str) -> PortResult<Option<CampaignItem>> {
        self.enter(Operation::GetCampaign).await?;
        self.0.store.get_campaign(key).await
    }
    async fn put_campaign(&self, writes: &[CampaignWrite]) -> PortResult<()> {
        self.enter(Operation::PutCampaign).await?;
        self.0.store.put_campaign(writes).await
    }
}

impl Notifier for SimPorts {
    async fn notify(&self, _subject: &str, message: &str) -> PortResult<()> {
        self.enter(Operation::NotifySupport).await?;
        let kind = serde_json::from_str::<serde_json::Value>(message)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "other".to_owned());
        *self.0.lock().counters.notices.entry(kind).or_default() += 1;
        Ok(())
    }
}

impl WorkQueue for SimPorts {
    async fn send_batch(&self, messages: &[QueueMessage]) -> PortResult<Vec<FailedEntry>> {
        self.enter(Operation::SendMessageBatch).await?;
        if messages.is_empty() || messages.len() > MAX_QUEUE_BATCH {
            return Err(PortError::Invalid {
                operation: Operation::SendMessageBatch,
                message: format!("a batch holds 1 to {MAX_QUEUE_BATCH} messages"),
            });
        }
        self.0
            .lock()
            .outbox
            .queued
            .extend(messages.iter().map(|m| m.body.clone()));
        Ok(Vec::new())
    }
}

impl PrivateCa for SimPorts {
    async fn issue_certificate(&self, request: &IssueRequest<'_>) -> PortResult<String> {
        self.enter(Operation::IssueCertificate).await?;
        self.0.private_ca.issue_certificate(request).await
    }
    async fn get_certificate(
        &self,
        ca_arn: &str,
        certificate_arn: &str,
    ) -> PortResult<IssuedCertificate> {
        self.enter(Operation::GetCertificate).await?;
        self.0
            .private_ca
            .get_certificate(ca_arn, certificate_arn)
            .await
    }
    async fn revoke_certificate(&self, ca_arn: &str, serial: &str) -> PortResult<()> {
        self.enter(Operation::RevokeCertificate).await?;
        self.0.private_ca.revoke_certificate(ca_arn, serial).await
    }
}

impl Ports for SimPorts {
    type PrivateCa = Self;
    type Registry = Self;
    type Publisher = Self;
    type Store = Self;
    type Notifier = Self;
    type Queue = Self;
    fn registry(&self) -> &Self {
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
    fn private_ca(&self) -> &Self {
        self
    }
}
