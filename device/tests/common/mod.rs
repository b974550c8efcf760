//! Test helpers: a test PKI (rcgen), a mosquitto broker with mutual TLS on
//! a free 127.0.0.1 port, a "cloud" MQTT client playing the Lambdas, and an
//! agent runner collecting events.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use device::{Agent, AgentConfig, AgentError, AgentEvent, Backoff};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, IsCa, Issuer,
    KeyPair, SanType,
};
use rules::contracts::ClientId;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// A test CA.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("ca cert");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Signs a CSR as the cloud's CSR Lambda would.
    pub fn sign_csr(&self, csr_pem: &str) -> String {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).expect("csr parses");
        csr.signed_by(&self.issuer).expect("sign csr").pem()
    }

    /// A client certificate and key for `cn` (P-256).
    pub fn client(&self, cn: &str) -> (String, String) {
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).expect("client cert");
        (cert.pem(), key.serialize_pem())
    }

    /// The broker's server certificate (127.0.0.1 and localhost).
    pub fn server(&self) -> (String, String) {
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        params.distinguished_name.push(DnType::CommonName, "broker");
        let cert = params.signed_by(&key, &self.issuer).expect("server cert");
        (cert.pem(), key.serialize_pem())
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn mosquitto_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FLEETCERT_MOSQUITTO") {
        return PathBuf::from(path);
    }
    for candidate in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("mosquitto is not installed: run `bash scripts/install-test-tools.sh` first");
}

/// A mosquitto broker that requires client certificates signed by `ca`;
/// killed on drop.
pub struct Broker {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Broker {
    pub fn start(ca: &Ca) -> Broker {
        Broker::start_on(ca, free_port())
    }

    pub fn start_on(ca: &Ca, port: u16) -> Broker {
        let binary = mosquitto_binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = ca.server();
        std::fs::write(dir.path().join("ca.pem"), &ca.pem).expect("write ca");
        std::fs::write(dir.path().join("server.pem"), cert).expect("write cert");
        std::fs::write(dir.path().join("server.key"), key).expect("write key");
        let d = dir.path().display();
        let user = if is_root() { "user root\n" } else { "" };
        let conf = format!(
            "{user}persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n\
             listener {port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\n\
             keyfile {d}/server.key\nrequire_certificate true\nuse_identity_as_username true\n"
        );
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).expect("write conf");
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut broker = Broker {
            port,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("mosquitto exited: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test-side cloud: subscribed to every device's csr_res, crt_ack and
/// crt_err.
pub struct Cloud {
    client: AsyncClient,
    eventloop: EventLoop,
    inbox: std::collections::VecDeque<rumqttc::Publish>,
}

impl Cloud {
    pub async fn connect(ca: &Ca, port: u16) -> Cloud {
        let (cert, key) = ca.client("cloud");
        let roots = device::keys::root_store(&ca.pem).expect("roots");
        let tls = device::keys::client_config(roots, &cert, &key).expect("cloud tls");
        let mut options = MqttOptions::new("cloud", "127.0.0.1", port);
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        for suffix in ["csr_res", "crt_ack", "crt_err"] {
            client
                .subscribe(format!("management/topic/+/{suffix}"), QoS::AtLeastOnce)
                .await
                .expect("subscribe");
        }
        let mut subacks = 0;
        tokio::time::timeout(Duration::from_secs(10), async {
            while subacks < 3 {
                if let Event::Incoming(Packet::SubAck(_)) =
                    eventloop.poll().await.expect("cloud poll")
                {
                    subacks += 1;
                }
            }
        })
        .await
        .expect("cloud subscribed");
        Cloud {
            client,
            eventloop,
            inbox: Default::default(),
        }
    }

    pub async fn send(&mut self, thing: &str, suffix: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(
                format!("management/topic/{thing}/{suffix}"),
                QoS::AtLeastOnce,
                false,
                payload.into(),
            )
            .await
            .expect("cloud publish");
        // Drive the connection until the broker has the message.
        let mut pkid = None;
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match self.eventloop.poll().await.expect("cloud poll") {
                    Event::Outgoing(rumqttc::Outgoing::Publish(id)) => pkid = Some(id),
                    Event::Incoming(Packet::PubAck(ack)) if Some(ack.pkid) == pkid => return,
                    Event::Incoming(Packet::Publish(p)) => self.inbox.push_back(p),
                    _ => {}
                }
            }
        })
        .await
        .expect("cloud publish acknowledged within 10 s");
    }

