//! Shared test fixtures: keys and CSRs made at test time, a memory world
//! with provisioned devices, event builders, and DESIGN.md's invariants.
#![allow(dead_code)]

use std::collections::BTreeSet;

use lambdas::config::Config;
use lambdas::memory::MemoryPorts;
use lambdas::ports::{CertificateStatus, IotRegistry, Operation, Ports};
use rcgen::{CertificateParams, DnType, KeyPair};
use rules::functions::Function;
use rules::rotation::{CertificateFacts, check_invariants};
use serde_json::{Value, json};

pub const POLICY: &str = "fleetcert-device";
pub const TASK: &str = "task-0001";
pub const NOW: i64 = 1_767_225_600_000 + 86_400_000;

/// Runs a future to completion on a current-thread runtime.
pub fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

pub fn p256_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256 key")
}

pub fn csr_pem(key: &KeyPair, cn: &str) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .serialize_request(key)
        .expect("csr")
        .pem()
        .expect("csr pem")
}

/// The RSA-2048 test key (generated once per test binary).
pub fn rsa2048_key() -> KeyPair {
    test_support::rsa_keypair(2048, &rcgen::PKCS_RSA_SHA256)
}

/// A device as the tests track it: the keys and certificates it may hold.
#[derive(Debug)]
pub struct Device {
    pub thing: String,
    pub key: KeyPair,
    pub cert_id: String,
    /// Certificates the device may hold (its own plus any sent in `crt`).
    pub held: BTreeSet<String>,
}

pub struct World {
    pub ports: MemoryPorts,
    pub cfg: Config,
    pub now: i64,
}

impl World {
    pub fn new() -> Self {
        let ports = MemoryPorts::new();
        ports.ports.registry.create_policy(POLICY);
        ports.ports.registry.set_now_ms(NOW - 300 * 86_400_000);
        Self {
            ports,
            cfg: Config::local(POLICY),
            now: NOW,
        }
    }

    /// A world whose csr-issuer gets its certificates from `issuer`: for
    /// AWS Private CA, the memory CA (registered in the registry) with
    /// ECDSA signatures and a 365-day validity.
    pub fn for_issuer(issuer: rules::functions::Issuer) -> Self {
        let mut w = Self::new();
        if issuer == rules::functions::Issuer::PrivateCa {
            w.ports
                .ports
                .private_ca
                .register_in_iot()
                .expect("register the private ca");
            w.cfg.issuer = lambdas::config::IssuerConfig::PrivateCa(
                rules::issuer::PrivateCaSettings::new(
                    lambdas::memory::MEMORY_CA_ARN,
                    "SHA256WITHECDSA",
                    365,
                    None,
                )
                .expect("settings"),
            );
        }
        w
    }

    pub fn registry(&self) -> &lambdas::memory::MemoryRegistry {
        &self.ports.ports.registry
    }

    pub fn calls(&self, op: Operation) -> u64 {
        self.ports.instruments.calls(op)
    }

    /// A thing with an ACTIVE certificate attached with the device policy.
    pub fn provision(&self, thing: &str) -> Device {
        self.provision_with(thing, thing, &[POLICY])
    }

    /// A thing whose ACTIVE certificate has subject CN `cn` and carries
    /// `policies` (created when missing): a device of a fleet fleetcert did
    /// not provision.
    pub fn provision_with(&self, thing: &str, cn: &str, policies: &[&str]) -> Device {
        run(async {
            let key = p256_key();
            let registry = self.ports.registry();
            self.registry().add_thing(thing);
            let cert = registry
                .create_certificate_from_csr(&csr_pem(&key, cn), true)
                .await
                .expect("create certificate");
            for policy in policies {
                self.registry().create_policy(policy);
                registry
                    .attach_policy(policy, &cert.certificate_arn)
                    .await
                    .expect("attach policy");
            }
            registry
                .attach_thing_principal(thing, &cert.certificate_arn)
                .await
                .expect("attach thing");
            self.ports.instruments.reset_calls();
            Device {
                thing: thing.to_owned(),
                key,
                held: BTreeSet::from([cert.certificate_id.clone()]),
                cert_id: cert.certificate_id,
            }
        })
    }

