//! A model of one certificate rotation, end to end, for the `stateright`
//! model checker (issue 15).
//!
//! **The cloud side is the real code**: every event goes through
//! [`rules::rotation::step`], and the row's own [`Rotation::cleanup_actions`]
//! and [`Rotation::resend_mark`] decide what a retry and the sweeper do. What
//! is modelled here is the glue the handlers put around `step` (their
//! conditional write with `cleanupPending`, the cleanup of a closed row, the
//! commit handler finishing a retirement, the error handler refusing a
//! `crt_err` sent over the new certificate, the sweeper's evidence that a
//! new certificate was never sent), the registry (which certificate exists,
//! is ACTIVE, is attached with the policy), the broker (it refuses a
//! certificate that is not ACTIVE and attached and closes its connections
//! when it goes), and **the device agent's slot logic** (`current/`, `next/`,
//! `old/`: what it stores, acks, promotes, probes, swaps and deletes, and
//! when), as `device::agent` does it; `seed_device` instead models a device
//! written to the original blog post, which deletes its old key as soon as
//! its `crt_ack` is PUBACKed.
//!
//! Faults, each counted against [`ProtocolModel::max_faults`]: a message to
//! the device lost or duplicated, a device message's rule invocation
//! duplicated, an invocation failing on every Lambda retry (before its
//! write, or after it with its actions undone), a device crash at each of
//! the agent's named points (the message being handled is redelivered, as a
//! persistent session does), a disconnect. Reordering is free: any message
//! in flight and any pending invocation may go next. Time moves through four
//! instants: before half the rotation's time, past half, past three
//! quarters (the sweeper's re-send marks) and past the deadline; the
//! sweeper may run twice at each.
//!
//! Every path is finite (faults, sweeps, the agent's confirmation looks and
//! the re-sends are bounded), so `eventually` is checked on complete paths.

use rules::rotation::{Action as CloudAction, Event, Rejection, Rotation, RotationState, step};
use stateright::{Model, Property};

const ROTATION: &str = "rot-1";
const THING: &str = "thing-1";
const CREATED_MS: i64 = 0;
const DEADLINE_MS: i64 = 1_000;
/// Before half the rotation's time, past half, past three quarters, past
/// the deadline.
const TIMES: [i64; 4] = [100, 501, 751, 1_001];
const SWEEPS_PER_INSTANT: u8 = 2;
const LOOKS: u8 = 2;
const MAX_KEYS: u8 = 2;

/// The two certificates of the rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cert {
    /// The certificate being replaced.
    Old,
    /// The one `CreateCertificateFromCsr` issues (at most one per rotation).
    New,
}

impl Cert {
    fn id(self) -> &'static str {
        match self {
            Cert::Old => "old",
            Cert::New => "new",
        }
    }

    fn from_id(id: &str) -> Option<Cert> {
        match id {
            "old" => Some(Cert::Old),
            "new" => Some(Cert::New),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Cert::Old => 0,
            Cert::New => 1,
        }
    }
}

/// A certificate in the registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CertState {
    /// Not deleted.
    pub exists: bool,
    /// ACTIVE.
    pub active: bool,
    /// Attached to the thing with the device policy.
    pub attached: bool,
}

impl CertState {
    /// The broker lets it connect.
    pub fn usable(&self) -> bool {
        self.exists && self.active && self.attached
    }

    /// ACTIVE or attached: someone must hold it or it is an orphan.
    pub fn lingering(&self) -> bool {
        self.exists && (self.active || self.attached)
    }
}

/// A message the cloud publishes to the device (QoS 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ToDevice {
    /// `csr_req`.
    CsrReq,
    /// `crt` with the new certificate, issued for the device's key `key`.
    Crt {
        /// The key the certificate was issued for.
        key: u8,
    },
}

