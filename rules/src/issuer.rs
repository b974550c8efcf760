//! The settings of an AWS Private CA issuer ([`Issuer::PrivateCa`]), checked
//! once for the stack's configuration (`infra`) and csr-issuer's
//! environment (`lambdas`), and the idempotency token of one issuing claim.
//!
//! The bounds are ACM PCA's API model (botocore's `acm-pca` service model:
//! `SigningAlgorithm`, `Arn`, `IdempotencyToken` 1 to 36 characters,
//! `Validity.Value` at least 1), except the longest validity, which is
//! fleetcert's own (below).

use std::fmt;

use sha2::{Digest, Sha256};

pub use crate::functions::Issuer;

/// ACM PCA's `SigningAlgorithm` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// `SHA256WITHECDSA`.
    Sha256WithEcdsa,
    /// `SHA384WITHECDSA`.
    Sha384WithEcdsa,
    /// `SHA512WITHECDSA`.
    Sha512WithEcdsa,
    /// `SHA256WITHRSA`.
    Sha256WithRsa,
    /// `SHA384WITHRSA`.
    Sha384WithRsa,
    /// `SHA512WITHRSA`.
    Sha512WithRsa,
    /// `SHA256WITHRSA_PSS`.
    Sha256WithRsaPss,
    /// `SHA384WITHRSA_PSS`.
    Sha384WithRsaPss,
    /// `SHA512WITHRSA_PSS`.
    Sha512WithRsaPss,
    /// `SM3WITHSM2`.
    Sm3WithSm2,
    /// `ML_DSA_44`.
    MlDsa44,
    /// `ML_DSA_65`.
    MlDsa65,
    /// `ML_DSA_87`.
    MlDsa87,
}

impl SigningAlgorithm {
    /// Every value, in the API model's order.
    pub const ALL: [SigningAlgorithm; 13] = [
        Self::Sha256WithEcdsa,
        Self::Sha384WithEcdsa,
        Self::Sha512WithEcdsa,
        Self::Sha256WithRsa,
        Self::Sha384WithRsa,
        Self::Sha512WithRsa,
        Self::Sha256WithRsaPss,
        Self::Sha384WithRsaPss,
        Self::Sha512WithRsaPss,
        Self::Sm3WithSm2,
        Self::MlDsa44,
        Self::MlDsa65,
        Self::MlDsa87,
    ];

    /// The API's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sha256WithEcdsa => "SHA256WITHECDSA",
            Self::Sha384WithEcdsa => "SHA384WITHECDSA",
            Self::Sha512WithEcdsa => "SHA512WITHECDSA",
            Self::Sha256WithRsa => "SHA256WITHRSA",
            Self::Sha384WithRsa => "SHA384WITHRSA",
            Self::Sha512WithRsa => "SHA512WITHRSA",
            Self::Sha256WithRsaPss => "SHA256WITHRSA_PSS",
            Self::Sha384WithRsaPss => "SHA384WITHRSA_PSS",
            Self::Sha512WithRsaPss => "SHA512WITHRSA_PSS",
            Self::Sm3WithSm2 => "SM3WITHSM2",
            Self::MlDsa44 => "ML_DSA_44",
            Self::MlDsa65 => "ML_DSA_65",
            Self::MlDsa87 => "ML_DSA_87",
        }
    }

    /// The value spelled `s` (the API's spelling).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest validity fleetcert asks for: 3,650 days (fleetcert's own
/// bound; ACM PCA's API takes any positive number of days and refuses a
/// certificate that would outlive its CA).
pub const MAX_VALIDITY_DAYS: u32 = 3650;

/// The default validity of a Private CA certificate: 365 days.
pub const DEFAULT_VALIDITY_DAYS: u32 = 365;

/// ACM PCA's end-entity template, what `IssueCertificate` applies when the
/// request names none. fleetcert always names one, so that the role can
/// pin `acm-pca:TemplateArn`.
pub const END_ENTITY_TEMPLATE: &str = "EndEntityCertificate/V1";

/// A setting of an issuer that ACM PCA would refuse, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerSettingError {
    /// `ca_arn` is not a certificate authority's ARN.
    #[error(
        "ca_arn {0:?} is not a certificate authority ARN (arn:<partition>:acm-pca:<region>:<account>:certificate-authority/<id>)"
    )]
    CaArn(String),
    /// `template_arn` is not an ACM PCA template ARN.
    #[error(
        "template_arn {0:?} is not an ACM PCA template ARN (arn:<partition>:acm-pca:::template/<name>/V<n>)"
    )]
    TemplateArn(String),
    /// `signing_algorithm` is not one of ACM PCA's.
    #[error("signing_algorithm {0:?} is not one of ACM PCA's ({list})", list = SigningAlgorithm::ALL.map(SigningAlgorithm::as_str).join(", "))]
    SigningAlgorithm(String),
    /// `validity_days` out of range.
    #[error("validity_days {0} is out of range (1 to {MAX_VALIDITY_DAYS})")]
    ValidityDays(u64),
}

