//! Tests for `csr`: CSRs and certificates are generated at test time (rcgen,
//! the `rsa` crate, and `openssl req` when it is on PATH).

use super::*;
use core::str::FromStr;
use der::asn1::BitString;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256, SignatureAlgorithm as RcgenAlg,
};
use rsa::pkcs8::EncodePublicKey;
use rstest::rstest;
use x509_cert::request::{CertReqInfo, Version};
use x509_cert::spki::AlgorithmIdentifierOwned;

// ---------------------------------------------------------------------------
// fixtures

use test_support::{TestCa, TestRng, rsa_key, rsa_keypair as rcgen_rsa_keypair};

fn params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "fleetcert tests");
    p.distinguished_name = dn;
    p
}

fn rcgen_csr(key: &KeyPair, cn: &str) -> String {
    params(cn)
        .serialize_request(key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn ec_keypair(alg: &'static RcgenAlg) -> KeyPair {
    KeyPair::generate_for(alg).expect("ec key")
}

/// A CSR for `key` and `cn` assembled by hand with x509-cert types, signed
/// by `sign` (given the to-be-signed DER, returns the algorithm and the
/// signature): works for key sizes and schemes rcgen/ring refuse (RSA-1024,
/// RSASSA-PSS).
fn handmade_csr(
    key: &rsa::PrivateKey,
    cn: &str,
    sign: impl FnOnce(&[u8]) -> (AlgorithmIdentifierOwned, Vec<u8>),
) -> String {
    let spki = rsa::PublicKey::from(key)
        .to_public_key_der()
        .expect("spki der");
    let info = CertReqInfo {
        version: Version::V1,
        subject: Name::from_str(&format!("CN={cn}")).expect("name"),
        public_key: SubjectPublicKeyInfoOwned::from_der(spki.as_bytes()).expect("spki"),
        attributes: Default::default(),
    };
    let (algorithm, sig) = sign(&info.to_der().expect("tbs"));
    let req = CertReq {
        info,
        algorithm,
        signature: BitString::from_bytes(&sig).expect("bit string"),
    };
    to_pem("CERTIFICATE REQUEST", &req.to_der().expect("csr der"))
}

/// A CSR signed with RSASSA-PKCS1-v1_5 and `alg` (`sha256`, `sha384`, `sha512`).
fn handmade_rsa_csr(key: &rsa::PrivateKey, cn: &str, alg: &str) -> String {
    handmade_csr(key, cn, |tbs| {
        let (oid, sig) = match alg {
            "sha256" => (OID_SHA256_WITH_RSA, key.pkcs1v15_sign::<Sha256>(tbs)),
            "sha384" => (OID_SHA384_WITH_RSA, key.pkcs1v15_sign::<Sha384>(tbs)),
            "sha512" => (OID_SHA512_WITH_RSA, key.pkcs1v15_sign::<Sha512>(tbs)),
            other => unreachable!("no such test algorithm {other}"),
        };
        let algorithm = AlgorithmIdentifierOwned {
            oid,
            parameters: Some(der::Any::null()),
        };
        (algorithm, sig.expect("sign"))
    })
}

/// A CSR signed with RSASSA-PSS (SHA-256, MGF1-SHA-256) using a salt of
/// `used_salt` bytes, whose parameters declare `declared_salt`.
fn handmade_pss_csr(
    key: &rsa::PrivateKey,
    cn: &str,
    declared_salt: u8,
    used_salt: usize,
) -> String {
    use rsa::signature::{RandomizedSigner, SignatureEncoding};
    handmade_csr(key, cn, |tbs| {
        let signer = rsa::pss::SigningKey::<Sha256>::new_with_salt_len(key.clone(), used_salt);
        let sig = signer.sign_with_rng(&mut TestRng::new(7), tbs).to_vec();
        let sha256 = spki::AlgorithmIdentifierRef {
            oid: OID_SHA256,
            parameters: Some(AnyRef::NULL),
        };
        let params = rsa::pkcs1::RsaPssParamsRef {
            hash: sha256,
            mask_gen: spki::AlgorithmIdentifier {
                oid: OID_MGF1,
                parameters: Some(sha256),
            },
            salt_len: declared_salt,
            trailer_field: Default::default(),
        };
        let algorithm = AlgorithmIdentifierOwned {
            oid: OID_RSASSA_PSS,
            parameters: Some(der::Any::from_der(&params.to_der().expect("params")).expect("any")),
        };
        (algorithm, sig)
    })
}

fn to_pem(label: &str, der: &[u8]) -> String {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).expect("pem")
}

fn pem_der(pem: &str) -> Vec<u8> {
    der::pem::decode_vec(pem.as_bytes()).expect("pem").1
}

// ---------------------------------------------------------------------------
// inspect_csr: accepted CSRs

#[test]
fn rsa_2048_csr_from_rcgen_is_inspected() {
    let key = rcgen_rsa_keypair(2048, &PKCS_RSA_SHA256);
    let info = inspect_csr(&rcgen_csr(&key, "thing-1")).expect("valid csr");
    assert_eq!(info.key, KeyAlgorithm::Rsa { bits: 2048 });
    assert_eq!(info.signature_algorithm, SignatureAlgorithm::RsaPkcs1Sha256);
    assert_eq!(info.subject_cn.as_deref(), Some("thing-1"));
    assert_eq!(
        info.public_key_fingerprint,
        sha256_hex(&pem_der(&key.public_key_pem()))
    );
    assert_eq!(
        CsrPolicy::default().check(
            &info,
            &CsrCheck {
                thing_name: "thing-1",
                old_public_key_fingerprint: None
            }
        ),
        Ok(())
    );
}

#[rstest]
#[case::p256(&PKCS_ECDSA_P256_SHA256, KeyAlgorithm::EcP256, SignatureAlgorithm::EcdsaSha256)]
#[case::p384(&PKCS_ECDSA_P384_SHA384, KeyAlgorithm::EcP384, SignatureAlgorithm::EcdsaSha384)]
fn ec_csr_from_rcgen_is_inspected_and_accepted(
    #[case] alg: &'static RcgenAlg,
    #[case] expected_key: KeyAlgorithm,
    #[case] expected_sig: SignatureAlgorithm,
) {
    let key = ec_keypair(alg);
    let info = inspect_csr(&rcgen_csr(&key, "sensor-42")).expect("valid csr");
    assert_eq!(info.key, expected_key);
    assert_eq!(info.signature_algorithm, expected_sig);
    assert_eq!(info.subject_cn.as_deref(), Some("sensor-42"));
    assert_eq!(
        info.public_key_fingerprint,
        sha256_hex(&pem_der(&key.public_key_pem()))
    );
    assert_eq!(info.public_key_fingerprint.len(), 64);
    assert!(
        info.public_key_fingerprint
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    );
    let ctx = CsrCheck {
        thing_name: "sensor-42",
        old_public_key_fingerprint: None,
    };
    assert_eq!(CsrPolicy::default().check(&info, &ctx), Ok(()));
}

#[rstest]
#[case::sha256("sha256", SignatureAlgorithm::RsaPkcs1Sha256)]
#[case::sha384("sha384", SignatureAlgorithm::RsaPkcs1Sha384)]
#[case::sha512("sha512", SignatureAlgorithm::RsaPkcs1Sha512)]
fn rsa_signature_digests_are_verified(#[case] alg: &str, #[case] expected: SignatureAlgorithm) {
    let pem = handmade_rsa_csr(rsa_key(2048), "thing-1", alg);
    let info = inspect_csr(&pem).expect("valid csr");
    assert_eq!(info.signature_algorithm, expected);
    assert_eq!(info.key, KeyAlgorithm::Rsa { bits: 2048 });
}

#[test]
fn rsa_pss_csrs_verify_with_the_salt_length_their_parameters_declare() {
    let key = rsa_key(2048);
    for salt in [0u8, 20, 32, 222] {
        let info = inspect_csr(&handmade_pss_csr(key, "thing-1", salt, usize::from(salt)))
            .unwrap_or_else(|e| panic!("salt {salt}: {e}"));
        assert_eq!(info.signature_algorithm, SignatureAlgorithm::RsaPssSha256);
        assert_eq!(info.key, KeyAlgorithm::Rsa { bits: 2048 });
        assert_eq!(
            CsrPolicy::default().check(
                &info,
                &CsrCheck {
                    thing_name: "thing-1",
                    old_public_key_fingerprint: None,
                }
            ),
            Ok(())
        );
    }
    // Signed with a 32-byte salt, declaring 20: the declared length is the
    // one verified, so it fails.
    assert_eq!(
        inspect_csr(&handmade_pss_csr(key, "thing-1", 20, 32)),
        Err(CsrError::BadSignature)
    );
}

#[test]
fn legacy_label_crlf_and_surrounding_whitespace_are_accepted() {
    let key = ec_keypair(&PKCS_ECDSA_P256_SHA256);
    let pem = rcgen_csr(&key, "thing-1");
    let expected = inspect_csr(&pem).expect("valid csr");
    let legacy = pem.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST");
    assert_eq!(inspect_csr(&legacy), Ok(expected.clone()));
    let crlf = format!("\n  {}\n\n", pem.replace('\n', "\r\n"));
    assert_eq!(inspect_csr(&crlf), Ok(expected));
}

#[test]
fn csr_without_cn_has_no_subject_cn() {
    let key = ec_keypair(&PKCS_ECDSA_P256_SHA256);
    let mut p = params("x");
    p.distinguished_name = DistinguishedName::new();
    let pem = p.serialize_request(&key).expect("csr").pem().expect("pem");
    let info = inspect_csr(&pem).expect("valid csr");
    assert_eq!(info.subject_cn, None);
    let policy = CsrPolicy {
        require_cn_matches_thing: true,
        ..CsrPolicy::default()
    };
    let ctx = CsrCheck {
        thing_name: "thing-1",
        old_public_key_fingerprint: None,
    };
    assert_eq!(
        policy.check(&info, &ctx),
        Err(CsrRejection::SubjectMismatch {
            expected: "thing-1".into(),
            found: None
        })
    );
}

// ---------------------------------------------------------------------------
// inspect_csr: rejected input

#[test]
fn rsa_1024_csr_verifies_but_policy_rejects_it_as_weak() {
    let pem = handmade_rsa_csr(rsa_key(1024), "thing-1", "sha256");
    let info = inspect_csr(&pem).expect("signature is fine");
    assert_eq!(info.key, KeyAlgorithm::Rsa { bits: 1024 });
    let ctx = CsrCheck {
        thing_name: "thing-1",
        old_public_key_fingerprint: None,
    };
    let err = CsrPolicy::default().check(&info, &ctx).unwrap_err();
    assert_eq!(
        err,
        CsrRejection::WeakRsaKey {
            bits: 1024,
            min: 2048
        }
    );
    assert_eq!(
        err.to_string(),
        "rsa key of 1024 bits is too weak: at least 2048 bits required"
    );
}

/// Flips one bit in the last byte of the DER, which is the signature.
fn flip_signature(pem: &str) -> String {
    let mut der = pem_der(pem);
    let last = der.len() - 1;
    der[last] ^= 0x01;
    to_pem("CERTIFICATE REQUEST", &der)
}

/// Changes one character of the subject CN, which is signed data.
fn alter_subject(pem: &str) -> String {
    let mut der = pem_der(pem);
    let at = der
        .windows(7)
        .position(|w| w == b"thing-1")
        .expect("cn in der");
    der[at + 6] = b'2';
    to_pem("CERTIFICATE REQUEST", &der)
}

#[rstest]
#[case::rsa_signature(flip_signature(&handmade_rsa_csr(rsa_key(2048), "thing-1", "sha256")))]
#[case::p256_signature(flip_signature(&rcgen_csr(&ec_keypair(&PKCS_ECDSA_P256_SHA256), "thing-1")))]
#[case::p384_signature(flip_signature(&rcgen_csr(&ec_keypair(&PKCS_ECDSA_P384_SHA384), "thing-1")))]
#[case::rsa_subject(alter_subject(&handmade_rsa_csr(rsa_key(2048), "thing-1", "sha256")))]
#[case::p256_subject(alter_subject(&rcgen_csr(&ec_keypair(&PKCS_ECDSA_P256_SHA256), "thing-1")))]
fn tampered_csr_is_a_bad_signature(#[case] pem: String) {
    assert_eq!(inspect_csr(&pem), Err(CsrError::BadSignature));
}

#[test]
fn csr_signed_by_another_key_is_a_bad_signature() {
    // Same to-be-signed bytes, signature from a different P-256 key.
    let a = rcgen_csr(&ec_keypair(&PKCS_ECDSA_P256_SHA256), "thing-1");
    let b = rcgen_csr(&ec_keypair(&PKCS_ECDSA_P256_SHA256), "thing-1");
    let (der_a, der_b) = (pem_der(&a), pem_der(&b));
    let (tbs_a, _, _) = split_signed(&der_a).expect("a");
    let (_, alg_b, sig_b) = split_signed(&der_b).expect("b");
    let mut inner = tbs_a.to_vec();
    inner.extend(alg_b.to_der().expect("alg"));
    inner.extend(sig_b.to_der().expect("sig"));
    let len = u16::try_from(inner.len()).expect("short");
    let mut der = match len {
        0..=127 => vec![0x30, len as u8],
        128..=255 => vec![0x30, 0x81, len as u8],
        _ => [vec![0x30, 0x82], len.to_be_bytes().to_vec()].concat(),
    };
    der.extend(inner);
    let pem = to_pem("CERTIFICATE REQUEST", &der);
    assert_eq!(inspect_csr(&pem), Err(CsrError::BadSignature));
}

#[test]
fn ed25519_csr_is_an_unsupported_signature_algorithm() {
    let key = ec_keypair(&PKCS_ED25519);
    let err = inspect_csr(&rcgen_csr(&key, "thing-1")).unwrap_err();
    assert_eq!(
        err,
        CsrError::UnsupportedSignatureAlgorithm {
            oid: "1.3.101.112".into()
        }
    );
}

fn valid_p256_csr() -> String {
    rcgen_csr(&ec_keypair(&PKCS_ECDSA_P256_SHA256), "thing-1")
}

fn truncated_der(pem: &str) -> String {
    let der = pem_der(pem);
    to_pem("CERTIFICATE REQUEST", &der[..der.len() / 2])
}

fn kind(err: &CsrError) -> &'static str {
    match err {
        CsrError::TooLarge { .. } => "TooLarge",
        CsrError::NotPem { .. } => "NotPem",
        CsrError::WrongPemLabel { .. } => "WrongPemLabel",
        CsrError::Der { .. } => "Der",
        CsrError::UnsupportedSignatureAlgorithm { .. } => "UnsupportedSignatureAlgorithm",
        CsrError::UnsupportedPssParameters { .. } => "UnsupportedPssParameters",
        CsrError::UnsupportedKey { .. } => "UnsupportedKey",
        CsrError::MalformedKey { .. } => "MalformedKey",
        CsrError::SignatureKeyMismatch { .. } => "SignatureKeyMismatch",
        CsrError::BadSignature => "BadSignature",
        CsrError::AmbiguousCommonName { .. } => "AmbiguousCommonName",
        CsrError::BadCommonName { .. } => "BadCommonName",
    }
}

