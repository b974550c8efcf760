//! The in-memory AWS Private CA: one certificate authority (an rcgen CA,
//! ECDSA P-256) that issues for real, once per idempotency token, with the
//! requested validity from the registry's clock, and revokes by serial. Its
//! CA certificate is registered in the [`MemoryRegistry`] (ACTIVE,
//! auto-registration off) by [`MemoryPrivateCa::register_in_iot`], as a
//! deployment registers its Private CA in AWS IoT before rotating.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};

use super::{Instruments, MemoryRegistry, lock};
use crate::ports::{
    IssueRequest, IssuedCertificate, Operation, PortError, PortResult, PrivateCa,
    certificate_serial,
};

/// The ARN of [`MemoryPrivateCa::new`]'s certificate authority.
pub const MEMORY_CA_ARN: &str = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555";

struct Issued {
    pem: String,
    serial: String,
}

#[derive(Default)]
struct State {
    /// Certificate ARN → certificate.
    issued: BTreeMap<String, Issued>,
    /// Idempotency token → certificate ARN.
    tokens: BTreeMap<String, String>,
    /// Revoked serials.
    revoked: BTreeSet<String>,
    next_serial: u64,
    /// `GetCertificate` answers "in progress" this many more times.
    in_progress: usize,
}

/// The in-memory Private CA. Clones share state.
#[derive(Clone)]
pub struct MemoryPrivateCa {
    instruments: Arc<Instruments>,
    registry: MemoryRegistry,
    ca_arn: String,
    issuer: Arc<Issuer<'static, KeyPair>>,
    ca_pem: String,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MemoryPrivateCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPrivateCa")
            .field("ca_arn", &self.ca_arn)
            .field("issued", &lock(&self.state).issued.len())
            .finish_non_exhaustive()
    }
}

