//! The discrete-event loop: events ordered by (virtual instant, sequence),
//! each invocation a future of the real handler polled until it sleeps (a
//! round trip, a token, a back-off) and polled again at the instant it asked
//! for. One thread, no wall clock: the same seed replays the same run.
//!
//! Around the functions it plays what AWS does: Device Defender's
//! scheduled audit (findings for the ACTIVE certificates within the
//! threshold) and its SNS notification, the rotation queue (batches,
//! visibility timeout, redrive to the DLQ after `maxReceiveCount`,
//! retention), the Lambda service (reserved concurrency, asynchronous
//! retries after 1 and 2 minutes then the DLQ, events older than 6 hours
//! dropped, timeouts), the sweeper's schedule, IoT Core (the deployed topic
//! rules route what devices publish; QoS 1 messages wait for an offline
//! device for the persistent session's expiry), and the devices.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use lambdas::handlers::HandlerError;
use lambdas::handlers::rotation_starter::BatchOutcome;
use lambdas::ports::{IotRegistry, PortError};
use rules::contracts::AuditFinding;
use rules::functions::Function;
use rules::routes::{Router, deployed_rules};
use rules::sql::MessageContext;
use serde_json::{Value, json};

use crate::clock::{VirtualTimer, take_wake};
use crate::cloud::{Cloud, SimPorts};
use crate::deployment::Deployment;
use crate::fleet::{Behaviour, Fleet, device_index, thing_name};
use crate::lambda::{self, FunctionState, Invocation, Returned};
use crate::options::PlanOptions;
use crate::rng::Rng;

const MS: u64 = 1_000_000;
const SECOND: u64 = 1_000 * MS;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
/// Lambda keeps an asynchronous event at most 6 hours (maximum event age).
const MAX_EVENT_AGE: u64 = 6 * HOUR;
/// Lambda's waits before the second and third attempt of an async event.
const ASYNC_RETRY_DELAYS: [u64; 2] = [MINUTE, 2 * MINUTE];
/// IoT Core delivery to a connected device, and a rule to its Lambda action.
const BROKER_DELAY: u64 = 50 * MS;
const RULE_DELAY: u64 = 100 * MS;
/// SNS to its Lambda subscriber.
const SNS_DELAY: u64 = 100 * MS;
/// A device making its key and CSR; reconnecting with a new certificate.
const DEVICE_CSR_DELAY: u64 = SECOND;
const DEVICE_RECONNECT_DELAY: u64 = 2 * SECOND;
/// The expiring-certificate check, as audit-fanout reads it.
const CHECK: &str = "DEVICE_CERTIFICATE_EXPIRING_CHECK";
const POLICY: &str = "fleetcert-device-policy";

/// An asynchronous event for a function.
#[derive(Debug, Clone)]
pub struct AsyncEvent {
    function: Function,
    payload: Arc<[u8]>,
    attempt: usize,
    first_ns: u64,
}