/// A device message, as the topic rule's Lambda invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ToCloud {
    /// `csr_res` with a CSR for key `key` → the CSR issuer.
    CsrRes {
        /// The device's key.
        key: u8,
    },
    /// `crt_ack` arriving over `principal` → the commit handler.
    Ack {
        /// The certificate of the connection it came over.
        principal: Cert,
    },
    /// `crt_err` over `principal` → the error handler.
    Err {
        /// The certificate of the connection it came over.
        principal: Cert,
    },
}

/// What the device keeps in `next/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Next {
    /// A key awaiting its certificate.
    Key(u8),
    /// The new certificate for that key, not yet acked and promoted.
    Cert(u8),
}

/// The agent's named crash points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Point {
    /// `agent: csr key stored`.
    CsrKeyStored,
    /// `agent: next stored`.
    NextStored,
    /// `agent: ack sent`.
    AckSent,
    /// `agent: crt_err sent`.
    CrtErrSent,
    /// Not a crash: the first connection with the new certificate fails
    /// for a transient reason (timeout, lost PUBACK), so the agent rolls
    /// back with `crt_err` although the certificate works.
    NewConnectionFails,
}

const POINTS: [Point; 5] = [
    Point::CsrKeyStored,
    Point::NextStored,
    Point::AckSent,
    Point::CrtErrSent,
    Point::NewConnectionFails,
];

/// One state of the whole system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// The rotation row.
    pub row: Rotation,
    /// The registry: [`Cert::Old`], [`Cert::New`].
    pub registry: [CertState; 2],
    /// The device's `current/`.
    pub current: Cert,
    /// The device's `next/`.
    pub next: Option<Next>,
    /// The device's `old/` (kept until the commit is proven).
    pub old: Option<Cert>,
    /// The device's connection, and the certificate it was made with.
    pub conn: Option<Cert>,
    /// The agent crashed and is not restarted yet.
    pub crashed: bool,
    /// Messages in flight to the device (sorted: a multiset).
    pub to_device: Vec<ToDevice>,
    /// Invocations pending (sorted: a multiset).
    pub invocations: Vec<ToCloud>,
    /// Index into the model's instants.
    pub instant: u8,
    /// Sweeps left at this instant.
    pub sweeps: u8,
    /// Confirmation looks left to the agent.
    pub looks: u8,
    /// Keys the device generated.
    pub keys: u8,
    /// Faults spent.
    pub faults: u8,
    /// Support was notified.
    pub notified: bool,
    /// The agent fell back to its previous certificate at least once.
    pub fell_back: bool,
    /// Scratch for one step: the fault it asked for happened (always
    /// false between steps).
    pub fired: bool,
    /// The device has published a `crt_ack` over the new certificate.
    pub acked_new: bool,
}

impl State {
    fn usable(&self, c: Cert) -> bool {
        self.registry[c.index()].usable()
    }

    /// Every certificate whose key the device holds.
    pub fn held(&self) -> Vec<Cert> {
        let mut held = vec![self.current];
        held.extend(self.old);
        if let Some(Next::Cert(_)) = self.next {
            held.push(Cert::New);
        }
        held
    }

    fn now(&self) -> i64 {
        TIMES[usize::from(self.instant)]
    }

    fn send_to_device(&mut self, m: ToDevice) {
        self.to_device.push(m);
        self.to_device.sort();
    }

    fn invoke(&mut self, m: ToCloud) {
        self.invocations.push(m);
        self.invocations.sort();
    }

    /// The device publishes over its connection (QoS 1: once PUBACKed the
    /// rule has invoked the function). No connection, no message.
    fn publish(&mut self, m: impl FnOnce(Cert) -> ToCloud) {
        if let Some(c) = self.conn {
            let m = m(c);
            if m == (ToCloud::Ack {
                principal: Cert::New,
            }) {
                self.acked_new = true;
            }
            self.invoke(m);
        }
    }

