//! The in-memory AWS IoT registry: certificates (issued for real by an
//! in-memory root CA), things, policies, attachments, CA certificates for
//! JITR, and Device Defender findings.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use rules::contracts::AuditFinding;
use rules::csr::KeyAlgorithm;
use tokio::sync::broadcast;

use super::{Instruments, lock};
use crate::ports::{
    CaCertificateDescription, CertificateDescription, CertificateStatus, CreatedCertificate,
    IotRegistry, Operation, Page, PortError, PortResult, PrincipalThing, ThingDescription,
    ThingPrincipalType,
};

const ARN_PREFIX: &str = "arn:aws:iot:us-east-1:123456789012:";
/// Default validity of an issued certificate: 365 days.
const DEFAULT_VALIDITY_MS: i64 = 365 * 24 * 60 * 60 * 1000;
/// Default `ListAuditFindings` page size (the API's maximum).
const DEFAULT_FINDINGS_PAGE: usize = 250;
/// Page size of the other listings (AWS's default).
const LIST_PAGE: usize = 25;

/// A certificate's status changed (the emulator closes the connections of a
/// certificate that is no longer ACTIVE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The certificate.
    pub certificate_id: String,
    /// Its new status; `None`: deleted.
    pub status: Option<CertificateStatus>,
}

/// Everything the registry holds about one certificate, for assertions and
/// the emulator's connection checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSnapshot {
    /// The id.
    pub certificate_id: String,
    /// The ARN.
    pub certificate_arn: String,
    /// The status.
    pub status: CertificateStatus,
    /// The PEM.
    pub certificate_pem: String,
    /// The registering CA (JITR).
    pub ca_certificate_id: Option<String>,
    /// Attached policy names.
    pub policies: BTreeSet<String>,
    /// Attached thing names.
    pub things: BTreeSet<String>,
    /// The thing it is attached to exclusively (`EXCLUSIVE_THING`), if so.
    pub exclusive_thing: Option<String>,
    /// Validity start (ms).
    pub not_before_ms: i64,
    /// Validity end (ms).
    pub not_after_ms: i64,
    /// When the registry created or registered it (its clock, ms).
    pub created_ms: i64,
}

/// A CA registered with [`MemoryRegistry::register_ca_certificate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaHandle {
    /// Its id.
    pub ca_certificate_id: String,
}

struct CaRecord {
    status: String,
    auto_registration_status: String,
    pem: String,
    created_ms: i64,
    modified_ms: i64,
}

/// Everything the registry holds about one CA certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSnapshot {
    /// As `DescribeCACertificate` describes it.
    pub description: CaCertificateDescription,
    /// When it was registered (the registry's clock, ms).
    pub created_ms: i64,
    /// When its status or auto-registration last changed (ms).
    pub modified_ms: i64,
}

struct State {
    certificates: BTreeMap<String, CertificateSnapshot>,
    things: BTreeSet<String>,
    thing_attributes: BTreeMap<String, BTreeMap<String, String>>,
    /// Name → document (JSON text; empty for a policy the deployment
    /// defines, whose document the emulator reads from the template).
    policies: BTreeMap<String, String>,
    cas: BTreeMap<String, CaRecord>,
    findings: BTreeMap<(String, String), Vec<AuditFinding>>,
    findings_page: usize,
    now_ms: i64,
    validity_ms: i64,
    serial: u64,
}

struct RootCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// The in-memory registry. Clones share state.
#[derive(Clone)]
pub struct MemoryRegistry {
    instruments: Arc<Instruments>,
    state: Arc<Mutex<State>>,
    root: Arc<RootCa>,
    status_tx: broadcast::Sender<StatusChange>,
}

impl std::fmt::Debug for MemoryRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("MemoryRegistry")
            .field("certificates", &state.certificates.len())
            .field("things", &state.things.len())
            .field("policies", &state.policies)
            .finish_non_exhaustive()
    }
}

fn cert_arn(id: &str) -> String {
    format!("{ARN_PREFIX}cert/{id}")
}

fn thing_arn(name: &str) -> String {
    format!("{ARN_PREFIX}thing/{name}")
}

fn root_ca() -> RootCa {
    // Fixed inputs, generated at run time: cannot fail.
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap_or_else(|e| panic!("generating the in-memory root ca key: {e}"));
    root_ca_with(key)
}

/// An Ed25519 root whose key is `seed`: Ed25519 signatures are
/// deterministic, so the same CSRs issued in the same order give the same
/// certificates (and certificate ids) in every run.
fn seeded_root_ca(seed: [u8; 32]) -> RootCa {
    // PKCS#8 v1 of an Ed25519 private key (RFC 8410): a fixed prefix, then the seed.
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    let key = KeyPair::from_pkcs8_der_and_sign_algo(&der.as_slice().into(), &rcgen::PKCS_ED25519)
        .unwrap_or_else(|e| panic!("loading the seeded in-memory root ca key: {e}"));
    root_ca_with(key)
}

