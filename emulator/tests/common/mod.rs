//! Test harness: a synthesized template, generated CAs and device
//! certificates, and rumqttc clients with mutual TLS.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use emulator::{
    ChannelSink, Deployment, Emulator, EmulatorConfig, Invocation, MqttLimits, RuleSink,
    StandaloneRegistry,
};
use futures_util::{SinkExt, StreamExt};
use rumqttc::mqttbytes::v4::Codec;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, Transport};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;

/// The device policy's logical id in the synthesized template.
pub const DEVICE_POLICY: &str = "DevicePolicy";

/// The template `cargo run -- synth` writes, built in process by `infra`.
pub fn synthesized(jitr_ca_ids: &[String]) -> Deployment {
    let template = infra::assembly::default_template(jitr_ca_ids).unwrap_or_else(|e| panic!("{e}"));
    Deployment::from_template(&template, &Deployment::default_scope())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The test CA (one for every test of the workspace).
pub use test_support::TestCa;

/// A device's certificate and key ([`TestCa::device`]).
pub type Device = test_support::DeviceCert;

/// The emulator's id of a device's certificate.
pub trait DeviceId {
    fn id(&self) -> String;
}

impl DeviceId for Device {
    fn id(&self) -> String {
        emulator::registry::certificate_id_of_der(&self.cert_der)
    }
}

/// An emulator with a registry and a channel sink.
pub struct Harness {
    pub emulator: Emulator,
    pub registry: Arc<StandaloneRegistry>,
    pub invocations: UnboundedReceiver<Invocation>,
    pub ca: TestCa,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with_jitr(&[]).await
    }

    pub async fn start_with_jitr(jitr_ca_ids: &[String]) -> Harness {
        let registry = Arc::new(StandaloneRegistry::new());
        let (sink, invocations) = ChannelSink::new();
        let emulator = Emulator::start(
            EmulatorConfig::default(),
            synthesized(jitr_ca_ids),
            registry.clone(),
            Arc::new(sink),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        Harness {
            emulator,
            registry,
            invocations,
            ca: TestCa::new("fleetcert test device CA").expect("ca"),
        }
    }

    /// An emulator enforcing `limits`, with a channel sink.
    pub async fn start_with_limits(limits: MqttLimits) -> Harness {
        let (sink, invocations) = ChannelSink::new();
        Harness::start_with_sink(limits, Arc::new(sink), invocations).await
    }

    /// An emulator enforcing `limits` whose rules invoke `sink`;
    /// `invocations` is what [`Harness::next_invocation`] reads.
    pub async fn start_with_sink(
        limits: MqttLimits,
        sink: Arc<dyn RuleSink>,
        invocations: UnboundedReceiver<Invocation>,
    ) -> Harness {
        let registry = Arc::new(StandaloneRegistry::new());
        let emulator = Emulator::start(
            EmulatorConfig {
                limits,
                ..EmulatorConfig::default()
            },
            synthesized(&[]),
            registry.clone(),
            sink,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        Harness {
            emulator,
            registry,
            invocations,
            ca: TestCa::new("fleetcert test device CA").expect("ca"),
        }
    }

    /// A thing with an ACTIVE certificate, attached, with the device policy.
    pub fn provision(&self, thing: &str) -> Device {
        let device = self.ca.device(thing).expect("device");
        let id = self
            .registry
            .register_certificate(&device.cert_pem, emulator::CertificateStatus::Active)
            .unwrap_or_else(|e| panic!("{e}"));
        self.registry
            .attach_thing(thing, &id)
            .unwrap_or_else(|e| panic!("{e}"));
        self.registry
            .attach_policy(DEVICE_POLICY, &id)
            .unwrap_or_else(|e| panic!("{e}"));
        device
    }

    /// The TLS client configuration of `device`, trusting the emulator.
    fn tls_config(&self, device: &Device) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        let root = rustls::pki_types::pem::PemObject::from_pem_slice(
            self.emulator.root_ca_pem().as_bytes(),
        )
        .expect("root pem");
        roots.add(root).expect("root");
        rustls::ClientConfig::builder_with_provider(emulator::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from(device.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(device.key_der.clone())),
            )
            .expect("client auth")
    }

    /// An MQTT client connecting as `client_id` with `device`'s certificate.
    pub fn client(&self, client_id: &str, device: &Device) -> (AsyncClient, EventLoop) {
        let config = self.tls_config(device);
        let mut options =
            MqttOptions::new(client_id, "localhost", self.emulator.local_addr().port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
        ));
        AsyncClient::new(options, 16)
    }

    /// A hand-driven MQTT connection (TLS with `device`'s certificate, then
    /// the packets the test writes): sends CONNECT with `client_id` and
    /// `keep_alive` seconds and returns the connection and the CONNACK's
    /// return code, or `None` when the broker closed without one.
    pub async fn raw(
        &self,
        client_id: &str,
        device: &Device,
        keep_alive: u16,
    ) -> (RawClient, Option<rumqttc::ConnectReturnCode>) {
        let tcp = TcpStream::connect(self.emulator.local_addr())
            .await
            .expect("tcp connect");
        let tls = TlsConnector::from(Arc::new(self.tls_config(device)))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("tls handshake");
        let mut raw = RawClient {
            framed: Framed::new(
                tls,
                Codec {
                    max_incoming_size: 1 << 20,
                    max_outgoing_size: 1 << 24,
                },
            ),
        };
        let mut connect = rumqttc::Connect::new(client_id);
        connect.keep_alive = keep_alive;
        raw.send(Packet::Connect(connect)).await;
        let code = match raw.next(Duration::from_secs(5)).await {
            Some(Packet::ConnAck(ack)) => Some(ack.code),
            Some(other) => panic!("expected CONNACK, got {other:?}"),
            None => None,
        };
        (raw, code)
    }

    /// The next rule invocation, within 5 s.
    pub async fn next_invocation(&mut self) -> Option<Invocation> {
        tokio::time::timeout(Duration::from_secs(5), self.invocations.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next rule invocation within `ms`.
    pub async fn next_invocation_within(&mut self, ms: u64) -> Option<Invocation> {
        tokio::time::timeout(Duration::from_millis(ms), self.invocations.recv())
            .await
            .ok()
            .flatten()
    }

    /// No rule invocation within `ms`.
    pub async fn no_invocation_within(&mut self, ms: u64) -> bool {
        tokio::time::timeout(Duration::from_millis(ms), self.invocations.recv())
            .await
            .is_err()
    }
}

/// Polls until an incoming packet matches `want`; `Err` with the
/// connection error if the connection ends first. Bounded to 5 s.
#[allow(clippy::result_large_err)] // rumqttc's error type, as it comes
pub async fn until<F: FnMut(&Packet) -> bool>(
    eventloop: &mut EventLoop,
    mut want: F,
) -> Result<Packet, ConnectionError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let polled = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .unwrap_or_else(|_| panic!("no matching packet within 5 s"))?;
        if let Event::Incoming(p) = polled
            && want(&p)
        {
            return Ok(p);
        }
    }
}