    fn remove_certificate(&mut self, c: Cert) {
        self.registry[c.index()] = CertState::default();
        if self.conn == Some(c) {
            // The broker closes the connections of a certificate that goes.
            self.conn = None;
        }
    }

    /// Whether the rotation has settled: closed, no cleanup owed, no
    /// invocation pending.
    pub fn settled(&self) -> bool {
        self.row.state.is_terminal() && !self.row.cleanup_pending && self.invocations.is_empty()
    }

    /// EXPIRED with both certificates kept (and support told so).
    pub fn kept_both(&self) -> bool {
        matches!(
            self.row.state,
            RotationState::Expired {
                new_certificate_kept: true,
                ..
            }
        )
    }
}

/// The model: one thing, one rotation.
#[derive(Clone, Debug)]
pub struct ProtocolModel {
    /// Faults allowed on a path.
    pub max_faults: u8,
    /// Model a device written to the seed alone: it deletes its old key as
    /// soon as its ack is PUBACKed, never probes, never falls back.
    pub seed_device: bool,
}

/// One step of the system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// The device handles a message (`crash`: it crashes at that point,
    /// and the message stays for redelivery).
    Deliver(ToDevice, Option<Point>),
    /// Fault: a message to the device is lost.
    Drop(ToDevice),
    /// Fault: a message to the device is delivered twice.
    Duplicate(ToDevice),
    /// A pending invocation runs and succeeds (on some attempt).
    Invoke(ToCloud),
    /// Fault: an invocation fails on every attempt before its write.
    InvokeLost(ToCloud),
    /// Fault: an invocation writes the row, then fails on every attempt.
    InvokeHalfDone(ToCloud),
    /// Fault: the rule invokes the function twice.
    InvokeTwice(ToCloud),
    /// Fault: the connection drops.
    Disconnect,
    /// The agent reconnects (or restarts after a crash).
    Reconnect(Option<Point>),
    /// The agent's confirmation look (it drops its connection to probe).
    Look,
    /// The scheduled sweeper runs.
    Sweep,
    /// Time passes to the next instant.
    Tick,
}

impl ProtocolModel {
    fn fault(&self, s: &State) -> bool {
        s.faults < self.max_faults
    }

    // ---- the device (device::agent's slot logic) ----------------------

    fn crash_at(&self, s: &mut State, crash: Option<Point>, here: Point) -> bool {
        if self.seed_device && here == Point::CrtErrSent {
            // A seed device that sent `crt_err` has given the new key up:
            // it does not come back to it after a restart.
            return false;
        }
        if crash == Some(here) {
            s.crashed = true;
            s.conn = None;
            s.fired = true;
            return true;
        }
        false
    }

    /// Handles one message; `false` when it crashed (the message stays).
    fn on_message(&self, s: &mut State, m: ToDevice, crash: Option<Point>) -> bool {
        match m {
            ToDevice::CsrReq => {
                // `on_csr_req`: the rotation is finished here when its
                // certificate is current.
                if s.current == Cert::New {
                    return true;
                }
                if let Some(Next::Cert(_)) = s.next {
                    // A certificate kept for this rotation: a new key would
                    // replace it, and its ack may have committed.
                    return true;
                }
                let key = match s.next {
                    Some(Next::Key(k)) => k,
                    _ => {
                        if s.keys >= MAX_KEYS {
                            // Bound of the model: answer with the last key.
                            s.keys
                        } else {
                            s.keys += 1;
                            s.keys
                        }
                    }
                };
                s.next = Some(Next::Key(key));
                if self.crash_at(s, crash, Point::CsrKeyStored) {
                    return false;
                }
                s.publish(|_| ToCloud::CsrRes { key });
                true
            }
            ToDevice::Crt { key } => {
                // `on_crt`.
                if s.current == Cert::New {
                    s.publish(|principal| ToCloud::Ack { principal });
                    return true;
                }
                match s.next {
                    Some(Next::Key(k)) if k == key => {}
                    _ => {
                        s.publish(|principal| ToCloud::Err { principal });
                        return true;
                    }
                }
                s.next = Some(Next::Cert(key));
                if self.crash_at(s, crash, Point::NextStored) {
                    return false;
                }
                self.finish_rotation(s, crash)
            }
        }
    }

