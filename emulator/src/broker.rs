//! The MQTT 3.1.1 broker: one task per connection, a subscription index,
//! authorization with the deployed policies, the rules engine, and AWS IoT
//! Core's per-connection limits ([`MqttLimits`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rules::contracts::{CertificateId, JitrRegistrationEvent};
use rules::functions::Function;
use rules::policy::{self, Action, PolicyContext, PolicyDocument, Request};
use rules::sql::MessageContext;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    Codec, ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Framed;

use crate::limits::{Limit, MqttLimits};
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
    /// Its send queue is full: the client does not read.
    SendQueueFull,
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
        let deployment = shared.deployment();
        let scope = deployment.scope();
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

/// What other tasks hold of a connection: its bounded send queue, the
/// switch that closes it, and who it is.
#[derive(Debug, Clone)]
struct ConnHandle {
    tx: mpsc::Sender<Publish>,
    close: Arc<watch::Sender<Option<CloseReason>>>,
    auth: Arc<Auth>,
}

impl ConnHandle {
    fn close(&self, reason: CloseReason) {
        self.close.send_replace(Some(reason));
    }
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
    pub(crate) publishes_throttled: AtomicU64,
    pub(crate) rule_actions_dropped: AtomicU64,
    pub(crate) refusals: [AtomicU64; Limit::ALL.len()],
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Timeouts and sizes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) handshake_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) mqtt: MqttLimits,
}

impl Limits {
    /// What the codec reads at most: the largest payload and 64 KiB for
    /// topic and headers. A larger packet is refused before it is read
    /// whole; one in between is read and refused with its payload's size.
    fn max_packet_bytes(&self) -> usize {
        self.mqtt.max_payload_bytes.saturating_add(64 * 1024)
    }
}