/// Polls until the connection ends; panics if it does not within 5 s.
pub async fn until_closed(eventloop: &mut EventLoop) -> ConnectionError {
    match until(eventloop, |_| false).await {
        Err(e) => e,
        Ok(p) => panic!("unexpected {p:?}"),
    }
}

pub async fn connected(eventloop: &mut EventLoop) {
    until(eventloop, |p| matches!(p, Packet::ConnAck(_)))
        .await
        .unwrap_or_else(|e| panic!("connect failed: {e}"));
}

/// A TLS connection the test writes MQTT packets to by hand.
pub struct RawClient {
    framed: Framed<TlsStream<TcpStream>, Codec>,
}

impl RawClient {
    /// Writes one packet; panics if the connection is already gone.
    pub async fn send(&mut self, packet: Packet) {
        self.framed.send(packet).await.expect("write");
    }

    /// Writes packets without flushing between them, then flushes: they
    /// reach the broker back to back.
    pub async fn send_all(&mut self, packets: impl IntoIterator<Item = Packet>) {
        for p in packets {
            self.framed.feed(p).await.expect("write");
        }
        self.framed.flush().await.expect("flush");
    }

    /// Writes a packet, `false` when the connection is gone.
    pub async fn try_send(&mut self, packet: Packet) -> bool {
        self.framed.send(packet).await.is_ok()
    }

    /// The next packet within `within`; `None` when the connection ended
    /// (or nothing came).
    pub async fn next(&mut self, within: Duration) -> Option<Packet> {
        match tokio::time::timeout(within, self.framed.next()).await {
            Ok(Some(Ok(p))) => Some(p),
            _ => None,
        }
    }

    /// Reads until the broker closes the connection; the packets received
    /// before, or `Err` with them when it is still open after `within`.
    pub async fn until_closed(&mut self, within: Duration) -> Result<Vec<Packet>, Vec<Packet>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.framed.next()).await {
                Ok(Some(Ok(p))) => seen.push(p),
                Ok(_) => return Ok(seen),
                Err(_) => return Err(seen),
            }
        }
    }

    /// Sends PINGREQ and reads until PINGRESP (the broker handles a
    /// connection's packets in order, so everything sent before has been
    /// handled); the packets received before it, or `None` when the
    /// connection ended first. Bounded to 5 s.
    pub async fn sync(&mut self) -> Option<Vec<Packet>> {
        if !self.try_send(Packet::PingReq).await {
            return None;
        }
        let mut seen = Vec::new();
        loop {
            match self.next(Duration::from_secs(5)).await? {
                Packet::PingResp => return Some(seen),
                p => seen.push(p),
            }
        }
    }
}

/// Log lines captured from `tracing` while the guard lives (the test's
/// thread; `#[tokio::test]` runs every task on it).
#[derive(Clone, Default)]
pub struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// Starts capturing, at `info` and above.
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(logs.clone())
            .finish();
        (logs.clone(), tracing::subscriber::set_default(subscriber))
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// The captured lines naming `limit`.
    pub fn naming(&self, limit: emulator::Limit) -> Vec<String> {
        let needle = format!("limit={}", limit.name());
        self.text()
            .lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_owned)
            .collect()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
