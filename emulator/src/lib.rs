//! `emulator`: a local AWS IoT Core stand-in.
//!
//! MQTT 3.1.1 over TLS 1.2/1.3 on 127.0.0.1 with client certificates
//! required (QoS 0 and 1, clean and persistent sessions, keep-alive,
//! client-id takeover).
//! Any client certificate whose handshake signature verifies completes the
//! handshake; the [`Registry`] then decides: only ACTIVE certificates
//! connect, an unknown certificate issued by a registered CA with
//! auto-registration is registered PENDING_ACTIVATION (JITR), its
//! registration event published and the connection closed. Connect,
//! publish, subscribe and receive are authorized with the policies of the
//! **synthesized** template ([`Deployment`]), and every message runs
//! through its topic rules; a rule's output goes to a [`RuleSink`] through a
//! bounded queue. AWS IoT Core's per-connection MQTT quotas are enforced
//! ([`MqttLimits`]: message size, publishes per second, filters per
//! SUBSCRIBE, subscriptions per connection, topic size and depth, client id
//! size, keep-alive range), each refusal logged with the limit's name.
//!
//! Architecture invariant: the broker's only view of the registry and of
//! the Lambda functions is the [`Registry`] and [`RuleSink`] ports.

pub mod api;
mod broker;
pub mod cloud;
pub mod iam;
pub mod kms;
pub mod lambda;
pub mod limits;
pub mod registry;
pub mod sink;
pub mod template;
pub mod tls;
pub mod wiring;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use cloud::{Cloud, CloudConfig, CloudError, DeviceCredentials, Provisioning};
pub use limits::{Limit, MqttLimits};
pub use registry::{
    CertificateStatus, CertificateView, Registry, StandaloneRegistry, StatusChange,
};
pub use sink::{ChannelSink, Invocation, RecordingSink, RuleSink};
pub use template::{Deployment, TemplateError};

/// AWS IoT Core's largest MQTT payload, 128 KiB.
pub const MAX_PAYLOAD_BYTES: usize = rules::contracts::MAX_PAYLOAD_BYTES;

/// How the emulator listens.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Address to listen on; `127.0.0.1:0` (a free port) by default.
    pub bind: SocketAddr,
    /// Where to write the root CA certificate (PEM) clients must trust.
    pub root_ca_file: Option<PathBuf>,
    /// The account id in JITR events.
    pub account_id: String,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed between the handshake and the CONNECT packet.
    pub connect_timeout: Duration,
    /// The MQTT limits enforced; AWS IoT Core's by default.
    pub limits: MqttLimits,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            root_ca_file: None,
            account_id: template::DEFAULT_ACCOUNT.to_owned(),
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            limits: MqttLimits::default(),
        }
    }
}

/// Why the emulator cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// Binding or an I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS setup failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Why [`Emulator::publish`] refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The topic is not a valid MQTT topic name.
    #[error("invalid topic {topic:?}: {reason}")]
    InvalidTopic {
        /// The topic.
        topic: String,
        /// Why.
        reason: String,
    },
    /// The payload is larger than IoT Core accepts.
    #[error("payload of {len} bytes is larger than the {max} bytes allowed")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// [`MqttLimits::max_payload_bytes`], by default [`MAX_PAYLOAD_BYTES`].
        max: usize,
    },
}

