//! CSR and certificate inspection, and the CSR acceptance policy.
//!
//! Everything here is pure Rust (RustCrypto) so that it also builds for
//! `wasm32-unknown-unknown`. Input is untrusted: every failure is a typed
//! error, nothing panics on input.
//!
//! - [`inspect_csr`] parses a PEM PKCS#10 request, verifies the request's own
//!   signature and reports its key, subject CN and public-key fingerprint.
//! - [`CsrPolicy::check`] applies fleetcert's acceptance policy to a
//!   [`CsrInfo`] (key strength, allowed curves, key reuse, subject).
//! - [`inspect_certificate`] and [`certificate_id`] read a PEM X.509
//!   certificate (for the new-key check and for JITR);
//!   [`verify_issued_by`] checks a certificate's signature against a CA.
//!
//! The public-key fingerprint is the lowercase hex SHA-256 of the DER
//! `SubjectPublicKeyInfo`, for CSRs and certificates alike, so a CSR that
//! reuses a certificate's key has the certificate's fingerprint.

use const_oid::ObjectIdentifier;
use const_oid::db::rfc4519::COMMON_NAME;
use der::asn1::{AnyRef, BitStringRef};
use der::{Decode, Encode, Reader, SliceReader, Tag, Tagged};
use rsa::pkcs1::RsaPublicKeyRef;
use rsa::signature::Verifier;
use rsa::signature::hazmat::PrehashVerifier;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384, Sha512};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;
use x509_cert::name::Name;
use x509_cert::request::CertReq;

/// Largest PEM text (in bytes) [`inspect_csr`] and [`inspect_certificate`]
/// accept; anything longer is rejected before parsing.
pub const MAX_PEM_LEN: usize = 16 * 1024;

/// Largest RSA modulus (in bits) whose signature [`inspect_csr`] verifies.
pub const MAX_VERIFIABLE_RSA_BITS: u32 = 8192;

/// Smallest RSA modulus (in bits) [`inspect_csr`] parses; smaller keys are
/// reported as [`CsrError::UnsupportedKey`] (the policy floor is far above).
pub const MIN_PARSEABLE_RSA_BITS: u32 = 512;

const PEM_LABEL_CSR: &str = "CERTIFICATE REQUEST";
const PEM_LABEL_CSR_LEGACY: &str = "NEW CERTIFICATE REQUEST";
const PEM_LABEL_CERT: &str = "CERTIFICATE";

const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const OID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// The public key algorithm of a CSR or certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum KeyAlgorithm {
    /// RSA with a modulus of `bits` bits.
    Rsa {
        /// Modulus length in bits (leading zero bits not counted).
        bits: u32,
    },
    /// ECDSA on NIST P-256 (secp256r1).
    EcP256,
    /// ECDSA on NIST P-384 (secp384r1).
    EcP384,
    /// ECDSA on NIST P-521 (secp521r1): reported, not verifiable here.
    EcP521,
    /// Any other key: the algorithm OID, or for an EC key on another curve
    /// `ec:<curve oid>`.
    Other {
        /// Dotted OID of the key algorithm (or `ec:<curve oid>`).
        oid: String,
    },
}

impl core::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Rsa { bits } => write!(f, "rsa-{bits}"),
            Self::EcP256 => f.write_str("ec-p256"),
            Self::EcP384 => f.write_str("ec-p384"),
            Self::EcP521 => f.write_str("ec-p521"),
            Self::Other { oid } => write!(f, "unknown key algorithm {oid}"),
        }
    }
}

/// A signature algorithm [`inspect_csr`] can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SignatureAlgorithm {
    /// `sha256WithRSAEncryption` (RSASSA-PKCS1-v1_5).
    RsaPkcs1Sha256,
    /// `sha384WithRSAEncryption` (RSASSA-PKCS1-v1_5).
    RsaPkcs1Sha384,
    /// `sha512WithRSAEncryption` (RSASSA-PKCS1-v1_5).
    RsaPkcs1Sha512,
    /// `id-RSASSA-PSS` with SHA-256 and MGF1-SHA-256 (the salt length the
    /// parameters declare).
    RsaPssSha256,
    /// `id-RSASSA-PSS` with SHA-384 and MGF1-SHA-384.
    RsaPssSha384,
    /// `id-RSASSA-PSS` with SHA-512 and MGF1-SHA-512.
    RsaPssSha512,
    /// `ecdsa-with-SHA256` (P-256 or P-384 key).
    EcdsaSha256,
    /// `ecdsa-with-SHA384` (P-256 or P-384 key).
    EcdsaSha384,
}

/// A signature algorithm as a signed object names it: the algorithm, and
/// for RSASSA-PSS the salt length its parameters declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scheme {
    alg: SignatureAlgorithm,
    pss_salt_len: usize,
}

/// The fields of RSASSA-PSS-params (RFC 4055 section 3.1) fleetcert reads:
/// the OIDs of the hash, the mask generation function and its hash, the
/// salt length and the trailer field, defaults filled in. Decoded here
/// rather than with `pkcs1::RsaPssParams`, whose `u8` salt length cannot
/// hold the maximal salt OpenSSL uses by default for 3072- and 4096-bit
/// keys.
#[derive(Debug)]
struct PssParams {
    hash: ObjectIdentifier,
    mask_gen: ObjectIdentifier,
    mgf_hash: ObjectIdentifier,
    salt_len: u32,
    trailer_field: u32,
}

