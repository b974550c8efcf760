//! In-memory adapters for the six ports, for tests and the emulator.
//!
//! Thread-safe (std `Mutex`), no AWS SDK. Every adapter shares one
//! [`Instruments`]: call counters per [`Operation`] and fault injection
//! ("the next N calls of this operation fail"). [`MemoryPorts`] bundles the
//! six adapters as a [`Ports`](crate::ports::Ports).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use rules::campaign::CampaignItem;
use rules::rotation::Rotation;
use tokio::sync::mpsc;

use crate::ports::{
    CampaignWrite, FailedEntry, MAX_QUEUE_BATCH, Notifier, Operation, Page, PortError, PortResult,
    PortSet, Publisher, QueueMessage, RotationStore, WorkQueue,
};

mod private_ca;
mod registry;

pub use private_ca::{MEMORY_CA_ARN, MemoryPrivateCa};
pub use registry::{CaHandle, CaSnapshot, CertificateSnapshot, MemoryRegistry, StatusChange};

/// Locks a mutex, recovering the data of a poisoned one (a panicking test
/// thread must not cascade into every other).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with [`PortError::Throttled`] and has no effect.
    Throttled,
    /// The call fails with [`PortError::Transient`] and has no effect.
    Transient,
    /// The call takes effect, then fails with [`PortError::Transient`] (a
    /// response lost on the way back, e.g. a timeout).
    TransientAfterEffect,
}

/// Call counters and fault injection shared by the memory adapters.
#[derive(Debug, Default)]
pub struct Instruments {
    calls: Mutex<HashMap<Operation, u64>>,
    faults: Mutex<HashMap<Operation, VecDeque<Option<Fault>>>>,
}

/// What a call does after its effect: fail if a
/// [`Fault::TransientAfterEffect`] was drawn.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub(crate) struct AfterEffect {
    operation: Operation,
    fail: bool,
}

impl AfterEffect {
    /// `result`, or a transient error when the call was to fail after its effect.
    pub(crate) fn finish<T>(self, result: PortResult<T>) -> PortResult<T> {
        match result {
            Ok(_) if self.fail => Err(PortError::Transient {
                operation: self.operation,
                message: "injected fault after the call took effect".to_owned(),
            }),
            other => other,
        }
    }
}

impl Instruments {
    /// Makes the next `count` calls of `operation` fail with `fault`
    /// (queued after faults already injected).
    pub fn fail_next(&self, operation: Operation, count: usize, fault: Fault) {
        let mut faults = lock(&self.faults);
        faults
            .entry(operation)
            .or_default()
            .extend(std::iter::repeat_n(Some(fault), count));
    }

    /// Lets the next `skip` calls of `operation` pass, then makes `count`
    /// calls fail with `fault` (queued after faults already injected).
    pub fn fail_after(&self, operation: Operation, skip: usize, count: usize, fault: Fault) {
        let mut faults = lock(&self.faults);
        let queue = faults.entry(operation).or_default();
        queue.extend(std::iter::repeat_n(None, skip));
        queue.extend(std::iter::repeat_n(Some(fault), count));
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    /// How many times `operation` was called (failed calls included).
    pub fn calls(&self, operation: Operation) -> u64 {
        lock(&self.calls).get(&operation).copied().unwrap_or(0)
    }

    /// Every operation called, with its count.
    pub fn all_calls(&self) -> BTreeMap<Operation, u64> {
        lock(&self.calls).iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Resets the call counters.
    pub fn reset_calls(&self) {
        lock(&self.calls).clear();
    }

    /// Counts a call and draws its fault, if any: `Err` for a fault before
    /// the effect, an [`AfterEffect`] to apply after it.
    pub(crate) fn enter(&self, operation: Operation) -> PortResult<AfterEffect> {
        *lock(&self.calls).entry(operation).or_insert(0) += 1;
        let fault = lock(&self.faults)
            .get_mut(&operation)
            .and_then(VecDeque::pop_front)
            .flatten();
        let message = "injected fault".to_owned();
        match fault {
            None => Ok(AfterEffect {
                operation,
                fail: false,
            }),
            Some(Fault::Throttled) => Err(PortError::Throttled { operation, message }),
            Some(Fault::Transient) => Err(PortError::Transient { operation, message }),
            Some(Fault::TransientAfterEffect) => Ok(AfterEffect {
                operation,
                fail: true,
            }),
        }
    }
}

/// One message published through [`MemoryPublisher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The QoS.
    pub qos: u8,
}

/// Records every publish, and forwards it to a channel when one is set
/// (the emulator delivers them over MQTT).
#[derive(Debug, Clone)]
pub struct MemoryPublisher {
    instruments: Arc<Instruments>,
    inner: Arc<Mutex<PublisherState>>,
}

#[derive(Debug, Default)]
struct PublisherState {
    published: Vec<Published>,
    forward: Option<mpsc::UnboundedSender<Published>>,
}

impl MemoryPublisher {
    /// A publisher sharing `instruments`.
    pub fn new(instruments: Arc<Instruments>) -> Self {
        Self {
            instruments,
            inner: Arc::default(),
        }
    }