    /// Marks every certificate published to the device in `crt` as held.
    pub fn receive_crt(&self, device: &mut Device) -> Option<Value> {
        let topic = format!("management/topic/{}/crt", device.thing);
        let last = self.ports.ports.publisher.published_to(&topic).pop()?;
        let crt: Value = serde_json::from_slice(&last.payload).expect("crt json");
        if let Some(id) = crt["certificateId"].as_str() {
            device.held.insert(id.to_owned());
        }
        Some(crt)
    }

    /// DESIGN.md's invariants for `device`: every certificate the device
    /// may hold per the rotation row is ACTIVE, attached to its thing with
    /// a policy; nothing else of the thing's is ACTIVE or attached; and at
    /// least one certificate the device really holds is usable.
    pub fn assert_invariants(&self, device: &Device) {
        let certs = self.registry().certificates();
        let usable = |id: &str| {
            certs.iter().any(|c| {
                c.certificate_id == id
                    && c.status == CertificateStatus::Active
                    && c.things.contains(&device.thing)
                    && !c.policies.is_empty()
            })
        };
        assert!(
            device.held.iter().any(|id| usable(id)),
            "never brick: thing {} holds no usable certificate among {:?}",
            device.thing,
            device.held
        );
        let store = &self.ports.ports.store;
        assert_eq!(
            store.open_count(),
            store.rows().iter().filter(|r| r.state.is_open()).count(),
            "the store's count of open rotations matches its rows"
        );
        assert_eq!(
            store.unsettled_count(),
            store
                .rows()
                .iter()
                .filter(|r| r.state.is_open() || r.cleanup_pending)
                .count(),
            "the store's count of open and pending rotations matches its rows"
        );
        if let Some(row) = store.row_for_thing(&device.thing) {
            let mine: Vec<_> = certs
                .iter()
                .filter(|c| {
                    c.things.contains(&device.thing)
                        || c.certificate_id == row.old_certificate_id
                        || row.state.new_certificate_id() == Some(c.certificate_id.as_str())
                        || device.held.contains(&c.certificate_id)
                })
                .collect();
            let facts: Vec<CertificateFacts<'_>> = mine
                .iter()
                .map(|c| CertificateFacts {
                    certificate_id: &c.certificate_id,
                    active: c.status == CertificateStatus::Active,
                    attached_to_thing: !c.things.is_empty(),
                    has_policy: !c.policies.is_empty(),
                })
                .collect();
            if let Err(e) = check_invariants(&row, &facts) {
                panic!("{e}");
            }
        }
    }

    /// Nothing in the whole registry is ACTIVE or attached unless some
    /// device may hold it.
    pub fn assert_no_orphans(&self, devices: &[&Device]) {
        for c in self.registry().certificates() {
            let lingering = c.status == CertificateStatus::Active
                || !c.things.is_empty()
                || !c.policies.is_empty();
            let held = devices.iter().any(|d| d.held.contains(&c.certificate_id));
            assert!(
                !lingering || held,
                "orphan: certificate {} is {} with things {:?} and policies {:?}, held by no device",
                c.certificate_id,
                c.status,
                c.things,
                c.policies
            );
        }
    }

    /// Asserts the calls since the last reset are among those `function`'s
    /// role allows, then resets the counters.
    pub fn assert_calls_within(&self, function: Function) {
        let allowed = lambdas::handlers::operations_for(function, self.cfg.issuer.kind());
        for (op, _) in self.ports.instruments.all_calls() {
            assert!(
                allowed.contains(&op),
                "{} called {op}, not in its operation list",
                function.name()
            );
        }
        self.ports.instruments.reset_calls();
    }
}

pub fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

pub fn sns_event(task: &str, check: &str, non_compliant: u64) -> Value {
    let message = json!({
        "accountId": "123456789012",
        "taskId": task,
        "taskStatus": "COMPLETED",
        "taskType": "SCHEDULED_AUDIT_TASK",
        "scheduledAuditName": "daily",
        "failedChecksCount": 0,
        "canceledChecksCount": 0,
        "nonCompliantChecksCount": u64::from(non_compliant > 0),
        "compliantChecksCount": 1,
        "totalChecksCount": 2,
        "taskStartTime": 1_767_225_600_000_u64,
        "auditDetails": [
            {"checkName": "CA_CERTIFICATE_EXPIRING_CHECK", "checkRunStatus": "COMPLETED_COMPLIANT",
             "nonCompliantResourcesCount": 0, "totalResourcesCount": 1},
            {"checkName": check, "checkRunStatus": if non_compliant > 0 { "COMPLETED_NON_COMPLIANT" } else { "COMPLETED_COMPLIANT" },
             "nonCompliantResourcesCount": non_compliant, "totalResourcesCount": 10}
        ]
    });
    json!({"Records": [{
        "EventSource": "aws:sns",
        "Sns": {"MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:audit", "Message": message.to_string()}
    }]})
}