impl PssParams {
    fn from_der(der: &[u8]) -> der::Result<Self> {
        use der::{TagMode, TagNumber};
        use spki::AlgorithmIdentifierOwned as Alg;
        let mut reader = SliceReader::new(der)?;
        let params = reader.sequence(|r| {
            let hash: Option<Alg> = r.context_specific(TagNumber(0), TagMode::Explicit)?;
            let mask_gen: Option<Alg> = r.context_specific(TagNumber(1), TagMode::Explicit)?;
            let salt_len: Option<u32> = r.context_specific(TagNumber(2), TagMode::Explicit)?;
            let trailer: Option<u32> = r.context_specific(TagNumber(3), TagMode::Explicit)?;
            let mgf_hash = match mask_gen.as_ref().and_then(|m| m.parameters.as_ref()) {
                Some(inner) => inner.decode_as::<Alg>()?.oid,
                None => OID_SHA1,
            };
            Ok::<_, der::Error>(Self {
                hash: hash.map_or(OID_SHA1, |h| h.oid),
                mask_gen: mask_gen.map_or(OID_MGF1, |m| m.oid),
                mgf_hash,
                salt_len: salt_len.unwrap_or(20),
                trailer_field: trailer.unwrap_or(1),
            })
        })?;
        reader.finish()?;
        Ok(params)
    }
}

/// Why a signature `AlgorithmIdentifier` is not one fleetcert verifies.
enum SchemeError {
    /// An algorithm OID outside the supported set.
    Algorithm(ObjectIdentifier),
    /// RSASSA-PSS with parameters outside the supported set.
    Pss(String),
}

impl Scheme {
    fn of(id: &spki::AlgorithmIdentifierOwned) -> Result<Self, SchemeError> {
        let alg = match id.oid {
            OID_SHA256_WITH_RSA => SignatureAlgorithm::RsaPkcs1Sha256,
            OID_SHA384_WITH_RSA => SignatureAlgorithm::RsaPkcs1Sha384,
            OID_SHA512_WITH_RSA => SignatureAlgorithm::RsaPkcs1Sha512,
            OID_ECDSA_WITH_SHA256 => SignatureAlgorithm::EcdsaSha256,
            OID_ECDSA_WITH_SHA384 => SignatureAlgorithm::EcdsaSha384,
            OID_RSASSA_PSS => return Self::pss(id.parameters.as_ref()),
            other => return Err(SchemeError::Algorithm(other)),
        };
        Ok(Self {
            alg,
            pss_salt_len: 0,
        })
    }

    /// RSASSA-PSS-params (RFC 4055 section 3.1): SHA-256/384/512, MGF1 with
    /// the same hash, trailer field 1. An absent field is its default
    /// (SHA-1, MGF1-SHA-1, salt 20), so absent hash parameters are SHA-1
    /// and refused.
    fn pss(params: Option<&der::Any>) -> Result<Self, SchemeError> {
        let bad = |reason: String| SchemeError::Pss(reason);
        let params = params.ok_or_else(|| bad("no parameters".to_owned()))?;
        let der = params.to_der().map_err(|e| bad(e.to_string()))?;
        let p = PssParams::from_der(&der).map_err(|e| bad(e.to_string()))?;
        let hash_name = |oid: ObjectIdentifier| match oid {
            OID_SHA1 => "sha-1".to_owned(),
            OID_SHA256 => "sha-256".to_owned(),
            OID_SHA384 => "sha-384".to_owned(),
            OID_SHA512 => "sha-512".to_owned(),
            other => other.to_string(),
        };
        let alg = match p.hash {
            OID_SHA256 => SignatureAlgorithm::RsaPssSha256,
            OID_SHA384 => SignatureAlgorithm::RsaPssSha384,
            OID_SHA512 => SignatureAlgorithm::RsaPssSha512,
            other => return Err(bad(format!("hash {}", hash_name(other)))),
        };
        if p.mask_gen != OID_MGF1 {
            return Err(bad(format!("mask generation {}", p.mask_gen)));
        }
        if p.mgf_hash != p.hash {
            return Err(bad(format!(
                "mgf1 with {} for hash {}",
                hash_name(p.mgf_hash),
                hash_name(p.hash)
            )));
        }
        if p.trailer_field != 1 {
            return Err(bad(format!("trailer field {}", p.trailer_field)));
        }
        Ok(Self {
            alg,
            pss_salt_len: p.salt_len as usize,
        })
    }
}

/// What [`inspect_csr`] learnt from a CSR whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CsrInfo {
    /// The requested public key.
    pub key: KeyAlgorithm,
    /// The algorithm the CSR is signed with (verified).
    pub signature_algorithm: SignatureAlgorithm,
    /// The subject's common name, if it has one.
    pub subject_cn: Option<String>,
    /// Lowercase hex SHA-256 of the DER `SubjectPublicKeyInfo`.
    pub public_key_fingerprint: String,
}