#[rstest]
#[case::empty(String::new(), "NotPem")]
#[case::whitespace("  \n\t ".to_owned(), "NotPem")]
#[case::garbage("hello, I am a csr".to_owned(), "NotPem")]
#[case::json(r#"{"CSR": "-----BEGIN CERTIFICATE REQUEST-----"}"#.to_owned(), "NotPem")]
#[case::begin_only("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n".to_owned(), "NotPem")]
#[case::bad_base64(
    "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n".to_owned(),
    "NotPem"
)]
#[case::mismatched_end(
    valid_p256_csr().replace("END CERTIFICATE REQUEST", "END CERTIFICATE"),
    "NotPem"
)]
#[case::certificate_label(valid_p256_csr().replace("CERTIFICATE REQUEST", "CERTIFICATE"), "WrongPemLabel")]
#[case::private_key_label(valid_p256_csr().replace("CERTIFICATE REQUEST", "PRIVATE KEY"), "WrongPemLabel")]
#[case::empty_body(
    "-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n".to_owned(),
    "NotPem"
)]
#[case::not_der(to_pem("CERTIFICATE REQUEST", b"definitely not der"), "Der")]
#[case::truncated_der(truncated_der(&valid_p256_csr()), "Der")]
#[case::trailing_bytes({
    let mut der = pem_der(&valid_p256_csr());
    der.push(0);
    to_pem("CERTIFICATE REQUEST", &der)
}, "Der")]
#[case::too_large("A".repeat(MAX_PEM_LEN + 1), "TooLarge")]
fn bad_input_is_a_typed_error(#[case] input: String, #[case] expected: &str) {
    let err = inspect_csr(&input).unwrap_err();
    assert_eq!(kind(&err), expected, "{err}");
    // messages are lower case without a trailing full stop
    let msg = err.to_string();
    assert!(!msg.ends_with('.'), "{msg}");
    assert!(msg.starts_with(|c: char| !c.is_ascii_uppercase()), "{msg}");
}