fn root_ca_with(key: KeyPair) -> RootCa {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "fleetcert in-memory Amazon Root CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params
        .self_signed(&key)
        .unwrap_or_else(|e| panic!("self-signing the in-memory root ca: {e}"));
    RootCa {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

impl MemoryRegistry {
    /// An empty registry sharing `instruments`, with a fresh root CA.
    pub fn new(instruments: Arc<Instruments>) -> Self {
        Self::with_root(instruments, root_ca())
    }

    /// An empty registry whose root CA is an Ed25519 key made from `seed`,
    /// so that its certificates (and their ids) are the same in every run
    /// that issues the same CSRs in the same order (simulations that
    /// promise the same report for the same seed).
    pub fn seeded(instruments: Arc<Instruments>, seed: [u8; 32]) -> Self {
        Self::with_root(instruments, seeded_root_ca(seed))
    }

    fn with_root(instruments: Arc<Instruments>, root: RootCa) -> Self {
        let (status_tx, _) = broadcast::channel(1024);
        Self {
            instruments,
            state: Arc::new(Mutex::new(State {
                certificates: BTreeMap::new(),
                things: BTreeSet::new(),
                thing_attributes: BTreeMap::new(),
                policies: BTreeMap::new(),
                cas: BTreeMap::new(),
                findings: BTreeMap::new(),
                findings_page: DEFAULT_FINDINGS_PAGE,
                now_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
                validity_ms: DEFAULT_VALIDITY_MS,
                serial: 0,
            })),
            root: Arc::new(root),
            status_tx,
        }
    }

    /// The root CA that signs [`IotRegistry::create_certificate_from_csr`]'s
    /// certificates, in PEM form (devices trust it as the server does).
    pub fn root_ca_pem(&self) -> &str {
        &self.root.pem
    }

    /// Sets the registry's clock (validity of issued certificates).
    pub fn set_now_ms(&self, now_ms: i64) {
        lock(&self.state).now_ms = now_ms;
    }

    /// Sets the validity of certificates issued from now on.
    pub fn set_validity_ms(&self, validity_ms: i64) {
        lock(&self.state).validity_ms = validity_ms.max(1);
    }

    /// Status changes from now on.
    pub fn subscribe_status(&self) -> broadcast::Receiver<StatusChange> {
        self.status_tx.subscribe()
    }

    /// Creates an IoT policy (its document is the emulator's business).
    pub fn create_policy(&self, name: &str) {
        lock(&self.state)
            .policies
            .entry(name.to_owned())
            .or_default();
    }

    /// `CreatePolicy`: a policy with its document (JSON text).
    ///
    /// # Errors
    /// [`PortError::Conflict`] when a policy of that name exists.
    pub fn create_policy_with_document(&self, name: &str, document: &str) -> PortResult<()> {
        let mut state = lock(&self.state);
        if state.policies.contains_key(name) {
            return Err(PortError::Conflict {
                operation: Operation::AttachPolicy,
                message: format!("policy {name} already exists"),
            });
        }
        state.policies.insert(name.to_owned(), document.to_owned());
        Ok(())
    }

    /// A policy's document (empty for one of the deployment's), `None`
    /// when there is no such policy.
    pub fn policy_document(&self, name: &str) -> Option<String> {
        lock(&self.state).policies.get(name).cloned()
    }

    /// Every policy name, in order.
    pub fn policy_names(&self) -> Vec<String> {
        lock(&self.state).policies.keys().cloned().collect()
    }

    /// Every thing name, in order.
    pub fn thing_names(&self) -> Vec<String> {
        lock(&self.state).things.iter().cloned().collect()
    }

    /// A thing's attributes (`CreateThing`'s `attributePayload`).
    pub fn thing_attributes(&self, name: &str) -> BTreeMap<String, String> {
        lock(&self.state)
            .thing_attributes
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Sets a thing's attributes.
    pub fn set_thing_attributes(&self, name: &str, attributes: BTreeMap<String, String>) {
        lock(&self.state)
            .thing_attributes
            .insert(name.to_owned(), attributes);
    }

    /// `DeleteThing`: removes a thing to which no certificate is attached;
    /// deleting a thing that does not exist succeeds, as on AWS.
    ///
    /// # Errors
    /// [`PortError::Invalid`] while a certificate is attached to it.
    pub fn delete_thing(&self, name: &str) -> PortResult<()> {
        let mut state = lock(&self.state);
        if let Some(c) = state
            .certificates
            .values()
            .find(|c| c.things.contains(name))
        {
            return Err(PortError::Invalid {
                operation: Operation::DescribeThing,
                message: format!(
                    "cannot delete thing {name}: certificate {} is attached to it",
                    c.certificate_id
                ),
            });
        }
        state.things.remove(name);
        state.thing_attributes.remove(name);
        Ok(())
    }

    /// The registration code `RegisterCACertificate` asks a verification
    /// certificate's CN to be: fixed per registry (per account and region
    /// on AWS), 64 hex digits.
    pub fn registration_code(&self) -> String {
        rules::csr::certificate_id(&self.root.pem).unwrap_or_default()
    }

    /// `RegisterCACertificate`: registers a CA certificate with the status
    /// and auto-registration given; the caller has checked it (and its
    /// verification certificate).
    ///
    /// # Errors
    /// [`PortError::Invalid`] when `pem` is not a certificate,
    /// [`PortError::Conflict`] when it is registered already.
    pub fn register_ca_certificate_as(
        &self,
        pem: &str,
        active: bool,
        auto_registration: bool,
    ) -> PortResult<CaHandle> {
        let id = rules::csr::certificate_id(pem).map_err(|e| PortError::Invalid {
            operation: Operation::DescribeCaCertificate,
            message: e.to_string(),
        })?;
        let mut state = lock(&self.state);
        if state.cas.contains_key(&id) {
            return Err(PortError::Conflict {
                operation: Operation::DescribeCaCertificate,
                message: format!("ca certificate {id} is already registered"),
            });
        }
        let now = state.now_ms;
        state.cas.insert(
            id.clone(),
            CaRecord {
                status: if active { "ACTIVE" } else { "INACTIVE" }.to_owned(),
                auto_registration_status: if auto_registration {
                    "ENABLE"
                } else {
                    "DISABLE"
                }
                .to_owned(),
                pem: pem.to_owned(),
                created_ms: now,
                modified_ms: now,
            },
        );
        Ok(CaHandle {
            ca_certificate_id: id,
        })
    }

    /// One CA certificate, as stored (no call counted).
    pub fn ca_certificate(&self, ca_certificate_id: &str) -> Option<CaSnapshot> {
        lock(&self.state)
            .cas
            .get(ca_certificate_id)
            .map(|ca| ca_snapshot(ca_certificate_id, ca))
    }

    /// Every CA certificate, as stored, in id order.
    pub fn ca_snapshots(&self) -> Vec<CaSnapshot> {
        lock(&self.state)
            .cas
            .iter()
            .map(|(id, ca)| ca_snapshot(id, ca))
            .collect()
    }

    /// `RegisterCertificateWithoutCA`: a device certificate whose CA is not
    /// registered, with `status`.
    ///
    /// # Errors
    /// [`PortError::Invalid`] when `pem` is not a certificate,
    /// [`PortError::Conflict`] when it is registered already.
    pub fn register_certificate_without_ca(
        &self,
        pem: &str,
        status: CertificateStatus,
    ) -> PortResult<CreatedCertificate> {
        let invalid = |message: String| PortError::Invalid {
            operation: Operation::RegisterCertificate,
            message,
        };
        let info = rules::csr::inspect_certificate(pem).map_err(|e| invalid(e.to_string()))?;
        let id = info.certificate_id;
        let mut state = lock(&self.state);
        if state.certificates.contains_key(&id) {
            return Err(PortError::Conflict {
                operation: Operation::RegisterCertificate,
                message: format!("certificate {id} is already registered"),
            });
        }
        let created_ms = state.now_ms;
        state.certificates.insert(
            id.clone(),
            CertificateSnapshot {
                certificate_id: id.clone(),
                certificate_arn: cert_arn(&id),
                status: status.clone(),
                certificate_pem: pem.to_owned(),
                ca_certificate_id: None,
                policies: BTreeSet::new(),
                things: BTreeSet::new(),
                exclusive_thing: None,
                not_before_ms: i64::try_from(info.not_before_ms).unwrap_or(i64::MAX),
                not_after_ms: i64::try_from(info.not_after_ms).unwrap_or(i64::MAX),
                created_ms,
            },
        );
        drop(state);
        self.notify_status(&id, Some(status));
        Ok(CreatedCertificate {
            certificate_arn: cert_arn(&id),
            certificate_id: id,
            certificate_pem: pem.to_owned(),
        })
    }

    /// Creates a thing without counting a call.
    pub fn add_thing(&self, name: &str) {
        lock(&self.state).things.insert(name.to_owned());
    }

    /// Whether the thing exists.
    pub fn has_thing(&self, name: &str) -> bool {
        lock(&self.state).things.contains(name)
    }

    /// Registers a CA certificate (`RegisterCACertificate`), ACTIVE with
    /// auto-registration on, and returns its id.
    ///
    /// # Errors
    /// [`PortError::Invalid`] when `pem` is not a certificate.
    pub fn register_ca_certificate(&self, pem: &str) -> PortResult<CaHandle> {
        let id = rules::csr::certificate_id(pem).map_err(|e| PortError::Invalid {
            operation: Operation::DescribeCaCertificate,
            message: e.to_string(),
        })?;
        let mut state = lock(&self.state);
        let now = state.now_ms;
        state.cas.insert(
            id.clone(),
            CaRecord {
                status: "ACTIVE".to_owned(),
                auto_registration_status: "ENABLE".to_owned(),
                pem: pem.to_owned(),
                created_ms: now,
                modified_ms: now,
            },
        );
        Ok(CaHandle {
            ca_certificate_id: id,
        })
    }

    /// Sets a CA's status (`ACTIVE`/`INACTIVE`) and auto-registration
    /// (`ENABLE`/`DISABLE`); false when the CA is unknown.
    pub fn set_ca_status(
        &self,
        ca_certificate_id: &str,
        status: &str,
        auto_registration: &str,
    ) -> bool {
        let mut state = lock(&self.state);
        let now = state.now_ms;
        match state.cas.get_mut(ca_certificate_id) {
            Some(ca) => {
                ca.status = status.to_owned();
                ca.auto_registration_status = auto_registration.to_owned();
                ca.modified_ms = now;
                true
            }
            None => false,
        }
    }

    /// JITR auto-registration: a device certificate signed by a registered,
    /// ACTIVE, auto-registering CA is registered PENDING_ACTIVATION with its
    /// CA id (idempotent). Returns the certificate id.
    ///
    /// # Errors
    /// [`PortError::Invalid`] when the PEM does not parse or no registered
    /// CA with auto-registration on signed it.
    pub fn auto_register(&self, pem: &str) -> PortResult<String> {
        let invalid = |message: String| PortError::Invalid {
            operation: Operation::DescribeCertificate,
            message,
        };
        let info = rules::csr::inspect_certificate(pem).map_err(|e| invalid(e.to_string()))?;
        let mut state = lock(&self.state);
        if state.certificates.contains_key(&info.certificate_id) {
            return Ok(info.certificate_id);
        }
        let ca_id = state
            .cas
            .iter()
            .find(|(_, ca)| {
                ca.status == "ACTIVE"
                    && ca.auto_registration_status == "ENABLE"
                    && rules::csr::verify_issued_by(pem, &ca.pem).is_ok()
            })
            .map(|(id, _)| id.clone())
            .ok_or_else(|| {
                invalid("no registered ca with auto-registration signed it".to_owned())
            })?;
        let created_ms = state.now_ms;
        state.certificates.insert(
            info.certificate_id.clone(),
            CertificateSnapshot {
                certificate_id: info.certificate_id.clone(),
                certificate_arn: cert_arn(&info.certificate_id),
                status: CertificateStatus::PendingActivation,
                certificate_pem: pem.to_owned(),
                ca_certificate_id: Some(ca_id),
                policies: BTreeSet::new(),
                things: BTreeSet::new(),
                exclusive_thing: None,
                not_before_ms: i64::try_from(info.not_before_ms).unwrap_or(i64::MAX),
                not_after_ms: i64::try_from(info.not_after_ms).unwrap_or(i64::MAX),
                created_ms,
            },
        );
        Ok(info.certificate_id)
    }

    /// Stores the findings `ListAuditFindings(task_id, check_name)` returns.
    pub fn set_audit_findings(&self, task_id: &str, check_name: &str, findings: Vec<AuditFinding>) {
        lock(&self.state)
            .findings
            .insert((task_id.to_owned(), check_name.to_owned()), findings);
    }

    /// Sets the `ListAuditFindings` page size (default 250).
    pub fn set_findings_page_size(&self, size: usize) {
        lock(&self.state).findings_page = size.max(1);
    }

    /// One certificate, as stored (no call counted).
    pub fn certificate(&self, certificate_id: &str) -> Option<CertificateSnapshot> {
        lock(&self.state).certificates.get(certificate_id).cloned()
    }

    /// One certificate's status, without copying it (no call counted).
    pub fn status(&self, certificate_id: &str) -> Option<CertificateStatus> {
        lock(&self.state)
            .certificates
            .get(certificate_id)
            .map(|c| c.status.clone())
    }

    /// Every certificate (no call counted).
    pub fn certificates(&self) -> Vec<CertificateSnapshot> {
        lock(&self.state).certificates.values().cloned().collect()
    }

    /// The certificates attached to `thing_name` (no call counted).
    pub fn certificates_of_thing(&self, thing_name: &str) -> Vec<CertificateSnapshot> {
        lock(&self.state)
            .certificates
            .values()
            .filter(|c| c.things.contains(thing_name))
            .cloned()
            .collect()
    }

    fn set_status(state: &mut State, id: &str, status: CertificateStatus) -> PortResult<bool> {
        let cert = state
            .certificates
            .get_mut(id)
            .ok_or_else(|| not_found(Operation::UpdateCertificate, "certificate", id))?;
        let changed = cert.status != status;
        cert.status = status;
        Ok(changed)
    }

    fn cert_by_arn<'a>(
        state: &'a mut State,
        operation: Operation,
        arn: &str,
    ) -> PortResult<&'a mut CertificateSnapshot> {
        let id = arn
            .rsplit_once(":cert/")
            .map(|(_, id)| id)
            .ok_or_else(|| PortError::Invalid {
                operation,
                message: format!("{arn} is not a certificate arn"),
            })?;
        state
            .certificates
            .get_mut(id)
            .ok_or_else(|| not_found(operation, "certificate", id))
    }

    fn issue(
        &self,
        csr_pem: &str,
        validity_ms: Option<i64>,
        issued_ago_ms: i64,
    ) -> PortResult<(String, String, i64, i64)> {
        let invalid = |message: String| PortError::Invalid {
            operation: Operation::CreateCertificateFromCsr,
            message,
        };
        // Parsed and its signature verified once, by rcgen (ring), as the
        // service checks it; an EC key's curve is known from that, an RSA
        // key's size from `rules`.
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| invalid(format!("csr: {e}")))?;
        let alg = csr.public_key.algorithm();
        if alg != &rcgen::PKCS_ECDSA_P256_SHA256 && alg != &rcgen::PKCS_ECDSA_P384_SHA384 {
            let info = rules::csr::inspect_csr(csr_pem).map_err(|e| invalid(e.to_string()))?;
            match info.key {
                KeyAlgorithm::Rsa { bits } if bits >= 2048 => {}
                other => return Err(invalid(format!("key {other} is not accepted"))),
            }
        }
        let (serial, now_ms, validity_ms) = {
            let mut state = lock(&self.state);
            state.serial += 1;
            (
                state.serial,
                state.now_ms.saturating_sub(issued_ago_ms),
                validity_ms.unwrap_or(state.validity_ms).max(1),
            )
        };
        let not_after_ms = now_ms.saturating_add(validity_ms);
        csr.params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
        csr.params.not_before = to_time(now_ms).map_err(invalid)?;
        csr.params.not_after = to_time(not_after_ms).map_err(invalid)?;
        csr.params.is_ca = IsCa::ExplicitNoCa;
        let cert = csr
            .signed_by(&self.root.issuer)
            .map_err(|e| invalid(format!("signing: {e}")))?;
        let pem = cert.pem();
        let id = rules::csr::certificate_id(&pem).map_err(|e| invalid(e.to_string()))?;
        // Second precision in X.509 validity.
        Ok((
            id,
            pem,
            now_ms - now_ms % 1000,
            not_after_ms - not_after_ms % 1000,
        ))
    }

    fn insert_issued(
        &self,
        csr_pem: &str,
        set_as_active: bool,
        validity_ms: Option<i64>,
        issued_ago_ms: i64,
    ) -> PortResult<CreatedCertificate> {
        let (id, pem, not_before_ms, not_after_ms) =
            self.issue(csr_pem, validity_ms, issued_ago_ms)?;
        let status = if set_as_active {
            CertificateStatus::Active
        } else {
            CertificateStatus::Inactive
        };
        let mut state = lock(&self.state);
        let created_ms = state.now_ms;
        state.certificates.insert(
            id.clone(),
            CertificateSnapshot {
                certificate_id: id.clone(),
                certificate_arn: cert_arn(&id),
                status: status.clone(),
                certificate_pem: pem.clone(),
                ca_certificate_id: None,
                policies: BTreeSet::new(),
                things: BTreeSet::new(),
                exclusive_thing: None,
                not_before_ms,
                not_after_ms,
                created_ms,
            },
        );
        drop(state);
        self.notify_status(&id, Some(status));
        Ok(CreatedCertificate {
            certificate_arn: cert_arn(&id),
            certificate_id: id,
            certificate_pem: pem,
        })
    }

    /// Issues a certificate for `csr_pem` valid for `validity_ms` from the
    /// registry's clock, as `CreateCertificateFromCsr` would, without
    /// counting a call or drawing a fault: provisioning for the emulator
    /// and simulations (e.g. certificates that expire soon).
    ///
    /// # Errors
    /// [`PortError::Invalid`] for a CSR AWS would not accept.
    pub fn issue_certificate(
        &self,
        csr_pem: &str,
        set_as_active: bool,
        validity_ms: i64,
    ) -> PortResult<CreatedCertificate> {
        self.insert_issued(csr_pem, set_as_active, Some(validity_ms), 0)
    }

    /// As [`issue_certificate`](Self::issue_certificate), issued
    /// `issued_ago_ms` before the registry's clock (its notBefore) and
    /// valid for `validity_ms` from that: a fleet's certificates issued
    /// before fleetcert came, which the certificate-age check looks at.
    ///
    /// # Errors
    /// [`PortError::Invalid`] for a CSR AWS would not accept.
    pub fn issue_certificate_issued_ago(
        &self,
        csr_pem: &str,
        set_as_active: bool,
        issued_ago_ms: i64,
        validity_ms: i64,
    ) -> PortResult<CreatedCertificate> {
        self.insert_issued(csr_pem, set_as_active, Some(validity_ms), issued_ago_ms)
    }

    /// Every registered CA certificate, as `DescribeCACertificate`
    /// describes it (no call counted).
    pub fn ca_certificates(&self) -> Vec<CaCertificateDescription> {
        lock(&self.state)
            .cas
            .iter()
            .map(|(id, ca)| CaCertificateDescription {
                ca_certificate_id: id.clone(),
                status: ca.status.clone(),
                auto_registration_status: ca.auto_registration_status.clone(),
                certificate_pem: ca.pem.clone(),
            })
            .collect()
    }

    /// The registry's clock (ms since the Unix epoch).
    pub fn now_ms(&self) -> i64 {
        lock(&self.state).now_ms
    }

    fn notify_status(&self, certificate_id: &str, status: Option<CertificateStatus>) {
        // No subscriber is fine.
        let _ = self.status_tx.send(StatusChange {
            certificate_id: certificate_id.to_owned(),
            status,
        });
    }
}