/// Why a CSR could not be inspected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// The PEM text is longer than [`MAX_PEM_LEN`].
    #[error("csr pem is {len} bytes, more than the {max} bytes allowed")]
    TooLarge {
        /// Length of the input in bytes.
        len: usize,
        /// The limit, [`MAX_PEM_LEN`].
        max: usize,
    },
    /// The input is not PEM text.
    #[error(
        "csr is not pem: expected '-----BEGIN CERTIFICATE REQUEST-----' ... '-----END CERTIFICATE REQUEST-----' with base64 in between ({reason})"
    )]
    NotPem {
        /// What the PEM decoder objected to.
        reason: String,
    },
    /// The PEM block has a label other than `CERTIFICATE REQUEST` (or `NEW CERTIFICATE REQUEST`).
    #[error("pem label is '{found}', expected 'CERTIFICATE REQUEST'")]
    WrongPemLabel {
        /// The label found.
        found: String,
    },
    /// The PEM body is not a DER-encoded PKCS#10 certification request.
    #[error("csr is not a valid der pkcs#10 certification request: {reason}")]
    Der {
        /// What the DER decoder objected to.
        reason: String,
    },
    /// The CSR is signed with an algorithm fleetcert cannot verify.
    #[error(
        "csr signature algorithm {oid} is not supported: use sha256/384/512WithRSAEncryption, rsassa-pss (sha-256/384/512) or ecdsa-with-SHA256/384 (p-256 or p-384 key)"
    )]
    UnsupportedSignatureAlgorithm {
        /// Dotted OID of the signature algorithm.
        oid: String,
    },
    /// The CSR is signed with RSASSA-PSS under parameters fleetcert does
    /// not verify.
    #[error(
        "csr rsassa-pss parameters are not supported ({reason}): use sha-256/384/512 with mgf1 of the same hash"
    )]
    UnsupportedPssParameters {
        /// What is outside the supported set.
        reason: String,
    },
    /// The CSR's key cannot be used to verify its signature here (unknown
    /// algorithm or curve, P-521, or an RSA modulus outside what is parsed).
    #[error("csr key {key} is not supported: use rsa (2048-4096 bits) or ec p-256/p-384")]
    UnsupportedKey {
        /// The key algorithm found.
        key: KeyAlgorithm,
    },
    /// The public key does not decode for its algorithm.
    #[error("csr public key is malformed: {reason}")]
    MalformedKey {
        /// What was wrong.
        reason: String,
    },
    /// The signature algorithm is for another key type or curve.
    #[error("csr is signed with {signature:?} but its key is {key}")]
    SignatureKeyMismatch {
        /// The signature algorithm.
        signature: SignatureAlgorithm,
        /// The key algorithm.
        key: KeyAlgorithm,
    },
    /// The signature does not verify: the CSR was altered or signed with
    /// another key than the one it contains.
    #[error("csr signature does not verify with the csr's own public key")]
    BadSignature,
    /// The subject has more than one common name.
    #[error("subject has {count} common names (cn), expected at most one")]
    AmbiguousCommonName {
        /// How many CN attributes there are.
        count: usize,
    },
    /// The subject CN is not a string type fleetcert can read.
    #[error("subject common name (cn) is not a readable string: {reason}")]
    BadCommonName {
        /// What was wrong.
        reason: String,
    },
}

/// Why a certificate could not be inspected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The PEM text is longer than [`MAX_PEM_LEN`].
    #[error("certificate pem is {len} bytes, more than the {max} bytes allowed")]
    TooLarge {
        /// Length of the input in bytes.
        len: usize,
        /// The limit, [`MAX_PEM_LEN`].
        max: usize,
    },
    /// The input is not PEM text.
    #[error(
        "certificate is not pem: expected '-----BEGIN CERTIFICATE-----' ... '-----END CERTIFICATE-----' with base64 in between ({reason})"
    )]
    NotPem {
        /// What the PEM decoder objected to.
        reason: String,
    },
    /// The PEM block has a label other than `CERTIFICATE`.
    #[error("pem label is '{found}', expected 'CERTIFICATE'")]
    WrongPemLabel {
        /// The label found.
        found: String,
    },
    /// The PEM body is not a DER-encoded X.509 certificate.
    #[error("certificate is not a valid der x.509 certificate: {reason}")]
    Der {
        /// What the DER decoder objected to.
        reason: String,
    },
    /// A subject or issuer name has more than one common name.
    #[error("{field} has {count} common names (cn), expected at most one")]
    AmbiguousCommonName {
        /// `subject` or `issuer`.
        field: &'static str,
        /// How many CN attributes there are.
        count: usize,
    },
    /// A subject or issuer CN is not a string type fleetcert can read.
    #[error("{field} common name (cn) is not a readable string: {reason}")]
    BadCommonName {
        /// `subject` or `issuer`.
        field: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// What [`inspect_certificate`] learnt from a certificate. The certificate's
/// signature is not verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateInfo {
    /// AWS IoT certificate id: lowercase hex SHA-256 of the certificate DER.
    pub certificate_id: String,
    /// The certified public key.
    pub key: KeyAlgorithm,
    /// Lowercase hex SHA-256 of the DER `SubjectPublicKeyInfo` (same
    /// definition as [`CsrInfo::public_key_fingerprint`]).
    pub public_key_fingerprint: String,
    /// The subject's common name, if any.
    pub subject_cn: Option<String>,
    /// The issuer's common name, if any.
    pub issuer_cn: Option<String>,
    /// `notBefore`, unix milliseconds.
    pub not_before_ms: u64,
    /// `notAfter`, unix milliseconds.
    pub not_after_ms: u64,
    /// Serial number, lowercase hex of its DER content bytes.
    pub serial_hex: String,
}

