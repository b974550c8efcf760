//! What the broker needs from the AWS IoT registry, as a port, and a small
//! in-memory implementation of it for tests and stand-alone use.
//!
//! The broker asks the registry after every TLS handshake: is this
//! certificate known, is it ACTIVE, which things and policies are attached
//! to it; for an unknown certificate, which registered CA issued it and
//! whether that CA auto-registers (JITR). It also listens to status changes
//! to close the connections of a certificate that stops being ACTIVE.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Mutex;

use tokio::sync::broadcast;

pub use rules::status::CertificateStatus;

/// What the broker needs to know about one registered certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateView {
    /// Certificate id: lowercase hex SHA-256 of the DER.
    pub id: String,
    /// Current status.
    pub status: CertificateStatus,
    /// Things the certificate is attached to (as a principal).
    pub things: Vec<String>,
    /// Names of the policies attached to the certificate.
    pub policies: Vec<String>,
    /// The registered CA that issued it, when it was registered through one
    /// (JITR).
    pub ca_certificate_id: Option<String>,
    /// When it was registered, milliseconds since the Unix epoch.
    pub registered_at_ms: u64,
}

/// A CA certificate registered with the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaView {
    /// CA certificate id: lowercase hex SHA-256 of its DER.
    pub id: String,
    /// The CA certificate, PEM.
    pub pem: String,
    /// Whether the CA is ACTIVE (only active CAs auto-register).
    pub active: bool,
    /// Whether auto-registration (JITR) is enabled for it.
    pub auto_registration: bool,
}

/// A certificate's status changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The certificate id.
    pub certificate_id: String,
    /// Its new status.
    pub status: CertificateStatus,
}

/// Why the registry refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The certificate is not PEM X.509.
    #[error("invalid certificate: {reason}")]
    InvalidCertificate {
        /// What was wrong.
        reason: String,
    },
    /// No such CA certificate.
    #[error("unknown ca certificate {id}")]
    UnknownCa {
        /// The id asked for.
        id: String,
    },
    /// No such certificate.
    #[error("unknown certificate {id}")]
    UnknownCertificate {
        /// The id asked for.
        id: String,
    },
    /// The registry refused the request for now (throttling, outage).
    #[error("registry unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// The registry as the broker sees it. Implementations are expected to be
/// in memory: the broker calls these methods from its connection tasks and
/// they must not block for long.
pub trait Registry: Send + Sync + fmt::Debug {
    /// The certificate with this id, if registered.
    fn certificate(&self, id: &str) -> Option<CertificateView>;

    /// Whether a thing with this name exists.
    fn thing_exists(&self, name: &str) -> bool;

    /// Every registered CA certificate.
    fn ca_certificates(&self) -> Vec<CaView>;

    /// Registers `certificate_pem` as issued by the CA `ca_certificate_id`
    /// with status PENDING_ACTIVATION (JITR), and returns it. Registering a
    /// certificate that is already registered returns it unchanged.
    ///
    /// # Errors
    /// A [`RegistryError`] when the certificate cannot be registered.
    fn register_pending(
        &self,
        certificate_pem: &str,
        ca_certificate_id: &str,
        now_ms: u64,
    ) -> Result<CertificateView, RegistryError>;

    /// A receiver of every later status change. The broker resubscribes
    /// nothing: a lagging receiver makes it re-check every connection.
    fn status_changes(&self) -> broadcast::Receiver<StatusChange>;

    /// The document of a policy created outside the deployed template (the
    /// template's policies are found by name first). `None` by default.
    fn policy_document(&self, name: &str) -> Option<serde_json::Value> {
        let _ = name;
        None
    }
}

/// Lowercase hex SHA-256 of a certificate's DER: its AWS IoT id.
pub fn certificate_id_of_der(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(der))
}