fn ca_snapshot(id: &str, ca: &CaRecord) -> CaSnapshot {
    CaSnapshot {
        description: CaCertificateDescription {
            ca_certificate_id: id.to_owned(),
            status: ca.status.clone(),
            auto_registration_status: ca.auto_registration_status.clone(),
            certificate_pem: ca.pem.clone(),
        },
        created_ms: ca.created_ms,
        modified_ms: ca.modified_ms,
    }
}

fn to_time(ms: i64) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map_err(|e| format!("time {ms} ms is out of range: {e}"))
}

fn not_found(operation: Operation, what: &str, name: &str) -> PortError {
    PortError::NotFound {
        operation,
        message: format!("{what} {name} does not exist"),
    }
}

fn page_of<T: Clone>(
    operation: Operation,
    items: &[T],
    next_token: Option<String>,
    size: usize,
) -> PortResult<Page<T>> {
    let start = match next_token {
        None => 0,
        Some(t) => t.parse::<usize>().map_err(|_| PortError::Invalid {
            operation,
            message: format!("next token {t:?} is not valid"),
        })?,
    };
    let end = start.saturating_add(size).min(items.len());
    let page = items.get(start..end).unwrap_or_default().to_vec();
    Ok(Page {
        items: page,
        next_token: (end < items.len()).then(|| end.to_string()),
    })
}