/// Parses a PEM CSR, verifies its own signature and reports what it asks for.
///
/// Accepts the labels `CERTIFICATE REQUEST` and `NEW CERTIFICATE REQUEST`,
/// surrounding whitespace, and CRLF line ends. Verifiable signatures: RSA
/// PKCS#1 v1.5 with SHA-256/384/512, ECDSA on P-256 or P-384 with SHA-256
/// or SHA-384 (the usual pairs are P-256/SHA-256 and P-384/SHA-384; OpenSSL
/// makes the others on request and AWS IoT accepts them).
///
/// # Errors
/// A [`CsrError`] naming the first thing wrong with the input.
pub fn inspect_csr(pem: &str) -> Result<CsrInfo, CsrError> {
    let der = decode_pem(pem, &[PEM_LABEL_CSR, PEM_LABEL_CSR_LEGACY]).map_err(|e| match e {
        PemError::TooLarge { len, max } => CsrError::TooLarge { len, max },
        PemError::NotPem(reason) => CsrError::NotPem { reason },
        PemError::WrongLabel(found) => CsrError::WrongPemLabel { found },
    })?;
    let der_err = |e: der::Error| CsrError::Der {
        reason: e.to_string(),
    };
    let req = CertReq::from_der(&der).map_err(der_err)?;
    let (tbs, _, signature) = split_signed(&der).map_err(der_err)?;

    let spki = &req.info.public_key;
    let spki_der = spki.to_der().map_err(der_err)?;
    let key = classify_key(spki).map_err(|reason| CsrError::MalformedKey { reason })?;

    let scheme = Scheme::of(&req.algorithm).map_err(|e| match e {
        SchemeError::Algorithm(oid) => CsrError::UnsupportedSignatureAlgorithm {
            oid: oid.to_string(),
        },
        SchemeError::Pss(reason) => CsrError::UnsupportedPssParameters { reason },
    })?;
    let signature = signature.as_bytes().ok_or(CsrError::BadSignature)?;
    verify(spki, &key, scheme, tbs, signature)?;

    let subject_cn = common_name(&req.info.subject).map_err(|e| match e {
        CnError::Ambiguous(count) => CsrError::AmbiguousCommonName { count },
        CnError::Bad(reason) => CsrError::BadCommonName { reason },
    })?;

    Ok(CsrInfo {
        key,
        signature_algorithm: scheme.alg,
        subject_cn,
        public_key_fingerprint: sha256_hex(&spki_der),
    })
}

/// Parses a PEM certificate and reports its identity, key and validity.
///
/// # Errors
/// A [`CertError`] naming the first thing wrong with the input.
pub fn inspect_certificate(pem: &str) -> Result<CertificateInfo, CertError> {
    let der = decode_cert_pem(pem)?;
    let der_err = |e: der::Error| CertError::Der {
        reason: e.to_string(),
    };
    let cert = Certificate::from_der(&der).map_err(der_err)?;
    let tbs = cert.tbs_certificate();
    let spki = tbs.subject_public_key_info();
    let spki_der = spki.to_der().map_err(der_err)?;
    // An unparseable key is still a certificate we can describe.
    let key = classify_key(spki).unwrap_or_else(|_| KeyAlgorithm::Other {
        oid: spki.algorithm.oid.to_string(),
    });
    let cn = |name: &Name, field: &'static str| {
        common_name(name).map_err(|e| match e {
            CnError::Ambiguous(count) => CertError::AmbiguousCommonName { field, count },
            CnError::Bad(reason) => CertError::BadCommonName { field, reason },
        })
    };
    let validity = tbs.validity();
    Ok(CertificateInfo {
        certificate_id: sha256_hex(&der),
        key,
        public_key_fingerprint: sha256_hex(&spki_der),
        subject_cn: cn(tbs.subject(), "subject")?,
        issuer_cn: cn(tbs.issuer(), "issuer")?,
        not_before_ms: unix_ms(validity.not_before),
        not_after_ms: unix_ms(validity.not_after),
        serial_hex: hex::encode(tbs.serial_number().as_bytes()),
    })
}

/// The AWS IoT certificate id of a PEM certificate: lowercase hex SHA-256
/// of the certificate's DER.
///
/// # Errors
/// A [`CertError`] when the input is not a PEM X.509 certificate.
pub fn certificate_id(pem: &str) -> Result<String, CertError> {
    let der = decode_cert_pem(pem)?;
    Certificate::from_der(&der).map_err(|e| CertError::Der {
        reason: e.to_string(),
    })?;
    Ok(sha256_hex(&der))
}

/// Why [`verify_issued_by`] does not accept a certificate as issued by a CA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerError {
    /// The certificate does not parse.
    #[error("certificate: {0}")]
    Certificate(CertError),
    /// The CA certificate does not parse.
    #[error("ca certificate: {0}")]
    CaCertificate(CertError),
    /// The certificate's issuer name is not the CA's subject name.
    #[error("certificate issuer '{issuer}' is not the ca subject '{ca_subject}'")]
    NameMismatch {
        /// The certificate's issuer (RFC 4514 string).
        issuer: String,
        /// The CA's subject (RFC 4514 string).
        ca_subject: String,
    },
    /// The certificate is signed with an algorithm fleetcert cannot verify.
    #[error(
        "certificate signature algorithm {oid} is not supported: use sha256/384/512WithRSAEncryption, rsassa-pss (sha-256/384/512) or ecdsa-with-SHA256/384"
    )]
    UnsupportedSignatureAlgorithm {
        /// Dotted OID of the signature algorithm.
        oid: String,
    },
    /// The CA's key cannot be used to verify signatures here.
    #[error("ca key {key} is not supported: use rsa or ec p-256/p-384")]
    UnsupportedCaKey {
        /// The CA's key algorithm.
        key: KeyAlgorithm,
    },
    /// The CA's public key does not decode for its algorithm.
    #[error("ca public key is malformed: {reason}")]
    MalformedCaKey {
        /// What was wrong.
        reason: String,
    },
    /// The signature algorithm is for another key type than the CA's.
    #[error("certificate is signed with {signature:?} but the ca key is {key}")]
    SignatureKeyMismatch {
        /// The certificate's signature algorithm.
        signature: SignatureAlgorithm,
        /// The CA's key algorithm.
        key: KeyAlgorithm,
    },
    /// The signature does not verify with the CA's key.
    #[error("certificate signature does not verify with the ca's public key")]
    BadSignature,
}