    /// `finish_rotation`: connect with the new certificate and ack, then
    /// promote; else back on the current one with `crt_err`.
    fn finish_rotation(&self, s: &mut State, crash: Option<Point>) -> bool {
        s.conn = None;
        // A seed device never drops a new key it has acked over (else no
        // cloud can save it: the ack may commit).
        let transient = crash == Some(Point::NewConnectionFails)
            && s.usable(Cert::New)
            && !(self.seed_device && s.acked_new);
        if transient {
            s.fired = true;
            if !self.seed_device {
                // Not a refusal: the agent keeps the new key, goes back on
                // the current certificate and tries again later.
                self.connect_current(s);
                return true;
            }
        }
        if s.usable(Cert::New) && !transient {
            s.conn = Some(Cert::New);
            s.publish(|principal| ToCloud::Ack { principal });
            if self.crash_at(s, crash, Point::AckSent) {
                return false;
            }
            self.promote(s);
            return true;
        }
        self.connect_current(s);
        if s.current == Cert::New {
            // The current certificate was refused and the new one was
            // committed after all.
            return true;
        }
        s.publish(|principal| ToCloud::Err { principal });
        if self.crash_at(s, crash, Point::CrtErrSent) {
            return false;
        }
        s.next = None;
        true
    }

    fn promote(&self, s: &mut State) {
        s.old = if self.seed_device {
            // The seed: the old key is deleted once the ack is PUBACKed.
            None
        } else {
            Some(s.current)
        };
        s.current = Cert::New;
        s.next = None;
    }

    /// `connect_current`: probe the kept certificate, connect with the
    /// current one (ack again while the commit is unproven), else the
    /// committed `next/`, else fall back to the kept one.
    fn connect_current(&self, s: &mut State) {
        if let Some(o) = s.old
            && !s.usable(o)
        {
            s.old = None;
        }
        if s.usable(s.current) {
            s.conn = Some(s.current);
            if s.old.is_some() && s.current == Cert::New {
                s.publish(|principal| ToCloud::Ack { principal });
            }
            return;
        }
        if let Some(Next::Cert(_)) = s.next
            && s.usable(Cert::New)
        {
            s.conn = Some(Cert::New);
            s.publish(|principal| ToCloud::Ack { principal });
            self.promote(s);
            return;
        }
        if let Some(o) = s.old
            && s.usable(o)
        {
            s.old = Some(s.current);
            s.current = o;
            s.conn = Some(o);
            s.fell_back = true;
            return;
        }
        s.conn = None;
    }

    /// A (re)start or reconnect: resume a stored certificate, else connect.
    fn reconnect(&self, s: &mut State, crash: Option<Point>) -> bool {
        let restart = std::mem::take(&mut s.crashed);
        if restart && let Some(Next::Cert(_)) = s.next {
            return self.finish_rotation(s, crash);
        }
        self.connect_current(s);
        true
    }

    // ---- the cloud (lambdas::handlers around rules::rotation::step) ----

    /// The effects of `step`'s actions on the registry and the device.
    fn run_actions(s: &mut State, actions: &[CloudAction]) {
        for action in actions {
            match action {
                CloudAction::CreateCertificateFromCsr => {}
                CloudAction::AttachOldPoliciesAndThing { new_certificate_id } => {
                    if let Some(c) = Cert::from_id(new_certificate_id) {
                        let r = &mut s.registry[c.index()];
                        if r.exists {
                            r.attached = true;
                            r.active = true;
                        }
                    }
                }
                CloudAction::PublishCrt { .. } | CloudAction::ResendCertificate { .. } => {
                    if let Some(key) = issued_key(&s.row) {
                        s.send_to_device(ToDevice::Crt { key });
                    }
                }
                CloudAction::RetireOldCertificate {
                    old_certificate_id: id,
                }
                | CloudAction::DeleteNewCertificate { certificate_id: id } => {
                    if let Some(c) = Cert::from_id(id) {
                        s.remove_certificate(c);
                    }
                }
                CloudAction::NotifySupport { .. } => s.notified = true,
            }
        }
    }