    /// Every message published so far, oldest first.
    pub fn published(&self) -> Vec<Published> {
        lock(&self.inner).published.clone()
    }

    /// The messages published to `topic`.
    pub fn published_to(&self, topic: &str) -> Vec<Published> {
        lock(&self.inner)
            .published
            .iter()
            .filter(|p| p.topic == topic)
            .cloned()
            .collect()
    }

    /// Forgets the recorded messages.
    pub fn clear(&self) {
        lock(&self.inner).published.clear();
    }

    /// Sends every later publish to `sender` as well.
    pub fn forward_to(&self, sender: mpsc::UnboundedSender<Published>) {
        lock(&self.inner).forward = Some(sender);
    }
}

impl Publisher for MemoryPublisher {
    async fn publish(&self, topic: &str, payload: &[u8], qos: u8) -> PortResult<()> {
        let after = self.instruments.enter(Operation::Publish)?;
        if qos > 1 {
            return Err(PortError::Invalid {
                operation: Operation::Publish,
                message: format!("qos {qos} is not 0 or 1"),
            });
        }
        if rules::topic::validate_topic_name(topic).is_err() {
            return Err(PortError::Invalid {
                operation: Operation::Publish,
                message: format!("topic {topic:?} is not a valid topic name"),
            });
        }
        let message = Published {
            topic: topic.to_owned(),
            payload: payload.to_vec(),
            qos,
        };
        let mut inner = lock(&self.inner);
        if let Some(forward) = &inner.forward {
            // A closed receiver only means nobody listens any more.
            let _ = forward.send(message.clone());
        }
        inner.published.push(message);
        after.finish(Ok(()))
    }
}

/// Rotation rows in memory, with the same conditions as the DynamoDB adapter.
#[derive(Debug, Clone)]
pub struct MemoryRotationStore {
    instruments: Arc<Instruments>,
    inner: Arc<Mutex<StoreState>>,
    /// Per thing and target state name: how many more writes that move a
    /// row of the thing into that state fail.
    transition_faults: Arc<Mutex<HashMap<(String, &'static str), usize>>>,
}

#[derive(Debug, Default)]
struct StoreState {
    rows: BTreeMap<String, Rotation>,
    /// Rotation ids per thing, in creation order.
    by_thing: HashMap<String, Vec<String>>,
    /// Rotation ids per replaced certificate, in creation order (the
    /// certificate index).
    by_certificate: HashMap<String, Vec<String>>,
    /// Rows in an open state (REQUESTED or ISSUED).
    open: usize,
    /// Rows open or closed with their cleanup pending
    /// ([`Rotation::is_unsettled`]).
    unsettled: usize,
    /// The unsettled rows by (deadline, id): the due index, so that
    /// `open_due` reads the rows it returns, not the whole table.
    due: std::collections::BTreeSet<(i64, String)>,
    /// Campaign items by key (`rules::campaign`).
    campaigns: BTreeMap<String, CampaignItem>,
}

impl StoreState {
    fn latest_for_thing(&self, thing: &str) -> Option<&Rotation> {
        let ids = self.by_thing.get(thing)?;
        let rows = ids.iter().filter_map(|id| self.rows.get(id));
        rows.clone()
            .find(|r| r.state.is_open())
            .or_else(|| rows.clone().next_back())
    }
}

/// Page size of [`MemoryRotationStore::open_due`].
const STORE_PAGE: usize = 100;

impl MemoryRotationStore {
    /// A store sharing `instruments`.
    pub fn new(instruments: Arc<Instruments>) -> Self {
        Self {
            instruments,
            inner: Arc::default(),
            transition_faults: Arc::default(),
        }
    }