#[test]
fn size_limit_is_checked_before_parsing() {
    let big = format!("{}{}", valid_p256_csr(), " ".repeat(MAX_PEM_LEN));
    assert_eq!(
        inspect_csr(&big),
        Err(CsrError::TooLarge {
            len: big.len(),
            max: MAX_PEM_LEN
        })
    );
}

#[test]
fn every_truncation_of_a_csr_is_an_error_not_a_panic() {
    let der = pem_der(&valid_p256_csr());
    for len in 0..der.len() {
        let pem = to_pem("CERTIFICATE REQUEST", &der[..len]);
        assert!(inspect_csr(&pem).is_err(), "prefix of {len} bytes accepted");
    }
}

#[test]
fn every_single_byte_corruption_is_an_error_not_a_panic() {
    let der = pem_der(&valid_p256_csr());
    for i in 0..der.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = der.clone();
            bad[i] ^= flip;
            let pem = to_pem("CERTIFICATE REQUEST", &bad);
            // Any outcome but a panic or an Ok with another key is fine.
            if let Ok(info) = inspect_csr(&pem) {
                assert_eq!(info.key, KeyAlgorithm::EcP256, "byte {i} ^ {flip:#x}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// certificates and key reuse

#[test]
fn certificate_is_inspected() {
    let ca_key = ec_keypair(&PKCS_ECDSA_P256_SHA256);
    let mut ca_params = params("fleetcert test ca");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let device_key = ec_keypair(&PKCS_ECDSA_P384_SHA384);
    let mut p = params("thing-7");
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0xab, 0xcd]));
    p.not_before = rcgen::date_time_ymd(2025, 1, 2);
    p.not_after = rcgen::date_time_ymd(2027, 3, 4);
    let cert = p.signed_by(&device_key, &issuer).expect("cert");

    let info = inspect_certificate(&cert.pem()).expect("valid certificate");
    assert_eq!(info.subject_cn.as_deref(), Some("thing-7"));
    assert_eq!(info.issuer_cn.as_deref(), Some("fleetcert test ca"));
    assert_eq!(info.key, KeyAlgorithm::EcP384);
    assert_eq!(info.serial_hex, "01abcd");
    assert_eq!(info.not_before_ms, 1_735_776_000_000); // 2025-01-02T00:00:00Z
    assert_eq!(info.not_after_ms, 1_804_118_400_000); // 2027-03-04T00:00:00Z
    assert_eq!(
        info.public_key_fingerprint,
        sha256_hex(&pem_der(&device_key.public_key_pem()))
    );
    assert_eq!(info.certificate_id, sha256_hex(cert.der()));
    assert_eq!(certificate_id(&cert.pem()), Ok(info.certificate_id.clone()));
    // the CA is a different certificate with a different id
    assert_ne!(certificate_id(&ca.pem()), Ok(info.certificate_id));
}