#[derive(Debug)]
enum Ev {
    Audit(u64),
    Sweep,
    Resume(usize),
    Invoke(AsyncEvent),
    Deliver {
        device: usize,
        kind: Down,
        payload: Vec<u8>,
    },
    Send {
        device: usize,
        kind: Up,
        payload: Vec<u8>,
        principal: String,
    },
    SqsVisible,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Down {
    CsrReq,
    Crt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Up {
    CsrRes,
    CrtAck,
    CrtErr,
}

impl Up {
    fn suffix(self) -> &'static str {
        match self {
            Up::CsrRes => "csr_res",
            Up::CrtAck => "crt_ack",
            Up::CrtErr => "crt_err",
        }
    }
}

#[derive(Debug)]
struct Scheduled {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

enum Origin {
    Async(AsyncEvent),
    Batch(Vec<u64>),
}

struct Task {
    function: Function,
    instance: Arc<lambda::Instance>,
    started: u64,
    deadline: u64,
    fut: Invocation,
    origin: Origin,
}

#[derive(Debug)]
struct SqsMessage {
    body: Arc<str>,
    sent_ns: u64,
    receives: u32,
}

/// The rotation queue.
#[derive(Debug, Default)]
struct Sqs {
    messages: BTreeMap<u64, SqsMessage>,
    visible: VecDeque<u64>,
    hidden: BTreeMap<(u64, u64), ()>,
    next_id: u64,
}

/// Everything a run measured, for the report.
#[derive(Debug)]
pub struct Outcome {
    /// Virtual instant the run stopped at, ns.
    pub end_ns: u64,
    /// The devices at the end.
    pub fleet: Fleet,
    /// The account's counters.
    pub counters: crate::cloud::Counters,
    /// Per function: invocations, errors, timeouts, GB-s, dead letters.
    pub functions: BTreeMap<Function, FunctionStats>,
    /// Rotation rows by (final state, device class).
    pub rows: BTreeMap<(String, &'static str), u64>,
    /// The most rotations open at once.
    pub peak_open: usize,
    /// Open rotations at each hour.
    pub open_hourly: Vec<u64>,
    /// Handler failures caused by a call still throttled after the retries.
    pub throttle_failures: u64,
    /// Queue messages sent to the DLQ / expired in the queue.
    pub queue_dead_letters: u64,
    /// Queue messages older than the retention period, deleted by SQS.
    pub queue_expired: u64,
    /// SQS receives and deletes (the event source's own requests).
    pub sqs_receives: u64,
    /// MQTT messages to devices lost (offline past the session expiry).
    pub messages_lost: u64,
    /// Messages published to and by devices.
    pub mqtt_messages: u64,
    /// Topic rule actions run.
    pub rule_actions: u64,
    /// Audits run and findings in each.
    pub audits: Vec<(u64, usize)>,
    /// The campaign at the end, when the plan rotated by one.
    pub campaign: Option<rules::campaign::Campaign>,
}

/// One function's figures.
#[derive(Debug, Clone, Default)]
pub struct FunctionStats {
    /// Invocations.
    pub invocations: u64,
    /// Failed invocations.
    pub errors: u64,
    /// Timed out.
    pub timeouts: u64,
    /// Compute, GB-seconds.
    pub gb_seconds: f64,
    /// Events dead-lettered.
    pub dead_letters: u64,
    /// Events that waited for reserved concurrency.
    pub waited_for_concurrency: u64,
    /// Reserved concurrency.
    pub concurrency: u32,
}

/// The simulation.
pub struct Engine {
    opts: PlanOptions,
    dep: Deployment,
    timer: VirtualTimer,
    cloud: Arc<Cloud>,
    ports: SimPorts,
    fleet: Fleet,
    originals: Vec<String>,
    by_expiry: Vec<(i64, usize)>,
    findings: Vec<Option<AuditFinding>>,
    /// Original certificates found deleted (a deleted id never returns).
    retired: Vec<bool>,
    /// Each original certificate's `notAfter` as the registry issued it.
    not_after_ms: Vec<i64>,
    router: Router,
    heap: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    functions: BTreeMap<Function, FunctionState<AsyncEvent>>,
    tasks: Vec<Option<Task>>,
    free: Vec<usize>,
    sqs: Sqs,
    last_task: Option<String>,
    // measured
    peak_open: usize,
    open_hourly: Vec<u64>,
    throttle_failures: u64,
    queue_dead_letters: u64,
    queue_expired: u64,
    sqs_receives: u64,
    messages_lost: u64,
    mqtt_messages: u64,
    rule_actions: u64,
    audits: Vec<(u64, usize)>,
    horizon_ns: u64,
    progress: Option<Box<dyn FnMut(u64, u64)>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("now_ns", &self.timer.now_ns())
            .field("devices", &self.fleet.devices.len())
            .finish_non_exhaustive()
    }
}

/// Polls a memory adapter's future, which never waits.
fn ready<T>(fut: impl std::future::Future<Output = T>) -> T {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("memory adapters answer at once"),
    }
}

impl Engine {
    /// The fleet provisioned in the account: one thing, one ACTIVE
    /// certificate with the device policy per device.
    ///
    /// # Errors
    /// When a key or certificate cannot be made.
    pub fn new(opts: PlanOptions, dep: Deployment) -> anyhow_lite::Result<Engine> {
        let timer = VirtualTimer::new();
        let o2 = opts.clone();
        let cloud = Cloud::new(timer.clone(), opts.seed, move |op| o2.quota(op));
        let ports = SimPorts(Arc::clone(&cloud), Function::AuditFanout);
        let mut rng = Rng::new(opts.seed);
        let fleet = Fleet::new(&opts, &mut rng).map_err(|e| e.to_string())?;
        cloud.registry.create_policy(POLICY);
        let mut originals = Vec::with_capacity(fleet.devices.len());
        let mut fleet = fleet;
        for i in 0..fleet.devices.len() {
            let d = &fleet.devices[i];
            let csr = fleet.csr(i, d.key).map_err(|e| e.to_string())?;
            let validity = d.expires_ms - crate::cloud::START_MS;
            let created = cloud
                .registry
                .issue_certificate(&csr, true, validity.max(1))
                .map_err(|e| e.to_string())?;
            let thing = thing_name(i);
            cloud.registry.add_thing(&thing);
            ready(
                cloud
                    .registry
                    .attach_policy(POLICY, &created.certificate_arn),
            )
            .map_err(|e| e.to_string())?;
            ready(
                cloud
                    .registry
                    .attach_thing_principal(&thing, &created.certificate_arn),
            )
            .map_err(|e| e.to_string())?;
            fleet.devices[i].certificate_id = created.certificate_id.clone();
            originals.push(created.certificate_id);
        }
        let not_after_ms: Vec<i64> = originals
            .iter()
            .map(|id| cloud.registry.certificate(id).map_or(0, |c| c.not_after_ms))
            .collect();
        let mut by_expiry: Vec<(i64, usize)> = fleet
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| (d.expires_ms, i))
            .collect();
        by_expiry.sort_unstable();
        let router = Router::new(&deployed_rules(&[])).map_err(|e| e.to_string())?;
        let functions = dep
            .functions
            .values()
            .map(|f| {
                (
                    f.function,
                    FunctionState::new(f.clone(), opts.seed ^ (f.function as u64 + 1)),
                )
            })
            .collect();
        let horizon_ns = (opts.horizon() * 86_400.0 * 1e9) as u64;
        let n = fleet.devices.len();
        let mut engine = Engine {
            opts,
            dep,
            timer,
            cloud,
            ports,
            fleet,
            originals,
            by_expiry,
            findings: vec![None; n],
            retired: vec![false; n],
            not_after_ms,
            router,
            heap: BinaryHeap::new(),
            seq: 0,
            functions,
            tasks: Vec::new(),
            free: Vec::new(),
            sqs: Sqs::default(),
            last_task: None,
            peak_open: 0,
            open_hourly: Vec::new(),
            throttle_failures: 0,
            queue_dead_letters: 0,
            queue_expired: 0,
            sqs_receives: 0,
            messages_lost: 0,
            mqtt_messages: 0,
            rule_actions: 0,
            audits: Vec::new(),
            horizon_ns,
            progress: None,
        };
        match engine.opts.campaign {
            // the campaign over every device's certificate, in device order
            Some(c) => {
                let (campaign, chunks) = rules::campaign::Campaign::new(
                    rules::campaign::NewCampaign {
                        id: rules::contracts::CampaignId::new("plan").map_err(|e| e.to_string())?,
                        task_id: "plan-campaign".to_owned(),
                        rollout: c.rollout,
                        abort: c.abort,
                        grace_ms: 15 * 60 * 1000,
                    },
                    &engine.originals,
                    engine.cloud.now_ms(),
                )
                .map_err(|e| e.to_string())?;
                ready(lambdas::handlers::campaign::create(
                    &engine.cloud.store,
                    &campaign,
                    &chunks,
                ))
                .map_err(|e| e.to_string())?;
            }
            None => engine.at(0, Ev::Audit(0)),
        }
        let sweep = u64::try_from(engine.dep.sweep_period.as_nanos()).unwrap_or(u64::MAX);
        engine.at(sweep, Ev::Sweep);
        Ok(engine)
    }