    /// Makes the next `count` writes that commit a rotation of `thing`
    /// (ISSUED or EXPIRED → COMMITTED) fail as throttled, without effect:
    /// with `count` above the Lambda retries, "the commit of an
    /// acknowledged rotation never lands" for that ack.
    pub fn fail_commits(&self, thing: &str, count: usize) {
        self.fail_transitions(thing, "COMMITTED", count);
    }

    /// Makes the next `count` writes that move a row of `thing` into the
    /// state named `state` (`COMMITTED`, `FAILED`, ...) from another state
    /// fail as throttled, without effect.
    pub fn fail_transitions(&self, thing: &str, state: &'static str, count: usize) {
        *lock(&self.transition_faults)
            .entry((thing.to_owned(), state))
            .or_insert(0) += count;
    }

    /// Every row, by rotation id.
    pub fn rows(&self) -> Vec<Rotation> {
        lock(&self.inner).rows.values().cloned().collect()
    }

    /// The row with this id (no call counted).
    pub fn row(&self, rotation_id: &str) -> Option<Rotation> {
        lock(&self.inner).rows.get(rotation_id).cloned()
    }

    /// Every row of the thing, oldest first (no call counted).
    pub fn rows_for_thing(&self, thing_name: &str) -> Vec<Rotation> {
        let inner = lock(&self.inner);
        inner
            .by_thing
            .get(thing_name)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.rows.get(id).cloned())
            .collect()
    }

    /// The thing's latest row (no call counted).
    pub fn row_for_thing(&self, thing_name: &str) -> Option<Rotation> {
        lock(&self.inner).latest_for_thing(thing_name).cloned()
    }

    /// The campaign item under `key` (no call counted).
    pub fn campaign_item(&self, key: &str) -> Option<CampaignItem> {
        lock(&self.inner).campaigns.get(key).cloned()
    }

    /// Rows in an open state (no call counted), without copying them.
    pub fn open_count(&self) -> usize {
        lock(&self.inner).open
    }

    /// Rows open or closed with their cleanup pending: the work the
    /// handlers and the sweeper still owe (no call counted).
    pub fn unsettled_count(&self) -> usize {
        lock(&self.inner).unsettled
    }
}

impl RotationStore for MemoryRotationStore {
    async fn create(&self, rotation: &Rotation) -> PortResult<()> {
        let after = self.instruments.enter(Operation::CreateRotation)?;
        let mut inner = lock(&self.inner);
        let condition = |message: String| PortError::ConditionFailed {
            operation: Operation::CreateRotation,
            message,
        };
        if inner.rows.contains_key(&rotation.rotation_id) {
            return Err(condition(format!(
                "rotation {} exists",
                rotation.rotation_id
            )));
        }
        if let Some(open) = inner
            .latest_for_thing(&rotation.thing_name)
            .filter(|r| r.state.is_open())
        {
            return Err(condition(format!(
                "thing {} has open rotation {}",
                rotation.thing_name, open.rotation_id
            )));
        }
        inner
            .rows
            .insert(rotation.rotation_id.clone(), rotation.clone());
        inner.open += usize::from(rotation.state.is_open());
        inner.unsettled += usize::from(rotation.is_unsettled());
        if rotation.is_unsettled() {
            inner
                .due
                .insert((rotation.deadline_ms, rotation.rotation_id.clone()));
        }
        inner
            .by_thing
            .entry(rotation.thing_name.clone())
            .or_default()
            .push(rotation.rotation_id.clone());
        inner
            .by_certificate
            .entry(rotation.old_certificate_id.clone())
            .or_default()
            .push(rotation.rotation_id.clone());
        after.finish(Ok(()))
    }