/// What the broker did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Handshakes that failed or timed out.
    pub tls_failures: u64,
    /// CONNECTs accepted.
    pub connections_accepted: u64,
    /// Connections refused or dropped after the handshake (unknown,
    /// inactive, pending, denied by policy, no CONNECT).
    pub connections_refused: u64,
    /// JITR registration events published.
    pub jitr_events: u64,
    /// PUBLISH packets received from clients.
    pub publishes_received: u64,
    /// Of those, denied (connection closed): by policy, an invalid topic,
    /// or a limit ([`Emulator::limit_refusals`]).
    pub publishes_denied: u64,
    /// Of those, over the per-connection rate: dropped, no PUBACK, the
    /// connection kept.
    pub publishes_throttled: u64,
    /// Subscription filters denied (SUBACK 0x80).
    pub subscriptions_denied: u64,
    /// Messages delivered to subscribers.
    pub deliveries: u64,
    /// Rule actions queued for the [`RuleSink`].
    pub rule_invocations: u64,
    /// Rule actions dropped because the rule action queue was full.
    pub rule_actions_dropped: u64,
    /// Messages a rule could not evaluate (e.g. a non-object payload).
    pub rule_errors: u64,
    /// Connections closed because a new one took the client id.
    pub takeovers: u64,
    /// Connections closed because their certificate stopped being ACTIVE.
    pub closed_not_active: u64,
    /// Connections closed for keep-alive timeout.
    pub keep_alive_timeouts: u64,
}

/// A running emulator. Dropping it stops listening and closes every
/// connection.
#[derive(Debug)]
pub struct Emulator {
    shared: Arc<broker::Shared>,
    addr: SocketAddr,
    identity: tls::ServerIdentity,
    root_ca_file: Option<PathBuf>,
    tasks: Vec<JoinHandle<()>>,
}

impl Emulator {
    /// Starts listening. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// An [`EmulatorError`] when the TLS setup, binding or writing the root
    /// CA file fails.
    pub async fn start(
        config: EmulatorConfig,
        deployment: Deployment,
        registry: Arc<dyn Registry>,
        sink: Arc<dyn RuleSink>,
    ) -> Result<Emulator, EmulatorError> {
        let identity = tls::ServerIdentity::generate()?;
        let acceptor = TlsAcceptor::from(identity.server_config()?);
        if let Some(path) = &config.root_ca_file {
            std::fs::write(path, identity.root_ca_pem()).map_err(|source| EmulatorError::Io {
                what: format!("cannot write {}", path.display()),
                source,
            })?;
        }
        let listener =
            TcpListener::bind(config.bind)
                .await
                .map_err(|source| EmulatorError::Io {
                    what: format!("cannot listen on {}", config.bind),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| EmulatorError::Io {
            what: "cannot read the listening address".into(),
            source,
        })?;
        let changes = registry.status_changes();
        let shared = Arc::new(broker::Shared::new(
            registry,
            sink,
            deployment,
            config.account_id.clone(),
            broker::Limits {
                handshake_timeout: config.handshake_timeout,
                connect_timeout: config.connect_timeout,
                mqtt: config.limits,
            },
        ));
        let watcher = tokio::spawn(broker::watch_status(shared.clone(), changes));
        let accept_shared = shared.clone();
        let acceptor_task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((tcp, _)) => {
                        let _ = tcp.set_nodelay(true);
                        tokio::spawn(broker::serve(accept_shared.clone(), acceptor.clone(), tcp));
                    }
                    Err(e) => {
                        // e.g. out of file descriptors: back off briefly
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        });
        Ok(Emulator {
            shared,
            addr,
            identity,
            root_ca_file: config.root_ca_file,
            tasks: vec![watcher, acceptor_task],
        })
    }

    /// The address the broker listens on (host 127.0.0.1).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The root CA certificate (PEM) of the broker's server certificate,
    /// valid for `localhost` and `127.0.0.1`.
    pub fn root_ca_pem(&self) -> &str {
        self.identity.root_ca_pem()
    }

    /// The file the root CA was written to, if configured.
    pub fn root_ca_file(&self) -> Option<&Path> {
        self.root_ca_file.as_deref()
    }

    /// The deployment being enforced.
    pub fn deployment(&self) -> Arc<Deployment> {
        self.shared.deployment()
    }

    /// Enforces `deployment` (its policies and topic rules) from the next
    /// message and connection on, as a stack update does; connections
    /// keep the policies they were admitted with until they reconnect.
    pub fn redeploy(&self, deployment: Deployment) {
        self.shared.redeploy(deployment);
    }