/// Checks that the certificate `cert_pem` was issued by the CA `ca_pem`:
/// its issuer name is the CA's subject name (byte-equal DER) and its
/// signature verifies with the CA's public key. Validity periods, key usage
/// and basic constraints are not checked.
///
/// # Errors
/// An [`IssuerError`] naming the first thing wrong.
pub fn verify_issued_by(cert_pem: &str, ca_pem: &str) -> Result<(), IssuerError> {
    let parse = |pem: &str| -> Result<(Vec<u8>, Certificate), CertError> {
        let der = decode_cert_pem(pem)?;
        let cert = Certificate::from_der(&der).map_err(|e| CertError::Der {
            reason: e.to_string(),
        })?;
        Ok((der, cert))
    };
    let (cert_der, cert) = parse(cert_pem).map_err(IssuerError::Certificate)?;
    let (_, ca) = parse(ca_pem).map_err(IssuerError::CaCertificate)?;
    let (issuer, ca_subject) = (
        cert.tbs_certificate().issuer(),
        ca.tbs_certificate().subject(),
    );
    if issuer != ca_subject {
        return Err(IssuerError::NameMismatch {
            issuer: issuer.to_string(),
            ca_subject: ca_subject.to_string(),
        });
    }
    let alg_oid = cert.signature_algorithm().oid;
    if cert.tbs_certificate().signature().oid != alg_oid {
        return Err(IssuerError::Certificate(CertError::Der {
            reason: "signature algorithm inside and outside the signed part differ".to_owned(),
        }));
    }
    let scheme = Scheme::of(cert.signature_algorithm()).map_err(|e| {
        IssuerError::UnsupportedSignatureAlgorithm {
            oid: match e {
                SchemeError::Algorithm(oid) => oid.to_string(),
                SchemeError::Pss(reason) => format!("{alg_oid} (rsassa-pss: {reason})"),
            },
        }
    })?;
    let (tbs, _, signature) = split_signed(&cert_der).map_err(|e| {
        IssuerError::Certificate(CertError::Der {
            reason: e.to_string(),
        })
    })?;
    let signature = signature.as_bytes().ok_or(IssuerError::BadSignature)?;
    let ca_spki = ca.tbs_certificate().subject_public_key_info();
    let key = classify_key(ca_spki).map_err(|reason| IssuerError::MalformedCaKey { reason })?;
    verify(ca_spki, &key, scheme, tbs, signature).map_err(|e| match e {
        CsrError::UnsupportedKey { key } => IssuerError::UnsupportedCaKey { key },
        CsrError::MalformedKey { reason } => IssuerError::MalformedCaKey { reason },
        CsrError::SignatureKeyMismatch { signature, key } => {
            IssuerError::SignatureKeyMismatch { signature, key }
        }
        _ => IssuerError::BadSignature,
    })
}

/// fleetcert's CSR acceptance policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CsrPolicy {
    /// Smallest RSA modulus accepted, in bits (default 2048).
    pub min_rsa_bits: u32,
    /// Largest RSA modulus accepted, in bits (default 4096).
    pub max_rsa_bits: u32,
    /// Accept EC P-256 keys (default true).
    pub allow_p256: bool,
    /// Accept EC P-384 keys (default true).
    pub allow_p384: bool,
    /// Reject a CSR whose key is the old certificate's (default true).
    pub require_new_key: bool,
    /// Reject a CSR whose subject CN is not the thing name (default false).
    pub require_cn_matches_thing: bool,
}

impl Default for CsrPolicy {
    fn default() -> Self {
        Self {
            min_rsa_bits: 2048,
            max_rsa_bits: 4096,
            allow_p256: true,
            allow_p384: true,
            require_new_key: true,
            require_cn_matches_thing: false,
        }
    }
}

/// The context a CSR is checked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsrCheck<'a> {
    /// The thing (= MQTT client id) that sent the CSR.
    pub thing_name: &'a str,
    /// Fingerprint of the certificate being rotated
    /// ([`CertificateInfo::public_key_fingerprint`]), when known.
    pub old_public_key_fingerprint: Option<&'a str>,
}