impl IotRegistry for MemoryRegistry {
    async fn describe_certificate(
        &self,
        certificate_id: &str,
    ) -> PortResult<CertificateDescription> {
        let after = self.instruments.enter(Operation::DescribeCertificate)?;
        let state = lock(&self.state);
        let cert = state.certificates.get(certificate_id).ok_or_else(|| {
            not_found(
                Operation::DescribeCertificate,
                "certificate",
                certificate_id,
            )
        })?;
        after.finish(Ok(CertificateDescription {
            certificate_id: cert.certificate_id.clone(),
            certificate_arn: cert.certificate_arn.clone(),
            status: cert.status.clone(),
            certificate_pem: cert.certificate_pem.clone(),
            ca_certificate_id: cert.ca_certificate_id.clone(),
            not_before_ms: cert.not_before_ms,
            not_after_ms: cert.not_after_ms,
        }))
    }

    async fn create_certificate_from_csr(
        &self,
        csr_pem: &str,
        set_as_active: bool,
    ) -> PortResult<CreatedCertificate> {
        let after = self
            .instruments
            .enter(Operation::CreateCertificateFromCsr)?;
        let created = self.insert_issued(csr_pem, set_as_active, None, 0)?;
        after.finish(Ok(created))
    }

    async fn register_certificate(
        &self,
        certificate_pem: &str,
        ca_certificate_pem: &str,
        status: CertificateStatus,
    ) -> PortResult<CreatedCertificate> {
        let after = self.instruments.enter(Operation::RegisterCertificate)?;
        let invalid = |message: String| PortError::Invalid {
            operation: Operation::RegisterCertificate,
            message,
        };
        let info =
            rules::csr::inspect_certificate(certificate_pem).map_err(|e| invalid(e.to_string()))?;
        let ca_id = rules::csr::certificate_id(ca_certificate_pem)
            .map_err(|e| invalid(format!("ca certificate: {e}")))?;
        let mut state = lock(&self.state);
        match state.cas.get(&ca_id) {
            Some(ca) if ca.status == "ACTIVE" => {
                rules::csr::verify_issued_by(certificate_pem, &ca.pem)
                    .map_err(|e| invalid(format!("CertificateValidationException: {e}")))?;
            }
            Some(_) => return Err(invalid(format!("ca certificate {ca_id} is not ACTIVE"))),
            None => {
                return Err(invalid(format!("ca certificate {ca_id} is not registered")));
            }
        }
        let id = info.certificate_id;
        if state.certificates.contains_key(&id) {
            return Err(PortError::Conflict {
                operation: Operation::RegisterCertificate,
                message: format!("ResourceAlreadyExistsException: certificate {id}"),
            });
        }
        let created_ms = state.now_ms;
        state.certificates.insert(
            id.clone(),
            CertificateSnapshot {
                certificate_id: id.clone(),
                certificate_arn: cert_arn(&id),
                status: status.clone(),
                certificate_pem: certificate_pem.to_owned(),
                ca_certificate_id: Some(ca_id),
                policies: BTreeSet::new(),
                things: BTreeSet::new(),
                exclusive_thing: None,
                not_before_ms: i64::try_from(info.not_before_ms).unwrap_or(i64::MAX),
                not_after_ms: i64::try_from(info.not_after_ms).unwrap_or(i64::MAX),
                created_ms,
            },
        );
        drop(state);
        self.notify_status(&id, Some(status));
        after.finish(Ok(CreatedCertificate {
            certificate_arn: cert_arn(&id),
            certificate_id: id,
            certificate_pem: certificate_pem.to_owned(),
        }))
    }