    /// Calls `f(now_ns, horizon_ns)` about every simulated hour.
    pub fn on_progress(&mut self, f: impl FnMut(u64, u64) + 'static) {
        self.progress = Some(Box::new(f));
    }

    fn at(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn now(&self) -> u64 {
        self.timer.now_ns()
    }

    fn all_rotated(&self) -> bool {
        self.fleet.devices.iter().all(|d| d.rotated_ns.is_some())
    }

    /// Runs to the horizon, or until every device rotated and nothing is
    /// left to do.
    pub fn run(mut self) -> Outcome {
        let mut next_hour = 0u64;
        while let Some(Reverse(s)) = self.heap.pop() {
            if s.at > self.horizon_ns {
                break;
            }
            self.timer.set_ns(s.at);
            while s.at >= next_hour {
                self.open_hourly.push(self.cloud.store.open_count() as u64);
                if let Some(p) = self.progress.as_mut() {
                    p(s.at, self.horizon_ns);
                }
                next_hour += HOUR;
            }
            match s.ev {
                Ev::Audit(k) => self.audit(k),
                Ev::Sweep => self.sweep(),
                Ev::Resume(id) => self.resume(id),
                Ev::Invoke(e) => self.invoke_async(e),
                Ev::Deliver {
                    device,
                    kind,
                    payload,
                } => self.deliver(device, kind, &payload),
                Ev::Send {
                    device,
                    kind,
                    payload,
                    principal,
                } => self.device_sends(device, kind, &payload, &principal),
                Ev::SqsVisible => self.poll_queue(),
            }
            self.peak_open = self.peak_open.max(self.cloud.store.open_count());
            if self.tasks_idle()
                && self.all_rotated()
                && self.sqs.messages.is_empty()
                && self.cloud.store.unsettled_count() == 0
            {
                break;
            }
        }
        self.finish()
    }

    fn tasks_idle(&self) -> bool {
        self.free.len() == self.tasks.len()
    }

    // --- Device Defender ---------------------------------------------------

    fn audit(&mut self, k: u64) {
        let now = self.now();
        let now_ms = self.cloud.now_ms();
        let horizon_ms = now_ms + i64::try_from(self.dep.threshold.as_millis()).unwrap_or(i64::MAX);
        let task_id = format!("plan-audit-{k:04}");
        if let Some(previous) = self.last_task.replace(task_id.clone()) {
            self.cloud.set_findings(&previous, CHECK, Vec::new());
        }
        let mut findings = Vec::new();
        let end = self.by_expiry.partition_point(|(e, _)| *e <= horizon_ms);
        for &(expires, i) in &self.by_expiry[..end] {
            if self.retired[i] {
                continue;
            }
            let id = &self.originals[i];
            match self.cloud.registry.status(id) {
                None => {
                    self.retired[i] = true;
                    continue;
                }
                Some(lambdas::ports::CertificateStatus::Active) => {}
                Some(_) => continue,
            }
            let past = expires <= now_ms;
            let template = if past { None } else { self.findings[i].clone() };
            let mut f = match template {
                Some(f) => f,
                None => {
                    let built: Option<AuditFinding> = serde_json::from_value(json!({
                        "findingId": "f",
                        "taskId": "t",
                        "checkName": CHECK,
                        "nonCompliantResource": {
                            "resourceType": "DEVICE_CERTIFICATE",
                            "resourceIdentifier": {"deviceCertificateId": id},
                            "additionalInfo": {"EXPIRATION_TIME": self.not_after_ms[i].to_string()}
                        },
                        "reasonForNonComplianceCode": if past { "CERTIFICATE_PAST_EXPIRATION" } else { "CERTIFICATE_APPROACHING_EXPIRATION" },
                        "severity": "MEDIUM"
                    }))
                    .ok();
                    let Some(built) = built else { continue };
                    if !past {
                        self.findings[i] = Some(built.clone());
                    }
                    built
                }
            };
            f.finding_id = format!("{task_id}-{i}");
            f.task_id.clone_from(&task_id);
            findings.push(f);
        }
        let count = findings.len();
        self.audits.push((now, count));
        self.cloud.set_findings(&task_id, CHECK, findings);
        let message = json!({
            "accountId": "123456789012", "taskId": task_id, "taskStatus": "COMPLETED",
            "taskType": "SCHEDULED_AUDIT_TASK", "scheduledAuditName": "fleetcert",
            "failedChecksCount": 0, "canceledChecksCount": 0,
            "nonCompliantChecksCount": u64::from(count > 0),
            "compliantChecksCount": u64::from(count == 0), "totalChecksCount": 1,
            "taskStartTime": now_ms,
            "auditDetails": [{
                "checkName": CHECK,
                "checkRunStatus": if count > 0 { "COMPLETED_NON_COMPLIANT" } else { "COMPLETED_COMPLIANT" },
                "nonCompliantResourcesCount": count,
                "totalResourcesCount": self.fleet.devices.len()
            }]
        });
        let event = json!({"Records": [{
            "EventSource": "aws:sns", "EventVersion": "1.0",
            "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:audit:plan",
            "Sns": {
                "Type": "Notification", "MessageId": task_id,
                "TopicArn": "arn:aws:sns:us-east-1:123456789012:audit",
                "Subject": null, "Message": message.to_string(),
                "Timestamp": "1970-01-01T00:00:00.000Z"
            }
        }]});
        self.schedule_async(Function::AuditFanout, &event, now + SNS_DELAY);
        let period = u64::try_from(self.dep.audit_period.as_nanos()).unwrap_or(u64::MAX);
        self.at(now + period, Ev::Audit(k + 1));
    }

    fn sweep(&mut self) {
        let now = self.now();
        let event = json!({
            "version": "0", "id": format!("sweep-{now}"), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012",
            "time": "1970-01-01T00:00:00Z", "region": "us-east-1",
            "resources": [], "detail": {}
        });
        self.schedule_async(Function::Sweeper, &event, now);
        let period = u64::try_from(self.dep.sweep_period.as_nanos()).unwrap_or(u64::MAX);
        self.at(now + period, Ev::Sweep);
    }

    // --- the Lambda service -----------------------------------------------

    fn schedule_async(&mut self, function: Function, event: &Value, at: u64) {
        let payload: Arc<[u8]> = serde_json::to_vec(event).unwrap_or_default().into();
        self.at(
            at,
            Ev::Invoke(AsyncEvent {
                function,
                payload,
                attempt: 0,
                first_ns: at,
            }),
        );
    }

    fn invoke_async(&mut self, e: AsyncEvent) {
        let f = self
            .functions
            .get_mut(&e.function)
            .expect("every function is deployed");
        if f.has_capacity() {
            let function = e.function;
            let payload = Arc::clone(&e.payload);
            self.start(function, payload, Origin::Async(e));
        } else {
            f.throttled_by_concurrency += 1;
            f.backlog.push_back(e);
        }
    }

    fn start(&mut self, function: Function, payload: Arc<[u8]>, origin: Origin) {
        let now = self.now();
        let f = self.functions.get_mut(&function).expect("deployed");
        let timeout = u64::try_from(f.deployment.timeout.as_nanos()).unwrap_or(u64::MAX);
        let instance = f.acquire(&self.ports, &self.timer);
        let fut = lambda::invoke(
            function,
            Arc::clone(&instance),
            payload,
            self.cloud.now_ms(),
        );
        let task = Task {
            function,
            instance,
            started: now,
            deadline: now.saturating_add(timeout),
            fut,
            origin,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.tasks[id] = Some(task);
                id
            }
            None => {
                self.tasks.push(Some(task));
                self.tasks.len() - 1
            }
        };
        self.poll(id);
    }