/// Why the policy rejects a CSR (its signature already verified).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrRejection {
    /// RSA modulus below the policy's minimum.
    #[error("rsa key of {bits} bits is too weak: at least {min} bits required")]
    WeakRsaKey {
        /// The key's modulus length.
        bits: u32,
        /// The policy's minimum.
        min: u32,
    },
    /// RSA modulus above the policy's maximum.
    #[error("rsa key of {bits} bits is too large: at most {max} bits accepted")]
    RsaKeyTooLarge {
        /// The key's modulus length.
        bits: u32,
        /// The policy's maximum.
        max: u32,
    },
    /// An EC curve the policy does not allow.
    #[error("ec curve {curve} is not allowed by the policy")]
    CurveNotAllowed {
        /// The key algorithm (curve).
        curve: KeyAlgorithm,
    },
    /// A key type the policy never accepts.
    #[error("key {key} is not supported: use rsa or ec p-256/p-384")]
    UnsupportedKey {
        /// The key algorithm.
        key: KeyAlgorithm,
    },
    /// The CSR reuses the key of the certificate being rotated.
    #[error(
        "csr reuses the current certificate's key (fingerprint {fingerprint}): generate a new key pair"
    )]
    KeyReused {
        /// The shared public-key fingerprint.
        fingerprint: String,
    },
    /// The subject CN is not the thing name.
    #[error("csr subject cn is {found:?}, expected the thing name {expected:?}")]
    SubjectMismatch {
        /// The thing name.
        expected: String,
        /// The CSR's CN (`None`: no CN).
        found: Option<String>,
    },
    /// The policy itself is inconsistent (`min_rsa_bits > max_rsa_bits`).
    #[error("csr policy is invalid: min_rsa_bits {min} is above max_rsa_bits {max}")]
    InvalidPolicy {
        /// The policy's minimum.
        min: u32,
        /// The policy's maximum.
        max: u32,
    },
}