    async fn next_publish(&mut self) -> rumqttc::Publish {
        if let Some(p) = self.inbox.pop_front() {
            return p;
        }
        loop {
            if let Event::Incoming(Packet::Publish(p)) =
                self.eventloop.poll().await.expect("cloud poll")
            {
                return p;
            }
        }
    }

    /// The next message on `…/{thing}/{suffix}`, within 30 s.
    pub async fn expect(&mut self, thing: &str, suffix: &str) -> Value {
        let topic = format!("management/topic/{thing}/{suffix}");
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let p = self.next_publish().await;
                if p.topic == topic {
                    return serde_json::from_slice(&p.payload).expect("json payload");
                }
                eprintln!("cloud: skipping {} {:?}", p.topic, p.payload);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no message on {topic} within 30 s"))
    }

    /// Polls for `d` and returns every message received meanwhile.
    pub async fn drain(&mut self, d: Duration) -> Vec<(String, Value)> {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(d, async {
            loop {
                let p = self.next_publish().await;
                got.push((
                    p.topic.clone(),
                    serde_json::from_slice(&p.payload).unwrap_or(Value::Null),
                ));
            }
        })
        .await;
        got
    }
}

/// A device with a provisioned current certificate in a temp directory.
pub struct Device {
    pub thing: String,
    pub dir: tempfile::TempDir,
    pub cert_pem: String,
}

impl Device {
    pub fn provision(ca: &Ca, thing: &str) -> Device {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = device::keys::generate_key(rules::contracts::KeyAlgorithm::EcP256).expect("key");
        let csr = device::keys::csr_pem(thing, &key).expect("csr");
        let cert = ca.sign_csr(&csr);
        device::Slots::open(dir.path())
            .expect("slots")
            .install(&cert, &key.serialize_pem(), None)
            .expect("install");
        Device {
            thing: thing.to_owned(),
            dir,
            cert_pem: cert,
        }
    }

    pub fn config(&self, ca: &Ca, port: u16) -> AgentConfig {
        let mut config = AgentConfig::new(
            ClientId::new(self.thing.clone()).expect("thing"),
            "127.0.0.1",
            port,
            ca.pem.clone(),
            self.dir.path(),
        );
        config.connect_timeout = Duration::from_secs(5);
        config.ack_timeout = Duration::from_secs(5);
        config.backoff = Backoff {
            initial: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
            max_attempts: 5,
            max_total: Duration::from_secs(10),
        };
        config
    }

    pub fn current_certificate(&self) -> String {
        device::Slots::open(self.dir.path())
            .expect("slots")
            .load()
            .expect("load")
            .current
            .and_then(|c| c.cert_pem)
            .expect("current certificate")
    }
}

/// An agent running in its own task, its events on a channel.
pub struct Running {
    pub events: mpsc::UnboundedReceiver<AgentEvent>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), AgentError>>,
}

impl Running {
    pub fn start(agent: Agent) -> Running {
        let (tx, events) = mpsc::unbounded_channel();
        let agent = agent.with_events(Arc::new(move |e| {
            let _ = tx.send(e);
        }));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(agent.run(async move {
            let _ = stopped.await;
        }));
        Running {
            events,
            stop: Some(stop),
            task,
        }
    }

    /// Waits (at most 30 s) for an event `f` accepts; returns it.
    pub async fn wait_for(
        &mut self,
        what: &str,
        mut f: impl FnMut(&AgentEvent) -> bool,
    ) -> AgentEvent {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match self.events.recv().await {
                    Some(e) if f(&e) => return e,
                    Some(e) => eprintln!("event: {e:?}"),
                    None => panic!("agent stopped while waiting for {what}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {what} event within 30 s"))
    }

    pub async fn stop(mut self) -> Result<(), AgentError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("agent stops within 10 s")
            .expect("agent task")
    }

    pub async fn finish(self) -> Result<(), AgentError> {
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("agent ends within 30 s")
            .expect("agent task")
    }
}