    fn resume(&mut self, id: usize) {
        let now = self.now();
        let timed_out = self.tasks[id].as_ref().is_some_and(|t| now >= t.deadline);
        if timed_out {
            if let Some(task) = self.tasks[id].take() {
                self.free.push(id);
                let f = self.functions.get_mut(&task.function).expect("deployed");
                f.timeouts += 1;
                f.discard(now - task.started);
                // Dropping the future stops the handler where it was, as
                // Lambda stops a function at its timeout.
                drop(task.fut);
                self.finished(task.function, task.origin, None);
            }
            return;
        }
        self.poll(id);
    }

    fn poll(&mut self, id: usize) {
        let now = self.now();
        let Some(task) = self.tasks[id].as_mut() else {
            return;
        };
        let _ = take_wake();
        let mut cx = Context::from_waker(Waker::noop());
        match task.fut.as_mut().poll(&mut cx) {
            Poll::Ready(returned) => {
                let task = self.tasks[id].take().expect("polled task");
                self.free.push(id);
                let f = self.functions.get_mut(&task.function).expect("deployed");
                f.release(task.instance, now - task.started);
                self.finished(task.function, task.origin, Some(returned));
            }
            Poll::Pending => {
                let wake = take_wake().unwrap_or(now + MS);
                let at = wake.min(task.deadline);
                self.at(at, Ev::Resume(id));
            }
        }
        self.drain_cloud();
    }