    async fn update_certificate(
        &self,
        certificate_id: &str,
        status: CertificateStatus,
    ) -> PortResult<()> {
        let after = self.instruments.enter(Operation::UpdateCertificate)?;
        if !matches!(
            status,
            CertificateStatus::Active | CertificateStatus::Inactive | CertificateStatus::Revoked
        ) {
            return Err(PortError::Invalid {
                operation: Operation::UpdateCertificate,
                message: format!("status {status} cannot be set"),
            });
        }
        let changed = {
            let mut state = lock(&self.state);
            if let Some(cert) = state.certificates.get(certificate_id)
                && cert.status == CertificateStatus::Revoked
                && status == CertificateStatus::Active
            {
                return Err(PortError::Conflict {
                    operation: Operation::UpdateCertificate,
                    message: format!("certificate {certificate_id} is REVOKED"),
                });
            }
            Self::set_status(&mut state, certificate_id, status.clone())?
        };
        if changed {
            self.notify_status(certificate_id, Some(status));
        }
        after.finish(Ok(()))
    }

    async fn delete_certificate(&self, certificate_id: &str) -> PortResult<()> {
        let after = self.instruments.enter(Operation::DeleteCertificate)?;
        {
            let mut state = lock(&self.state);
            let cert = state.certificates.get(certificate_id).ok_or_else(|| {
                not_found(Operation::DeleteCertificate, "certificate", certificate_id)
            })?;
            let conflict = |message: String| PortError::Conflict {
                operation: Operation::DeleteCertificate,
                message,
            };
            if cert.status == CertificateStatus::Active {
                return Err(conflict(format!("certificate {certificate_id} is ACTIVE")));
            }
            if !cert.policies.is_empty() || !cert.things.is_empty() {
                return Err(conflict(format!(
                    "certificate {certificate_id} is still attached to {} policies and {} things",
                    cert.policies.len(),
                    cert.things.len()
                )));
            }
            state.certificates.remove(certificate_id);
        }
        self.notify_status(certificate_id, None);
        after.finish(Ok(()))
    }

