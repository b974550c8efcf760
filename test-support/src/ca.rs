//! A CA that signs device certificates (rcgen).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData};

/// A CA: its certificate (PEM) and the key that signs.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("pem", &self.pem)
            .finish_non_exhaustive()
    }
}

/// A device certificate and its key, as [`TestCa::device`] made them.
#[derive(Debug, Clone)]
pub struct DeviceCert {
    /// The thing (the certificate's CN).
    pub thing: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The key, PKCS#8 PEM.
    pub key_pem: String,
    /// The key, PKCS#8 DER.
    pub key_der: Vec<u8>,
}

impl TestCa {
    /// A fresh self-signed P-256 CA whose CN is `name`.
    ///
    /// # Errors
    /// When rcgen fails.
    pub fn new(name: &str) -> Result<TestCa, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        TestCa::with(params, KeyPair::generate()?)
    }

    /// A self-signed CA from `params` (made a CA here) and `key`.
    ///
    /// # Errors
    /// When rcgen fails.
    pub fn with(mut params: CertificateParams, key: KeyPair) -> Result<TestCa, rcgen::Error> {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key)?;
        Ok(TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The signer, for certificates of other shapes.
    pub fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// A device certificate for `thing` (CN = `thing`) with a fresh P-256 key.
    ///
    /// # Errors
    /// When rcgen fails.
    pub fn device(&self, thing: &str) -> Result<DeviceCert, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, thing);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(DeviceCert {
            thing: thing.to_owned(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        })
    }

    /// Signs `params` for `public_key` (e.g. a forged copy of another
    /// certificate); PEM.
    ///
    /// # Panics
    /// Never for parameters read from a certificate rcgen made.
    pub fn sign(&self, params: &CertificateParams, public_key: &impl PublicKeyData) -> String {
        params
            .signed_by(public_key, &self.issuer)
            .map(|c| c.pem())
            .unwrap_or_else(|e| panic!("signing: {e}"))
    }
}