/// An audit notification whose expiring-certificate check failed, as
/// Device Defender sends it when the audit role may not read.
pub fn failed_check_event(task: &str, check: &str) -> Value {
    let message = json!({
        "accountId": "123456789012", "taskId": task, "taskStatus": "COMPLETED",
        "taskType": "SCHEDULED_AUDIT_TASK", "scheduledAuditName": "daily",
        "failedChecksCount": 1, "canceledChecksCount": 0, "nonCompliantChecksCount": 0,
        "compliantChecksCount": 0, "totalChecksCount": 1, "taskStartTime": 1_767_225_600_000_u64,
        "auditDetails": [{"checkName": check, "checkRunStatus": "FAILED",
            "nonCompliantResourcesCount": 0, "totalResourcesCount": 0,
            "errorCode": "INSUFFICIENT_PERMISSIONS", "message": "the audit role may not read certificates"}]
    });
    json!({"Records": [{
        "EventSource": "aws:sns",
        "Sns": {"MessageId": "m-2", "TopicArn": "arn:aws:sns:us-east-1:123456789012:audit", "Message": message.to_string()}
    }]})
}

pub fn finding(
    cert_id: &str,
    task: &str,
    check: &str,
    expires_ms: i64,
    past: bool,
) -> rules::contracts::AuditFinding {
    serde_json::from_value(json!({
        "findingId": format!("f-{}", &cert_id[..8]),
        "taskId": task,
        "checkName": check,
        "nonCompliantResource": {
            "resourceType": "DEVICE_CERTIFICATE",
            "resourceIdentifier": {"deviceCertificateId": cert_id},
            "additionalInfo": {"EXPIRATION_TIME": expires_ms.to_string()}
        },
        "reasonForNonComplianceCode": if past { "CERTIFICATE_PAST_EXPIRATION" } else { "CERTIFICATE_APPROACHING_EXPIRATION" },
        "severity": "MEDIUM"
    }))
    .expect("finding")
}

pub fn work(cert_id: &str, past: bool) -> Value {
    json!({
        "certificateId": cert_id,
        "taskId": TASK,
        "checkName": "DEVICE_CERTIFICATE_EXPIRING_CHECK",
        "expirationTimeMs": NOW + 10 * 86_400_000,
        "pastExpiration": past
    })
}

pub fn sqs_event(bodies: &[Value]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "messageId": format!("msg-{i}"),
                "receiptHandle": "rh",
                "body": b.to_string(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "x",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:rotations",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

pub fn csr_res(thing: &str, csr: &str, rotation_id: Option<&str>) -> Value {
    let mut v = json!({"clientid": thing, "topicClientId": thing, "CSR": csr});
    if let Some(id) = rotation_id {
        v["rotationId"] = json!(id);
    }
    v
}

pub fn crt_ack(thing: &str, principal: &str, rotation_id: Option<&str>) -> Value {
    let mut v = json!({"clientid": thing, "topicClientId": thing, "principal": principal});
    if let Some(id) = rotation_id {
        v["rotationId"] = json!(id);
    }
    v
}

pub fn crt_err(thing: &str, principal: &str, error: &str, rotation_id: Option<&str>) -> Value {
    let mut v =
        json!({"clientid": thing, "topicClientId": thing, "principal": principal, "error": error});
    if let Some(id) = rotation_id {
        v["rotationId"] = json!(id);
    }
    v
}

pub fn scheduled_event() -> Value {
    json!({
        "version": "0", "id": "e-1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-01-02T00:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/fleetcert-sweeper"], "detail": {}
    })
}

/// The rotation id the latest `csr_req` to `thing` carries.
pub fn last_csr_req(world: &World, thing: &str) -> Option<Value> {
    let topic = format!("management/topic/{thing}/csr_req");
    let last = world.ports.ports.publisher.published_to(&topic).pop()?;
    serde_json::from_slice(&last.payload).ok()
}