impl CsrPolicy {
    /// Applies the policy to an inspected CSR.
    ///
    /// # Errors
    /// The first [`CsrRejection`] that applies, checked in the order: key,
    /// key reuse, subject.
    pub fn check(&self, info: &CsrInfo, ctx: &CsrCheck<'_>) -> Result<(), CsrRejection> {
        if self.min_rsa_bits > self.max_rsa_bits {
            return Err(CsrRejection::InvalidPolicy {
                min: self.min_rsa_bits,
                max: self.max_rsa_bits,
            });
        }
        match &info.key {
            KeyAlgorithm::Rsa { bits } if *bits < self.min_rsa_bits => {
                return Err(CsrRejection::WeakRsaKey {
                    bits: *bits,
                    min: self.min_rsa_bits,
                });
            }
            KeyAlgorithm::Rsa { bits } if *bits > self.max_rsa_bits => {
                return Err(CsrRejection::RsaKeyTooLarge {
                    bits: *bits,
                    max: self.max_rsa_bits,
                });
            }
            KeyAlgorithm::Rsa { .. } => {}
            KeyAlgorithm::EcP256 if self.allow_p256 => {}
            KeyAlgorithm::EcP384 if self.allow_p384 => {}
            curve @ (KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384 | KeyAlgorithm::EcP521) => {
                return Err(CsrRejection::CurveNotAllowed {
                    curve: curve.clone(),
                });
            }
            key @ KeyAlgorithm::Other { .. } => {
                return Err(CsrRejection::UnsupportedKey { key: key.clone() });
            }
        }
        if self.require_new_key
            && let Some(old) = ctx.old_public_key_fingerprint
            && old.eq_ignore_ascii_case(&info.public_key_fingerprint)
        {
            return Err(CsrRejection::KeyReused {
                fingerprint: info.public_key_fingerprint.clone(),
            });
        }
        if self.require_cn_matches_thing && info.subject_cn.as_deref() != Some(ctx.thing_name) {
            return Err(CsrRejection::SubjectMismatch {
                expected: ctx.thing_name.to_owned(),
                found: info.subject_cn.clone(),
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// internals

enum PemError {
    TooLarge { len: usize, max: usize },
    NotPem(String),
    WrongLabel(String),
}

fn decode_pem(pem: &str, labels: &[&str]) -> Result<Vec<u8>, PemError> {
    if pem.len() > MAX_PEM_LEN {
        return Err(PemError::TooLarge {
            len: pem.len(),
            max: MAX_PEM_LEN,
        });
    }
    let trimmed = pem.trim();
    if !trimmed.starts_with("-----BEGIN ") {
        return Err(PemError::NotPem(
            "no '-----BEGIN ' line at the start".to_owned(),
        ));
    }
    let (label, der) =
        der::pem::decode_vec(trimmed.as_bytes()).map_err(|e| PemError::NotPem(e.to_string()))?;
    if !labels.contains(&label) {
        return Err(PemError::WrongLabel(label.to_owned()));
    }
    Ok(der)
}

fn decode_cert_pem(pem: &str) -> Result<Vec<u8>, CertError> {
    decode_pem(pem, &[PEM_LABEL_CERT]).map_err(|e| match e {
        PemError::TooLarge { len, max } => CertError::TooLarge { len, max },
        PemError::NotPem(reason) => CertError::NotPem { reason },
        PemError::WrongLabel(found) => CertError::WrongPemLabel { found },
    })
}

/// Splits a signed structure (`SEQUENCE { tbs, algorithm, signature }`) into
/// the exact DER bytes of `tbs`, the algorithm and the signature bits.
fn split_signed(der: &[u8]) -> der::Result<(&[u8], AnyRef<'_>, BitStringRef<'_>)> {
    let mut reader = SliceReader::new(der)?;
    let parts = reader.sequence(|r| {
        let tbs = r.tlv_bytes()?;
        let alg = AnyRef::decode(r)?;
        let sig = BitStringRef::decode(r)?;
        Ok::<_, der::Error>((tbs, alg, sig))
    })?;
    reader.finish()?;
    Ok(parts)
}

fn classify_key(spki: &SubjectPublicKeyInfoOwned) -> Result<KeyAlgorithm, String> {
    match spki.algorithm.oid {
        OID_RSA_ENCRYPTION => {
            let bytes = spki
                .subject_public_key
                .as_bytes()
                .ok_or("rsa public key bit string has unused bits")?;
            let key = RsaPublicKeyRef::from_der(bytes).map_err(|e| e.to_string())?;
            let modulus = key.modulus.as_bytes();
            let first = modulus.first().copied().unwrap_or(0);
            let len = u32::try_from(modulus.len()).map_err(|_| "rsa modulus too long")?;
            let bits = (len * 8).saturating_sub(first.leading_zeros());
            Ok(KeyAlgorithm::Rsa { bits })
        }
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .ok_or("ec public key without a named curve")?
                .decode_as::<ObjectIdentifier>()
                .map_err(|_| "ec public key parameters are not a named curve oid")?;
            Ok(match curve {
                OID_SECP256R1 => KeyAlgorithm::EcP256,
                OID_SECP384R1 => KeyAlgorithm::EcP384,
                OID_SECP521R1 => KeyAlgorithm::EcP521,
                other => KeyAlgorithm::Other {
                    oid: format!("ec:{other}"),
                },
            })
        }
        other => Ok(KeyAlgorithm::Other {
            oid: other.to_string(),
        }),
    }
}

fn verify(
    spki: &SubjectPublicKeyInfoOwned,
    key: &KeyAlgorithm,
    scheme: Scheme,
    msg: &[u8],
    signature: &[u8],
) -> Result<(), CsrError> {
    use SignatureAlgorithm as S;
    let alg = scheme.alg;
    let mismatch = || CsrError::SignatureKeyMismatch {
        signature: alg,
        key: key.clone(),
    };
    let key_bits = || spki.subject_public_key.as_bytes().unwrap_or(&[]);
    match (key, alg) {
        (
            KeyAlgorithm::Rsa { bits },
            S::RsaPkcs1Sha256
            | S::RsaPkcs1Sha384
            | S::RsaPkcs1Sha512
            | S::RsaPssSha256
            | S::RsaPssSha384
            | S::RsaPssSha512,
        ) => {
            if !(MIN_PARSEABLE_RSA_BITS..=MAX_VERIFIABLE_RSA_BITS).contains(bits) {
                return Err(CsrError::UnsupportedKey { key: key.clone() });
            }
            let parsed =
                RsaPublicKeyRef::from_der(key_bits()).map_err(|e| CsrError::MalformedKey {
                    reason: e.to_string(),
                })?;
            let n = rsa::BoxedUint::from_be_slice_vartime(parsed.modulus.as_bytes());
            let e = rsa::BoxedUint::from_be_slice_vartime(parsed.public_exponent.as_bytes());
            let public = rsa::PublicKey::new_with_size_limits(
                n,
                e,
                MIN_PARSEABLE_RSA_BITS as usize..=MAX_VERIFIABLE_RSA_BITS as usize,
            )
            .map_err(|e| CsrError::MalformedKey {
                reason: e.to_string(),
            })?;
            let ok = match alg {
                S::RsaPssSha256 | S::RsaPssSha384 | S::RsaPssSha512 => {
                    let sig = rsa::pss::Signature::try_from(signature)
                        .map_err(|_| CsrError::BadSignature)?;
                    let salt = scheme.pss_salt_len;
                    match alg {
                        S::RsaPssSha256 => {
                            rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(public, salt)
                                .verify(msg, &sig)
                        }
                        S::RsaPssSha384 => {
                            rsa::pss::VerifyingKey::<Sha384>::new_with_salt_len(public, salt)
                                .verify(msg, &sig)
                        }
                        _ => rsa::pss::VerifyingKey::<Sha512>::new_with_salt_len(public, salt)
                            .verify(msg, &sig),
                    }
                }
                _ => {
                    let sig = rsa::pkcs1v15::Signature::try_from(signature)
                        .map_err(|_| CsrError::BadSignature)?;
                    match alg {
                        S::RsaPkcs1Sha256 => {
                            rsa::pkcs1v15::VerifyingKey::<Sha256>::new(public).verify(msg, &sig)
                        }
                        S::RsaPkcs1Sha384 => {
                            rsa::pkcs1v15::VerifyingKey::<Sha384>::new(public).verify(msg, &sig)
                        }
                        _ => rsa::pkcs1v15::VerifyingKey::<Sha512>::new(public).verify(msg, &sig),
                    }
                }
            };
            ok.map_err(|_| CsrError::BadSignature)
        }
        (KeyAlgorithm::EcP256, S::EcdsaSha256 | S::EcdsaSha384) => {
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bits()).map_err(|_| {
                CsrError::MalformedKey {
                    reason: "not a valid p-256 point".to_owned(),
                }
            })?;
            let sig = p256::ecdsa::DerSignature::from_bytes(signature)
                .map_err(|_| CsrError::BadSignature)?;
            #[cfg(feature = "ring")]
            if let Some(verified) = verify_p256_with_ring(alg, key_bits(), msg, signature) {
                return verified;
            }
            vk.verify_prehash(&ecdsa_prehash(alg, msg), &sig)
                .map_err(|_| CsrError::BadSignature)
        }
        (KeyAlgorithm::EcP384, S::EcdsaSha256 | S::EcdsaSha384) => {
            let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bits()).map_err(|_| {
                CsrError::MalformedKey {
                    reason: "not a valid p-384 point".to_owned(),
                }
            })?;
            let sig = p384::ecdsa::DerSignature::from_bytes(signature)
                .map_err(|_| CsrError::BadSignature)?;
            vk.verify_prehash(&ecdsa_prehash(alg, msg), &sig)
                .map_err(|_| CsrError::BadSignature)
        }
        (KeyAlgorithm::EcP521 | KeyAlgorithm::Other { .. }, _) => {
            Err(CsrError::UnsupportedKey { key: key.clone() })
        }
        _ => Err(mismatch()),
    }
}

/// An ECDSA P-256 signature checked by ring (feature `ring`), once p256
/// has parsed the point and the DER signature (so errors name the same
/// fault): `None` for a point ring does not take (compressed), which p256
/// then verifies.
#[cfg(feature = "ring")]
fn verify_p256_with_ring(
    alg: SignatureAlgorithm,
    point: &[u8],
    msg: &[u8],
    signature: &[u8],
) -> Option<Result<(), CsrError>> {
    use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA384_ASN1, UnparsedPublicKey};
    if point.first() != Some(&0x04) {
        return None;
    }
    let algorithm = match alg {
        SignatureAlgorithm::EcdsaSha384 => &ECDSA_P256_SHA384_ASN1,
        _ => &ECDSA_P256_SHA256_ASN1,
    };
    Some(
        UnparsedPublicKey::new(algorithm, point)
            .verify(msg, signature)
            .map_err(|_| CsrError::BadSignature),
    )
}

/// The message digest for an ECDSA signature algorithm.
fn ecdsa_prehash(alg: SignatureAlgorithm, msg: &[u8]) -> Vec<u8> {
    match alg {
        SignatureAlgorithm::EcdsaSha384 => Sha384::digest(msg).to_vec(),
        _ => Sha256::digest(msg).to_vec(),
    }
}

enum CnError {
    Ambiguous(usize),
    Bad(String),
}

fn common_name(name: &Name) -> Result<Option<String>, CnError> {
    let mut cns = name.iter().filter(|atv| atv.oid == COMMON_NAME);
    let Some(first) = cns.next() else {
        return Ok(None);
    };
    let rest = cns.count();
    if rest > 0 {
        return Err(CnError::Ambiguous(rest + 1));
    }
    let value = &first.value;
    let text = match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
            // Teletex is read as ASCII/UTF-8, as browsers and OpenSSL do in practice.
            core::str::from_utf8(value.value())
                .map_err(|_| CnError::Bad("not valid utf-8".to_owned()))?
                .to_owned()
        }
        Tag::BmpString => {
            let bytes = value.value();
            if bytes.len() % 2 != 0 {
                return Err(CnError::Bad("bmpstring of odd length".to_owned()));
            }
            let units = bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|_| CnError::Bad("invalid bmpstring".to_owned()))?
        }
        other => return Err(CnError::Bad(format!("unsupported string type {other}"))),
    };
    Ok(Some(text))
}

