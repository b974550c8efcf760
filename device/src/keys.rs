//! Keys, CSRs and the mutual-TLS client configuration.

use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};
use rules::contracts::KeyAlgorithm;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore};

/// Why a key, a CSR or a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Key generation failed.
    #[error("cannot generate a {algorithm} key: {reason}")]
    Generate {
        /// The key asked for.
        algorithm: &'static str,
        /// What failed.
        reason: String,
    },
    /// A private key PEM did not parse.
    #[error("cannot read the private key: {reason}")]
    BadKey {
        /// What failed.
        reason: String,
    },
    /// The CSR could not be made.
    #[error("cannot make a csr for `{thing}`: {reason}")]
    Csr {
        /// The thing name (the CSR's CN).
        thing: String,
        /// What failed.
        reason: String,
    },
    /// The TLS client configuration could not be built.
    #[error("cannot build the tls configuration: {reason}")]
    Tls {
        /// What failed.
        reason: String,
    },
}

/// Generates a new private key. RSA keys come from the `rsa` crate (rcgen
/// cannot generate them) and are handed to rcgen as PKCS#8; this is CPU
/// heavy: call it from `spawn_blocking` in async code.
///
/// # Errors
/// [`KeyError::Generate`] when the RNG or the encoding fails.
pub fn generate_key(algorithm: KeyAlgorithm) -> Result<KeyPair, KeyError> {
    let err = |reason: String| KeyError::Generate {
        algorithm: algorithm.as_str(),
        reason,
    };
    match algorithm {
        KeyAlgorithm::EcP256 => {
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| err(e.to_string()))
        }
        KeyAlgorithm::EcP384 => {
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(|e| err(e.to_string()))
        }
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => {
            use rsa::pkcs8::EncodePrivateKey;
            let bits = if algorithm == KeyAlgorithm::Rsa2048 {
                2048
            } else {
                3072
            };
            let key = rsa::PrivateKey::new(&mut getrandom::SysRng, bits)
                .map_err(|e| err(e.to_string()))?;
            let der = key.to_pkcs8_der().map_err(|e| err(e.to_string()))?;
            let der = PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
            KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
                .map_err(|e| err(e.to_string()))
        }
    }
}

/// Reads a PKCS#8 private key PEM (as written by [`KeyPair::serialize_pem`]).
///
/// # Errors
/// [`KeyError::BadKey`] when the PEM is not a key rcgen can sign with.
pub fn key_from_pem(pem: &str) -> Result<KeyPair, KeyError> {
    KeyPair::from_pem(pem).map_err(|e| KeyError::BadKey {
        reason: e.to_string(),
    })
}

/// Lowercase hex SHA-256 of the key's DER `SubjectPublicKeyInfo`: the same
/// value as `rules::csr::CertificateInfo::public_key_fingerprint`.
pub fn key_fingerprint(key: &KeyPair) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.subject_public_key_info()))
}

/// A PKCS#10 CSR in PEM form for `key`, with subject CN = `thing`.
///
/// # Errors
/// [`KeyError::Csr`] when rcgen cannot sign or encode the request.
pub fn csr_pem(thing: &str, key: &KeyPair) -> Result<String, KeyError> {
    let err = |e: rcgen::Error| KeyError::Csr {
        thing: thing.to_owned(),
        reason: e.to_string(),
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, thing);
    params.distinguished_name = dn;
    params
        .serialize_request(key)
        .map_err(err)?
        .pem()
        .map_err(err)
}

/// The trust roots for the broker's server certificate, from a PEM bundle.
///
/// # Errors
/// [`KeyError::Tls`] when the bundle holds no usable certificate.
pub fn root_store(ca_pem: &str) -> Result<Arc<RootCertStore>, KeyError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| KeyError::Tls {
            reason: format!("server ca: {e}"),
        })?;
        roots.add(cert).map_err(|e| KeyError::Tls {
            reason: format!("server ca: {e}"),
        })?;
    }
    if roots.is_empty() {
        return Err(KeyError::Tls {
            reason: "server ca: no certificate in the pem".to_owned(),
        });
    }
    Ok(Arc::new(roots))
}

/// A rustls client configuration (ring provider, TLS 1.2 and 1.3) that
/// trusts `roots` and authenticates with `cert_pem` + `key_pem`.
///
/// # Errors
/// [`KeyError::Tls`] when the certificate or key does not parse or they do
/// not belong together.
pub fn client_config(
    roots: Arc<RootCertStore>,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ClientConfig>, KeyError> {
    let tls = |reason: String| KeyError::Tls { reason };
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(format!("client certificate: {e}")))?;
    if certs.is_empty() {
        return Err(tls(
            "client certificate: no certificate in the pem".to_owned()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| tls(format!("client key: {e}")))?;
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| tls(e.to_string()))?;
    Ok(Arc::new(config))
}
