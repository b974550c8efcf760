//! The emulator's TLS side: its own root CA and server certificate, and a
//! client certificate verifier that checks possession of the key only and
//! leaves authorization to the registry after the handshake (as AWS IoT
//! Core does with certificates it does not know: JITR needs the handshake
//! to finish).

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName as TlsName, ServerConfig, SignatureScheme};

/// Why the TLS side could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("cannot generate the {what}: {reason}")]
    Generate {
        /// Which certificate.
        what: &'static str,
        /// rcgen's message.
        reason: String,
    },
    /// rustls rejected the configuration.
    #[error("tls configuration: {reason}")]
    Config {
        /// rustls's message.
        reason: String,
    },
}

/// The crypto provider the emulator uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The emulator's root CA and the server certificate it signed for
/// `localhost` and `127.0.0.1`.
#[derive(Debug)]
pub struct ServerIdentity {
    root_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl ServerIdentity {
    /// Generates a fresh root CA (P-256) and a server certificate.
    ///
    /// # Errors
    /// [`TlsError::Generate`].
    pub fn generate() -> Result<ServerIdentity, TlsError> {
        let err = |what: &'static str| {
            move |e: rcgen::Error| TlsError::Generate {
                what,
                reason: e.to_string(),
            }
        };
        let root_key = KeyPair::generate().map_err(err("root ca key"))?;
        let mut root = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "fleetcert emulator root CA");
        dn.push(DnType::OrganizationName, "fleetcert");
        root.distinguished_name = dn;
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let root_cert = root.self_signed(&root_key).map_err(err("root ca"))?;
        let issuer = rcgen::Issuer::new(root, root_key);

        let server_key = KeyPair::generate().map_err(err("server key"))?;
        let mut server = CertificateParams::new(vec!["localhost".to_owned()])
            .map_err(err("server certificate"))?;
        server
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_cert = server
            .signed_by(&server_key, &issuer)
            .map_err(err("server certificate"))?;
        Ok(ServerIdentity {
            root_pem: root_cert.pem(),
            chain: vec![server_cert.der().clone(), root_cert.der().clone()],
            key_der: server_key.serialize_der(),
        })
    }

    /// The root CA certificate clients must trust, PEM.
    pub fn root_ca_pem(&self) -> &str {
        &self.root_pem
    }

    /// The root CA certificate, DER.
    pub fn root_ca_der(&self) -> &CertificateDer<'static> {
        &self.chain[1]
    }

    /// A rustls server configuration: TLS 1.2 and 1.3, client certificate
    /// required, verified by [`PossessionVerifier`].
    ///
    /// # Errors
    /// [`TlsError::Config`].
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = provider();
        let verifier = Arc::new(PossessionVerifier {
            algorithms: provider.signature_verification_algorithms,
        });
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config {
                reason: e.to_string(),
            })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), key)
            .map_err(|e| TlsError::Config {
                reason: e.to_string(),
            })?;
        Ok(Arc::new(config))
    }
}

/// Accepts any client certificate that parses as X.509 and is within its
/// validity period, provided the handshake signature verifies with its key
/// (the client holds the private key). Whether the certificate may connect
/// is the registry's decision, made after the handshake.
#[derive(Debug)]
pub struct PossessionVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PossessionVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[TlsName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let pem = crate::registry::certificate_pem_of_der(end_entity);
        let info = rules::csr::inspect_certificate(&pem).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        let now_ms = now.as_secs().saturating_mul(1000);
        if now_ms > info.not_after_ms {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired,
            ));
        }
        if now_ms < info.not_before_ms {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidYet,
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