    async fn get(&self, rotation_id: &str) -> PortResult<Option<Rotation>> {
        let after = self.instruments.enter(Operation::GetRotation)?;
        after.finish(Ok(self.row(rotation_id)))
    }

    async fn latest_for_thing(&self, thing_name: &str) -> PortResult<Option<Rotation>> {
        let after = self.instruments.enter(Operation::LatestRotationForThing)?;
        after.finish(Ok(self.row_for_thing(thing_name)))
    }

    async fn latest_for_certificate(
        &self,
        old_certificate_id: &str,
    ) -> PortResult<Option<Rotation>> {
        let after = self
            .instruments
            .enter(Operation::LatestRotationForCertificate)?;
        let inner = lock(&self.inner);
        let latest = inner
            .by_certificate
            .get(old_certificate_id)
            .and_then(|ids| ids.last())
            .and_then(|id| inner.rows.get(id))
            .cloned();
        after.finish(Ok(latest))
    }

    async fn update(&self, expected: &Rotation, next: &Rotation) -> PortResult<()> {
        let after = self.instruments.enter(Operation::UpdateRotation)?;
        let condition = |message: String| PortError::ConditionFailed {
            operation: Operation::UpdateRotation,
            message,
        };
        if expected.rotation_id != next.rotation_id || expected.thing_name != next.thing_name {
            return Err(PortError::Invalid {
                operation: Operation::UpdateRotation,
                message: "an update may not change the rotation id or the thing".to_owned(),
            });
        }
        if next.state.name() != expected.state.name()
            && let Some(left) =
                lock(&self.transition_faults).get_mut(&(next.thing_name.clone(), next.state.name()))
            && *left > 0
        {
            *left -= 1;
            return Err(PortError::Throttled {
                operation: Operation::UpdateRotation,
                message: format!("injected fault: the move to {} never lands", next.state),
            });
        }
        let mut inner = lock(&self.inner);
        match inner.rows.get_mut(&expected.rotation_id) {
            Some(row) if row == expected => {
                let (was_open, was_unsettled) = (row.state.is_open(), row.is_unsettled());
                *row = next.clone();
                match (was_open, next.state.is_open()) {
                    (true, false) => inner.open -= 1,
                    (false, true) => inner.open += 1,
                    _ => {}
                }
                match (was_unsettled, next.is_unsettled()) {
                    (true, false) => inner.unsettled -= 1,
                    (false, true) => inner.unsettled += 1,
                    _ => {}
                }
                if was_unsettled {
                    inner
                        .due
                        .remove(&(expected.deadline_ms, expected.rotation_id.clone()));
                }
                if next.is_unsettled() {
                    inner
                        .due
                        .insert((next.deadline_ms, next.rotation_id.clone()));
                }
            }
            Some(row) => {
                return Err(condition(format!(
                    "rotation {} changed since it was read (now {})",
                    row.rotation_id, row.state
                )));
            }
            None => {
                return Err(condition(format!(
                    "rotation {} does not exist",
                    expected.rotation_id
                )));
            }
        }
        after.finish(Ok(()))
    }