/// PEM-encodes a DER certificate.
pub fn certificate_pem_of_der(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

#[derive(Debug, Default)]
struct State {
    certificates: BTreeMap<String, CertificateView>,
    things: BTreeSet<String>,
    cas: BTreeMap<String, CaView>,
}

/// The broker's registry when it runs alone (broker tests, the `load`
/// example): the view the [`Registry`] port needs and the setters tests
/// use, no AWS IoT API. The whole cloud uses
/// [`crate::cloud::SharedRegistry`] over `lambdas::memory::MemoryRegistry`,
/// the one registry the Lambda handlers and the broker share.
#[derive(Debug)]
pub struct StandaloneRegistry {
    state: Mutex<State>,
    changes: broadcast::Sender<StatusChange>,
}

impl Default for StandaloneRegistry {
    fn default() -> Self {
        StandaloneRegistry::new()
    }
}

impl StandaloneRegistry {
    /// An empty registry.
    pub fn new() -> StandaloneRegistry {
        let (changes, _) = broadcast::channel(1024);
        StandaloneRegistry {
            state: Mutex::new(State::default()),
            changes,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a thing (idempotent).
    pub fn create_thing(&self, name: &str) {
        self.state().things.insert(name.to_owned());
    }

    /// Registers a certificate with a status; returns its id.
    ///
    /// # Errors
    /// [`RegistryError::InvalidCertificate`] when `pem` is not a certificate.
    pub fn register_certificate(
        &self,
        pem: &str,
        status: CertificateStatus,
    ) -> Result<String, RegistryError> {
        let id =
            rules::csr::certificate_id(pem).map_err(|e| RegistryError::InvalidCertificate {
                reason: e.to_string(),
            })?;
        self.state().certificates.insert(
            id.clone(),
            CertificateView {
                id: id.clone(),
                status,
                things: Vec::new(),
                policies: Vec::new(),
                ca_certificate_id: None,
                registered_at_ms: now_ms(),
            },
        );
        Ok(id)
    }

    /// Attaches a certificate to a thing (creating the thing).
    ///
    /// # Errors
    /// [`RegistryError::UnknownCertificate`].
    pub fn attach_thing(&self, thing: &str, certificate_id: &str) -> Result<(), RegistryError> {
        let mut s = self.state();
        s.things.insert(thing.to_owned());
        let c = s.certificates.get_mut(certificate_id).ok_or_else(|| {
            RegistryError::UnknownCertificate {
                id: certificate_id.to_owned(),
            }
        })?;
        if !c.things.iter().any(|t| t == thing) {
            c.things.push(thing.to_owned());
        }
        Ok(())
    }

    /// Attaches a policy (by name) to a certificate.
    ///
    /// # Errors
    /// [`RegistryError::UnknownCertificate`].
    pub fn attach_policy(&self, policy: &str, certificate_id: &str) -> Result<(), RegistryError> {
        let mut s = self.state();
        let c = s.certificates.get_mut(certificate_id).ok_or_else(|| {
            RegistryError::UnknownCertificate {
                id: certificate_id.to_owned(),
            }
        })?;
        if !c.policies.iter().any(|p| p == policy) {
            c.policies.push(policy.to_owned());
        }
        Ok(())
    }

    /// Changes a certificate's status and announces the change.
    ///
    /// # Errors
    /// [`RegistryError::UnknownCertificate`].
    pub fn set_status(
        &self,
        certificate_id: &str,
        status: CertificateStatus,
    ) -> Result<(), RegistryError> {
        {
            let mut s = self.state();
            let c = s.certificates.get_mut(certificate_id).ok_or_else(|| {
                RegistryError::UnknownCertificate {
                    id: certificate_id.to_owned(),
                }
            })?;
            c.status = status.clone();
        }
        // no receiver is fine: nobody is connected
        let _ = self.changes.send(StatusChange {
            certificate_id: certificate_id.to_owned(),
            status,
        });
        Ok(())
    }

    /// Registers a CA certificate; returns its id.
    ///
    /// # Errors
    /// [`RegistryError::InvalidCertificate`] when `pem` is not a certificate.
    pub fn register_ca(&self, pem: &str, auto_registration: bool) -> Result<String, RegistryError> {
        let id =
            rules::csr::certificate_id(pem).map_err(|e| RegistryError::InvalidCertificate {
                reason: e.to_string(),
            })?;
        self.state().cas.insert(
            id.clone(),
            CaView {
                id: id.clone(),
                pem: pem.to_owned(),
                active: true,
                auto_registration,
            },
        );
        Ok(id)
    }
}

impl Registry for StandaloneRegistry {
    fn certificate(&self, id: &str) -> Option<CertificateView> {
        self.state().certificates.get(id).cloned()
    }

    fn thing_exists(&self, name: &str) -> bool {
        self.state().things.contains(name)
    }

    fn ca_certificates(&self) -> Vec<CaView> {
        self.state().cas.values().cloned().collect()
    }

    fn register_pending(
        &self,
        certificate_pem: &str,
        ca_certificate_id: &str,
        now_ms: u64,
    ) -> Result<CertificateView, RegistryError> {
        let id = rules::csr::certificate_id(certificate_pem).map_err(|e| {
            RegistryError::InvalidCertificate {
                reason: e.to_string(),
            }
        })?;
        let mut s = self.state();
        if !s.cas.contains_key(ca_certificate_id) {
            return Err(RegistryError::UnknownCa {
                id: ca_certificate_id.to_owned(),
            });
        }
        let view = s
            .certificates
            .entry(id.clone())
            .or_insert_with(|| CertificateView {
                id,
                status: CertificateStatus::PendingActivation,
                things: Vec::new(),
                policies: Vec::new(),
                ca_certificate_id: Some(ca_certificate_id.to_owned()),
                registered_at_ms: now_ms,
            });
        Ok(view.clone())
    }

    fn status_changes(&self) -> broadcast::Receiver<StatusChange> {
        self.changes.subscribe()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