/// Everything the connection tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) registry: Arc<dyn Registry>,
    /// Replaced whole by a redeploy ([`Shared::redeploy`]).
    deployment: std::sync::RwLock<Arc<Deployment>>,
    pub(crate) account_id: String,
    pub(crate) limits: Limits,
    pub(crate) counters: Counters,
    sink: Arc<dyn RuleSink>,
    /// Rule actions queued or running: at most `rule_queue +
    /// rule_concurrency` (a permit per action, released when it ends).
    rule_slots: Arc<Semaphore>,
    /// Rule actions running: at most `rule_concurrency`.
    rule_running: Arc<Semaphore>,
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
    /// The deployment enforced now.
    pub(crate) fn deployment(&self) -> Arc<Deployment> {
        self.deployment
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Enforces `deployment` from the next message and connection on.
    pub(crate) fn redeploy(&self, deployment: Deployment) {
        *self
            .deployment
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(deployment);
    }

    pub(crate) fn new(
        registry: Arc<dyn Registry>,
        sink: Arc<dyn RuleSink>,
        deployment: Deployment,
        account_id: String,
        limits: Limits,
    ) -> Shared {
        let running = limits.mqtt.rule_concurrency.max(1);
        Shared {
            registry,
            deployment: std::sync::RwLock::new(Arc::new(deployment)),
            account_id,
            limits,
            counters: Counters::default(),
            sink,
            rule_slots: Arc::new(Semaphore::new(
                limits.mqtt.rule_queue.saturating_add(running),
            )),
            rule_running: Arc::new(Semaphore::new(running)),
            state: Mutex::new(State::default()),
            next_conn: AtomicU64::new(1),
        }
    }

    /// Queues one rule action: it runs when one of the
    /// [`MqttLimits::rule_concurrency`] slots is free. Never waits; `false`
    /// when [`MqttLimits::rule_queue`] actions already wait.
    fn queue_rule_action(&self, rule: &str, function: Function, event: Value) -> bool {
        let Ok(queued) = self.rule_slots.clone().try_acquire_owned() else {
            return false;
        };
        let running = self.rule_running.clone();
        let invocation = self.sink.invoke(rule, function, event);
        tokio::spawn(async move {
            let Ok(_running) = running.acquire_owned().await else {
                return;
            };
            invocation.await;
            drop(queued);
        });
        true
    }

    /// Counts a refusal by `limit`; the caller logs it.
    fn refused(&self, limit: Limit) {
        bump(&self.counters.refusals[limit.index()]);
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
            match handle.tx.try_send(p) {
                Ok(()) => delivered += 1,
                // already told to close: refused and logged once
                Err(mpsc::error::TrySendError::Full(_)) if handle.close.borrow().is_some() => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.refused(Limit::SendQueue);
                    tracing::warn!(
                        limit = %Limit::SendQueue,
                        client_id = %handle.auth.client_id,
                        max = self.limits.mqtt.send_queue,
                        topic,
                        "subscriber does not read: send queue full, disconnecting it"
                    );
                    handle.close(CloseReason::SendQueueFull);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
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
        let deployment = self.deployment();
        match deployment.router().route_named(&ctx) {
            Ok(routed) => {
                for (rule, function, event) in routed {
                    // never wait here: the caller is a connection's reader
                    if self.queue_rule_action(rule, function, event) {
                        bump(&self.counters.rule_invocations);
                    } else {
                        bump(&self.counters.rule_actions_dropped);
                        self.refused(Limit::RuleActionQueue);
                        tracing::warn!(
                            limit = %Limit::RuleActionQueue,
                            max = self.limits.mqtt.rule_queue,
                            topic,
                            client_id,
                            function = function.name(),
                            "rule action dropped: the queue is full"
                        );
                    }
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
        let max = self.limits.mqtt.max_client_id_bytes;
        if client_id.len() > max {
            self.refused(Limit::ClientIdSize);
            tracing::warn!(
                limit = %Limit::ClientIdSize,
                len = client_id.len(),
                max,
                certificate = cert_id,
                "connect refused: client id too long"
            );
            return Admission::Refuse(ConnectReturnCode::BadClientId);
        }
        let deployment = self.deployment();
        let policies = cert
            .policies
            .iter()
            .filter_map(|name| {
                deployment.policy(name).cloned().or_else(|| {
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
            old.close(CloseReason::Takeover);
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
                h.close(reason);
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
            h.close(CloseReason::Shutdown);
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

/// Writes one packet within [`MqttLimits::write_timeout`]; `false` when the
/// connection is to close (write failed, or the client stopped reading).
async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    client_id: &str,
    framed: &mut Framed<S, Codec>,
    packet: Packet,
) -> bool {
    let timeout = shared.limits.mqtt.write_timeout;
    match tokio::time::timeout(timeout, framed.send(packet)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            shared.refused(Limit::WriteTimeout);
            tracing::warn!(
                limit = %Limit::WriteTimeout,
                client_id,
                timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                "client does not read: write timed out, disconnecting it"
            );
            false
        }
    }
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
            max_incoming_size: limits.max_packet_bytes(),
            max_outgoing_size: limits.max_packet_bytes(),
        },
    );
    let connect = match tokio::time::timeout(limits.connect_timeout, framed.next()).await {
        Ok(Some(Ok(Packet::Connect(c)))) => c,
        Ok(Some(Err(e))) => {
            bump(&shared.counters.connections_refused);
            decode_failed(&shared, &cert_id, &e);
            close(framed).await;
            return;
        }
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
            let _ = send(
                &shared,
                &connect.client_id,
                &mut framed,
                Packet::ConnAck(ConnAck::new(code, false)),
            )
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
    let (tx, mut rx) = mpsc::channel(limits.mqtt.send_queue.max(1));
    let (close_tx, mut close_rx) = watch::channel(None);
    let tx_self = tx.clone();
    shared.register(
        id,
        ConnHandle {
            tx,
            close: Arc::new(close_tx),
            auth: auth.clone(),
        },
    );
    let mut conn = ConnState {
        filters: HashSet::new(),
        window: RateWindow::default(),
    };
    let restored = shared.take_offline(&auth.client_id, connect.clean_session);
    let session_present = restored.is_some();
    if let Some(session) = restored {
        for (f, q) in &session.filters {
            if auth.allows(&shared, Action::Subscribe, f) {
                shared.subscribe(id, f, *q);
                conn.filters.insert(f.clone());
            }
        }
        for p in session.queue {
            // the offline queue is shorter than the send queue: at most the
            // tail of a queue a lowered `send_queue` cannot hold is dropped
            if auth.allows(&shared, Action::Receive, &p.topic) && tx_self.try_send(p).is_err() {
                break;
            }
        }
    }
    // a status change between admission and registration: the watcher may
    // have missed this connection, so look again
    if shared.is_active(&cert_id)
        && send(
            &shared,
            &auth.client_id,
            &mut framed,
            Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, session_present)),
        )
        .await
    {
        bump(&shared.counters.connections_accepted);
        let keep_alive = limits.mqtt.keep_alive(connect.keep_alive);
        session(
            &shared,
            id,
            &auth,
            keep_alive,
            &mut framed,
            (&mut rx, &mut close_rx),
            &mut conn,
        )
        .await;
    } else {
        bump(&shared.counters.connections_refused);
    }
    drop(tx_self);
    shared.unregister(id, &auth, &conn.filters, !connect.clean_session);
    close(framed).await;
}

/// Logs a packet the codec refused; one over the size limit names it.
fn decode_failed(shared: &Shared, who: &str, e: &rumqttc::mqttbytes::Error) {
    if let rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size) = e {
        shared.refused(Limit::MessageSize);
        tracing::warn!(
            limit = %Limit::MessageSize,
            size,
            max = shared.limits.max_packet_bytes(),
            client = who,
            "packet too large: connection closed"
        );
    } else {
        tracing::debug!(client = who, error = %e, "malformed packet: connection closed");
    }
}

/// Per-connection state the packet handler keeps.
struct ConnState {
    /// The topic filters the connection holds.
    filters: HashSet<String>,
    /// Publishes counted in the current one-second window.
    window: RateWindow,
}

/// A fixed one-second window counting PUBLISH packets.
#[derive(Default)]
struct RateWindow {
    started: Option<Instant>,
    count: u32,
}

impl RateWindow {
    /// Counts one publish; `Err(first)` when it is over `per_second`,
    /// `first` telling whether it is the window's first one over.
    fn admit(&mut self, now: Instant, per_second: u32) -> Result<(), bool> {
        match self.started {
            Some(s) if now.saturating_duration_since(s) < Duration::from_secs(1) => {}
            _ => {
                self.started = Some(now);
                self.count = 0;
            }
        }
        self.count = self.count.saturating_add(1);
        if self.count <= per_second {
            Ok(())
        } else {
            Err(self.count == per_second.saturating_add(1))
        }
    }
}

enum Flow {
    Continue,
    Close,
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    id: ConnId,
    auth: &Auth,
    keep_alive: Duration,
    framed: &mut Framed<S, Codec>,
    (rx, close_rx): (
        &mut mpsc::Receiver<Publish>,
        &mut watch::Receiver<Option<CloseReason>>,
    ),
    conn: &mut ConnState,
) {
    // MQTT 3.1.1 §3.1.2.10 and AWS IoT Core: one and a half keep-alive periods
    let idle = keep_alive.saturating_mul(3) / 2;
    let mut deadline = Instant::now() + idle;
    let mut next_pkid: u16 = 0;
    loop {
        tokio::select! {
            changed = close_rx.changed() => {
                let reason = *close_rx.borrow_and_update();
                if changed.is_err() || reason.is_some() {
                    if reason == Some(CloseReason::NotActive) {
                        bump(&shared.counters.closed_not_active);
                    }
                    return;
                }
            }
            p = rx.recv() => match p {
                Some(mut p) => {
                    if p.qos == QoS::AtLeastOnce {
                        next_pkid = next_pkid.checked_add(1).unwrap_or(1);
                        p.pkid = next_pkid;
                    }
                    if !send(shared, &auth.client_id, framed, Packet::Publish(p)).await {
                        return;
                    }
                }
                None => return,
            },
            packet = framed.next() => {
                let packet = match packet {
                    Some(Ok(packet)) => packet,
                    Some(Err(e)) => {
                        decode_failed(shared, &auth.client_id, &e);
                        return;
                    }
                    None => return,
                };
                deadline = Instant::now() + idle;
                match handle(shared, id, auth, packet, framed, conn).await {
                    Flow::Continue => {}
                    Flow::Close => return,
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                bump(&shared.counters.keep_alive_timeouts);
                tracing::info!(
                    client_id = %auth.client_id,
                    keep_alive_s = keep_alive.as_secs(),
                    "keep-alive timeout: nothing received for 1.5 keep-alive periods"
                );
                return;
            }
        }
    }
}

/// Checks a PUBLISH against the limits; `Err(flow)` when it goes no further
/// (throttled: dropped, the connection stays; anything else: closed).
fn check_publish(
    shared: &Shared,
    auth: &Auth,
    p: &Publish,
    conn: &mut ConnState,
) -> Result<(), Flow> {
    let limits = &shared.limits.mqtt;
    let client_id = auth.client_id.as_str();
    if p.payload.len() > limits.max_payload_bytes {
        shared.refused(Limit::MessageSize);
        tracing::warn!(
            limit = %Limit::MessageSize,
            client_id,
            topic = %p.topic,
            size = p.payload.len(),
            max = limits.max_payload_bytes,
            "publish refused: payload too large, connection closed"
        );
        return Err(Flow::Close);
    }
    if let Some((limit, measure)) = limits.topic_violation(&p.topic) {
        shared.refused(limit);
        tracing::warn!(
            limit = %limit,
            client_id,
            measure,
            "publish refused: topic over the limit, connection closed"
        );
        return Err(Flow::Close);
    }
    if let Err(first) = conn
        .window
        .admit(Instant::now(), limits.publishes_per_second)
    {
        bump(&shared.counters.publishes_throttled);
        shared.refused(Limit::PublishRate);
        if first {
            tracing::warn!(
                limit = %Limit::PublishRate,
                client_id,
                max = limits.publishes_per_second,
                "publish throttled: over the rate, dropped until the second ends"
            );
        } else {
            tracing::debug!(limit = %Limit::PublishRate, client_id, "publish throttled");
        }
        return Err(Flow::Continue);
    }
    Ok(())
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    id: ConnId,
    auth: &Auth,
    packet: Packet,
    framed: &mut Framed<S, Codec>,
    conn: &mut ConnState,
) -> Flow {
    let client_id = auth.client_id.as_str();
    let limits = &shared.limits.mqtt;
    let reply = match packet {
        Packet::Publish(p) => {
            bump(&shared.counters.publishes_received);
            if let Err(flow) = check_publish(shared, auth, &p, conn) {
                if matches!(flow, Flow::Close) {
                    bump(&shared.counters.publishes_denied);
                }
                return flow;
            }
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
            (p.qos == QoS::AtLeastOnce).then(|| Packet::PubAck(PubAck::new(p.pkid)))
        }
        Packet::Subscribe(s) => {
            if s.filters.len() > limits.max_filters_per_subscribe {
                shared.refused(Limit::FiltersPerSubscribe);
                tracing::warn!(
                    limit = %Limit::FiltersPerSubscribe,
                    client_id,
                    filters = s.filters.len(),
                    max = limits.max_filters_per_subscribe,
                    "subscribe refused: too many filters, connection closed"
                );
                return Flow::Close;
            }
            let mut codes = Vec::with_capacity(s.filters.len());
            for f in &s.filters {
                let over_count = !conn.filters.contains(&f.path)
                    && conn.filters.len() >= limits.max_subscriptions_per_connection;
                let violation = if over_count {
                    Some((
                        Limit::SubscriptionsPerConnection,
                        limits.max_subscriptions_per_connection,
                    ))
                } else {
                    limits.topic_violation(&f.path)
                };
                if let Some((limit, measure)) = violation {
                    shared.refused(limit);
                    bump(&shared.counters.subscriptions_denied);
                    tracing::warn!(
                        limit = %limit,
                        client_id,
                        filter = %f.path,
                        measure,
                        "subscription refused (SUBACK failure)"
                    );
                    codes.push(SubscribeReasonCode::Failure);
                    continue;
                }
                let ok = rules::topic::validate_topic_filter(&f.path).is_ok()
                    && auth.allows(shared, Action::Subscribe, &f.path);
                if ok {
                    let qos = min_qos(f.qos, QoS::AtLeastOnce);
                    shared.subscribe(id, &f.path, qos);
                    conn.filters.insert(f.path.clone());
                    codes.push(SubscribeReasonCode::Success(qos));
                } else {
                    bump(&shared.counters.subscriptions_denied);
                    codes.push(SubscribeReasonCode::Failure);
                }
            }
            Some(Packet::SubAck(SubAck::new(s.pkid, codes)))
        }
        Packet::Unsubscribe(u) => {
            for t in &u.topics {
                shared.unsubscribe(id, t);
                conn.filters.remove(t);
            }
            Some(Packet::UnsubAck(UnsubAck::new(u.pkid)))
        }
        Packet::PingReq => Some(Packet::PingResp),
        Packet::PubAck(_) => None,
        // DISCONNECT, a second CONNECT, QoS 2 flows, server-side packets
        _ => return Flow::Close,
    };
    match reply {
        Some(packet) => {
            if send(shared, client_id, framed, packet).await {
                Flow::Continue
            } else {
                Flow::Close
            }
        }
        None => Flow::Continue,
    }
}