    async fn list_attached_policies(
        &self,
        target_arn: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<String>> {
        let op = Operation::ListAttachedPolicies;
        let after = self.instruments.enter(op)?;
        let mut state = lock(&self.state);
        let policies: Vec<String> = Self::cert_by_arn(&mut state, op, target_arn)?
            .policies
            .iter()
            .cloned()
            .collect();
        after.finish(page_of(op, &policies, next_token, LIST_PAGE))
    }

    async fn attach_policy(&self, policy_name: &str, target_arn: &str) -> PortResult<()> {
        let op = Operation::AttachPolicy;
        let after = self.instruments.enter(op)?;
        let mut state = lock(&self.state);
        if !state.policies.contains_key(policy_name) {
            return Err(not_found(op, "policy", policy_name));
        }
        Self::cert_by_arn(&mut state, op, target_arn)?
            .policies
            .insert(policy_name.to_owned());
        after.finish(Ok(()))
    }

    async fn detach_policy(&self, policy_name: &str, target_arn: &str) -> PortResult<()> {
        let op = Operation::DetachPolicy;
        let after = self.instruments.enter(op)?;
        let mut state = lock(&self.state);
        Self::cert_by_arn(&mut state, op, target_arn)?
            .policies
            .remove(policy_name);
        after.finish(Ok(()))
    }

    async fn list_principal_things(
        &self,
        principal_arn: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<String>> {
        let op = Operation::ListPrincipalThings;
        let after = self.instruments.enter(op)?;
        let mut state = lock(&self.state);
        let things: Vec<String> = Self::cert_by_arn(&mut state, op, principal_arn)?
            .things
            .iter()
            .cloned()
            .collect();
        after.finish(page_of(op, &things, next_token, LIST_PAGE))
    }

    async fn list_principal_things_v2(
        &self,
        principal_arn: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<PrincipalThing>> {
        let op = Operation::ListPrincipalThingsV2;
        let after = self.instruments.enter(op)?;
        let mut state = lock(&self.state);
        let cert = Self::cert_by_arn(&mut state, op, principal_arn)?;
        let things: Vec<PrincipalThing> = cert
            .things
            .iter()
            .map(|t| PrincipalThing {
                thing_name: t.clone(),
                kind: if cert.exclusive_thing.as_deref() == Some(t) {
                    ThingPrincipalType::Exclusive
                } else {
                    ThingPrincipalType::NonExclusive
                },
            })
            .collect();
        after.finish(page_of(op, &things, next_token, LIST_PAGE))
    }

    async fn attach_thing_principal_as(
        &self,
        thing_name: &str,
        principal_arn: &str,
        kind: ThingPrincipalType,
    ) -> PortResult<()> {
        let op = Operation::AttachThingPrincipal;
        let after = self.instruments.enter(op)?;
        let mut state = lock(&self.state);
        if !state.things.contains(thing_name) {
            return Err(not_found(op, "thing", thing_name));
        }
        let cert = Self::cert_by_arn(&mut state, op, principal_arn)?;
        // "EXCLUSIVE_THING: the thing will be the only thing that's
        // attached to the principal" (AWS IoT API reference,
        // AttachThingPrincipal): an exclusive attachment admits no other.
        let other = cert.things.iter().any(|t| t != thing_name);
        let breaks = match kind {
            ThingPrincipalType::Exclusive => other,
            ThingPrincipalType::NonExclusive => cert
                .exclusive_thing
                .as_ref()
                .is_some_and(|t| t != thing_name),
        };
        if breaks {
            return Err(PortError::Invalid {
                operation: op,
                message: format!(
                    "{principal_arn} is attached {} and cannot also be attached to {thing_name} {}",
                    cert.exclusive_thing.as_ref().map_or_else(
                        || format!(
                            "to {}",
                            cert.things.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                        |t| format!("exclusively to {t}")
                    ),
                    if kind == ThingPrincipalType::Exclusive {
                        "exclusively"
                    } else {
                        ""
                    }
                )
                .trim_end()
                .to_owned(),
            });
        }
        cert.things.insert(thing_name.to_owned());
        if kind == ThingPrincipalType::Exclusive {
            cert.exclusive_thing = Some(thing_name.to_owned());
        }
        after.finish(Ok(()))
    }

    async fn detach_thing_principal(
        &self,
        thing_name: &str,
        principal_arn: &str,
    ) -> PortResult<()> {
        let op = Operation::DetachThingPrincipal;
        let after = self.instruments.enter(op)?;
        let mut state = lock(&self.state);
        if !state.things.contains(thing_name) {
            return Err(not_found(op, "thing", thing_name));
        }
        let cert = Self::cert_by_arn(&mut state, op, principal_arn)?;
        cert.things.remove(thing_name);
        if cert.exclusive_thing.as_deref() == Some(thing_name) {
            cert.exclusive_thing = None;
        }
        after.finish(Ok(()))
    }

    async fn describe_thing(&self, thing_name: &str) -> PortResult<ThingDescription> {
        let op = Operation::DescribeThing;
        let after = self.instruments.enter(op)?;
        if !lock(&self.state).things.contains(thing_name) {
            return Err(not_found(op, "thing", thing_name));
        }
        after.finish(Ok(ThingDescription {
            thing_name: thing_name.to_owned(),
            thing_arn: thing_arn(thing_name),
        }))
    }

    async fn create_thing(&self, thing_name: &str) -> PortResult<ThingDescription> {
        let op = Operation::CreateThing;
        let after = self.instruments.enter(op)?;
        if rules::jitr::validate_thing_name(thing_name).is_err() {
            return Err(PortError::Invalid {
                operation: op,
                message: format!("{thing_name:?} is not a valid thing name"),
            });
        }
        lock(&self.state).things.insert(thing_name.to_owned());
        after.finish(Ok(ThingDescription {
            thing_name: thing_name.to_owned(),
            thing_arn: thing_arn(thing_name),
        }))
    }

    async fn describe_ca_certificate(
        &self,
        ca_certificate_id: &str,
    ) -> PortResult<CaCertificateDescription> {
        let op = Operation::DescribeCaCertificate;
        let after = self.instruments.enter(op)?;
        let state = lock(&self.state);
        let ca = state
            .cas
            .get(ca_certificate_id)
            .ok_or_else(|| not_found(op, "ca certificate", ca_certificate_id))?;
        after.finish(Ok(CaCertificateDescription {
            ca_certificate_id: ca_certificate_id.to_owned(),
            status: ca.status.clone(),
            auto_registration_status: ca.auto_registration_status.clone(),
            certificate_pem: ca.pem.clone(),
        }))
    }

    async fn list_audit_findings(
        &self,
        task_id: &str,
        check_name: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<AuditFinding>> {
        let op = Operation::ListAuditFindings;
        let after = self.instruments.enter(op)?;
        let state = lock(&self.state);
        let empty = Vec::new();
        let findings = state
            .findings
            .get(&(task_id.to_owned(), check_name.to_owned()))
            .unwrap_or(&empty);
        after.finish(page_of(op, findings, next_token, state.findings_page))
    }
}