    fn count_throttle_failure(&mut self, e: &HandlerError) {
        if let HandlerError::Port {
            source: PortError::Throttled { .. },
            ..
        } = e
        {
            self.throttle_failures += 1;
        }
    }

    /// An invocation ended: `None` when it timed out.
    fn finished(&mut self, function: Function, origin: Origin, returned: Option<Returned>) {
        let now = self.now();
        match origin {
            Origin::Async(e) => {
                let failed = match &returned {
                    Some(Returned::Single(Ok(_))) => false,
                    Some(Returned::Single(Err(err))) => {
                        let err = err.clone();
                        self.count_throttle_failure(&err);
                        true
                    }
                    _ => true,
                };
                if failed {
                    let f = self.functions.get_mut(&function).expect("deployed");
                    f.errors += 1;
                    if let Some(delay) = ASYNC_RETRY_DELAYS.get(e.attempt) {
                        self.at(
                            now + delay,
                            Ev::Invoke(AsyncEvent {
                                attempt: e.attempt + 1,
                                ..e
                            }),
                        );
                    } else {
                        f.dead_letters += 1;
                    }
                }
            }
            Origin::Batch(ids) => {
                let failed: Vec<u64> = match returned {
                    Some(Returned::Batch(BatchOutcome { response, outcomes })) => {
                        for (_, r) in &outcomes {
                            if let Err(e) = r {
                                self.count_throttle_failure(e);
                            }
                        }
                        response
                            .batch_item_failures
                            .iter()
                            .filter_map(|f| f.item_identifier.strip_prefix('m')?.parse().ok())
                            .collect()
                    }
                    _ => {
                        let f = self.functions.get_mut(&function).expect("deployed");
                        f.errors += 1;
                        ids.clone()
                    }
                };
                let visibility =
                    u64::try_from(self.dep.visibility_timeout.as_nanos()).unwrap_or(u64::MAX);
                for id in ids {
                    if !failed.contains(&id) {
                        self.sqs.messages.remove(&id);
                        continue;
                    }
                    let Some(m) = self.sqs.messages.get(&id) else {
                        continue;
                    };
                    if m.receives >= self.dep.max_receive_count {
                        self.sqs.messages.remove(&id);
                        self.queue_dead_letters += 1;
                    } else {
                        self.sqs.hidden.insert((now + visibility, id), ());
                        self.at(now + visibility, Ev::SqsVisible);
                    }
                }
                self.sqs_receives += 1; // the DeleteMessageBatch
            }
        }
        // a free instance takes the next waiting event
        let f = self.functions.get_mut(&function).expect("deployed");
        while f.has_capacity() {
            let Some(next) = f.backlog.pop_front() else {
                break;
            };
            if now.saturating_sub(next.first_ns) > MAX_EVENT_AGE {
                f.dead_letters += 1;
                continue;
            }
            let payload = Arc::clone(&next.payload);
            self.start(function, payload, Origin::Async(next));
            break;
        }
        if function == Function::RotationStarter {
            self.poll_queue();
        }
    }