#[rstest]
#[case::p256(ec_keypair(&PKCS_ECDSA_P256_SHA256))]
#[case::p384(ec_keypair(&PKCS_ECDSA_P384_SHA384))]
#[case::rsa2048(rcgen_rsa_keypair(2048, &PKCS_RSA_SHA256))]
fn csr_reusing_the_certificates_key_is_rejected(#[case] key: KeyPair) {
    let cert = params("thing-1").self_signed(&key).expect("cert");
    let old = inspect_certificate(&cert.pem()).expect("certificate");
    let reused = inspect_csr(&rcgen_csr(&key, "thing-1")).expect("csr");
    assert_eq!(reused.public_key_fingerprint, old.public_key_fingerprint);

    let ctx = CsrCheck {
        thing_name: "thing-1",
        old_public_key_fingerprint: Some(&old.public_key_fingerprint),
    };
    assert_eq!(
        CsrPolicy::default().check(&reused, &ctx),
        Err(CsrRejection::KeyReused {
            fingerprint: old.public_key_fingerprint.clone()
        })
    );
    // allowed when the policy does not require a new key
    let lax = CsrPolicy {
        require_new_key: false,
        ..CsrPolicy::default()
    };
    assert_eq!(lax.check(&reused, &ctx), Ok(()));
    // a fresh key passes
    let fresh = inspect_csr(&valid_p256_csr()).expect("csr");
    assert_eq!(CsrPolicy::default().check(&fresh, &ctx), Ok(()));
}