    /// `handlers::advance`: step, then the conditional write (with
    /// `cleanupPending` when the row closes); a closed row's owed cleanup
    /// runs on the rejection.
    fn advance(s: &mut State, event: &Event) -> Result<Vec<CloudAction>, Rejection> {
        match step(&s.row, event) {
            Ok(t) => {
                if !t.is_unchanged(&s.row) {
                    let mut next = t.next;
                    if next.state.is_terminal() && next.state != s.row.state {
                        next.cleanup_pending = !next.cleanup_actions().is_empty();
                    }
                    s.row = next;
                }
                Ok(t.actions)
            }
            Err(rejection) => {
                if matches!(rejection, Rejection::RotationClosed { .. }) {
                    let owed = s.row.cleanup_actions();
                    let before = s.registry;
                    Self::run_actions(s, &owed);
                    s.row.cleanup_pending = false;
                    // The handler sends the notification the interrupted
                    // invocation did not, when it removed something.
                    if before != s.registry
                        && s.row.state.new_certificate_id().is_some()
                        && !matches!(s.row.state, RotationState::Committed { .. })
                    {
                        s.notified = true;
                    }
                }
                Err(rejection)
            }
        }
    }

    /// Runs an invocation; `half_done`: its actions fail on every attempt
    /// after its write.
    fn invoke(&self, s: &mut State, m: ToCloud, half_done: bool) {
        let now = s.now();
        let finish = |s: &mut State, actions: Vec<CloudAction>| {
            if half_done {
                return;
            }
            Self::run_actions(s, &actions);
            s.row.cleanup_pending = false;
        };
        match m {
            ToCloud::CsrRes { key } => {
                let received = Event::CsrReceived {
                    rotation_id: Some(ROTATION.to_owned()),
                    csr_fingerprint: fingerprint(key),
                    now_ms: now,
                };
                let Ok(actions) = Self::advance(s, &received) else {
                    return;
                };
                if !actions.contains(&CloudAction::CreateCertificateFromCsr) {
                    return finish(s, actions);
                }
                // CreateCertificateFromCsr: INACTIVE, attached to nothing.
                s.registry[Cert::New.index()] = CertState {
                    exists: true,
                    active: false,
                    attached: false,
                };
                let created = Event::CertificateCreated {
                    certificate_id: Cert::New.id().to_owned(),
                    csr_fingerprint: fingerprint(key),
                };
                if let Ok(actions) = Self::advance(s, &created) {
                    finish(s, actions);
                }
            }
            ToCloud::Ack { principal } => {
                let ack = Event::Ack {
                    principal: principal.id().to_owned(),
                    rotation_id: (!self.seed_device).then(|| ROTATION.to_owned()),
                    certificate_id: None,
                    now_ms: now,
                };
                let Ok(actions) = Self::advance(s, &ack) else {
                    return;
                };
                if actions.is_empty() {
                    // A duplicate ack: finish a retirement left undone.
                    let owed = s.row.cleanup_actions();
                    return finish(s, owed);
                }
                finish(s, actions);
            }
            ToCloud::Err { principal } => {
                if s.row.state.is_open() && s.row.state.new_certificate_id() == Some(principal.id())
                {
                    return;
                }
                let error = Event::DeviceError {
                    error: "refused".to_owned(),
                    rotation_id: (!self.seed_device).then(|| ROTATION.to_owned()),
                    now_ms: now,
                };
                if let Ok(actions) = Self::advance(s, &error) {
                    finish(s, actions);
                }
            }
        }
    }