    // --- SQS ---------------------------------------------------------------

    fn poll_queue(&mut self) {
        let now = self.now();
        let retention = u64::try_from(self.dep.retention.as_nanos()).unwrap_or(u64::MAX);
        while let Some((&(at, id), ())) = self.sqs.hidden.first_key_value() {
            if at > now {
                break;
            }
            self.sqs.hidden.remove(&(at, id));
            self.sqs.visible.push_back(id);
        }
        loop {
            let starter = &self.functions[&Function::RotationStarter];
            if !starter.has_capacity() || self.sqs.visible.is_empty() {
                return;
            }
            let mut batch = Vec::new();
            let mut records = Vec::new();
            while batch.len() < self.dep.batch_size {
                let Some(id) = self.sqs.visible.pop_front() else {
                    break;
                };
                let Some(m) = self.sqs.messages.get_mut(&id) else {
                    continue;
                };
                if now.saturating_sub(m.sent_ns) > retention {
                    self.sqs.messages.remove(&id);
                    self.queue_expired += 1;
                    continue;
                }
                m.receives += 1;
                records.push(json!({
                    "messageId": format!("m{id}"), "receiptHandle": format!("r{id}"),
                    "body": &*m.body, "eventSource": "aws:sqs",
                    "attributes": {"ApproximateReceiveCount": m.receives.to_string()}
                }));
                batch.push(id);
            }
            if batch.is_empty() {
                return;
            }
            self.sqs_receives += 1;
            let payload: Arc<[u8]> = serde_json::to_vec(&json!({ "Records": records }))
                .unwrap_or_default()
                .into();
            self.start(Function::RotationStarter, payload, Origin::Batch(batch));
        }
    }