    /// What iot-data `Publish` does: delivers `payload` on `topic` at QoS 1
    /// to every subscriber whose policy allows receiving it, and runs it
    /// through the topic rules. Returns the number of deliveries.
    ///
    /// # Errors
    /// A [`PublishError`] for an invalid topic or an oversized payload.
    pub fn publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<usize, PublishError> {
        self.publish_with_qos(topic, payload, 1)
    }

    /// [`Emulator::publish`] at QoS 0 (`qos` 0) or 1 (anything else).
    ///
    /// # Errors
    /// A [`PublishError`] for an invalid topic or an oversized payload.
    pub fn publish_with_qos(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: u8,
    ) -> Result<usize, PublishError> {
        let limits = &self.shared.limits.mqtt;
        if let Some((limit, measure)) = limits.topic_violation(topic) {
            return Err(PublishError::InvalidTopic {
                topic: topic.to_owned(),
                reason: format!("over the {limit} limit ({measure})"),
            });
        }
        rules::topic::validate_topic_name(topic).map_err(|e| PublishError::InvalidTopic {
            topic: topic.to_owned(),
            reason: e.to_string(),
        })?;
        let payload = payload.into();
        if payload.len() > limits.max_payload_bytes {
            return Err(PublishError::PayloadTooLarge {
                len: payload.len(),
                max: limits.max_payload_bytes,
            });
        }
        let qos = if qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        Ok(self.shared.dispatch(topic, payload, qos, "", ""))
    }

    /// Closes every open connection of a certificate now (what the watcher
    /// does on a status change; useful for adapters that do not publish
    /// status changes).
    pub fn disconnect_certificate(&self, certificate_id: &str) {
        self.shared
            .close_certificate(certificate_id, broker::CloseReason::NotActive);
    }

    /// Closes the connections of a certificate unless the registry has it
    /// ACTIVE now (a status change seen late must not close a connection
    /// the certificate made after it was activated again).
    pub fn disconnect_if_not_active(&self, certificate_id: &str) {
        self.shared.close_if_not_active(certificate_id);
    }

    /// Closes the connections of every certificate the registry no longer
    /// has ACTIVE (what the watcher does when it missed status changes).
    pub fn recheck_connections(&self) {
        self.shared.recheck_all();
    }

    /// Closes every open connection (the listener keeps accepting).
    pub fn close_all_connections(&self) {
        self.shared.close_all();
    }

    /// How many clients are connected.
    pub fn connected_clients(&self) -> usize {
        self.shared.connected()
    }

    /// The limits enforced.
    pub fn limits(&self) -> &MqttLimits {
        &self.shared.limits.mqtt
    }

    /// How many times `limit` refused something since start (each also
    /// logged with the limit's name).
    pub fn limit_refusals(&self, limit: Limit) -> u64 {
        self.shared.counters.refusals[limit.index()].load(Ordering::Relaxed)
    }

    /// Counters since start.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            tls_failures: g(&c.tls_failures),
            connections_accepted: g(&c.connections_accepted),
            connections_refused: g(&c.connections_refused),
            jitr_events: g(&c.jitr_events),
            publishes_received: g(&c.publishes_received),
            publishes_denied: g(&c.publishes_denied),
            publishes_throttled: g(&c.publishes_throttled),
            subscriptions_denied: g(&c.subscriptions_denied),
            deliveries: g(&c.deliveries),
            rule_invocations: g(&c.rule_invocations),
            rule_actions_dropped: g(&c.rule_actions_dropped),
            rule_errors: g(&c.rule_errors),
            takeovers: g(&c.takeovers),
            closed_not_active: g(&c.closed_not_active),
            keep_alive_timeouts: g(&c.keep_alive_timeouts),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.shared.close_all();
    }
}