#[rstest]
#[case::empty(String::new(), "NotPem")]
#[case::csr_label(valid_p256_csr(), "WrongPemLabel")]
#[case::truncated({
    let cert = params("x").self_signed(&ec_keypair(&PKCS_ECDSA_P256_SHA256)).expect("cert");
    to_pem("CERTIFICATE", &cert.der()[..100])
}, "Der")]
#[case::too_large("A".repeat(MAX_PEM_LEN + 1), "TooLarge")]
fn bad_certificate_input_is_a_typed_error(#[case] input: String, #[case] expected: &str) {
    let kind = |e: &CertError| match e {
        CertError::TooLarge { .. } => "TooLarge",
        CertError::NotPem { .. } => "NotPem",
        CertError::WrongPemLabel { .. } => "WrongPemLabel",
        CertError::Der { .. } => "Der",
        CertError::AmbiguousCommonName { .. } => "AmbiguousCommonName",
        CertError::BadCommonName { .. } => "BadCommonName",
    };
    let err = inspect_certificate(&input).unwrap_err();
    assert_eq!(kind(&err), expected, "{err}");
    assert_eq!(certificate_id(&input).unwrap_err(), err);
}

// ---------------------------------------------------------------------------
// the policy

fn info(key: KeyAlgorithm, cn: Option<&str>) -> CsrInfo {
    CsrInfo {
        key,
        signature_algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
        subject_cn: cn.map(str::to_owned),
        public_key_fingerprint: "ab".repeat(32),
    }
}

const CTX: CsrCheck<'static> = CsrCheck {
    thing_name: "thing-1",
    old_public_key_fingerprint: Some("cd"),
};

#[rstest]
#[case::rsa_2048(KeyAlgorithm::Rsa { bits: 2048 }, Ok(()))]
#[case::rsa_3072(KeyAlgorithm::Rsa { bits: 3072 }, Ok(()))]
#[case::rsa_4096(KeyAlgorithm::Rsa { bits: 4096 }, Ok(()))]
#[case::rsa_2047(KeyAlgorithm::Rsa { bits: 2047 }, Err(CsrRejection::WeakRsaKey { bits: 2047, min: 2048 }))]
#[case::rsa_1024(KeyAlgorithm::Rsa { bits: 1024 }, Err(CsrRejection::WeakRsaKey { bits: 1024, min: 2048 }))]
#[case::rsa_8192(KeyAlgorithm::Rsa { bits: 8192 }, Err(CsrRejection::RsaKeyTooLarge { bits: 8192, max: 4096 }))]
#[case::p256(KeyAlgorithm::EcP256, Ok(()))]
#[case::p384(KeyAlgorithm::EcP384, Ok(()))]
#[case::p521(KeyAlgorithm::EcP521, Err(CsrRejection::CurveNotAllowed { curve: KeyAlgorithm::EcP521 }))]
#[case::ed25519(
    KeyAlgorithm::Other { oid: "1.3.101.112".into() },
    Err(CsrRejection::UnsupportedKey { key: KeyAlgorithm::Other { oid: "1.3.101.112".into() } })
)]
fn default_policy_on_keys(#[case] key: KeyAlgorithm, #[case] expected: Result<(), CsrRejection>) {
    assert_eq!(
        CsrPolicy::default().check(&info(key, Some("thing-1")), &CTX),
        expected
    );
}