    // --- what the functions sent ---------------------------------------------

    fn drain_cloud(&mut self) {
        let out = self.cloud.drain();
        let now = self.now();
        let queued = !out.queued.is_empty();
        for body in out.queued {
            let id = self.sqs.next_id;
            self.sqs.next_id += 1;
            self.sqs.messages.insert(
                id,
                SqsMessage {
                    body: body.into(),
                    sent_ns: now,
                    receives: 0,
                },
            );
            self.sqs.visible.push_back(id);
        }
        for (topic, payload) in out.published {
            self.mqtt_messages += 1;
            let mut levels = topic.split('/');
            let (Some(thing), Some(kind)) = (levels.nth(2), levels.next()) else {
                continue;
            };
            let kind = match kind {
                "csr_req" => Down::CsrReq,
                "crt" => Down::Crt,
                _ => continue,
            };
            let Some(device) = device_index(thing).filter(|i| *i < self.fleet.devices.len()) else {
                continue;
            };
            let arrive = now + BROKER_DELAY;
            let expiry = (self.opts.session_expiry_hours * 3600.0 * 1e9) as u64;
            match self.fleet.next_online(device, arrive) {
                Some(t) if t.saturating_sub(arrive) <= expiry => self.at(
                    t,
                    Ev::Deliver {
                        device,
                        kind,
                        payload,
                    },
                ),
                _ => self.messages_lost += 1,
            }
        }
        if queued {
            self.poll_queue();
        }
    }

    // --- the devices ---------------------------------------------------------