    async fn open_due(
        &self,
        before_ms: i64,
        next_token: Option<String>,
    ) -> PortResult<Page<Rotation>> {
        let after = self.instruments.enter(Operation::ListDueRotations)?;
        let inner = lock(&self.inner);
        // As the DynamoDB adapter's due index: most overdue first (deadline,
        // then id); the token is the last row's `<deadline>/<id>`.
        let start = match next_token.as_deref() {
            None => None,
            Some(token) => Some(
                token
                    .split_once('/')
                    .and_then(|(d, id)| Some((d.parse::<i64>().ok()?, id)))
                    .ok_or_else(|| PortError::Invalid {
                        operation: Operation::ListDueRotations,
                        message: format!("next token {token:?} is not one this store returned"),
                    })?,
            ),
        };
        // the due index is sorted by (deadline, id), as DynamoDB's is
        let from = start.map(|(d, id)| (d, id.to_owned()));
        let mut keys = inner
            .due
            .range::<(i64, String), _>((
                from.as_ref()
                    .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(deadline, _)| *deadline < before_ms);
        let items: Vec<Rotation> = keys
            .by_ref()
            .take(STORE_PAGE)
            .filter_map(|(_, id)| inner.rows.get(id).cloned())
            .collect();
        let more = keys.next().is_some();
        let next = items
            .last()
            .filter(|_| more)
            .map(|r| format!("{}/{}", r.deadline_ms, r.rotation_id));
        after.finish(Ok(Page {
            items,
            next_token: next,
        }))
    }

    async fn get_campaign(&self, key: &str) -> PortResult<Option<CampaignItem>> {
        let after = self.instruments.enter(Operation::GetCampaign)?;
        after.finish(Ok(self.campaign_item(key)))
    }

    async fn put_campaign(&self, writes: &[CampaignWrite]) -> PortResult<()> {
        let after = self.instruments.enter(Operation::PutCampaign)?;
        CampaignWrite::check(writes)?;
        let mut inner = lock(&self.inner);
        for w in writes {
            let key = w.next.key();
            if inner.campaigns.get(&key) != w.expected.as_ref() {
                return after.finish(Err(PortError::ConditionFailed {
                    operation: Operation::PutCampaign,
                    message: format!("{key} changed since it was read"),
                }));
            }
        }
        for w in writes {
            inner.campaigns.insert(w.next.key(), w.next.clone());
        }
        after.finish(Ok(()))
    }
}

/// One support notification recorded by [`MemoryNotifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The subject.
    pub subject: String,
    /// The message (JSON).
    pub message: String,
}

/// Records support notifications.
#[derive(Debug, Clone)]
pub struct MemoryNotifier {
    instruments: Arc<Instruments>,
    sent: Arc<Mutex<Vec<Notification>>>,
}

impl MemoryNotifier {
    /// A notifier sharing `instruments`.
    pub fn new(instruments: Arc<Instruments>) -> Self {
        Self {
            instruments,
            sent: Arc::default(),
        }
    }

    /// Every notification so far, oldest first.
    pub fn sent(&self) -> Vec<Notification> {
        lock(&self.sent).clone()
    }
}

impl Notifier for MemoryNotifier {
    async fn notify(&self, subject: &str, message: &str) -> PortResult<()> {
        let after = self.instruments.enter(Operation::NotifySupport)?;
        lock(&self.sent).push(Notification {
            subject: subject.chars().take(100).collect(),
            message: message.to_owned(),
        });
        after.finish(Ok(()))
    }
}

/// A queue in memory: sent messages wait until [`MemoryQueue::drain`].
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    instruments: Arc<Instruments>,
    inner: Arc<Mutex<QueueState>>,
}

#[derive(Debug, Default)]
struct QueueState {
    waiting: VecDeque<QueueMessage>,
    sent_total: u64,
    fail_ids: Vec<String>,
}

impl MemoryQueue {
    /// A queue sharing `instruments`.
    pub fn new(instruments: Arc<Instruments>) -> Self {
        Self {
            instruments,
            inner: Arc::default(),
        }
    }

    /// Takes every waiting message, oldest first.
    pub fn drain(&self) -> Vec<QueueMessage> {
        lock(&self.inner).waiting.drain(..).collect()
    }

