//! Key and certificate work for `fleetcert ca`: CA creation, the registration
//! verification certificate, device certificates. Pure: no I/O, and the time
//! is an argument (`now`), never read from a clock here.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Slack given to `notBefore` so that a device whose clock is a few minutes
/// behind still accepts a certificate issued just now.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// Validity of the registration verification certificate (AWS only checks it
/// once, at RegisterCACertificate).
const VERIFICATION_DAYS: i64 = 7;

/// Key algorithms AWS IoT accepts for CA and device certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256.
    EcdsaP256,
    /// ECDSA on NIST P-384 with SHA-384.
    EcdsaP384,
}

impl KeyAlgorithm {
    fn rcgen(self) -> &'static SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

/// What is wrong with a key, a certificate or a request to make one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    #[error("{what} is not a PEM X.509 certificate: {reason}")]
    BadCertificate { what: String, reason: String },
    #[error("{what} is not a PEM private key (PKCS#8 ECDSA P-256/P-384 expected): {reason}")]
    BadKey { what: String, reason: String },
    #[error("{what} is not a CA certificate (no basic constraints CA:TRUE)")]
    NotCa { what: String },
    #[error("the key {key} does not belong to the certificate {cert}: their public keys differ")]
    KeyMismatch { cert: String, key: String },
    #[error("{what} expired on {not_after}")]
    Expired { what: String, not_after: String },
    #[error("{what} is not valid before {not_before}")]
    NotYetValid { what: String, not_before: String },
    #[error("invalid {field}: {reason}")]
    InvalidInput { field: &'static str, reason: String },
    #[error("cannot build the {what}: {source}")]
    Build {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
}

/// A private key and its certificate, both PEM.
#[derive(Debug, Clone)]
pub struct KeyAndCert {
    pub key_pem: String,
    pub cert_pem: String,
    pub not_after: OffsetDateTime,
}

/// A device's key, its certificate, and the chain it presents (device
/// certificate followed by the CA certificate, as JITR requires).
#[derive(Debug, Clone)]
pub struct DeviceBundle {
    pub key_pem: String,
    pub cert_pem: String,
    pub chain_pem: String,
    pub not_after: OffsetDateTime,
    /// The requested validity went past the CA's and was cut to the CA's `notAfter`.
    pub clamped: bool,
}

/// Subject and validity of a CA certificate to create.
#[derive(Debug, Clone)]
pub struct CaSpec {
    pub common_name: String,
    pub organization: Option<String>,
    pub days: u32,
    pub algorithm: KeyAlgorithm,
}

/// A device certificate to issue.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub common_name: String,
    pub days: u32,
    pub algorithm: KeyAlgorithm,
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
}

/// A CA certificate together with its private key, checked to belong together.
#[derive(Debug)]
pub struct LoadedCa {
    cert_pem: String,
    key: KeyPair,
    label: String,
    pub info: CertInfo,
}

fn parse_cert_der(what: &str, pem_text: &str) -> Result<Vec<u8>, PkiError> {
    let bad = |reason: String| PkiError::BadCertificate {
        what: what.to_owned(),
        reason,
    };
    let blocks = pem::parse_many(pem_text).map_err(|e| bad(e.to_string()))?;
    let block = blocks
        .into_iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .ok_or_else(|| bad("no `BEGIN CERTIFICATE` block".into()))?;
    Ok(block.into_contents())
}

/// PEM with LF line endings (the `pem` crate's default is CRLF).
fn pem_lf(block: &pem::Pem) -> String {
    pem::encode_config(
        block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn info_of(cert: &X509Certificate<'_>) -> CertInfo {
    CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        is_ca: cert.is_ca(),
    }
}

/// Reads the first certificate of a PEM text. `what` names it in errors
/// (usually the file path).
pub fn certificate_info(what: &str, pem_text: &str) -> Result<CertInfo, PkiError> {
    let der = parse_cert_der(what, pem_text)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| PkiError::BadCertificate {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(info_of(&cert))
}

/// Fails unless `info` is valid at `now`.
pub fn check_valid_at(what: &str, info: &CertInfo, now: OffsetDateTime) -> Result<(), PkiError> {
    if now > info.not_after {
        return Err(PkiError::Expired {
            what: what.to_owned(),
            not_after: rfc3339(info.not_after),
        });
    }
    if now < info.not_before {
        return Err(PkiError::NotYetValid {
            what: what.to_owned(),
            not_before: rfc3339(info.not_before),
        });
    }
    Ok(())
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

impl LoadedCa {
    /// Parses a CA certificate and its key; fails when the certificate is not
    /// a CA or the key is not the certificate's.
    pub fn from_pem(
        cert_label: &str,
        cert_pem: &str,
        key_label: &str,
        key_pem: &str,
    ) -> Result<Self, PkiError> {
        let der = parse_cert_der(cert_label, cert_pem)?;
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| PkiError::BadCertificate {
            what: cert_label.to_owned(),
            reason: e.to_string(),
        })?;
        let info = info_of(&cert);
        if !info.is_ca {
            return Err(PkiError::NotCa {
                what: cert_label.to_owned(),
            });
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::BadKey {
            what: key_label.to_owned(),
            reason: e.to_string(),
        })?;
        if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(PkiError::KeyMismatch {
                cert: cert_label.to_owned(),
                key: key_label.to_owned(),
            });
        }
        // Re-encode as one clean PEM block (drops any text around it).
        let cert_pem = pem_lf(&pem::Pem::new("CERTIFICATE", der.clone()));
        Ok(Self {
            cert_pem,
            key,
            label: cert_label.to_owned(),
            info,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Fails unless the CA certificate is valid at `now`.
    pub fn check_valid_at(&self, now: OffsetDateTime) -> Result<(), PkiError> {
        check_valid_at(&format!("CA certificate {}", self.label), &self.info, now)
    }

    fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, PkiError> {
        Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(|source| PkiError::Build {
            what: "issuer from the CA certificate",
            source,
        })
    }

    /// Validity `[now - skew, min(now + days, CA notAfter)]`; `true` when cut.
    fn window(&self, now: OffsetDateTime, days: i64) -> (OffsetDateTime, OffsetDateTime, bool) {
        let not_before = (now - CLOCK_SKEW).max(self.info.not_before);
        let wanted = now + Duration::days(days);
        if wanted > self.info.not_after {
            (not_before, self.info.not_after, true)
        } else {
            (not_before, wanted, false)
        }
    }
}

fn check_days(days: u32) -> Result<(), PkiError> {
    if days == 0 || days > 36_500 {
        return Err(PkiError::InvalidInput {
            field: "days",
            reason: format!("{days} is not between 1 and 36500"),
        });
    }
    Ok(())
}

fn check_common_name(field: &'static str, cn: &str) -> Result<(), PkiError> {
    // X.520 ub-common-name: 64 characters.
    if cn.trim().is_empty() || cn.chars().count() > 64 {
        return Err(PkiError::InvalidInput {
            field,
            reason: format!("{cn:?} must be 1 to 64 characters"),
        });
    }
    Ok(())
}

fn new_key(alg: KeyAlgorithm) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(alg.rcgen()).map_err(|source| PkiError::Build {
        what: "key pair",
        source,
    })
}

/// A new CA key and certificate: self-signed, or an intermediate signed by `parent`.
pub fn create_ca(
    spec: &CaSpec,
    parent: Option<&LoadedCa>,
    now: OffsetDateTime,
) -> Result<KeyAndCert, PkiError> {
    check_days(spec.days)?;
    check_common_name("common name", &spec.common_name)?;
    let key = new_key(spec.algorithm)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(org) = &spec.organization {
        dn.push(DnType::OrganizationName, org.as_str());
    }
    dn.push(DnType::CommonName, spec.common_name.as_str());
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = match parent {
        None => {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.not_before = now - CLOCK_SKEW;
            params.not_after = now + Duration::days(spec.days.into());
            params.self_signed(&key)
        }
        Some(parent) => {
            parent.check_valid_at(now)?;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.use_authority_key_identifier_extension = true;
            let (nb, na, _) = parent.window(now, spec.days.into());
            params.not_before = nb;
            params.not_after = na;
            params.signed_by(&key, &parent.issuer()?)
        }
    }
    .map_err(|source| PkiError::Build {
        what: "CA certificate",
        source,
    })?;
    Ok(KeyAndCert {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
        not_after: params.not_after,
    })
}

/// The certificate AWS IoT asks for at RegisterCACertificate to prove that the
/// caller holds the CA key: a fresh key whose certificate has the
/// registration code as its subject common name, signed by the CA.
pub fn verification_certificate(
    ca: &LoadedCa,
    registration_code: &str,
    now: OffsetDateTime,
) -> Result<KeyAndCert, PkiError> {
    ca.check_valid_at(now)?;
    check_common_name("registration code", registration_code)?;
    let key = new_key(KeyAlgorithm::EcdsaP256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, registration_code);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let (nb, na, _) = ca.window(now, VERIFICATION_DAYS);
    params.not_before = nb;
    params.not_after = na;
    let cert = params
        .signed_by(&key, &ca.issuer()?)
        .map_err(|source| PkiError::Build {
            what: "verification certificate",
            source,
        })?;
    Ok(KeyAndCert {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
        not_after: na,
    })
}

/// A device key and certificate signed by the CA, plus the chain file
/// (device certificate then CA certificate) the device presents for JITR.
pub fn issue_device(
    ca: &LoadedCa,
    spec: &DeviceSpec,
    now: OffsetDateTime,
) -> Result<DeviceBundle, PkiError> {
    check_days(spec.days)?;
    check_common_name("device name", &spec.common_name)?;
    ca.check_valid_at(now)?;
    let key = new_key(spec.algorithm)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, spec.common_name.as_str());
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let (nb, na, clamped) = ca.window(now, spec.days.into());
    params.not_before = nb;
    params.not_after = na;
    let cert = params
        .signed_by(&key, &ca.issuer()?)
        .map_err(|source| PkiError::Build {
            what: "device certificate",
            source,
        })?;
    let cert_pem = cert.pem();
    let chain_pem = format!("{cert_pem}{}", ca.cert_pem());
    Ok(DeviceBundle {
        key_pem: key.serialize_pem(),
        cert_pem,
        chain_pem,
        not_after: na,
        clamped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn spec(cn: &str) -> CaSpec {
        CaSpec {
            common_name: cn.into(),
            organization: Some("Example".into()),
            days: 3650,
            algorithm: KeyAlgorithm::EcdsaP256,
        }
    }

    fn load(kc: &KeyAndCert) -> LoadedCa {
        LoadedCa::from_pem("ca.pem", &kc.cert_pem, "ca.key", &kc.key_pem).unwrap()
    }

    /// Checks that `child_pem`'s signature verifies with `parent_pem`'s key.
    fn signed_by(child_pem: &str, parent_pem: &str) -> bool {
        let child = parse_cert_der("child", child_pem).unwrap();
        let parent = parse_cert_der("parent", parent_pem).unwrap();
        let (_, child) = X509Certificate::from_der(&child).unwrap();
        let (_, parent) = X509Certificate::from_der(&parent).unwrap();
        child.verify_signature(Some(parent.public_key())).is_ok()
    }

    #[test]
    fn self_signed_ca_is_a_ca_with_the_requested_subject_and_validity() {
        let ca = create_ca(&spec("Fleet Root"), None, now()).unwrap();
        let info = certificate_info("ca", &ca.cert_pem).unwrap();
        assert!(info.is_ca);
        assert_eq!(info.subject, "O=Example, CN=Fleet Root");
        assert_eq!(info.subject, info.issuer);
        assert_eq!(info.not_after, now() + Duration::days(3650));
        assert!(signed_by(&ca.cert_pem, &ca.cert_pem));
        assert!(ca.key_pem.contains("BEGIN PRIVATE KEY"));
    }

    #[test]
    fn intermediate_is_signed_by_its_parent_and_limited_to_its_validity() {
        let root = create_ca(
            &CaSpec {
                days: 10,
                ..spec("Root")
            },
            None,
            now(),
        )
        .unwrap();
        let root_ca = load(&root);
        let inter = create_ca(&spec("Inter"), Some(&root_ca), now()).unwrap();
        let info = certificate_info("inter", &inter.cert_pem).unwrap();
        assert!(info.is_ca);
        assert_eq!(info.issuer, "O=Example, CN=Root");
        assert_eq!(info.not_after, root_ca.info.not_after);
        assert!(signed_by(&inter.cert_pem, &root.cert_pem));
        assert!(!signed_by(&inter.cert_pem, &inter.cert_pem));
    }

    #[test]
    fn verification_certificate_carries_the_code_and_is_signed_by_the_ca() {
        let ca = create_ca(&spec("Root"), None, now()).unwrap();
        let v = verification_certificate(&load(&ca), "0123abcd", now()).unwrap();
        let info = certificate_info("v", &v.cert_pem).unwrap();
        assert_eq!(info.subject, "CN=0123abcd");
        assert!(!info.is_ca);
        assert!(signed_by(&v.cert_pem, &ca.cert_pem));
    }

    #[test]
    fn device_chain_is_the_device_certificate_then_the_ca() {
        let ca = create_ca(&spec("Root"), None, now()).unwrap();
        let loaded = load(&ca);
        let dev = issue_device(
            &loaded,
            &DeviceSpec {
                common_name: "thing-1".into(),
                days: 365,
                algorithm: KeyAlgorithm::EcdsaP384,
            },
            now(),
        )
        .unwrap();
        assert!(!dev.clamped);
        let blocks = pem::parse_many(&dev.chain_pem).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(pem_lf(&blocks[0]), dev.cert_pem);
        assert_eq!(
            blocks[1].contents(),
            parse_cert_der("ca", &ca.cert_pem).unwrap()
        );
        assert!(signed_by(&dev.cert_pem, &ca.cert_pem));
        assert_eq!(
            certificate_info("d", &dev.cert_pem).unwrap().subject,
            "CN=thing-1"
        );
    }

    #[test]
    fn device_validity_is_cut_to_the_ca() {
        let ca = create_ca(
            &CaSpec {
                days: 30,
                ..spec("Root")
            },
            None,
            now(),
        )
        .unwrap();
        let loaded = load(&ca);
        let dev = issue_device(
            &loaded,
            &DeviceSpec {
                common_name: "thing-1".into(),
                days: 365,
                algorithm: KeyAlgorithm::EcdsaP256,
            },
            now(),
        )
        .unwrap();
        assert!(dev.clamped);
        assert_eq!(dev.not_after, loaded.info.not_after);
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let a = create_ca(&spec("A"), None, now()).unwrap();
        let b = create_ca(&spec("B"), None, now()).unwrap();
        let err = LoadedCa::from_pem("a.pem", &a.cert_pem, "b.key", &b.key_pem).unwrap_err();
        assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "the key b.key does not belong to the certificate a.pem: their public keys differ"
        );
    }

    #[test]
    fn garbage_and_wrong_blocks_are_refused_naming_the_file() {
        let a = create_ca(&spec("A"), None, now()).unwrap();
        let err = LoadedCa::from_pem("x.pem", "hello", "a.key", &a.key_pem).unwrap_err();
        assert!(matches!(err, PkiError::BadCertificate { ref what, .. } if what == "x.pem"));
        // A key file given as the certificate.
        let err = LoadedCa::from_pem("k.pem", &a.key_pem, "a.key", &a.key_pem).unwrap_err();
        assert!(
            err.to_string().contains("no `BEGIN CERTIFICATE` block"),
            "{err}"
        );
        let err = LoadedCa::from_pem("a.pem", &a.cert_pem, "c.key", &a.cert_pem).unwrap_err();
        assert!(matches!(err, PkiError::BadKey { .. }), "{err}");
    }

    #[test]
    fn a_leaf_is_not_accepted_as_a_ca() {
        let ca = create_ca(&spec("Root"), None, now()).unwrap();
        let v = verification_certificate(&load(&ca), "code", now()).unwrap();
        let err = LoadedCa::from_pem("leaf.pem", &v.cert_pem, "leaf.key", &v.key_pem).unwrap_err();
        assert!(matches!(err, PkiError::NotCa { .. }), "{err}");
    }

    #[test]
    fn an_expired_ca_signs_nothing() {
        let ca = create_ca(
            &CaSpec {
                days: 1,
                ..spec("Root")
            },
            None,
            now(),
        )
        .unwrap();
        let loaded = load(&ca);
        let later = now() + Duration::days(2);
        let err = verification_certificate(&loaded, "code", later).unwrap_err();
        assert!(matches!(err, PkiError::Expired { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("CA certificate ca.pem expired on 2027-")
        );
        let dev = DeviceSpec {
            common_name: "t".into(),
            days: 1,
            algorithm: KeyAlgorithm::EcdsaP256,
        };
        assert!(matches!(
            issue_device(&loaded, &dev, later),
            Err(PkiError::Expired { .. })
        ));
        assert!(matches!(
            create_ca(&spec("I"), Some(&loaded), later),
            Err(PkiError::Expired { .. })
        ));
    }

    #[test]
    fn bad_requests_are_refused() {
        assert!(matches!(
            create_ca(
                &CaSpec {
                    days: 0,
                    ..spec("R")
                },
                None,
                now()
            ),
            Err(PkiError::InvalidInput { field: "days", .. })
        ));
        assert!(matches!(
            create_ca(&spec(&"x".repeat(65)), None, now()),
            Err(PkiError::InvalidInput {
                field: "common name",
                ..
            })
        ));
    }
}