impl MemoryPrivateCa {
    /// A fresh CA named `ca_arn`, sharing `instruments` and the clock of
    /// `registry` (where [`register_in_iot`](Self::register_in_iot)
    /// registers it).
    pub fn new(instruments: Arc<Instruments>, registry: MemoryRegistry, ca_arn: &str) -> Self {
        // Fixed inputs, generated at run time: cannot fail.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap_or_else(|e| panic!("generating the in-memory private ca key: {e}"));
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "fleetcert in-memory Private CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("self-signing the in-memory private ca: {e}"));
        Self {
            instruments,
            registry,
            ca_arn: ca_arn.to_owned(),
            ca_pem: cert.pem(),
            issuer: Arc::new(Issuer::new(params, key)),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// The CA's ARN.
    pub fn ca_arn(&self) -> &str {
        &self.ca_arn
    }

    /// The CA certificate in PEM form.
    pub fn ca_certificate_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Registers the CA certificate in the registry (`RegisterCACertificate`,
    /// ACTIVE, auto-registration off: its certificates are registered by
    /// csr-issuer, never just in time) and returns its id.
    ///
    /// # Errors
    /// [`PortError::Invalid`] (never for this CA's own certificate).
    pub fn register_in_iot(&self) -> PortResult<String> {
        let handle = self.registry.register_ca_certificate(&self.ca_pem)?;
        self.registry
            .set_ca_status(&handle.ca_certificate_id, "ACTIVE", "DISABLE");
        Ok(handle.ca_certificate_id)
    }

    /// Makes the next `count` `GetCertificate` calls answer that the
    /// certificate is still being issued (`RequestInProgressException`).
    pub fn answer_in_progress(&self, count: usize) {
        lock(&self.state).in_progress = count;
    }

    /// How many certificates were issued.
    pub fn issued_count(&self) -> usize {
        lock(&self.state).issued.len()
    }

    /// How many certificates were revoked.
    pub fn revoked_count(&self) -> usize {
        lock(&self.state).revoked.len()
    }

    /// Whether the certificate with this serial was revoked.
    pub fn is_revoked(&self, serial: &str) -> bool {
        lock(&self.state).revoked.contains(serial)
    }

    fn check_ca(&self, operation: Operation, ca_arn: &str) -> PortResult<()> {
        if ca_arn == self.ca_arn {
            Ok(())
        } else {
            Err(PortError::NotFound {
                operation,
                message: format!("certificate authority {ca_arn}"),
            })
        }
    }

    fn sign(&self, request: &IssueRequest<'_>, serial: u64) -> PortResult<(String, String)> {
        let invalid = |message: String| PortError::Invalid {
            operation: Operation::IssueCertificate,
            message,
        };
        if !request.signing_algorithm.ends_with("WITHECDSA") {
            return Err(invalid(format!(
                "signing algorithm {} does not match the ca's EC_prime256v1 key",
                request.signing_algorithm
            )));
        }
        let mut csr = CertificateSigningRequestParams::from_pem(request.csr_pem)
            .map_err(|e| invalid(format!("MalformedCSRException: {e}")))?;
        let now_ms = self.registry.now_ms();
        let not_after_ms =
            now_ms.saturating_add(i64::from(request.validity_days) * 24 * 60 * 60 * 1000);
        let time = |ms: i64| {
            time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
                .map_err(|e| invalid(format!("validity: {e}")))
        };
        let mut bytes = [0u8; 16];
        bytes[0] = 0x40; // positive, 16 bytes, never zero
        bytes[8..].copy_from_slice(&serial.to_be_bytes());
        csr.params.serial_number = Some(SerialNumber::from_slice(&bytes));
        csr.params.not_before = time(now_ms)?;
        csr.params.not_after = time(not_after_ms)?;
        csr.params.is_ca = IsCa::ExplicitNoCa;
        csr.params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        csr.params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        csr.params.use_authority_key_identifier_extension = true;
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(|e| invalid(format!("signing: {e}")))?;
        let pem = cert.pem();
        let serial = certificate_serial(&pem).map_err(invalid)?;
        Ok((pem, serial))
    }
}

impl PrivateCa for MemoryPrivateCa {
    async fn issue_certificate(&self, request: &IssueRequest<'_>) -> PortResult<String> {
        let after = self.instruments.enter(Operation::IssueCertificate)?;
        self.check_ca(Operation::IssueCertificate, request.ca_arn)?;
        if request.idempotency_token.is_empty() || request.idempotency_token.len() > 36 {
            return Err(PortError::Invalid {
                operation: Operation::IssueCertificate,
                message: "IdempotencyToken must have 1 to 36 characters".to_owned(),
            });
        }
        if let Some(arn) = lock(&self.state).tokens.get(request.idempotency_token) {
            return after.finish(Ok(arn.clone()));
        }
        let serial = {
            let mut state = lock(&self.state);
            state.next_serial += 1;
            state.next_serial
        };
        let (pem, serial) = self.sign(request, serial)?;
        let arn = format!("{}/certificate/{}", self.ca_arn, serial.replace(':', ""));
        let mut state = lock(&self.state);
        state.issued.insert(arn.clone(), Issued { pem, serial });
        state
            .tokens
            .insert(request.idempotency_token.to_owned(), arn.clone());
        after.finish(Ok(arn))
    }

    async fn get_certificate(
        &self,
        ca_arn: &str,
        certificate_arn: &str,
    ) -> PortResult<IssuedCertificate> {
        let after = self.instruments.enter(Operation::GetCertificate)?;
        self.check_ca(Operation::GetCertificate, ca_arn)?;
        let mut state = lock(&self.state);
        if state.in_progress > 0 {
            state.in_progress -= 1;
            return Err(PortError::Transient {
                operation: Operation::GetCertificate,
                message: "RequestInProgressException: the certificate is being issued".to_owned(),
            });
        }
        let issued = state
            .issued
            .get(certificate_arn)
            .ok_or_else(|| PortError::NotFound {
                operation: Operation::GetCertificate,
                message: format!("certificate {certificate_arn}"),
            })?;
        after.finish(Ok(IssuedCertificate {
            certificate_pem: issued.pem.clone(),
            certificate_chain_pem: self.ca_pem.clone(),
        }))
    }

    async fn revoke_certificate(&self, ca_arn: &str, certificate_serial: &str) -> PortResult<()> {
        let after = self.instruments.enter(Operation::RevokeCertificate)?;
        self.check_ca(Operation::RevokeCertificate, ca_arn)?;
        let mut state = lock(&self.state);
        if !state
            .issued
            .values()
            .any(|c| c.serial == certificate_serial)
        {
            return Err(PortError::NotFound {
                operation: Operation::RevokeCertificate,
                message: format!("no certificate with serial {certificate_serial}"),
            });
        }
        state.revoked.insert(certificate_serial.to_owned());
        after.finish(Ok(()))
    }
}