fn unix_ms(t: x509_cert::time::Time) -> u64 {
    u64::try_from(t.to_unix_duration().as_millis()).unwrap_or(u64::MAX)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
#[path = "csr_tests.rs"]
mod tests;

/// ring and p256 agree on P-256 ECDSA: every signature one accepts the
/// other accepts, and neither accepts a tampered one.
#[cfg(all(test, feature = "ring"))]
mod ring_agrees_with_p256 {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner;

    #[test]
    fn on_valid_and_tampered_signatures() {
        for i in 0u32..200 {
            let secret = Sha256::digest(i.to_be_bytes());
            let signing = p256::ecdsa::SigningKey::from_slice(&secret).expect("key");
            let point = signing.verifying_key().to_sec1_point(false);
            let msg = format!("certification request {i}").into_bytes();
            for alg in [
                SignatureAlgorithm::EcdsaSha256,
                SignatureAlgorithm::EcdsaSha384,
            ] {
                let sig: p256::ecdsa::Signature = signing
                    .sign_prehash(&ecdsa_prehash(alg, &msg))
                    .expect("sign");
                let der = sig.to_der();
                let by_p256 = |msg: &[u8], der: &[u8]| {
                    p256::ecdsa::DerSignature::from_bytes(der).is_ok_and(|d| {
                        signing
                            .verifying_key()
                            .verify_prehash(&ecdsa_prehash(alg, msg), &d)
                            .is_ok()
                    })
                };
                let by_ring = |msg: &[u8], der: &[u8]| {
                    verify_p256_with_ring(alg, point.as_bytes(), msg, der)
                        .expect("uncompressed")
                        .is_ok()
                };
                assert!(by_p256(&msg, der.as_bytes()) && by_ring(&msg, der.as_bytes()));
                let mut other = msg.clone();
                other[0] ^= 1;
                assert!(!by_p256(&other, der.as_bytes()) && !by_ring(&other, der.as_bytes()));
                let mut bad = der.as_bytes().to_vec();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                assert_eq!(by_p256(&msg, &bad), by_ring(&msg, &bad), "{i}");
                assert!(!by_ring(&msg, &bad));
            }
        }
    }
}