    /// The sweeper, on the one row.
    fn sweep(s: &mut State) {
        let now = s.now();
        if !s.row.is_unsettled() {
            return;
        }
        if s.row.deadline_ms >= now {
            if s.row.resend_mark(now).is_none() {
                return;
            }
            match s.row.state {
                RotationState::Requested => s.send_to_device(ToDevice::CsrReq),
                RotationState::Issued { .. } if s.registry[Cert::New.index()].active => {
                    if let Some(key) = issued_key(&s.row) {
                        s.send_to_device(ToDevice::Crt { key });
                    }
                }
                _ => return,
            }
            s.row.resent_at_ms = Some(now);
            return;
        }
        let unsent = matches!(s.row.state, RotationState::Issued { .. })
            && !s.registry[Cert::New.index()].active;
        let sweep = Event::Sweep {
            now_ms: now,
            new_certificate_unsent: unsent,
        };
        if let Ok(actions) = Self::advance(s, &sweep) {
            Self::run_actions(s, &actions);
            s.row.cleanup_pending = false;
        }
    }
}

fn take<T: PartialEq>(v: &mut Vec<T>, m: T) {
    if let Some(i) = v.iter().position(|x| *x == m) {
        v.remove(i);
    }
}

fn fingerprint(key: u8) -> String {
    format!("key-{key}")
}

fn issued_key(row: &Rotation) -> Option<u8> {
    row.state
        .csr_fingerprint()
        .and_then(|f| f.strip_prefix("key-"))
        .and_then(|k| k.parse().ok())
}

