//! The device agent: one MQTT connection over mutual TLS, the rotation
//! protocol's device half, JITR first-connect back-off and resume after a
//! restart.
//!
//! One [`Agent`] is one tokio task with no global state, so a process can
//! run thousands; what happens is reported through an [`EventSink`].

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rules::contracts::{
    self, CertificateId, ClientId, Contract, CrtAck, CrtErr, CsrPem, CsrRes, ErrorText,
    KeyAlgorithm, Message, RotationId,
};
pub use rules::policy_check::Subscription;
use rules::topic::{MANAGEMENT_PREFIX, MessageKind, management_topic, parse_management_topic};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS,
    SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use rustls::RootCertStore;

use crate::backoff::Backoff;
use crate::keys::{self, KeyError};
use crate::slots::{FaultHook, Slot, SlotError, SlotMeta, Slots};

/// How an agent reaches its broker and where it keeps its certificates.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The thing name, used as MQTT client id (and CSR common name unless
    /// [`csr_common_name`](Self::csr_common_name) is set).
    pub thing: ClientId,
    /// The subject CN of the CSRs, when it is not the thing name (firmware
    /// whose certificates carry a serial number, say).
    pub csr_common_name: Option<String>,
    /// One filter per message the cloud sends (fleetcert's policy allows
    /// those only), or `management/topic/<thing>/#` (firmware on its own
    /// policy that allows the wildcard; the agent then sees its own
    /// messages come back and ignores them).
    pub subscription: Subscription,
    /// Broker host name or IP address (also the TLS server name).
    pub host: String,
    /// Broker port (MQTT over TLS).
    pub port: u16,
    /// PEM bundle of the CAs that sign the broker's server certificate.
    pub server_ca_pem: String,
    /// The directory of the certificate slots.
    pub state_dir: PathBuf,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Bound on TCP + TLS + CONNACK of one connection attempt.
    pub connect_timeout: Duration,
    /// Bound on waiting for a PUBACK or SUBACK.
    pub ack_timeout: Duration,
    /// Retry policy when connecting with the current certificate (first
    /// connect, JITR, reconnects, rollback).
    pub backoff: Backoff,
    /// The key generated when `csr_req` names none.
    pub key_algorithm: KeyAlgorithm,
    /// While the previous certificate is kept (a rotation acked, its commit
    /// not yet proven), how long until the agent reconnects to look for the
    /// proof: the old certificate refused. Doubles after each look, up to
    /// 16 times this. Every reconnect also sends `crt_ack` again over the
    /// current certificate, so a commit that never landed gets another
    /// chance.
    pub confirm_every: Duration,
}

impl AgentConfig {
    /// A configuration with the defaults: keep-alive 30 s, connect timeout
    /// 10 s, ack timeout 10 s, [`Backoff::default`], P-256 keys.
    pub fn new(
        thing: ClientId,
        host: impl Into<String>,
        port: u16,
        server_ca_pem: impl Into<String>,
        state_dir: impl Into<PathBuf>,
    ) -> AgentConfig {
        AgentConfig {
            thing,
            csr_common_name: None,
            subscription: Subscription::Exact,
            host: host.into(),
            port,
            server_ca_pem: server_ca_pem.into(),
            state_dir: state_dir.into(),
            keep_alive: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            key_algorithm: KeyAlgorithm::EcP256,
            confirm_every: Duration::from_secs(60),
        }
    }
}

/// Something that happened in an agent, for progress displays, latency
/// statistics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentEvent {
    /// Connected and subscribed with the current certificate.
    Connected {
        /// The certificate used.
        certificate_id: String,
        /// Attempts this took (1 = first try).
        attempts: u32,
    },
    /// A connection attempt with the current certificate failed (expected
    /// while a JITR certificate is pending activation).
    ConnectFailed {
        /// 1-based attempt number.
        attempt: u32,
        /// Why it failed.
        reason: String,
        /// The back-off before the next attempt; `None` when giving up.
        retry_in: Option<Duration>,
    },
    /// The connection was lost.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// A `csr_res` was published.
    CsrSent {
        /// The rotation answered.
        rotation_id: Option<RotationId>,
        /// The new key's algorithm.
        key_algorithm: KeyAlgorithm,
        /// The key pending from an earlier `csr_req` of the same rotation
        /// was reused.
        reused_key: bool,
    },
    /// A `crt` arrived.
    CertificateReceived {
        /// Its rotation.
        rotation_id: RotationId,
        /// The certificate's id.
        certificate_id: CertificateId,
    },
    /// A certificate left in `next/` by an earlier run is being tried.
    Resuming {
        /// Its rotation.
        rotation_id: Option<RotationId>,
    },
    /// `crt_ack` was sent on the new certificate and it is now current; the
    /// previous one is kept until the commit is proven
    /// ([`AgentEvent::CommitConfirmed`]).
    Rotated {
        /// The rotation.
        rotation_id: Option<RotationId>,
        /// The new current certificate.
        certificate_id: String,
        /// Time since the `csr_req` (or, without one in this run, the `crt`).
        latency: Option<Duration>,
    },
    /// The new certificate could not connect: `crt_err` was sent on the
    /// current one, which stays.
    RolledBack {
        /// The rotation.
        rotation_id: Option<RotationId>,
        /// Why the new certificate failed.
        reason: String,
    },
    /// A `crt` was refused without trying it (not for the pending key, id
    /// mismatch, no pending key): `crt_err` was sent.
    CertificateRefused {
        /// The rotation.
        rotation_id: RotationId,
        /// Why.
        reason: String,
    },
    /// The previous certificate was refused while the current one connects:
    /// the cloud committed the rotation, and the previous key is deleted.
    CommitConfirmed {
        /// The current certificate.
        certificate_id: String,
    },
    /// The current certificate was refused and the previous one connects
    /// (the cloud removed the new certificate): the previous one is current
    /// again, the refused one kept until it is refused once more.
    FellBack {
        /// The certificate connected with now.
        certificate_id: String,
        /// Why the other one failed.
        reason: String,
    },
    /// A `crt` for the certificate already current: `crt_ack` re-sent.
    DuplicateCertificate {
        /// The certificate.
        certificate_id: String,
    },
    /// An inbound message was ignored.
    MessageRejected {
        /// Its topic.
        topic: String,
        /// Why.
        reason: String,
    },
}