    fn deliver(&mut self, device: usize, kind: Down, payload: &[u8]) {
        let now = self.now();
        let Ok(message) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        let rotation = message["rotationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let d = &self.fleet.devices[device];
        match kind {
            Down::CsrReq => {
                if d.behaviour == Behaviour::Silent || d.rotated_ns.is_some() {
                    return;
                }
                let key = match &d.answered {
                    Some((r, key)) if *r == rotation => *key,
                    _ => Fleet::next_key(d.key),
                };
                let Ok(csr) = self.fleet.csr(device, key) else {
                    return;
                };
                let principal = d.certificate_id.clone();
                self.fleet.devices[device].answered = Some((rotation.clone(), key));
                let body = json!({"CSR": csr, "rotationId": rotation});
                self.at(
                    now + DEVICE_CSR_DELAY,
                    Ev::Send {
                        device,
                        kind: Up::CsrRes,
                        payload: serde_json::to_vec(&body).unwrap_or_default(),
                        principal,
                    },
                );
            }
            Down::Crt => {
                let new_id = message["certificateId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let active = self
                    .cloud
                    .registry
                    .certificate(&new_id)
                    .is_some_and(|c| c.status == lambdas::ports::CertificateStatus::Active);
                let (kind, principal, body) = if d.certificate_id == new_id {
                    // already switched: the ack again
                    (
                        Up::CrtAck,
                        new_id.clone(),
                        json!({"rotationId": rotation, "certificateId": new_id}),
                    )
                } else if d.behaviour == Behaviour::CrtErr || !active {
                    let error = if active {
                        "the device refused the new certificate"
                    } else {
                        "the new certificate was refused on connect"
                    };
                    (
                        Up::CrtErr,
                        d.certificate_id.clone(),
                        json!({"error": error, "rotationId": rotation}),
                    )
                } else {
                    let key = d
                        .answered
                        .as_ref()
                        .map_or_else(|| Fleet::next_key(d.key), |(_, k)| *k);
                    let dev = &mut self.fleet.devices[device];
                    dev.certificate_id.clone_from(&new_id);
                    dev.key = key;
                    dev.rotated_ns = Some(now);
                    (
                        Up::CrtAck,
                        new_id.clone(),
                        json!({"rotationId": rotation, "certificateId": new_id}),
                    )
                };
                self.at(
                    now + DEVICE_RECONNECT_DELAY,
                    Ev::Send {
                        device,
                        kind,
                        payload: serde_json::to_vec(&body).unwrap_or_default(),
                        principal,
                    },
                );
            }
        }
    }

    fn device_sends(&mut self, device: usize, kind: Up, payload: &[u8], principal: &str) {
        let now = self.now();
        self.mqtt_messages += 1;
        let thing = thing_name(device);
        let topic = format!("management/topic/{thing}/{}", kind.suffix());
        let Ok(value) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        let ctx = MessageContext {
            topic: &topic,
            payload: &value,
            client_id: &thing,
            principal,
            timestamp_ms: self.cloud.now_ms(),
        };
        let Ok(actions) = self.router.route(&ctx) else {
            return;
        };
        for (function, event) in actions {
            self.rule_actions += 1;
            self.schedule_async(function, &event, now + RULE_DELAY);
        }
    }

    fn finish(self) -> Outcome {
        let end_ns = self.now();
        let mut rows = BTreeMap::new();
        for row in self.cloud.store.rows() {
            let class = device_index(&row.thing_name)
                .and_then(|i| self.fleet.devices.get(i))
                .map_or("unknown", |d| d.behaviour.class());
            let state = match &row.state {
                rules::rotation::RotationState::Expired {
                    new_certificate_kept: true,
                    ..
                } => "EXPIRED (new certificate kept)".to_owned(),
                s => s.name().to_owned(),
            };
            *rows.entry((state, class)).or_insert(0u64) += 1;
        }
        let functions = self
            .functions
            .iter()
            .map(|(f, s)| {
                (
                    *f,
                    FunctionStats {
                        invocations: s.invocations,
                        errors: s.errors,
                        timeouts: s.timeouts,
                        gb_seconds: s.busy_ns as f64 / 1e9 * f64::from(s.deployment.memory_mb)
                            / 1024.0,
                        dead_letters: s.dead_letters,
                        waited_for_concurrency: s.throttled_by_concurrency,
                        concurrency: s.deployment.concurrency,
                    },
                )
            })
            .collect();
        Outcome {
            end_ns,
            counters: self.cloud.counters(),
            fleet: self.fleet,
            functions,
            rows,
            peak_open: self.peak_open,
            open_hourly: self.open_hourly,
            throttle_failures: self.throttle_failures,
            queue_dead_letters: self.queue_dead_letters,
            queue_expired: self.queue_expired,
            sqs_receives: self.sqs_receives,
            messages_lost: self.messages_lost,
            mqtt_messages: self.mqtt_messages,
            rule_actions: self.rule_actions,
            audits: self.audits,
            campaign: match self.cloud.store.campaign_item("campaign#plan") {
                Some(rules::campaign::CampaignItem::Campaign(c)) => Some(c),
                _ => None,
            },
        }
    }
}

/// Errors of setting up a run, as text.
pub mod anyhow_lite {
    /// A set-up failure.
    pub type Result<T> = std::result::Result<T, String>;
}
