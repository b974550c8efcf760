//! The MQTT 3.1.1 broker: one task per connection, a subscription index,
//! authorization with the deployed policies, and the rules engine.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rules::contracts::{CertificateId, JitrRegistrationEvent};
use rules::policy::{self, Action, PolicyContext, PolicyDocument, Request};
use rules::sql::MessageContext;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    Codec, ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Framed;

use crate::registry::{
    CertificateStatus, CertificateView, Registry, certificate_id_of_der, certificate_pem_of_der,
    now_ms,
};
use crate::sink::RuleSink;
use crate::template::Deployment;

type ConnId = u64;

/// Why the broker closed a connection from its side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// Another connection with the same client id took over.
    Takeover,
    /// The certificate is no longer ACTIVE.
    NotActive,
    /// The emulator is shutting down.
    Shutdown,
}

#[derive(Debug)]
pub(crate) enum Command {
    Deliver(Publish),
    Close(CloseReason),
}

/// Who a connection is, for policy evaluation.
#[derive(Debug)]
pub(crate) struct Auth {
    client_id: String,
    certificate_id: String,
    thing_name: Option<String>,
    is_attached: bool,
    certificate_cn: Option<String>,
    policies: Vec<PolicyDocument>,
}

impl Auth {
    fn allows(&self, shared: &Shared, action: Action, resource_name: &str) -> bool {
        let scope = shared.deployment.scope();
        let resource = match action {
            Action::Connect => scope.client_arn(resource_name),
            Action::Subscribe => scope.topicfilter_arn(resource_name),
            _ => scope.topic_arn(resource_name),
        };
        let ctx = PolicyContext {
            client_id: &self.client_id,
            thing_name: self.thing_name.as_deref(),
            is_attached: self.is_attached,
            certificate_cn: self.certificate_cn.as_deref(),
        };
        policy::evaluate(
            &self.policies,
            &Request {
                action,
                resource: &resource,
            },
            &ctx,
        )
        .is_allowed()
    }
}

#[derive(Debug, Clone)]
struct ConnHandle {
    tx: mpsc::UnboundedSender<Command>,
    auth: Arc<Auth>,
}

/// A persistent session (CONNECT with clean session off) whose client is
/// not connected: its subscriptions, and the QoS 1 messages kept for it.
#[derive(Debug)]
struct OfflineSession {
    auth: Arc<Auth>,
    filters: HashMap<String, QoS>,
    queue: std::collections::VecDeque<Publish>,
}

/// Messages kept for one offline persistent session, at most.
const OFFLINE_QUEUE: usize = 100;

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<String, ConnId>,
    offline: HashMap<String, OfflineSession>,
    conns: HashMap<ConnId, ConnHandle>,
    by_cert: HashMap<String, HashSet<ConnId>>,
    exact: HashMap<String, HashMap<ConnId, QoS>>,
    wildcard: HashMap<String, HashMap<ConnId, QoS>>,
}

/// Counters of what the broker did, since it started.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) tls_failures: AtomicU64,
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) jitr_events: AtomicU64,
    pub(crate) publishes_received: AtomicU64,
    pub(crate) publishes_denied: AtomicU64,
    pub(crate) subscriptions_denied: AtomicU64,
    pub(crate) deliveries: AtomicU64,
    pub(crate) rule_invocations: AtomicU64,
    pub(crate) rule_errors: AtomicU64,
    pub(crate) takeovers: AtomicU64,
    pub(crate) closed_not_active: AtomicU64,
    pub(crate) keep_alive_timeouts: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Timeouts and sizes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) handshake_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_packet_bytes: usize,
}

/// Everything the connection tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) registry: Arc<dyn Registry>,
    pub(crate) sink: Arc<dyn RuleSink>,
    pub(crate) deployment: Deployment,
    pub(crate) account_id: String,
    pub(crate) limits: Limits,
    pub(crate) counters: Counters,
    state: Mutex<State>,
    next_conn: AtomicU64,
}