impl Model for ProtocolModel {
    type State = State;
    type Action = Step;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            row: Rotation::requested(ROTATION, THING, "old", CREATED_MS, DEADLINE_MS),
            registry: [
                CertState {
                    exists: true,
                    active: true,
                    attached: true,
                },
                CertState::default(),
            ],
            current: Cert::Old,
            next: None,
            old: None,
            conn: Some(Cert::Old),
            crashed: false,
            to_device: vec![ToDevice::CsrReq],
            invocations: Vec::new(),
            instant: 0,
            sweeps: SWEEPS_PER_INSTANT,
            looks: if self.seed_device { 0 } else { LOOKS },
            keys: 0,
            faults: 0,
            notified: false,
            fell_back: false,
            fired: false,
            acked_new: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Step>) {
        let fault = self.fault(s);
        let mut seen = s.to_device.clone();
        seen.dedup();
        for &m in &seen {
            if s.conn.is_some() && !s.crashed {
                actions.push(Step::Deliver(m, None));
                if fault {
                    for p in POINTS {
                        actions.push(Step::Deliver(m, Some(p)));
                    }
                }
            }
            if fault {
                actions.push(Step::Drop(m));
                actions.push(Step::Duplicate(m));
            }
        }
        let mut pending = s.invocations.clone();
        pending.dedup();
        for &m in &pending {
            actions.push(Step::Invoke(m));
            if fault {
                actions.push(Step::InvokeLost(m));
                actions.push(Step::InvokeHalfDone(m));
                actions.push(Step::InvokeTwice(m));
            }
        }
        if s.conn.is_some() && fault {
            actions.push(Step::Disconnect);
        }
        if s.conn.is_none() || s.crashed {
            actions.push(Step::Reconnect(None));
            if fault {
                for p in [Point::AckSent, Point::CrtErrSent, Point::NewConnectionFails] {
                    actions.push(Step::Reconnect(Some(p)));
                }
            }
        }
        let pending = matches!(s.next, Some(Next::Cert(_)));
        if s.conn.is_some() && !s.crashed && (s.old.is_some() || pending) && s.looks > 0 {
            actions.push(Step::Look);
        }
        if s.sweeps > 0 && s.row.is_unsettled() {
            actions.push(Step::Sweep);
        }
        if usize::from(s.instant) + 1 < TIMES.len() {
            actions.push(Step::Tick);
        }
    }

    fn next_state(&self, last: &State, step: Step) -> Option<State> {
        let mut s = last.clone();
        match step {
            Step::Deliver(m, fault) => {
                if fault.is_some() {
                    s.faults += 1;
                }
                let stays = !self.on_message(&mut s, m, fault);
                if fault.is_some() && !s.fired {
                    // The fault's point was not reached: not a new path.
                    return None;
                }
                if !stays {
                    take(&mut s.to_device, m);
                }
            }
            Step::Drop(m) => {
                s.faults += 1;
                take(&mut s.to_device, m);
            }
            Step::Duplicate(m) => {
                s.faults += 1;
                s.send_to_device(m);
            }
            Step::Invoke(m) => {
                take(&mut s.invocations, m);
                self.invoke(&mut s, m, false);
            }
            Step::InvokeLost(m) => {
                s.faults += 1;
                take(&mut s.invocations, m);
            }
            Step::InvokeHalfDone(m) => {
                s.faults += 1;
                take(&mut s.invocations, m);
                self.invoke(&mut s, m, true);
            }
            Step::InvokeTwice(m) => {
                s.faults += 1;
                s.invoke(m);
            }
            Step::Disconnect => {
                s.faults += 1;
                s.conn = None;
            }
            Step::Reconnect(fault) => {
                if fault.is_some() {
                    s.faults += 1;
                }
                self.reconnect(&mut s, fault);
                if fault.is_some() && !s.fired {
                    return None;
                }
            }
            Step::Look => {
                s.looks -= 1;
                if let Some(Next::Cert(_)) = s.next {
                    // A kept new certificate is tried again.
                    self.finish_rotation(&mut s, None);
                } else {
                    // Reconnect to probe the kept previous certificate.
                    s.conn = None;
                }
            }
            Step::Sweep => {
                s.sweeps -= 1;
                Self::sweep(&mut s);
            }
            Step::Tick => {
                s.instant += 1;
                s.sweeps = SWEEPS_PER_INSTANT;
            }
        }
        s.fired = false;
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            // The device always holds a key whose certificate connects.
            Property::always("never bricked", |_: &ProtocolModel, s: &State| {
                s.held().into_iter().any(|c| s.usable(c))
            }),
            // Once settled: one certificate left active or attached, and
            // held; or both kept, held or reported to support.
            Property::always(
                "nothing orphaned once settled",
                |_: &ProtocolModel, s: &State| {
                    if !s.settled() {
                        return true;
                    }
                    let lingering: Vec<Cert> = [Cert::Old, Cert::New]
                        .into_iter()
                        .filter(|c| s.registry[c.index()].lingering())
                        .collect();
                    let held = s.held();
                    if s.kept_both() {
                        return s.notified && lingering.iter().any(|c| held.contains(c));
                    }
                    lingering.len() == 1 && held.contains(&lingering[0])
                },
            ),
            // Every rotation ends: committed, or closed with support told.
            Property::eventually(
                "progress: the rotation ends",
                |_: &ProtocolModel, s: &State| {
                    s.settled()
                        && (matches!(s.row.state, RotationState::Committed { .. }) || s.notified)
                },
            ),
            // The model reaches the outcomes that matter.
            Property::sometimes("committed", |_: &ProtocolModel, s: &State| {
                matches!(s.row.state, RotationState::Committed { .. }) && s.settled()
            }),
            Property::sometimes("expired keeping both", |_: &ProtocolModel, s: &State| {
                s.kept_both()
            }),
            Property::sometimes("failed", |_: &ProtocolModel, s: &State| {
                matches!(s.row.state, RotationState::Failed { .. })
            }),
            Property::sometimes(
                "the agent fell back to its kept key",
                |m: &ProtocolModel, s: &State| m.seed_device || s.fell_back,
            ),
        ]
    }
}