/// Receives an agent's events. Called inline: keep it cheap (count, or
/// send to a channel).
pub type EventSink = Arc<dyn Fn(AgentEvent) + Send + Sync>;

/// Why an agent stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The certificate slots failed.
    #[error(transparent)]
    Slots(#[from] SlotError),
    /// A key, CSR or TLS configuration failed.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// There is no current certificate to connect with.
    #[error("no certificate in `{dir}`: install one first")]
    NotProvisioned {
        /// The state directory.
        dir: PathBuf,
    },
    /// Connecting failed on every attempt allowed by the back-off policy.
    #[error("gave up connecting after {attempts} attempts in {elapsed:?}: {reason}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last failure.
        reason: String,
    },
    /// The fault hook simulated a crash at this point.
    #[error("simulated crash at `{point}`")]
    Crashed {
        /// The point's name.
        point: String,
    },
}

/// One device agent.
pub struct Agent {
    config: AgentConfig,
    roots: Arc<RootCertStore>,
    slots: Slots,
    events: Option<EventSink>,
    fault: Option<FaultHook>,
    rotation_started: Option<Instant>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("config", &self.config)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent for `config`; opens (creates) the state directory.
    ///
    /// # Errors
    /// [`AgentError::Keys`] when the server CA does not parse,
    /// [`AgentError::Slots`] when the state directory cannot be created.
    pub fn new(config: AgentConfig) -> Result<Agent, AgentError> {
        let roots = keys::root_store(&config.server_ca_pem)?;
        let slots = Slots::open(&config.state_dir)?;
        Ok(Agent {
            config,
            roots,
            slots,
            events: None,
            fault: None,
            rotation_started: None,
        })
    }

    /// Reports events to `sink`.
    pub fn with_events(mut self, sink: EventSink) -> Agent {
        self.events = Some(sink);
        self
    }

    /// Simulates crashes: `hook` is asked at every slot step and at the
    /// agent's points (`agent: csr key stored`, `agent: next stored`,
    /// `agent: ack sent`, `agent: crt_err sent`). It is also asked at
    /// `agent: crt_ack puback lost`, where `true` is not a crash: the
    /// PUBACK of the `crt_ack` the broker did receive is lost.
    pub fn with_fault_hook(mut self, hook: FaultHook) -> Agent {
        self.slots = self.slots.clone().with_fault_hook(hook.clone());
        self.fault = Some(hook);
        self
    }

    /// The agent's slots.
    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    fn emit(&self, event: AgentEvent) {
        if let Some(sink) = &self.events {
            sink(event);
        }
    }

    /// A simulated transient failure at `name` (not a crash): the fault
    /// hook says whether it happens.
    fn fails(&self, name: &str) -> bool {
        self.fault.as_ref().is_some_and(|hook| hook(name))
    }