#[rstest]
#[case::p256_disallowed(
    CsrPolicy { allow_p256: false, ..CsrPolicy::default() },
    KeyAlgorithm::EcP256,
    Err(CsrRejection::CurveNotAllowed { curve: KeyAlgorithm::EcP256 })
)]
#[case::p384_disallowed(
    CsrPolicy { allow_p384: false, ..CsrPolicy::default() },
    KeyAlgorithm::EcP384,
    Err(CsrRejection::CurveNotAllowed { curve: KeyAlgorithm::EcP384 })
)]
#[case::p384_still_allowed(
    CsrPolicy { allow_p256: false, ..CsrPolicy::default() },
    KeyAlgorithm::EcP384,
    Ok(())
)]
#[case::rsa_min_3072(
    CsrPolicy { min_rsa_bits: 3072, ..CsrPolicy::default() },
    KeyAlgorithm::Rsa { bits: 2048 },
    Err(CsrRejection::WeakRsaKey { bits: 2048, min: 3072 })
)]
#[case::rsa_max_8192(
    CsrPolicy { max_rsa_bits: 8192, ..CsrPolicy::default() },
    KeyAlgorithm::Rsa { bits: 8192 },
    Ok(())
)]
#[case::inverted_bounds(
    CsrPolicy { min_rsa_bits: 4096, max_rsa_bits: 2048, ..CsrPolicy::default() },
    KeyAlgorithm::EcP256,
    Err(CsrRejection::InvalidPolicy { min: 4096, max: 2048 })
)]
fn configured_policy_on_keys(
    #[case] policy: CsrPolicy,
    #[case] key: KeyAlgorithm,
    #[case] expected: Result<(), CsrRejection>,
) {
    assert_eq!(policy.check(&info(key, Some("thing-1")), &CTX), expected);
}

#[rstest]
#[case::matches(Some("thing-1"), true, Ok(()))]
#[case::other_thing(Some("thing-2"), true, Err(CsrRejection::SubjectMismatch { expected: "thing-1".into(), found: Some("thing-2".into()) }))]
#[case::case_differs(Some("Thing-1"), true, Err(CsrRejection::SubjectMismatch { expected: "thing-1".into(), found: Some("Thing-1".into()) }))]
#[case::no_cn(None, true, Err(CsrRejection::SubjectMismatch { expected: "thing-1".into(), found: None }))]
#[case::not_required(Some("thing-2"), false, Ok(()))]
fn subject_cn_policy(
    #[case] cn: Option<&str>,
    #[case] required: bool,
    #[case] expected: Result<(), CsrRejection>,
) {
    let policy = CsrPolicy {
        require_cn_matches_thing: required,
        ..CsrPolicy::default()
    };
    assert_eq!(
        policy.check(&info(KeyAlgorithm::EcP256, cn), &CTX),
        expected
    );
}

#[test]
fn cn_mismatch_on_a_real_csr() {
    let csr = inspect_csr(&valid_p256_csr()).expect("csr");
    let policy = CsrPolicy {
        require_cn_matches_thing: true,
        ..CsrPolicy::default()
    };
    let ctx = CsrCheck {
        thing_name: "another-thing",
        old_public_key_fingerprint: None,
    };
    let err = policy.check(&csr, &ctx).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"csr subject cn is Some("thing-1"), expected the thing name "another-thing""#
    );
}

#[test]
fn key_reuse_compares_fingerprints_case_insensitively() {
    let i = info(KeyAlgorithm::EcP256, None);
    let upper = i.public_key_fingerprint.to_ascii_uppercase();
    let ctx = CsrCheck {
        thing_name: "thing-1",
        old_public_key_fingerprint: Some(&upper),
    };
    assert!(matches!(
        CsrPolicy::default().check(&i, &ctx),
        Err(CsrRejection::KeyReused { .. })
    ));
}

