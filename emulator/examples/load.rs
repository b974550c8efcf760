//! Bounded load run: N clients (default 500) connect over mutual TLS, each
//! publishes M QoS 1 `csr_res` messages (default 20) that the topic rules
//! route to a counting sink. Prints connections/s and publishes/s.
//!
//! It measures the server, so AWS's per-connection quota of 100 publishes
//! per second is lifted (every other limit, the rule action queue included,
//! stays at its default).
//!
//! `cargo run -p emulator --release --example load -- [clients] [publishes]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use emulator::sink::BoxFuture;
use emulator::{Emulator, EmulatorConfig, MqttLimits, RuleSink, StandaloneRegistry};
use rules::functions::Function;
use rumqttc::{Event, Packet, QoS};
use tokio::sync::Semaphore;

#[derive(Debug, Default)]
struct CountingSink(AtomicU64);

impl RuleSink for CountingSink {
    fn invoke(&self, _: &str, _: Function, _: serde_json::Value) -> BoxFuture {
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async {})
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let publishes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let registry = Arc::new(StandaloneRegistry::new());
    let sink = Arc::new(CountingSink::default());
    let mut limits = MqttLimits::default();
    limits.publishes_per_second = u32::MAX;
    let emulator = Emulator::start(
        EmulatorConfig {
            limits,
            ..EmulatorConfig::default()
        },
        common::synthesized(&[]),
        registry.clone(),
        sink.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let h = common::Harness {
        emulator,
        registry,
        invocations: tokio::sync::mpsc::unbounded_channel().1,
        ca: common::TestCa::new("load CA").expect("ca"),
    };
    let devices: Vec<_> = (0..clients)
        .map(|i| h.provision(&format!("load-{i}")))
        .collect();
    let h = Arc::new(h);

    // phase 1: connect everyone (at most 64 handshakes in flight)
    let gate = Arc::new(Semaphore::new(64));
    let start = Instant::now();
    let mut conns = Vec::new();
    for d in &devices {
        let permit = gate.clone().acquire_owned().await.expect("semaphore");
        let (client, mut ev) = h.client(&d.thing, d);
        conns.push(tokio::spawn(async move {
            let c = tokio::time::timeout(Duration::from_secs(60), common::connected(&mut ev)).await;
            drop(permit);
            c.expect("connect within 60 s");
            (client, ev)
        }));
    }
    let mut connected = Vec::new();
    for c in conns {
        connected.push(c.await.expect("join"));
    }
    let connect_s = start.elapsed().as_secs_f64();

    // phase 2: every client publishes `publishes` QoS 1 messages and waits for the acks
    let start = Instant::now();
    let mut runs = Vec::new();
    for (i, (client, mut ev)) in connected.into_iter().enumerate() {
        runs.push(tokio::spawn(async move {
            let topic = format!("management/topic/load-{i}/csr_res");
            let mut acked = 0;
            let sender = tokio::spawn(async move {
                for n in 0..publishes {
                    let body = format!(r#"{{"CSR":"x","rotationId":"r{n}"}}"#);
                    client
                        .publish(&topic, QoS::AtLeastOnce, false, body.into_bytes())
                        .await
                        .expect("publish");
                }
                client
            });
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while acked < publishes {
                match tokio::time::timeout_at(deadline, ev.poll()).await {
                    Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => panic!("client load-{i}: {e}"),
                    Err(_) => panic!("client load-{i}: acks not in within 120 s"),
                }
            }
            sender.await.expect("sender")
        }));
    }
    let mut keep = Vec::new();
    for r in runs {
        keep.push(r.await.expect("join"));
    }
    let publish_s = start.elapsed().as_secs_f64();
    let total = clients * publishes;
    // rule actions are queued before the PUBACK and run soon after: wait
    // (bounded) for the queue to drain
    let mut invoked = sink.0.load(Ordering::Relaxed);
    for _ in 0..500 {
        if invoked == h.emulator.stats().rule_invocations {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        invoked = sink.0.load(Ordering::Relaxed);
    }
    println!(
        "clients {clients}: connected in {connect_s:.2} s = {:.0} connections/s (mutual TLS + CONNECT)",
        clients as f64 / connect_s
    );
    println!(
        "publishes {total} QoS 1: acked in {publish_s:.2} s = {:.0} publishes/s, rule invocations {invoked}",
        total as f64 / publish_s
    );
    println!("stats {:?}", h.emulator.stats());
    assert_eq!(invoked, total as u64, "every csr_res reached the rule");
    drop(keep);
}