impl IssuerSettingError {
    /// The setting's name (`ca_arn`, `template_arn`, `signing_algorithm`,
    /// `validity_days`).
    pub const fn field(&self) -> &'static str {
        match self {
            Self::CaArn(_) => "ca_arn",
            Self::TemplateArn(_) => "template_arn",
            Self::SigningAlgorithm(_) => "signing_algorithm",
            Self::ValidityDays(_) => "validity_days",
        }
    }
}

/// Where csr-issuer's certificates come from when the issuer is AWS
/// Private CA, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateCaSettings {
    /// The certificate authority's ARN.
    pub ca_arn: String,
    /// The signing algorithm (matching the CA's key).
    pub signing_algorithm: SigningAlgorithm,
    /// Validity of each certificate, in days.
    pub validity_days: u32,
    /// The template ARN; ACM PCA's end-entity template in the CA's
    /// partition when not configured ([`PrivateCaSettings::new`]).
    pub template_arn: String,
}

fn arn_fields(arn: &str) -> Option<[&str; 6]> {
    let mut it = arn.splitn(6, ':');
    let out = [
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
    ];
    Some(out)
}

fn name_chars(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks `arn` has the shape
/// `arn:<partition>:acm-pca:<region>:<account>:certificate-authority/<id>`
/// and returns its partition.
///
/// # Errors
/// [`IssuerSettingError::CaArn`].
pub fn check_ca_arn(arn: &str) -> Result<&str, IssuerSettingError> {
    let bad = || IssuerSettingError::CaArn(arn.to_owned());
    let [scheme, partition, service, region, account, resource] =
        arn_fields(arn).ok_or_else(bad)?;
    let id = resource
        .strip_prefix("certificate-authority/")
        .ok_or_else(bad)?;
    let ok = scheme == "arn"
        && name_chars(partition)
        && service == "acm-pca"
        && name_chars(region)
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && name_chars(id)
        && arn.len() <= 200;
    if ok { Ok(partition) } else { Err(bad()) }
}

/// Checks `arn` has the shape `arn:<partition>:acm-pca:::template/<name>/V<n>`.
///
/// # Errors
/// [`IssuerSettingError::TemplateArn`].
pub fn check_template_arn(arn: &str) -> Result<(), IssuerSettingError> {
    let bad = || IssuerSettingError::TemplateArn(arn.to_owned());
    let [scheme, partition, service, region, account, resource] =
        arn_fields(arn).ok_or_else(bad)?;
    let (name, version) = resource
        .strip_prefix("template/")
        .and_then(|r| r.rsplit_once('/'))
        .ok_or_else(bad)?;
    let ok = scheme == "arn"
        && name_chars(partition)
        && service == "acm-pca"
        && region.is_empty()
        && account.is_empty()
        && name_chars(name)
        && version
            .strip_prefix('V')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if ok { Ok(()) } else { Err(bad()) }
}

impl PrivateCaSettings {
    /// Checks every setting; `template_arn` `None` is ACM PCA's end-entity
    /// template in the CA's partition.
    ///
    /// # Errors
    /// The first setting ACM PCA would refuse.
    pub fn new(
        ca_arn: &str,
        signing_algorithm: &str,
        validity_days: u64,
        template_arn: Option<&str>,
    ) -> Result<Self, IssuerSettingError> {
        let partition = check_ca_arn(ca_arn)?;
        let signing_algorithm = SigningAlgorithm::from_name(signing_algorithm)
            .ok_or_else(|| IssuerSettingError::SigningAlgorithm(signing_algorithm.to_owned()))?;
        let validity_days = u32::try_from(validity_days)
            .ok()
            .filter(|d| (1..=MAX_VALIDITY_DAYS).contains(d))
            .ok_or(IssuerSettingError::ValidityDays(validity_days))?;
        let template_arn = match template_arn {
            Some(t) => {
                check_template_arn(t)?;
                t.to_owned()
            }
            None => format!("arn:{partition}:acm-pca:::template/{END_ENTITY_TEMPLATE}"),
        };
        Ok(Self {
            ca_arn: ca_arn.to_owned(),
            signing_algorithm,
            validity_days,
            template_arn,
        })
    }
}

/// The `IdempotencyToken` of one issuing claim: 36 hex digits of
/// SHA-256(rotation id, attempt, CSR key fingerprint). ACM PCA issues one
/// certificate for one token (for a few minutes), so a retry of the same
/// claim gets the same certificate back; a claim taken again after its
/// certificate was revoked has the next attempt number, and a claim for
/// another key another fingerprint, so each gets a new token.
pub fn idempotency_token(rotation_id: &str, attempt: u32, csr_fingerprint: &str) -> String {
    let mut h = Sha256::new();
    h.update(rotation_id.as_bytes());
    h.update([0]);
    h.update(attempt.to_be_bytes());
    h.update(csr_fingerprint.as_bytes());
    let mut token = hex::encode(h.finalize());
    token.truncate(36);
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/12345678-1234-1234-1234-123456789012";

    #[test]
    fn accepts_a_ca_and_defaults_the_template_to_the_partitions_end_entity() {
        let s = PrivateCaSettings::new(CA, "SHA256WITHECDSA", 365, None).unwrap();
        assert_eq!(s.signing_algorithm, SigningAlgorithm::Sha256WithEcdsa);
        assert_eq!(
            s.template_arn,
            "arn:aws:acm-pca:::template/EndEntityCertificate/V1"
        );
        let cn = "arn:aws-cn:acm-pca:cn-north-1:123456789012:certificate-authority/x";
        let s = PrivateCaSettings::new(cn, "SHA256WITHRSA", 1, None).unwrap();
        assert!(s.template_arn.starts_with("arn:aws-cn:acm-pca:::template/"));
    }

    #[test]
    fn each_bad_setting_names_its_field() {
        let cases = [
            (
                PrivateCaSettings::new(
                    "arn:aws:acm:eu-west-1:123456789012:certificate/x",
                    "SHA256WITHRSA",
                    1,
                    None,
                ),
                "ca_arn",
            ),
            (
                PrivateCaSettings::new(
                    "arn:aws:acm-pca:eu-west-1:1234:certificate-authority/x",
                    "SHA256WITHRSA",
                    1,
                    None,
                ),
                "ca_arn",
            ),
            (
                PrivateCaSettings::new(
                    "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/",
                    "SHA256WITHRSA",
                    1,
                    None,
                ),
                "ca_arn",
            ),
            (
                PrivateCaSettings::new(CA, "SHA1WITHRSA", 1, None),
                "signing_algorithm",
            ),
            (
                PrivateCaSettings::new(CA, "sha256withrsa", 1, None),
                "signing_algorithm",
            ),
            (
                PrivateCaSettings::new(CA, "SHA256WITHRSA", 0, None),
                "validity_days",
            ),
            (
                PrivateCaSettings::new(CA, "SHA256WITHRSA", 3651, None),
                "validity_days",
            ),
            (
                PrivateCaSettings::new(
                    CA,
                    "SHA256WITHRSA",
                    1,
                    Some("arn:aws:acm-pca:eu-west-1:123456789012:template/X/V1"),
                ),
                "template_arn",
            ),
            (
                PrivateCaSettings::new(
                    CA,
                    "SHA256WITHRSA",
                    1,
                    Some("arn:aws:acm-pca:::template/X/1"),
                ),
                "template_arn",
            ),
        ];
        for (result, field) in cases {
            assert_eq!(result.unwrap_err().field(), field);
        }
        assert!(
            PrivateCaSettings::new(
                CA,
                "ML_DSA_65",
                3650,
                Some("arn:aws:acm-pca:::template/EndEntityClientAuthCertificate/V1")
            )
            .is_ok()
        );
    }

    #[test]
    fn the_token_is_36_characters_and_differs_per_attempt_and_key() {
        let r = "r0123456789abcdef0123456789abcdef";
        let a = idempotency_token(r, 1, "k1");
        assert_eq!(a.len(), 36);
        assert_eq!(a, idempotency_token(r, 1, "k1"));
        assert_ne!(a, idempotency_token(r, 2, "k1"));
        assert_ne!(a, idempotency_token(r, 1, "k2"));
        assert_ne!(
            a,
            idempotency_token("r0123456789abcdef0123456789abcdee", 1, "k1")
        );
    }

    #[test]
    fn issuer_names_round_trip() {
        for i in Issuer::ALL {
            assert_eq!(Issuer::from_name(i.name()), Some(i));
        }
        assert_eq!(Issuer::from_name("acm"), None);
    }
}