#[test]
fn policy_serde_defaults_and_round_trip() {
    let policy: CsrPolicy = serde_json::from_str("{}").expect("empty object");
    assert_eq!(policy, CsrPolicy::default());
    insta::assert_json_snapshot!(policy, @r#"
    {
      "minRsaBits": 2048,
      "maxRsaBits": 4096,
      "allowP256": true,
      "allowP384": true,
      "requireNewKey": true,
      "requireCnMatchesThing": false
    }
    "#);
    let custom: CsrPolicy =
        serde_json::from_str(r#"{"minRsaBits": 3072, "allowP256": false}"#).expect("partial");
    assert_eq!(custom.min_rsa_bits, 3072);
    assert!(!custom.allow_p256);
    assert!(custom.allow_p384);
    assert!(serde_json::from_str::<CsrPolicy>(r#"{"minRsaBit": 1}"#).is_err());
}

#[test]
fn csr_info_serializes_for_firmware_teams() {
    let i = info(KeyAlgorithm::Rsa { bits: 2048 }, Some("thing-1"));
    insta::assert_json_snapshot!(i, @r#"
    {
      "key": {
        "kind": "rsa",
        "bits": 2048
      },
      "signatureAlgorithm": "rsaPkcs1Sha256",
      "subjectCn": "thing-1",
      "publicKeyFingerprint": "abababababababababababababababababababababababababababababababab"
    }
    "#);
}

// ---------------------------------------------------------------------------
// CSRs made by `openssl req`

fn openssl(args: &[&str], dir: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn openssl_made_csrs() {
    let dir = std::env::temp_dir().join(format!("fleetcert-csr-openssl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    if openssl(&["version"], &dir).is_none() {
        println!("skipped: openssl is not on PATH");
        return;
    }
    let cases: &[(&[&str], &str, Result<KeyAlgorithm, &str>)] = &[
        (
            &["-newkey", "rsa:2048"],
            "-sha256",
            Ok(KeyAlgorithm::Rsa { bits: 2048 }),
        ),
        (
            &["-newkey", "rsa:3072"],
            "-sha384",
            Ok(KeyAlgorithm::Rsa { bits: 3072 }),
        ),
        (
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "-sha256",
            Ok(KeyAlgorithm::EcP256),
        ),
        (
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
            "-sha384",
            Ok(KeyAlgorithm::EcP384),
        ),
        (
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
            "-sha512",
            Err("UnsupportedSignatureAlgorithm"),
        ),
        (
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
            "-sha256",
            Err("UnsupportedKey"),
        ),
        (
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "-sha384",
            Ok(KeyAlgorithm::EcP256),
        ),
        (
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
            "-sha256",
            Ok(KeyAlgorithm::EcP384),
        ),
        (
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "-sha512",
            Err("UnsupportedSignatureAlgorithm"),
        ),
        (
            &["-newkey", "rsa:2048", "-sigopt", "rsa_padding_mode:pss"],
            "-sha256",
            Ok(KeyAlgorithm::Rsa { bits: 2048 }),
        ),
        (
            &["-newkey", "ed25519"],
            "",
            Err("UnsupportedSignatureAlgorithm"),
        ),
    ];
    for (i, (newkey, digest, expected)) in cases.iter().enumerate() {
        let keyfile = format!("key{i}.pem");
        let mut args = vec![
            "req",
            "-new",
            "-nodes",
            "-keyout",
            &keyfile,
            "-subj",
            "/CN=thing-1/O=fleetcert",
        ];
        args.extend_from_slice(newkey);
        if !digest.is_empty() {
            args.push(digest);
        }
        let pem = openssl(&args, &dir).expect("openssl ran before");
        let got = inspect_csr(&pem);
        match (expected, got) {
            (Ok(key), Ok(info)) => {
                assert_eq!(&info.key, key, "case {i}");
                assert_eq!(info.subject_cn.as_deref(), Some("thing-1"));
                let spki_pem =
                    openssl(&["pkey", "-in", &keyfile, "-pubout"], &dir).expect("openssl ran");
                assert_eq!(info.public_key_fingerprint, sha256_hex(&pem_der(&spki_pem)));
            }
            (Err(kind_name), Err(e)) => assert_eq!(kind(&e), *kind_name, "case {i}: {e}"),
            (expected, got) => panic!("case {i}: expected {expected:?}, got {got:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn openssl_made_rsa_pss_csrs() {
    let dir = std::env::temp_dir().join(format!("fleetcert-csr-pss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    if openssl(&["version"], &dir).is_none() {
        println!("skipped: openssl is not on PATH");
        return;
    }
    use SignatureAlgorithm as S;
    /// (key, digest, extra -sigopt values, expected)
    type Case<'a> = (&'a str, &'a str, &'a [&'a str], Result<S, &'a str>);
    let cases: &[Case<'_>] = &[
        // OpenSSL's default salt for signing is the largest that fits: 222
        // bytes here, 334 for 3072 bits and SHA-384 (more than a u8).
        ("rsa:2048", "-sha256", &[], Ok(S::RsaPssSha256)),
        ("rsa:3072", "-sha384", &[], Ok(S::RsaPssSha384)),
        (
            "rsa:2048",
            "-sha512",
            &["rsa_pss_saltlen:digest"],
            Ok(S::RsaPssSha512),
        ),
        (
            "rsa:2048",
            "-sha256",
            &["rsa_pss_saltlen:0"],
            Ok(S::RsaPssSha256),
        ),
        (
            "rsa:2048",
            "-sha256",
            &["rsa_mgf1_md:sha1"],
            Err("UnsupportedPssParameters"),
        ),
        ("rsa:2048", "-sha1", &[], Err("UnsupportedPssParameters")),
    ];
    for (i, (newkey, digest, sigopts, expected)) in cases.iter().enumerate() {
        let keyfile = format!("pss{i}.pem");
        let mut args = vec![
            "req",
            "-new",
            "-nodes",
            "-keyout",
            &keyfile,
            "-subj",
            "/CN=thing-pss",
            "-newkey",
            newkey,
            digest,
            "-sigopt",
            "rsa_padding_mode:pss",
        ];
        for opt in *sigopts {
            args.extend(["-sigopt", opt]);
        }
        let pem = openssl(&args, &dir).expect("openssl ran before");
        match (expected, inspect_csr(&pem)) {
            (Ok(alg), Ok(info)) => {
                assert_eq!(info.signature_algorithm, *alg, "case {i}");
                assert_eq!(info.subject_cn.as_deref(), Some("thing-pss"));
                // The same request with one signature bit flipped.
                let mut der = pem_der(&pem);
                let last = der.len() - 1;
                der[last] ^= 1;
                let tampered = to_pem("CERTIFICATE REQUEST", &der);
                assert_eq!(
                    inspect_csr(&tampered),
                    Err(CsrError::BadSignature),
                    "case {i}"
                );
            }
            (Err(kind_name), Err(e)) => assert_eq!(kind(&e), *kind_name, "case {i}: {e}"),
            (expected, got) => panic!("case {i}: expected {expected:?}, got {got:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// timing (run in release: `cargo test -p rules --release --lib csr::tests::timing -- --nocapture --ignored`)

#[test]
#[ignore = "timing, run with --release --ignored --nocapture"]
fn timing_inspect_csr() {
    let rsa_pem = rcgen_csr(&rcgen_rsa_keypair(2048, &PKCS_RSA_SHA256), "thing-1");
    let p256_pem = valid_p256_csr();
    for (name, pem) in [("rsa-2048", &rsa_pem), ("p-256", &p256_pem)] {
        let n = 2000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            assert!(inspect_csr(pem).is_ok());
        }
        let per = start.elapsed() / n;
        println!("inspect_csr {name}: {per:?} per call ({n} calls)");
    }
}

// ---------------------------------------------------------------------------
// verify_issued_by (JITR: is this device certificate from that CA?)

fn test_ca(cn: &str, key: KeyPair) -> TestCa {
    TestCa::with(params(cn), key).expect("ca")
}

fn device_cert(ca: &TestCa, cn: &str) -> String {
    let key = ec_keypair(&PKCS_ECDSA_P256_SHA256);
    params(cn).signed_by(&key, ca.issuer()).expect("cert").pem()
}

#[rstest]
#[case::p256_ca(ec_keypair(&PKCS_ECDSA_P256_SHA256))]
#[case::p384_ca(ec_keypair(&PKCS_ECDSA_P384_SHA384))]
#[case::rsa_ca(rcgen_rsa_keypair(2048, &PKCS_RSA_SHA256))]
fn certificate_issued_by_the_ca_verifies(#[case] ca_key: KeyPair) {
    let ca = test_ca("fleet ca", ca_key);
    let cert = device_cert(&ca, "thing-1");
    assert_eq!(verify_issued_by(&cert, &ca.pem), Ok(()));
    // and a CA is (self-)issued by itself
    assert_eq!(verify_issued_by(&ca.pem, &ca.pem), Ok(()));
}

#[test]
fn certificate_from_an_impostor_ca_with_the_same_name_is_a_bad_signature() {
    let real = test_ca("fleet ca", ec_keypair(&PKCS_ECDSA_P256_SHA256));
    let impostor = test_ca("fleet ca", ec_keypair(&PKCS_ECDSA_P256_SHA256));
    let cert = device_cert(&impostor, "thing-1");
    assert_eq!(
        verify_issued_by(&cert, &real.pem),
        Err(IssuerError::BadSignature)
    );
}

#[test]
fn certificate_from_another_ca_is_a_name_mismatch() {
    let ours = test_ca("fleet ca", ec_keypair(&PKCS_ECDSA_P256_SHA256));
    let other = test_ca("other ca", ec_keypair(&PKCS_ECDSA_P256_SHA256));
    let cert = device_cert(&other, "thing-1");
    let err = verify_issued_by(&cert, &ours.pem).unwrap_err();
    assert!(
        matches!(&err, IssuerError::NameMismatch { issuer, ca_subject }
            if issuer.contains("CN=other ca") && ca_subject.contains("CN=fleet ca")),
        "{err}"
    );
}

#[test]
fn certificate_with_a_flipped_signature_bit_is_a_bad_signature() {
    let ca = test_ca("fleet ca", rcgen_rsa_keypair(2048, &PKCS_RSA_SHA256));
    let mut der = pem_der(&device_cert(&ca, "thing-1"));
    let last = der.len() - 1;
    der[last] ^= 0x01;
    assert_eq!(
        verify_issued_by(&to_pem("CERTIFICATE", &der), &ca.pem),
        Err(IssuerError::BadSignature)
    );
}

#[test]
fn unreadable_inputs_say_which_certificate_is_wrong() {
    let ca = test_ca("fleet ca", ec_keypair(&PKCS_ECDSA_P256_SHA256));
    let cert = device_cert(&ca, "thing-1");
    assert!(matches!(
        verify_issued_by("nope", &ca.pem),
        Err(IssuerError::Certificate(CertError::NotPem { .. }))
    ));
    assert!(matches!(
        verify_issued_by(&cert, &valid_p256_csr()),
        Err(IssuerError::CaCertificate(CertError::WrongPemLabel { .. }))
    ));
}

#[test]
fn ed25519_ca_is_an_unsupported_signature_algorithm() {
    let ca = test_ca("fleet ca", ec_keypair(&PKCS_ED25519));
    let cert = device_cert(&ca, "thing-1");
    assert_eq!(
        verify_issued_by(&cert, &ca.pem),
        Err(IssuerError::UnsupportedSignatureAlgorithm {
            oid: "1.3.101.112".into()
        })
    );
}