enum Admission {
    Accept(Arc<Auth>),
    Refuse(ConnectReturnCode),
    /// Close without CONNACK (JITR, pending certificates), as IoT Core does.
    Drop,
}

fn min_qos(a: QoS, b: QoS) -> QoS {
    if a == QoS::AtMostOnce || b == QoS::AtMostOnce {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

fn max_qos(a: QoS, b: QoS) -> QoS {
    if a == QoS::AtLeastOnce || b == QoS::AtLeastOnce {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    }
}

impl Shared {
    pub(crate) fn new(
        registry: Arc<dyn Registry>,
        sink: Arc<dyn RuleSink>,
        deployment: Deployment,
        account_id: String,
        limits: Limits,
    ) -> Shared {
        Shared {
            registry,
            sink,
            deployment,
            account_id,
            limits,
            counters: Counters::default(),
            state: Mutex::new(State::default()),
            next_conn: AtomicU64::new(1),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn connected(&self) -> usize {
        self.state().sessions.len()
    }

    /// Delivers a message to the subscribers allowed to receive it and
    /// runs it through the topic rules. Returns the number of deliveries.
    pub(crate) fn dispatch(
        self: &Arc<Self>,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        client_id: &str,
        principal: &str,
    ) -> usize {
        let targets: Vec<(ConnHandle, QoS)> = {
            let state = self.state();
            let mut hits: HashMap<ConnId, QoS> = HashMap::new();
            let mut add = |subs: &HashMap<ConnId, QoS>| {
                for (id, q) in subs {
                    let e = hits.entry(*id).or_insert(*q);
                    *e = max_qos(*e, *q);
                }
            };
            if let Some(subs) = state.exact.get(topic) {
                add(subs);
            }
            for (filter, subs) in &state.wildcard {
                if rules::topic::matches(filter, topic) {
                    add(subs);
                }
            }
            hits.into_iter()
                .filter_map(|(id, q)| state.conns.get(&id).map(|h| (h.clone(), q)))
                .collect()
        };
        if qos == QoS::AtLeastOnce {
            let mut state = self.state();
            for session in state.offline.values_mut() {
                let wanted = session
                    .filters
                    .iter()
                    .any(|(f, q)| *q == QoS::AtLeastOnce && rules::topic::matches(f, topic));
                if wanted
                    && session.queue.len() < OFFLINE_QUEUE
                    && session.auth.allows(self, Action::Receive, topic)
                {
                    session.queue.push_back(Publish::from_bytes(
                        topic,
                        QoS::AtLeastOnce,
                        payload.clone(),
                    ));
                }
            }
        }
        let mut delivered = 0;
        for (handle, sub_qos) in targets {
            if !handle.auth.allows(self, Action::Receive, topic) {
                continue;
            }
            let mut p = Publish::from_bytes(topic, min_qos(qos, sub_qos), payload.clone());
            p.pkid = 0;
            if handle.tx.send(Command::Deliver(p)).is_ok() {
                delivered += 1;
            }
        }
        self.counters
            .deliveries
            .fetch_add(delivered as u64, Ordering::Relaxed);
        self.run_rules(topic, &payload, client_id, principal);
        delivered
    }

    fn run_rules(&self, topic: &str, payload: &[u8], client_id: &str, principal: &str) {
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(payload) else {
            // a binary payload matches no rule of fleetcert's (all SELECT fields)
            return;
        };
        let ctx = MessageContext {
            topic,
            payload: &json,
            client_id,
            principal,
            timestamp_ms: i64::try_from(now_ms()).unwrap_or(i64::MAX),
        };
        match self.deployment.router().route_named(&ctx) {
            Ok(routed) => {
                for (rule, function, event) in routed {
                    bump(&self.counters.rule_invocations);
                    tokio::spawn(self.sink.invoke(rule, function, event));
                }
            }
            Err(e) => {
                bump(&self.counters.rule_errors);
                tracing::warn!(topic, error = %e, "topic rule evaluation failed");
            }
        }
    }

    fn admit(self: &Arc<Self>, cert_id: &str, der: &[u8], client_id: &str) -> Admission {
        let Some(cert) = self.registry.certificate(cert_id) else {
            return self.jitr(cert_id, der);
        };
        match cert.status {
            CertificateStatus::Active => {}
            CertificateStatus::PendingActivation => {
                if let Some(ca) = &cert.ca_certificate_id {
                    self.jitr_event(&cert, ca);
                }
                return Admission::Drop;
            }
            _ => return Admission::Refuse(ConnectReturnCode::NotAuthorized),
        }
        if client_id.is_empty() {
            return Admission::Refuse(ConnectReturnCode::BadClientId);
        }
        let policies = cert
            .policies
            .iter()
            .filter_map(|name| {
                self.deployment.policy(name).cloned().or_else(|| {
                    self.registry
                        .policy_document(name)
                        .and_then(|v| PolicyDocument::from_value(&v).ok())
                })
            })
            .collect();
        let certificate_cn = rules::csr::inspect_certificate(&certificate_pem_of_der(der))
            .ok()
            .and_then(|i| i.subject_cn);
        let auth = Arc::new(Auth {
            client_id: client_id.to_owned(),
            certificate_id: cert_id.to_owned(),
            thing_name: self
                .registry
                .thing_exists(client_id)
                .then(|| client_id.to_owned()),
            is_attached: cert.things.iter().any(|t| t == client_id),
            certificate_cn,
            policies,
        });
        if auth.allows(self, Action::Connect, client_id) {
            Admission::Accept(auth)
        } else {
            Admission::Refuse(ConnectReturnCode::NotAuthorized)
        }
    }

    fn jitr(self: &Arc<Self>, cert_id: &str, der: &[u8]) -> Admission {
        let pem = certificate_pem_of_der(der);
        let issuer = self
            .registry
            .ca_certificates()
            .into_iter()
            .filter(|ca| ca.active && ca.auto_registration)
            .find(|ca| rules::csr::verify_issued_by(&pem, &ca.pem).is_ok());
        let Some(ca) = issuer else {
            return Admission::Refuse(ConnectReturnCode::NotAuthorized);
        };
        match self.registry.register_pending(&pem, &ca.id, now_ms()) {
            Ok(view) => self.jitr_event(&view, &ca.id),
            Err(e) => {
                tracing::warn!(certificate = cert_id, error = %e, "jitr registration failed");
            }
        }
        Admission::Drop
    }

    fn jitr_event(self: &Arc<Self>, cert: &CertificateView, ca_id: &str) {
        let (Ok(certificate_id), Ok(ca_certificate_id)) =
            (CertificateId::new(&cert.id), CertificateId::new(ca_id))
        else {
            return;
        };
        let event = JitrRegistrationEvent {
            certificate_id,
            ca_certificate_id,
            timestamp: now_ms(),
            certificate_status: cert.status.as_str().to_owned(),
            aws_account_id: self.account_id.clone(),
            certificate_registration_timestamp: Some(cert.registered_at_ms),
        };
        let Ok(payload) = serde_json::to_vec(&event) else {
            return;
        };
        bump(&self.counters.jitr_events);
        let topic = rules::topic::jitr_registered_topic(ca_id);
        self.dispatch(&topic, Bytes::from(payload), QoS::AtLeastOnce, "", "");
    }

    /// Registers an admitted connection; an older one with the same client
    /// id is told to close.
    fn register(&self, id: ConnId, handle: ConnHandle) {
        let mut state = self.state();
        let client_id = handle.auth.client_id.clone();
        let cert_id = handle.auth.certificate_id.clone();
        if let Some(old) = state.sessions.insert(client_id, id)
            && let Some(old) = state.conns.get(&old)
        {
            bump(&self.counters.takeovers);
            let _ = old.tx.send(Command::Close(CloseReason::Takeover));
        }
        state.by_cert.entry(cert_id).or_default().insert(id);
        state.conns.insert(id, handle);
    }

    fn unregister(
        &self,
        id: ConnId,
        auth: &Arc<Auth>,
        filters: &HashSet<String>,
        persistent: bool,
    ) {
        let mut state = self.state();
        if state.sessions.get(&auth.client_id) == Some(&id) {
            state.sessions.remove(&auth.client_id);
            if persistent {
                let kept: HashMap<String, QoS> = filters
                    .iter()
                    .map(|f| {
                        let q = state
                            .exact
                            .get(f)
                            .or_else(|| state.wildcard.get(f))
                            .and_then(|subs| subs.get(&id).copied())
                            .unwrap_or(QoS::AtMostOnce);
                        (f.clone(), q)
                    })
                    .collect();
                state.offline.insert(
                    auth.client_id.clone(),
                    OfflineSession {
                        auth: auth.clone(),
                        filters: kept,
                        queue: std::collections::VecDeque::new(),
                    },
                );
            }
        }
        if let Some(set) = state.by_cert.get_mut(&auth.certificate_id) {
            set.remove(&id);
            if set.is_empty() {
                state.by_cert.remove(&auth.certificate_id);
            }
        }
        state.conns.remove(&id);
        for f in filters {
            remove_sub(&mut state, f, id);
        }
    }

    /// Takes the client's offline session: discarded for a clean session,
    /// returned for a persistent one.
    fn take_offline(&self, client_id: &str, clean_session: bool) -> Option<OfflineSession> {
        let session = self.state().offline.remove(client_id);
        if clean_session { None } else { session }
    }

    fn subscribe(&self, id: ConnId, filter: &str, qos: QoS) {
        let mut state = self.state();
        let index = if filter.contains(['+', '#']) {
            &mut state.wildcard
        } else {
            &mut state.exact
        };
        index.entry(filter.to_owned()).or_default().insert(id, qos);
    }

    fn unsubscribe(&self, id: ConnId, filter: &str) {
        remove_sub(&mut self.state(), filter, id);
    }

    /// Closes every connection of a certificate.
    pub(crate) fn close_certificate(&self, cert_id: &str, reason: CloseReason) {
        let state = self.state();
        for id in state.by_cert.get(cert_id).into_iter().flatten() {
            if let Some(h) = state.conns.get(id) {
                let _ = h.tx.send(Command::Close(reason));
            }
        }
    }

    /// Closes every connection whose certificate is no longer ACTIVE.
    pub(crate) fn recheck_all(&self) {
        let certs: Vec<String> = self.state().by_cert.keys().cloned().collect();
        for cert in certs {
            if !self.is_active(&cert) {
                self.close_certificate(&cert, CloseReason::NotActive);
            }
        }
    }

    /// Closes the connections of a certificate unless the registry has it
    /// ACTIVE now: a status change is acted on only if it still holds when
    /// it is read (a certificate created inactive and activated at once
    /// must not lose the connection it made in between).
    pub(crate) fn close_if_not_active(&self, cert_id: &str) {
        if !self.is_active(cert_id) {
            self.close_certificate(cert_id, CloseReason::NotActive);
        }
    }

    fn is_active(&self, cert_id: &str) -> bool {
        self.registry
            .certificate(cert_id)
            .is_some_and(|c| c.status == CertificateStatus::Active)
    }

    /// Closes every connection.
    pub(crate) fn close_all(&self) {
        for h in self.state().conns.values() {
            let _ = h.tx.send(Command::Close(CloseReason::Shutdown));
        }
    }
}

fn remove_sub(state: &mut State, filter: &str, id: ConnId) {
    for index in [&mut state.exact, &mut state.wildcard] {
        if let Some(subs) = index.get_mut(filter) {
            subs.remove(&id);
            if subs.is_empty() {
                index.remove(filter);
            }
        }
    }
}

/// Follows the registry's status changes and closes the connections of
/// certificates that stop being ACTIVE.
pub(crate) async fn watch_status(
    shared: Arc<Shared>,
    rx: broadcast::Receiver<crate::registry::StatusChange>,
) {
    follow_changes(
        rx,
        |change| {
            if change.status != CertificateStatus::Active {
                shared.close_if_not_active(&change.certificate_id);
            }
        },
        || shared.recheck_all(),
    )
    .await;
}

/// Feeds each change of `rx` to `on_change` until the sender is gone; when
/// the receiver lagged (changes were lost), `on_lag` re-checks everything
/// instead.
pub(crate) async fn follow_changes<C: Clone>(
    mut rx: broadcast::Receiver<C>,
    mut on_change: impl FnMut(C),
    mut on_lag: impl FnMut(),
) {
    loop {
        match rx.recv().await {
            Ok(change) => on_change(change),
            Err(broadcast::error::RecvError::Lagged(_)) => on_lag(),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn close<S: AsyncRead + AsyncWrite + Unpin>(mut framed: Framed<S, Codec>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = framed.flush().await;
        let _ = framed.get_mut().shutdown().await;
    })
    .await;
}

/// Serves one TCP connection to its end.
pub(crate) async fn serve(shared: Arc<Shared>, acceptor: TlsAcceptor, tcp: TcpStream) {
    let limits = shared.limits;
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        _ => {
            bump(&shared.counters.tls_failures);
            return;
        }
    };
    let Some(der) = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
    else {
        bump(&shared.counters.tls_failures);
        return;
    };
    let cert_id = certificate_id_of_der(&der);
    let mut framed = Framed::new(
        tls,
        Codec {
            max_incoming_size: limits.max_packet_bytes,
            max_outgoing_size: limits.max_packet_bytes,
        },
    );
    let connect = match tokio::time::timeout(limits.connect_timeout, framed.next()).await {
        Ok(Some(Ok(Packet::Connect(c)))) => c,
        _ => {
            bump(&shared.counters.connections_refused);
            close(framed).await;
            return;
        }
    };
    let auth = match shared.admit(&cert_id, &der, &connect.client_id) {
        Admission::Accept(auth) => auth,
        Admission::Refuse(code) => {
            bump(&shared.counters.connections_refused);
            let _ = framed
                .send(Packet::ConnAck(ConnAck::new(code, false)))
                .await;
            close(framed).await;
            return;
        }
        Admission::Drop => {
            bump(&shared.counters.connections_refused);
            close(framed).await;
            return;
        }
    };
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let tx_self = tx.clone();
    shared.register(
        id,
        ConnHandle {
            tx,
            auth: auth.clone(),
        },
    );
    let mut filters = HashSet::new();
    let restored = shared.take_offline(&auth.client_id, connect.clean_session);
    let session_present = restored.is_some();
    if let Some(session) = restored {
        for (f, q) in &session.filters {
            if auth.allows(&shared, Action::Subscribe, f) {
                shared.subscribe(id, f, *q);
                filters.insert(f.clone());
            }
        }
        for p in session.queue {
            if auth.allows(&shared, Action::Receive, &p.topic) {
                let _ = tx_self.send(Command::Deliver(p));
            }
        }
    }
    // a status change between admission and registration: the watcher may
    // have missed this connection, so look again
    if shared.is_active(&cert_id)
        && framed
            .send(Packet::ConnAck(ConnAck::new(
                ConnectReturnCode::Success,
                session_present,
            )))
            .await
            .is_ok()
    {
        bump(&shared.counters.connections_accepted);
        session(
            &shared,
            id,
            &auth,
            connect.keep_alive,
            &mut framed,
            &mut rx,
            &mut filters,
        )
        .await;
    } else {
        bump(&shared.counters.connections_refused);
    }
    drop(tx_self);
    shared.unregister(id, &auth, &filters, !connect.clean_session);
    close(framed).await;
}

enum Flow {
    Continue,
    Close,
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    id: ConnId,
    auth: &Auth,
    keep_alive_s: u16,
    framed: &mut Framed<S, Codec>,
    rx: &mut mpsc::UnboundedReceiver<Command>,
    filters: &mut HashSet<String>,
) {
    // MQTT 3.1.1 §3.1.2.10: one and a half keep-alive periods
    let keep_alive =
        (keep_alive_s > 0).then(|| Duration::from_millis(u64::from(keep_alive_s) * 1500));
    let mut deadline = Instant::now() + keep_alive.unwrap_or(Duration::from_secs(86_400));
    let mut next_pkid: u16 = 0;
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Command::Deliver(mut p)) => {
                    if p.qos == QoS::AtLeastOnce {
                        next_pkid = next_pkid.checked_add(1).unwrap_or(1);
                        p.pkid = next_pkid;
                    }
                    if framed.send(Packet::Publish(p)).await.is_err() {
                        return;
                    }
                }
                Some(Command::Close(reason)) => {
                    if reason == CloseReason::NotActive {
                        bump(&shared.counters.closed_not_active);
                    }
                    return;
                }
                None => return,
            },
            packet = framed.next() => {
                let Some(Ok(packet)) = packet else { return };
                if let Some(ka) = keep_alive {
                    deadline = Instant::now() + ka;
                }
                match handle(shared, id, auth, packet, framed, filters).await {
                    Flow::Continue => {}
                    Flow::Close => return,
                }
            }
            () = tokio::time::sleep_until(deadline), if keep_alive.is_some() => {
                bump(&shared.counters.keep_alive_timeouts);
                return;
            }
        }
    }
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    id: ConnId,
    auth: &Auth,
    packet: Packet,
    framed: &mut Framed<S, Codec>,
    filters: &mut HashSet<String>,
) -> Flow {
    let sent = match packet {
        Packet::Publish(p) => {
            bump(&shared.counters.publishes_received);
            // IoT Core supports QoS 0 and 1 only; a bad topic or a denied
            // publish closes the connection, as IoT Core does
            if p.qos == QoS::ExactlyOnce
                || rules::topic::validate_topic_name(&p.topic).is_err()
                || !auth.allows(shared, Action::Publish, &p.topic)
            {
                bump(&shared.counters.publishes_denied);
                return Flow::Close;
            }
            shared.dispatch(
                &p.topic,
                p.payload,
                p.qos,
                &auth.client_id,
                &auth.certificate_id,
            );
            if p.qos == QoS::AtLeastOnce {
                framed.send(Packet::PubAck(PubAck::new(p.pkid))).await
            } else {
                Ok(())
            }
        }
        Packet::Subscribe(s) => {
            let mut codes = Vec::with_capacity(s.filters.len());
            for f in &s.filters {
                let ok = rules::topic::validate_topic_filter(&f.path).is_ok()
                    && auth.allows(shared, Action::Subscribe, &f.path);
                if ok {
                    let qos = min_qos(f.qos, QoS::AtLeastOnce);
                    shared.subscribe(id, &f.path, qos);
                    filters.insert(f.path.clone());
                    codes.push(SubscribeReasonCode::Success(qos));
                } else {
                    bump(&shared.counters.subscriptions_denied);
                    codes.push(SubscribeReasonCode::Failure);
                }
            }
            framed
                .send(Packet::SubAck(SubAck::new(s.pkid, codes)))
                .await
        }
        Packet::Unsubscribe(u) => {
            for t in &u.topics {
                shared.unsubscribe(id, t);
                filters.remove(t);
            }
            framed.send(Packet::UnsubAck(UnsubAck::new(u.pkid))).await
        }
        Packet::PingReq => framed.send(Packet::PingResp).await,
        Packet::PubAck(_) => Ok(()),
        // DISCONNECT, a second CONNECT, QoS 2 flows, server-side packets
        _ => return Flow::Close,
    };
    if sent.is_ok() {
        Flow::Continue
    } else {
        Flow::Close
    }
}