    fn point(&self, name: &str) -> Result<(), AgentError> {
        match &self.fault {
            Some(hook) if hook(name) => Err(AgentError::Crashed {
                point: name.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Runs until `shutdown` completes: resumes a half-done rotation,
    /// connects with the current certificate (with back-off), and answers
    /// `csr_req` and `crt`.
    ///
    /// # Errors
    /// An [`AgentError`] when the agent cannot go on (no certificate,
    /// connecting gave up, slot I/O failed, a simulated crash).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        let state = self.slots.load()?;
        if state.current.is_none() {
            return Err(AgentError::NotProvisioned {
                dir: self.config.state_dir.clone(),
            });
        }
        let mut conn = match state.next.filter(|n| n.cert_pem.is_some()) {
            Some(next) => {
                self.emit(AgentEvent::Resuming {
                    rotation_id: next.meta.rotation_id.clone(),
                });
                self.finish_rotation(None, next).await?
            }
            None => self.connect_current().await?,
        };
        tokio::pin!(shutdown);
        let mut confirm_every = self.config.confirm_every;
        loop {
            // While the previous key is kept, look for the commit's proof
            // now and then (a reconnect probes it and acks again).
            let state = self.slots.load()?;
            let pending = state.next.filter(|n| n.cert_pem.is_some());
            let unconfirmed = state.old.is_some() || pending.is_some();
            if !unconfirmed {
                confirm_every = self.config.confirm_every;
            }
            let look = tokio::time::sleep(confirm_every);
            let received = tokio::select! {
                () = &mut shutdown => None,
                received = conn.next_publish() => Some(Some(received)),
                () = look, if unconfirmed => Some(None),
            };
            match received {
                None => {
                    conn.disconnect().await;
                    return Ok(());
                }
                Some(None) => {
                    confirm_every = (confirm_every * 2).min(self.config.confirm_every * 16);
                    conn = match pending {
                        // A new certificate kept after a failure that was
                        // not a refusal: try it again.
                        Some(next) => self.finish_rotation(Some(conn), next).await?,
                        None => {
                            conn.disconnect().await;
                            self.connect_current().await?
                        }
                    };
                }
                Some(Some(Ok(publish))) => conn = self.handle(conn, publish).await?,
                Some(Some(Err(reason))) => {
                    self.emit(AgentEvent::Disconnected { reason });
                    conn = self.connect_current().await?;
                }
            }
        }
    }

    async fn handle(&mut self, mut conn: Conn, publish: Publish) -> Result<Conn, AgentError> {
        let topic = publish.topic.clone();
        let kind = match parse_management_topic(&topic) {
            Some((client, kind)) if client == self.config.thing.as_str() => kind,
            _ => {
                self.reject(&topic, "not a management topic of this thing".to_owned());
                return Ok(conn);
            }
        };
        let contract = match kind {
            MessageKind::CsrReq => Contract::CsrReq,
            MessageKind::Crt => Contract::Crt,
            // its own csr_res, crt_ack or crt_err, through the wildcard
            _ if self.config.subscription == Subscription::Wildcard => return Ok(conn),
            other => {
                self.reject(&topic, format!("`{}` is not for devices", other.suffix()));
                return Ok(conn);
            }
        };
        match contracts::validate(contract, &publish.payload) {
            Ok(Message::CsrReq(req)) => {
                if let Some(deadline) = req.deadline
                    && deadline < now_ms()
                {
                    self.reject(&topic, format!("deadline {deadline} has passed"));
                    return Ok(conn);
                }
                if let Err(reason) = self
                    .on_csr_req(&mut conn, req.rotation_id, req.key_algorithm)
                    .await?
                {
                    self.emit(AgentEvent::Disconnected { reason });
                    return self.connect_current().await;
                }
                Ok(conn)
            }
            Ok(Message::Crt(crt)) => self.on_crt(conn, crt).await,
            Ok(_) => Ok(conn),
            Err(e) => {
                self.reject(&topic, e.to_string());
                Ok(conn)
            }
        }
    }

    fn reject(&self, topic: &str, reason: String) {
        tracing::warn!(thing = %self.config.thing, topic, %reason, "ignoring message");
        self.emit(AgentEvent::MessageRejected {
            topic: topic.to_owned(),
            reason,
        });
    }

    /// Generates (or reuses) the pending key and publishes `csr_res`. The
    /// inner `Err` is a lost connection.
    async fn on_csr_req(
        &mut self,
        conn: &mut Conn,
        rotation_id: Option<RotationId>,
        requested: Option<KeyAlgorithm>,
    ) -> Result<Result<(), String>, AgentError> {
        let algorithm = requested.unwrap_or(self.config.key_algorithm);
        let state = self.slots.load()?;
        if let Some(id) = &rotation_id
            && state
                .current
                .as_ref()
                .is_some_and(|c| c.meta.rotation_id.as_ref() == Some(id))
        {
            // A repeated csr_req (a duplicate, or the sweeper's re-send
            // crossing our crt_ack) for the rotation whose certificate is
            // already in use: a new key would match no certificate.
            self.reject(
                &management_topic(self.config.thing.as_str(), MessageKind::CsrReq),
                format!("rotation {id} already finished here: its certificate is in use"),
            );
            return Ok(Ok(()));
        }
        if state.next.as_ref().is_some_and(|n| n.cert_pem.is_some()) {
            // A certificate is kept in next/ (its connection failed without
            // a refusal; its ack may have committed): a new key would
            // replace it. It is tried again first; the cloud re-sends.
            self.reject(
                &management_topic(self.config.thing.as_str(), MessageKind::CsrReq),
                "a certificate is pending in next/: it is tried before any new key".to_owned(),
            );
            return Ok(Ok(()));
        }
        let reusable = state.next.filter(|n| {
            n.cert_pem.is_none()
                && rotation_id.is_some()
                && n.meta.rotation_id == rotation_id
                && n.meta.key_algorithm == Some(algorithm)
        });
        let reused_key = reusable.is_some();
        let key = match reusable {
            Some(next) => keys::key_from_pem(&next.key_pem)?,
            None => {
                let key = tokio::task::spawn_blocking(move || keys::generate_key(algorithm))
                    .await
                    .map_err(|e| KeyError::Generate {
                        algorithm: algorithm.as_str(),
                        reason: e.to_string(),
                    })??;
                self.slots.write_next(&Slot {
                    cert_pem: None,
                    key_pem: key.serialize_pem(),
                    meta: SlotMeta {
                        rotation_id: rotation_id.clone(),
                        certificate_id: None,
                        key_algorithm: Some(algorithm),
                        key_fingerprint: keys::key_fingerprint(&key),
                    },
                })?;
                key
            }
        };
        self.point("agent: csr key stored")?;
        let cn = self
            .config
            .csr_common_name
            .as_deref()
            .unwrap_or(self.config.thing.as_str());
        let csr = keys::csr_pem(cn, &key)?;
        let csr = CsrPem::new(csr).map_err(|e| KeyError::Csr {
            thing: self.config.thing.to_string(),
            reason: e.to_string(),
        })?;
        let payload = Message::CsrRes(CsrRes {
            csr,
            rotation_id: rotation_id.clone(),
        });
        let topic = management_topic(self.config.thing.as_str(), MessageKind::CsrRes);
        if let Err(reason) = conn
            .publish(&topic, &payload, self.config.ack_timeout)
            .await
        {
            return Ok(Err(reason));
        }
        self.rotation_started = Some(Instant::now());
        self.emit(AgentEvent::CsrSent {
            rotation_id,
            key_algorithm: algorithm,
            reused_key,
        });
        Ok(Ok(()))
    }

    async fn on_crt(&mut self, mut conn: Conn, crt: contracts::Crt) -> Result<Conn, AgentError> {
        self.emit(AgentEvent::CertificateReceived {
            rotation_id: crt.rotation_id.clone(),
            certificate_id: crt.certificate_id.clone(),
        });
        if self.rotation_started.is_none() {
            self.rotation_started = Some(Instant::now());
        }
        let state = self.slots.load()?;
        let current_id = state
            .current
            .as_ref()
            .and_then(|c| c.meta.certificate_id.clone());
        if current_id.as_deref() == Some(crt.certificate_id.as_str()) {
            let ack = Message::CrtAck(CrtAck {
                rotation_id: Some(crt.rotation_id.clone()),
                certificate_id: Some(crt.certificate_id.clone()),
            });
            let topic = management_topic(self.config.thing.as_str(), MessageKind::CrtAck);
            if let Err(reason) = conn.publish(&topic, &ack, self.config.ack_timeout).await {
                self.emit(AgentEvent::Disconnected { reason });
                return self.connect_current().await;
            }
            self.emit(AgentEvent::DuplicateCertificate {
                certificate_id: crt.certificate_id.to_string(),
            });
            return Ok(conn);
        }
        let pem = crt.certificate_pem.as_str();
        let checked = match rules::csr::inspect_certificate(pem) {
            // a firmware that mishandles `crt` (simulations' broken devices)
            _ if self.fails(REFUSE_CRT) => {
                Err("the firmware could not install the certificate".to_owned())
            }
            Err(e) => Err(format!("certificate does not parse: {e}")),
            Ok(info) if info.certificate_id != crt.certificate_id.as_str() => Err(format!(
                "certificateId {} is not the certificate's id {}",
                crt.certificate_id, info.certificate_id
            )),
            Ok(info) => match &state.next {
                None => Err("no key is pending for this certificate".to_owned()),
                Some(next) if next.meta.key_fingerprint != info.public_key_fingerprint => {
                    Err("the certificate is not for the pending key".to_owned())
                }
                Some(next) => Ok(next.clone()),
            },
        };
        let next = match checked {
            Ok(next) => next,
            Err(reason) => {
                tracing::warn!(thing = %self.config.thing, %reason, "refusing certificate");
                let topic = management_topic(self.config.thing.as_str(), MessageKind::CrtErr);
                let err = crt_err(&reason, Some(crt.rotation_id.clone()));
                if let Err(lost) = conn.publish(&topic, &err, self.config.ack_timeout).await {
                    self.emit(AgentEvent::Disconnected { reason: lost });
                    conn = self.connect_current().await?;
                }
                self.emit(AgentEvent::CertificateRefused {
                    rotation_id: crt.rotation_id,
                    reason,
                });
                return Ok(conn);
            }
        };
        let slot = Slot {
            cert_pem: Some(pem.to_owned()),
            key_pem: next.key_pem,
            meta: SlotMeta {
                rotation_id: Some(crt.rotation_id),
                certificate_id: Some(crt.certificate_id.to_string()),
                ..next.meta
            },
        };
        self.slots.write_next(&slot)?;
        self.point("agent: next stored")?;
        self.finish_rotation(Some(conn), slot).await
    }

    /// Connects with the certificate in `next/`, sends `crt_ack` on that
    /// connection and promotes (keeping the previous key: the PUBACK proves
    /// delivery, not the commit); on failure reconnects with the current
    /// certificate, sends `crt_err` and discards `next/`.
    async fn finish_rotation(&mut self, old: Option<Conn>, next: Slot) -> Result<Conn, AgentError> {
        let rotation_id = next.meta.rotation_id.clone();
        match self.ack_with(&next).await {
            Ok(conn) => {
                drop(old);
                self.point("agent: ack sent")?;
                let latency = self.rotation_started.take().map(|t| t.elapsed());
                match self.promote(conn, &next, latency).await? {
                    Some(conn) => Ok(conn),
                    None => self.connect_current().await,
                }
            }
            Err(failure) if !failure.refused => {
                // Not refused: the certificate may work, and the ack may
                // have reached the broker (a lost PUBACK) and committed the
                // rotation. Dropping the new key now could leave only a
                // retired certificate: keep it, go back on the current
                // one, try again later (`confirm_every`), never `crt_err`.
                drop(old);
                let reason = failure.reason;
                tracing::warn!(thing = %self.config.thing, %reason, "new certificate not reachable, keeping it to try again");
                self.emit(AgentEvent::Disconnected { reason });
                self.connect_current().await
            }
            Err(failure) => {
                drop(old);
                let reason = failure.reason;
                tracing::warn!(thing = %self.config.thing, %reason, "new certificate refused, rolling back");
                let mut conn = self.connect_current().await?;
                if self
                    .slots
                    .load()?
                    .current
                    .and_then(|c| c.meta.certificate_id)
                    == next.meta.certificate_id
                {
                    // The current certificate was refused and the new one
                    // turned out to be committed (`connect_committed_next`):
                    // rotated after all, nothing to roll back.
                    self.rotation_started = None;
                    return Ok(conn);
                }
                let topic = management_topic(self.config.thing.as_str(), MessageKind::CrtErr);
                let err = crt_err(&reason, rotation_id.clone());
                if let Err(lost) = conn.publish(&topic, &err, self.config.ack_timeout).await {
                    self.emit(AgentEvent::Disconnected { reason: lost });
                    conn = self.connect_current().await?;
                    // The first attempt may have been lost with the connection.
                    let _ = conn.publish(&topic, &err, self.config.ack_timeout).await;
                }
                self.point("agent: crt_err sent")?;
                self.slots.discard_next()?;
                self.rotation_started = None;
                self.emit(AgentEvent::RolledBack {
                    rotation_id,
                    reason,
                });
                Ok(conn)
            }
        }
    }

    /// One connection with the new certificate and a confirmed `crt_ack`.
    /// [`ConnectFailure::refused`] only when the broker refused the
    /// certificate (or it is unusable here): proof that it is not committed.
    async fn ack_with(&self, next: &Slot) -> Result<Conn, ConnectFailure> {
        let cert = next.cert_pem.as_deref().unwrap_or_default();
        let tls = keys::client_config(self.roots.clone(), cert, &next.key_pem).map_err(|e| {
            ConnectFailure {
                refused: true,
                reason: e.to_string(),
            }
        })?;
        let lost = |reason: String| ConnectFailure {
            refused: false,
            reason,
        };
        let mut conn = Conn::connect_checked(&self.config, tls).await?;
        let ack = Message::CrtAck(CrtAck {
            rotation_id: next.meta.rotation_id.clone(),
            certificate_id: next
                .meta
                .certificate_id
                .as_deref()
                .and_then(|id| CertificateId::new(id).ok()),
        });
        let topic = management_topic(self.config.thing.as_str(), MessageKind::CrtAck);
        conn.publish(&topic, &ack, self.config.ack_timeout)
            .await
            .map_err(lost)?;
        if self.fails("agent: crt_ack puback lost") {
            return Err(lost(
                "no puback for crt_ack (simulated: the broker has it)".to_owned(),
            ));
        }
        Ok(conn)
    }

    /// Connects and subscribes with the current certificate, retrying with
    /// back-off. While the previous certificate is kept, it is tried first:
    /// refused means the cloud committed (its key is deleted); when the
    /// current certificate is refused and the previous one connects, the
    /// agent falls back to it. Connected over a rotation's certificate whose
    /// commit is not proven, it sends `crt_ack` again.
    async fn connect_current(&self) -> Result<Conn, AgentError> {
        let state = self.slots.load()?;
        let current = state.current.ok_or_else(|| AgentError::NotProvisioned {
            dir: self.config.state_dir.clone(),
        })?;
        let mut old = state.old;
        if let Some(previous) = &old
            && let Some(refused) = self.probe(previous).await?
        {
            tracing::info!(thing = %self.config.thing, reason = %refused, "previous certificate refused: the rotation is committed");
            self.slots.confirm()?;
            self.emit(AgentEvent::CommitConfirmed {
                certificate_id: current.meta.certificate_id.clone().unwrap_or_default(),
            });
            old = None;
        }
        let mut conn = self.connect_with(&current, old.as_ref()).await?;
        let after = self.slots.load()?;
        let same_current = after.current.as_ref().map(|c| &c.meta.certificate_id)
            == Some(&current.meta.certificate_id);
        if let Some(previous) = &old
            && after.old.is_some()
            && same_current
            && current.meta.rotation_id.is_some()
            && current.meta.rotation_id != previous.meta.rotation_id
        {
            // The commit may never have landed (every invocation failed,
            // or the sweeper ran first): this connection is its evidence.
            let ack = Message::CrtAck(CrtAck {
                rotation_id: current.meta.rotation_id.clone(),
                certificate_id: current
                    .meta
                    .certificate_id
                    .as_deref()
                    .and_then(|id| CertificateId::new(id).ok()),
            });
            let topic = management_topic(self.config.thing.as_str(), MessageKind::CrtAck);
            if let Err(reason) = conn.publish(&topic, &ack, self.config.ack_timeout).await {
                tracing::debug!(thing = %self.config.thing, %reason, "repeated crt_ack not confirmed");
            }
        }
        Ok(conn)
    }

    /// One connection attempt with `slot`'s certificate, closed at once:
    /// `Some(reason)` when the broker refused it, `None` when it connected
    /// or could not be reached (no evidence either way).
    async fn probe(&self, slot: &Slot) -> Result<Option<String>, AgentError> {
        let cert = slot.cert_pem.as_deref().unwrap_or_default();
        let tls = keys::client_config(self.roots.clone(), cert, &slot.key_pem)?;
        Ok(match Conn::connect_checked(&self.config, tls).await {
            Ok(conn) => {
                conn.disconnect().await;
                None
            }
            Err(e) if e.refused => Some(e.reason),
            Err(_) => None,
        })
    }

    /// [`connect_current`](Self::connect_current)'s retry loop over
    /// `current`, falling back to `old` when `current` is refused.
    async fn connect_with(&self, current: &Slot, old: Option<&Slot>) -> Result<Conn, AgentError> {
        let cert = current.cert_pem.as_deref().unwrap_or_default();
        let certificate_id = current.meta.certificate_id.clone().unwrap_or_default();
        let tls = keys::client_config(self.roots.clone(), cert, &current.key_pem)?;
        let backoff = self.config.backoff;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut refused = false;
            let result = match Conn::connect_checked(&self.config, tls.clone()).await {
                Ok(mut conn) => conn
                    .subscribe(
                        &self.config.thing,
                        self.config.subscription,
                        self.config.ack_timeout,
                    )
                    .await
                    .map(|()| conn),
                Err(e) => {
                    refused = e.refused;
                    Err(e.reason)
                }
            };
            let reason = match result {
                Ok(conn) => {
                    self.emit(AgentEvent::Connected {
                        certificate_id,
                        attempts: attempt,
                    });
                    return Ok(conn);
                }
                Err(reason) => reason,
            };
            if refused && let Some(conn) = self.connect_committed_next().await? {
                return Ok(conn);
            }
            if refused
                && let Some(previous) = old
                && let Some(conn) = self.fall_back(previous, &reason).await?
            {
                return Ok(conn);
            }
            let delay = backoff.delay(attempt - 1);
            let give_up = attempt >= backoff.max_attempts.max(1)
                || started.elapsed() + delay >= backoff.max_total;
            self.emit(AgentEvent::ConnectFailed {
                attempt,
                reason: reason.clone(),
                retry_in: (!give_up).then_some(delay),
            });
            if give_up {
                return Err(AgentError::GaveUp {
                    attempts: attempt,
                    elapsed: started.elapsed(),
                    reason,
                });
            }
            tracing::debug!(thing = %self.config.thing, attempt, %reason, ?delay, "connect failed, backing off");
            tokio::time::sleep(delay).await;
        }
    }
}

impl Agent {
    /// The current certificate was refused: if the previous one connects,
    /// the cloud removed the new certificate (the rotation failed or
    /// expired): swap them back. `None` when it is refused too.
    async fn fall_back(&self, previous: &Slot, reason: &str) -> Result<Option<Conn>, AgentError> {
        let cert = previous.cert_pem.as_deref().unwrap_or_default();
        let tls = keys::client_config(self.roots.clone(), cert, &previous.key_pem)?;
        let Ok(mut conn) = Conn::connect(&self.config, tls).await else {
            return Ok(None);
        };
        tracing::warn!(thing = %self.config.thing, %reason, "the current certificate is refused and the previous one works: falling back");
        self.slots.swap()?;
        let certificate_id = previous.meta.certificate_id.clone().unwrap_or_default();
        self.emit(AgentEvent::FellBack {
            certificate_id: certificate_id.clone(),
            reason: reason.to_owned(),
        });
        match conn
            .subscribe(
                &self.config.thing,
                self.config.subscription,
                self.config.ack_timeout,
            )
            .await
        {
            Ok(()) => {
                self.emit(AgentEvent::Connected {
                    certificate_id,
                    attempts: 1,
                });
                Ok(Some(conn))
            }
            Err(reason) => {
                self.emit(AgentEvent::Disconnected { reason });
                Ok(None)
            }
        }
    }

    /// The current certificate was refused: if `next/` holds a certificate,
    /// the cloud may have committed it after all (its `crt_ack` arrived but
    /// the answer was lost with the connection, and the old certificate is
    /// retired). Connects with it, acknowledges again (a commit already made
    /// changes nothing) and promotes it. `None` when there is none or it is
    /// refused too.
    async fn connect_committed_next(&self) -> Result<Option<Conn>, AgentError> {
        let state = self.slots.load()?;
        let Some(next) = state.next.filter(|n| n.cert_pem.is_some()) else {
            return Ok(None);
        };
        let current_id = state.current.and_then(|c| c.meta.certificate_id);
        if next.meta.certificate_id.is_none() || next.meta.certificate_id == current_id {
            return Ok(None);
        }
        let Ok(conn) = self.ack_with(&next).await else {
            return Ok(None);
        };
        tracing::info!(thing = %self.config.thing, "the current certificate is refused and the next one works: it was committed");
        self.promote(conn, &next, None).await
    }

    /// `next` is acknowledged on `conn`: promotes it, then subscribes on
    /// that connection. `None` when the subscription failed (the
    /// connection is lost; the caller reconnects).
    async fn promote(
        &self,
        mut conn: Conn,
        next: &Slot,
        latency: Option<Duration>,
    ) -> Result<Option<Conn>, AgentError> {
        self.slots.promote()?;
        let certificate_id = next.meta.certificate_id.clone().unwrap_or_default();
        self.emit(AgentEvent::Rotated {
            rotation_id: next.meta.rotation_id.clone(),
            certificate_id: certificate_id.clone(),
            latency,
        });
        match conn
            .subscribe(
                &self.config.thing,
                self.config.subscription,
                self.config.ack_timeout,
            )
            .await
        {
            Ok(()) => {
                self.emit(AgentEvent::Connected {
                    certificate_id,
                    attempts: 1,
                });
                Ok(Some(conn))
            }
            Err(reason) => {
                self.emit(AgentEvent::Disconnected { reason });
                Ok(None)
            }
        }
    }
}

/// Whether a connection error is the server refusing the handshake with a
/// TLS alert (unknown CA, bad or revoked certificate, access denied): a
/// refusal of the certificate, as definite as a CONNACK refusal. A reset,
/// a timeout or an end of stream proves nothing. rumqttc wraps the alert
/// in an `io::Error` whose `source` skips it, so the text is what tells.
fn tls_refusal(reason: &str) -> bool {
    reason.contains("received fatal alert")
}

/// The fault hook's name for a firmware that refuses every `crt` with
/// `crt_err` (a simulation's broken device): asked once per `crt`.
pub const REFUSE_CRT: &str = "agent: firmware refuses crt";

fn crt_err(reason: &str, rotation_id: Option<RotationId>) -> Message {
    // `ErrorText` takes any text of at most 1024 characters: cut to fit.
    let text: String = reason.chars().take(contracts::MAX_ERROR_CHARS).collect();
    let error = ErrorText::new(text)
        .or_else(|_| ErrorText::new("certificate rejected"))
        .unwrap_or_else(|_| unreachable!("a short ascii text is a valid ErrorText"));
    Message::CrtErr(CrtErr { error, rotation_id })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One MQTT connection, polled only by the agent's own task.
struct Conn {
    client: AsyncClient,
    eventloop: EventLoop,
    inbox: VecDeque<Publish>,
}

/// Why a connection could not be made.
struct ConnectFailure {
    /// The broker answered CONNACK with a refusal (e.g. not authorized: the
    /// certificate is not, or no longer, ACTIVE).
    refused: bool,
    reason: String,
}

impl Conn {
    async fn connect(config: &AgentConfig, tls: Arc<rustls::ClientConfig>) -> Result<Conn, String> {
        Self::connect_checked(config, tls)
            .await
            .map_err(|e| e.reason)
    }

    async fn connect_checked(
        config: &AgentConfig,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Conn, ConnectFailure> {
        let lost = |reason: String| ConnectFailure {
            refused: false,
            reason,
        };
        let mut options = MqttOptions::new(config.thing.as_str(), &config.host, config.port);
        options
            .set_keep_alive(config.keep_alive)
            .set_clean_session(true)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let mut network = rumqttc::NetworkOptions::new();
        network.set_connection_timeout(config.connect_timeout.as_secs().max(1));
        eventloop.set_network_options(network);
        let connack = tokio::time::timeout(config.connect_timeout, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack),
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                        return Err(ConnectFailure {
                            refused: true,
                            reason: format!("connection refused: {code:?}"),
                        });
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        return Err(ConnectFailure {
                            refused: tls_refusal(&reason),
                            reason,
                        });
                    }
                }
            }
        })
        .await
        .map_err(|_| lost(format!("no connack within {:?}", config.connect_timeout)))??;
        if connack.code != ConnectReturnCode::Success {
            return Err(ConnectFailure {
                refused: true,
                reason: format!("connection refused: {:?}", connack.code),
            });
        }
        Ok(Conn {
            client,
            eventloop,
            inbox: VecDeque::new(),
        })
    }

    async fn subscribe(
        &mut self,
        thing: &ClientId,
        subscription: Subscription,
        timeout: Duration,
    ) -> Result<(), String> {
        let filters: Vec<SubscribeFilter> = match subscription {
            Subscription::Exact => [MessageKind::CsrReq, MessageKind::Crt]
                .map(|k| {
                    SubscribeFilter::new(management_topic(thing.as_str(), k), QoS::AtLeastOnce)
                })
                .into(),
            Subscription::Wildcard => vec![SubscribeFilter::new(
                format!("{MANAGEMENT_PREFIX}{}/#", thing.as_str()),
                QoS::AtLeastOnce,
            )],
        };
        self.client
            .subscribe_many(filters)
            .await
            .map_err(|e| e.to_string())?;
        let suback = self
            .wait_for(timeout, |p| match p {
                Packet::SubAck(ack) => Some(ack.return_codes.clone()),
                _ => None,
            })
            .await?;
        if suback
            .iter()
            .any(|c| matches!(c, SubscribeReasonCode::Failure))
        {
            return Err("subscription refused by the broker".to_owned());
        }
        Ok(())
    }

    async fn publish(
        &mut self,
        topic: &str,
        message: &Message,
        timeout: Duration,
    ) -> Result<(), String> {
        let payload = serde_json::to_vec(&message.to_json()).map_err(|e| e.to_string())?;
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| e.to_string())?;
        let mut sent = None;
        tokio::time::timeout(timeout, async {
            loop {
                match self.eventloop.poll().await.map_err(|e| e.to_string())? {
                    Event::Outgoing(Outgoing::Publish(pkid)) => sent = Some(pkid),
                    Event::Incoming(Packet::PubAck(ack)) if Some(ack.pkid) == sent => {
                        return Ok(());
                    }
                    Event::Incoming(Packet::Publish(p)) => self.inbox.push_back(p),
                    _ => {}
                }
            }
        })
        .await
        .map_err(|_| format!("no puback for `{topic}` within {timeout:?}"))?
    }

    async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut want: impl FnMut(&Packet) -> Option<T>,
    ) -> Result<T, String> {
        tokio::time::timeout(timeout, async {
            loop {
                match self.eventloop.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::Publish(p)) => self.inbox.push_back(p),
                    Event::Incoming(packet) => {
                        if let Some(found) = want(&packet) {
                            return Ok(found);
                        }
                    }
                    Event::Outgoing(_) => {}
                }
            }
        })
        .await
        .map_err(|_| format!("no answer from the broker within {timeout:?}"))?
    }

    async fn next_publish(&mut self) -> Result<Publish, String> {
        if let Some(p) = self.inbox.pop_front() {
            return Ok(p);
        }
        loop {
            if let Event::Incoming(Packet::Publish(p)) =
                self.eventloop.poll().await.map_err(|e| e.to_string())?
            {
                return Ok(p);
            }
        }
    }

    async fn disconnect(mut self) {
        if self.client.disconnect().await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while let Ok(event) = self.eventloop.poll().await {
                    if matches!(event, Event::Outgoing(Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tls_refusal;

    #[test]
    fn only_a_tls_alert_from_the_server_counts_as_a_refusal() {
        assert!(tls_refusal(
            "Mqtt state: Mqtt serialization/deserialization error: IO: received fatal alert: UnknownCA"
        ));
        for transient in [
            "I/O: Connection reset by peer (os error 104)",
            "no connack within 10s",
            "no puback for `management/topic/t/crt_ack` within 10s",
            "I/O: unexpected end of file",
        ] {
            assert!(!tls_refusal(transient), "{transient}");
        }
    }
}