    /// Takes at most `max` waiting messages, oldest first.
    pub fn drain_up_to(&self, max: usize) -> Vec<QueueMessage> {
        let mut inner = lock(&self.inner);
        let n = max.min(inner.waiting.len());
        inner.waiting.drain(..n).collect()
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        lock(&self.inner).waiting.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages accepted since the start.
    pub fn sent_total(&self) -> u64 {
        lock(&self.inner).sent_total
    }

    /// Makes the next batch entry with this id fail (once), as SQS reports
    /// a failed entry of a partially successful batch.
    pub fn fail_entry_once(&self, id: &str) {
        lock(&self.inner).fail_ids.push(id.to_owned());
    }
}

impl WorkQueue for MemoryQueue {
    async fn send_batch(&self, messages: &[QueueMessage]) -> PortResult<Vec<FailedEntry>> {
        let after = self.instruments.enter(Operation::SendMessageBatch)?;
        let invalid = |message: String| PortError::Invalid {
            operation: Operation::SendMessageBatch,
            message,
        };
        if messages.is_empty() || messages.len() > MAX_QUEUE_BATCH {
            return Err(invalid(format!(
                "a batch holds 1 to {MAX_QUEUE_BATCH} messages, not {}",
                messages.len()
            )));
        }
        for (i, m) in messages.iter().enumerate() {
            if messages[..i].iter().any(|o| o.id == m.id) {
                return Err(invalid(format!("batch entry id {} is repeated", m.id)));
            }
        }
        let mut inner = lock(&self.inner);
        let mut failed = Vec::new();
        for m in messages {
            if let Some(pos) = inner.fail_ids.iter().position(|id| *id == m.id) {
                inner.fail_ids.remove(pos);
                failed.push(FailedEntry {
                    id: m.id.clone(),
                    error: PortError::Transient {
                        operation: Operation::SendMessageBatch,
                        message: "injected entry failure".to_owned(),
                    },
                });
                continue;
            }
            inner.waiting.push_back(m.clone());
            inner.sent_total += 1;
        }
        after.finish(Ok(failed))
    }
}

/// The six memory adapters, sharing one [`Instruments`].
pub type MemoryPortSet = PortSet<
    MemoryRegistry,
    MemoryPublisher,
    MemoryRotationStore,
    MemoryNotifier,
    MemoryQueue,
    MemoryPrivateCa,
>;

/// A [`Ports`](crate::ports::Ports) bundle of memory adapters and their
/// shared [`Instruments`].
#[derive(Debug, Clone)]
pub struct MemoryPorts {
    /// The adapters.
    pub ports: MemoryPortSet,
    /// Their call counters and faults.
    pub instruments: Arc<Instruments>,
}

impl MemoryPorts {
    /// Fresh, empty adapters (the registry knows no policy, thing or
    /// certificate yet).
    pub fn new() -> Self {
        Self::with_private_ca(MEMORY_CA_ARN)
    }

    /// [`new`](Self::new), with the Private CA named `ca_arn` (not yet
    /// registered in the registry: [`MemoryPrivateCa::register_in_iot`]).
    pub fn with_private_ca(ca_arn: &str) -> Self {
        let instruments = Arc::new(Instruments::default());
        let registry = MemoryRegistry::new(instruments.clone());
        Self {
            ports: PortSet {
                private_ca: MemoryPrivateCa::new(instruments.clone(), registry.clone(), ca_arn),
                registry,
                publisher: MemoryPublisher::new(instruments.clone()),
                store: MemoryRotationStore::new(instruments.clone()),
                notifier: MemoryNotifier::new(instruments.clone()),
                queue: MemoryQueue::new(instruments.clone()),
            },
            instruments,
        }
    }
}

impl Default for MemoryPorts {
    fn default() -> Self {
        Self::new()
    }
}

impl crate::ports::Ports for MemoryPorts {
    type Registry = MemoryRegistry;
    type Publisher = MemoryPublisher;
    type Store = MemoryRotationStore;
    type Notifier = MemoryNotifier;
    type Queue = MemoryQueue;
    type PrivateCa = MemoryPrivateCa;

    fn registry(&self) -> &MemoryRegistry {
        &self.ports.registry
    }
    fn publisher(&self) -> &MemoryPublisher {
        &self.ports.publisher
    }
    fn store(&self) -> &MemoryRotationStore {
        &self.ports.store
    }
    fn notifier(&self) -> &MemoryNotifier {
        &self.ports.notifier
    }
    fn queue(&self) -> &MemoryQueue {
        &self.ports.queue
    }
    fn private_ca(&self) -> &MemoryPrivateCa {
        &self.ports.private_ca
    }
}
