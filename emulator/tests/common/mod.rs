//! Test harness: a synthesized template, generated CAs and device
//! certificates, and rumqttc clients with mutual TLS.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use emulator::{ChannelSink, Deployment, Emulator, EmulatorConfig, Invocation, MemRegistry};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, Transport};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::mpsc::UnboundedReceiver;

/// The device policy's logical id in the synthesized template.
pub const DEVICE_POLICY: &str = "DevicePolicy";

/// The template `cargo run -- synth` writes, built in process by `infra`.
pub fn synthesized(jitr_ca_ids: &[String]) -> Deployment {
    let mut config = infra::config::Config::default();
    config.jitr.ca_certificate_ids = jitr_ca_ids.to_vec();
    let validated = config.validate().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let assets: Vec<_> = infra::assembly::lambda_assets(dir.path())
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    let template = infra::assembly::template(&validated, &assets).unwrap_or_else(|e| panic!("{e}"));
    Deployment::from_template(&template, &Deployment::default_scope())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A CA that signs device certificates.
pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("ca");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A device certificate for `thing` (CN = thing).
    pub fn device(&self, thing: &str) -> Device {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, thing);
        let cert = params.signed_by(&key, &self.issuer).expect("device cert");
        Device {
            thing: thing.to_owned(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }
}

/// A device's certificate and key.
#[derive(Clone)]
pub struct Device {
    pub thing: String,
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

impl Device {
    pub fn id(&self) -> String {
        emulator::registry::certificate_id_of_der(&self.cert_der)
    }
}

/// An emulator with a registry and a channel sink.
pub struct Harness {
    pub emulator: Emulator,
    pub registry: Arc<MemRegistry>,
    pub invocations: UnboundedReceiver<Invocation>,
    pub ca: TestCa,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with_jitr(&[]).await
    }

    pub async fn start_with_jitr(jitr_ca_ids: &[String]) -> Harness {
        let registry = Arc::new(MemRegistry::new());
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
            ca: TestCa::new("fleetcert test device CA"),
        }
    }

    /// A thing with an ACTIVE certificate, attached, with the device policy.
    pub fn provision(&self, thing: &str) -> Device {
        let device = self.ca.device(thing);
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

    /// An MQTT client connecting as `client_id` with `device`'s certificate.
    pub fn client(&self, client_id: &str, device: &Device) -> (AsyncClient, EventLoop) {
        let mut roots = rustls::RootCertStore::empty();
        let root = rustls::pki_types::pem::PemObject::from_pem_slice(
            self.emulator.root_ca_pem().as_bytes(),
        )
        .expect("root pem");
        roots.add(root).expect("root");
        let config = rustls::ClientConfig::builder_with_provider(emulator::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from(device.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(device.key_der.clone())),
            )
            .expect("client auth");
        let mut options =
            MqttOptions::new(client_id, "localhost", self.emulator.local_addr().port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
        ));
        AsyncClient::new(options, 16)
    }

    /// The next rule invocation, within 5 s.
    pub async fn next_invocation(&mut self) -> Option<Invocation> {
        tokio::time::timeout(Duration::from_secs(5), self.invocations.recv())
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
