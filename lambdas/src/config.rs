//! Handler configuration, read from the environment infra sets.

use rules::csr::CsrPolicy;
use rules::functions::Issuer;
use rules::issuer::{DEFAULT_VALIDITY_DAYS, PrivateCaSettings};
use rules::jitr::JitrConfig;
use rules::policy_copy::PolicyCopy;

pub use rules::functions::{
    CERTIFICATE_INDEX, CREATED_AT_ATTRIBUTE, DEADLINE_ATTRIBUTE, DEFAULT_ROTATION_DEADLINE_MS,
    DEFAULT_ROTATION_TTL_DAYS, DEFAULT_SWEEP_MAX_ROWS, DUE_INDEX, DUE_KEY_ATTRIBUTE, DUE_KEY_VALUE,
    MAX_ROTATION_TTL_DAYS, OLD_CERTIFICATE_ATTRIBUTE, ROTATION_TTL_ATTRIBUTE,
};

/// Default [`Config::campaign_max_members`].
pub const DEFAULT_CAMPAIGN_MAX_MEMBERS: usize = 1000;

/// Configuration shared by every handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `ROTATION_TABLE`: the DynamoDB table of rotation rows.
    pub rotation_table: String,
    /// `ROTATION_QUEUE_URL`: the SQS queue between fan-out and starter.
    pub rotation_queue_url: String,
    /// `SUPPORT_TOPIC_ARN`: the SNS topic for support notifications.
    pub support_topic_arn: String,
    /// `DEVICE_POLICY_NAME`: the IoT policy JITR attaches (fleetcert's
    /// device policy, or the customer policy `jitr.policy_name` names).
    /// Unset in a stack without fleetcert's device policy and without a
    /// JITR policy: jitr-activator then refuses every registration
    /// (`policy_name_missing`).
    pub device_policy_name: Option<String>,
    /// `COPY_POLICIES` (comma-separated names and `prefix*`, default `*`)
    /// and `ADD_POLICIES` (comma-separated names, default none): which of
    /// the old certificate's policies csr-issuer copies to the new one, and
    /// which it adds.
    pub policy_copy: PolicyCopy,
    /// `ROTATION_DEADLINE_MS` (default 7 days): how long a rotation may stay open.
    pub rotation_deadline_ms: i64,
    /// `ROTATION_TTL_DAYS` (default 90, 1 to 3650): how long a finished
    /// rotation row stays in the table after its deadline.
    pub rotation_ttl_days: u32,
    /// `SWEEP_MAX_ROWS` (default 200, at least 1): the most rows one sweep
    /// expires, finishes or sends a message for; the rest (the least
    /// overdue) wait for the next sweep, so that a backlog never runs one
    /// invocation past its timeout under the API rate limits.
    pub sweep_max_rows: usize,
    /// `CAMPAIGN_MAX_MEMBERS` (default 1,000, at least 1): per campaign and
    /// sweep, the most members released and the most member rotation rows
    /// read (`rules::campaign`); the rest wait for the next sweep.
    pub campaign_max_members: usize,
    /// `CSR_MIN_RSA_BITS`, `CSR_MAX_RSA_BITS`, `CSR_ALLOW_P256`,
    /// `CSR_ALLOW_P384`, `CSR_REQUIRE_NEW_KEY`, `CSR_REQUIRE_CN_MATCHES_THING`.
    pub csr_policy: CsrPolicy,
    /// `JITR_CREATE_THING` (default true) and `JITR_ALLOWED_CA_IDS`
    /// (comma-separated, default any); the policy is `DEVICE_POLICY_NAME`.
    pub jitr: JitrConfig,
    /// `ISSUER` (`aws_iot`, the default, or `private_ca`) and, for
    /// `private_ca`, `PCA_CA_ARN`, `PCA_SIGNING_ALGORITHM`,
    /// `PCA_VALIDITY_DAYS` (default 365) and `PCA_TEMPLATE_ARN` (default
    /// ACM PCA's end-entity template): where csr-issuer's certificates come
    /// from.
    pub issuer: IssuerConfig,
}

/// Where csr-issuer's new certificates come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IssuerConfig {
    /// AWS IoT's CA (`CreateCertificateFromCsr`).
    #[default]
    AwsIot,
    /// AWS Private CA (`acm-pca:IssueCertificate`, then
    /// `iot:RegisterCertificate`).
    PrivateCa(PrivateCaSettings),
}

impl IssuerConfig {
    /// Reads `ISSUER` and the `PCA_*` variables through `lookup` (what
    /// [`Config::from_lookup`] does; the emulator reads csr-issuer's
    /// environment from the template with it).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first missing or unreadable variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        issuer_from(&lookup)
    }

    /// Which issuer.
    pub fn kind(&self) -> Issuer {
        match self {
            Self::AwsIot => Issuer::AwsIot,
            Self::PrivateCa(_) => Issuer::PrivateCa,
        }
    }
}

/// A missing or unreadable environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {name} is not set")]
    Missing {
        /// The variable.
        name: &'static str,
    },
    /// A variable does not parse.
    #[error("environment variable {name}={value:?} is not {expected}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
}

impl Config {
    /// A configuration for tests and the emulator: the given device policy,
    /// default deadline and policies, placeholder resource names.
    pub fn local(device_policy_name: &str) -> Self {
        Self {
            rotation_table: "fleetcert-rotations".to_owned(),
            rotation_queue_url: "local://fleetcert-rotations".to_owned(),
            support_topic_arn: "local://fleetcert-support".to_owned(),
            device_policy_name: Some(device_policy_name.to_owned()),
            policy_copy: PolicyCopy::default(),
            rotation_deadline_ms: DEFAULT_ROTATION_DEADLINE_MS,
            rotation_ttl_days: DEFAULT_ROTATION_TTL_DAYS,
            sweep_max_rows: DEFAULT_SWEEP_MAX_ROWS,
            campaign_max_members: DEFAULT_CAMPAIGN_MAX_MEMBERS,
            csr_policy: CsrPolicy::default(),
            jitr: JitrConfig {
                policy_name: device_policy_name.to_owned(),
                ..JitrConfig::default()
            },
            issuer: IssuerConfig::AwsIot,
        }
    }

    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// A [`ConfigError`] for the first missing or unreadable variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment in
    /// [`from_env`](Self::from_env), a map in tests).
    ///
    /// # Errors
    /// A [`ConfigError`] for the first missing or unreadable variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            lookup(name)
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Missing { name })
        };
        let device_policy_name = lookup("DEVICE_POLICY_NAME").filter(|v| !v.is_empty());
        let copy = lookup("COPY_POLICIES").unwrap_or_else(|| "*".to_owned());
        let add = lookup("ADD_POLICIES").unwrap_or_default();
        let policy_copy =
            PolicyCopy::from_lists(&copy, &add).map_err(|e| ConfigError::Invalid {
                name: "COPY_POLICIES",
                value: format!("{copy:?} / ADD_POLICIES {add:?}"),
                expected: match e {
                    rules::policy_copy::PolicyCopyError::Name(_) => "a list of IoT policy names",
                    _ => "*, or a list of IoT policy names and name prefixes ending in *",
                },
            })?;
        let defaults = CsrPolicy::default();
        let csr_policy = CsrPolicy {
            min_rsa_bits: parse_or(&lookup, "CSR_MIN_RSA_BITS", defaults.min_rsa_bits)?,
            max_rsa_bits: parse_or(&lookup, "CSR_MAX_RSA_BITS", defaults.max_rsa_bits)?,
            allow_p256: bool_or(&lookup, "CSR_ALLOW_P256", defaults.allow_p256)?,
            allow_p384: bool_or(&lookup, "CSR_ALLOW_P384", defaults.allow_p384)?,
            require_new_key: bool_or(&lookup, "CSR_REQUIRE_NEW_KEY", defaults.require_new_key)?,
            require_cn_matches_thing: bool_or(
                &lookup,
                "CSR_REQUIRE_CN_MATCHES_THING",
                defaults.require_cn_matches_thing,
            )?,
        };
        let jitr = JitrConfig {
            allowed_ca_ids: lookup("JITR_ALLOWED_CA_IDS")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            create_thing: bool_or(&lookup, "JITR_CREATE_THING", true)?,
            policy_name: device_policy_name.clone().unwrap_or_default(),
            ..JitrConfig::default()
        };
        let rotation_deadline_ms = parse_or(
            &lookup,
            "ROTATION_DEADLINE_MS",
            DEFAULT_ROTATION_DEADLINE_MS,
        )?;
        if rotation_deadline_ms <= 0 {
            return Err(ConfigError::Invalid {
                name: "ROTATION_DEADLINE_MS",
                value: rotation_deadline_ms.to_string(),
                expected: "a positive number of milliseconds",
            });
        }
        let rotation_ttl_days = parse_or(&lookup, "ROTATION_TTL_DAYS", DEFAULT_ROTATION_TTL_DAYS)?;
        if !(1..=MAX_ROTATION_TTL_DAYS).contains(&rotation_ttl_days) {
            return Err(ConfigError::Invalid {
                name: "ROTATION_TTL_DAYS",
                value: rotation_ttl_days.to_string(),
                expected: "a number of days from 1 to 3650",
            });
        }
        let sweep_max_rows = parse_or(&lookup, "SWEEP_MAX_ROWS", DEFAULT_SWEEP_MAX_ROWS)?;
        if sweep_max_rows == 0 {
            return Err(ConfigError::Invalid {
                name: "SWEEP_MAX_ROWS",
                value: "0".to_owned(),
                expected: "at least 1",
            });
        }
        let campaign_max_members = parse_or(
            &lookup,
            "CAMPAIGN_MAX_MEMBERS",
            DEFAULT_CAMPAIGN_MAX_MEMBERS,
        )?;
        if campaign_max_members == 0 {
            return Err(ConfigError::Invalid {
                name: "CAMPAIGN_MAX_MEMBERS",
                value: "0".to_owned(),
                expected: "at least 1",
            });
        }
        let issuer = issuer_from(&lookup)?;
        Ok(Self {
            rotation_table: required("ROTATION_TABLE")?,
            rotation_queue_url: required("ROTATION_QUEUE_URL")?,
            support_topic_arn: required("SUPPORT_TOPIC_ARN")?,
            device_policy_name,
            policy_copy,
            rotation_deadline_ms,
            rotation_ttl_days,
            sweep_max_rows,
            campaign_max_members,
            csr_policy,
            jitr,
            issuer,
        })
    }
}

fn issuer_from(lookup: &impl Fn(&str) -> Option<String>) -> Result<IssuerConfig, ConfigError> {
    let kind = lookup("ISSUER").filter(|v| !v.trim().is_empty());
    let kind = match kind.as_deref().map(str::trim) {
        None => Issuer::AwsIot,
        Some(v) => Issuer::from_name(v).ok_or_else(|| ConfigError::Invalid {
            name: "ISSUER",
            value: v.to_owned(),
            expected: "aws_iot or private_ca",
        })?,
    };
    if kind == Issuer::AwsIot {
        return Ok(IssuerConfig::AwsIot);
    }
    let ca_arn = lookup("PCA_CA_ARN")
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::Missing { name: "PCA_CA_ARN" })?;
    if rules::issuer::check_ca_arn(&ca_arn).is_err() {
        return Err(ConfigError::Invalid {
            name: "PCA_CA_ARN",
            value: ca_arn,
            expected: "arn:<partition>:acm-pca:<region>:<account>:certificate-authority/<id>",
        });
    }
    let algorithm = lookup("PCA_SIGNING_ALGORITHM")
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::Missing {
            name: "PCA_SIGNING_ALGORITHM",
        })?;
    let days: u64 = parse_or(
        lookup,
        "PCA_VALIDITY_DAYS",
        u64::from(DEFAULT_VALIDITY_DAYS),
    )?;
    let template = lookup("PCA_TEMPLATE_ARN").filter(|v| !v.is_empty());
    PrivateCaSettings::new(&ca_arn, &algorithm, days, template.as_deref())
        .map(IssuerConfig::PrivateCa)
        .map_err(|e| {
            let (name, value, expected) = match e.field() {
                "ca_arn" => (
                    "PCA_CA_ARN",
                    ca_arn.clone(),
                    "arn:<partition>:acm-pca:<region>:<account>:certificate-authority/<id>",
                ),
                "signing_algorithm" => (
                    "PCA_SIGNING_ALGORITHM",
                    algorithm.clone(),
                    "one of ACM PCA's signing algorithms (e.g. SHA256WITHECDSA)",
                ),
                "validity_days" => (
                    "PCA_VALIDITY_DAYS",
                    days.to_string(),
                    "a number of days from 1 to 3650",
                ),
                _ => (
                    "PCA_TEMPLATE_ARN",
                    template.clone().unwrap_or_default(),
                    "arn:<partition>:acm-pca:::template/<name>/V<n>",
                ),
            };
            ConfigError::Invalid {
                name,
                value,
                expected,
            }
        })
}

fn parse_or<T: std::str::FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match lookup(name) {
        None => Ok(default),
        Some(v) if v.trim().is_empty() => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
            name,
            value: v,
            expected: "a number",
        }),
    }
}

fn bool_or(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match lookup(name).as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(v) => Err(ConfigError::Invalid {
            name,
            value: v.to_owned(),
            expected: "true or false",
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: [(&str, &str); 4] = [
        ("ROTATION_TABLE", "t"),
        ("ROTATION_QUEUE_URL", "q"),
        ("SUPPORT_TOPIC_ARN", "s"),
        ("DEVICE_POLICY_NAME", "p"),
    ];

    #[test]
    fn reads_required_variables_with_defaults() {
        let c = Config::from_lookup(env(&BASE)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.rotation_table, "t");
        assert_eq!(c.jitr.policy_name, "p");
        assert!(c.jitr.create_thing);
        assert_eq!(c.rotation_deadline_ms, DEFAULT_ROTATION_DEADLINE_MS);
        assert_eq!(c.rotation_ttl_days, DEFAULT_ROTATION_TTL_DAYS);
        assert_eq!(c.sweep_max_rows, DEFAULT_SWEEP_MAX_ROWS);
        assert_eq!(c.csr_policy, CsrPolicy::default());
        assert_eq!(c.policy_copy, PolicyCopy::default());
    }

    /// A stack without fleetcert's device policy and without a JITR policy
    /// sets no `DEVICE_POLICY_NAME`: the functions load, JITR refuses.
    #[test]
    fn the_device_policy_is_optional() {
        let c = Config::from_lookup(env(&BASE[..3])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.device_policy_name, None);
        assert_eq!(c.jitr.policy_name, "");
    }

    #[test]
    fn missing_and_bad_variables_are_named() {
        let err = Config::from_lookup(env(&BASE[1..])).err();
        assert_eq!(
            err,
            Some(ConfigError::Missing {
                name: "ROTATION_TABLE"
            })
        );
        let mut pairs = BASE.to_vec();
        pairs.push(("COPY_POLICIES", "Customer*Device"));
        assert!(matches!(
            Config::from_lookup(env(&pairs)),
            Err(ConfigError::Invalid {
                name: "COPY_POLICIES",
                ..
            })
        ));
        let mut pairs = BASE.to_vec();
        pairs.push(("CSR_ALLOW_P256", "maybe"));
        let err = Config::from_lookup(env(&pairs)).err();
        assert!(
            matches!(
                err,
                Some(ConfigError::Invalid {
                    name: "CSR_ALLOW_P256",
                    ..
                })
            ),
            "{err:?}"
        );
        let mut pairs = BASE.to_vec();
        pairs.push(("SWEEP_MAX_ROWS", "0"));
        assert!(matches!(
            Config::from_lookup(env(&pairs)),
            Err(ConfigError::Invalid {
                name: "SWEEP_MAX_ROWS",
                ..
            })
        ));
        for days in ["0", "3651"] {
            let mut pairs = BASE.to_vec();
            pairs.push(("ROTATION_TTL_DAYS", days));
            let err = Config::from_lookup(env(&pairs)).err();
            assert!(
                matches!(
                    err,
                    Some(ConfigError::Invalid {
                        name: "ROTATION_TTL_DAYS",
                        ..
                    })
                ),
                "{days}: {err:?}"
            );
        }
    }

    #[test]
    fn optional_knobs_override_defaults() {
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("ROTATION_DEADLINE_MS", "60000"),
            ("ROTATION_TTL_DAYS", "7"),
            ("SWEEP_MAX_ROWS", "50"),
            ("CSR_MIN_RSA_BITS", "3072"),
            ("JITR_CREATE_THING", "false"),
            ("JITR_ALLOWED_CA_IDS", "a, b"),
            ("COPY_POLICIES", "CustomerDevice,legacy-*"),
            ("ADD_POLICIES", "extra"),
        ]);
        let c = Config::from_lookup(env(&pairs)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.rotation_deadline_ms, 60_000);
        assert_eq!(c.rotation_ttl_days, 7);
        assert_eq!(c.sweep_max_rows, 50);
        assert_eq!(c.csr_policy.min_rsa_bits, 3072);
        assert!(!c.jitr.create_thing);
        assert_eq!(c.jitr.allowed_ca_ids, ["a", "b"]);
        assert!(c.policy_copy.allows("legacy-7") && !c.policy_copy.allows("Admin"));
        assert_eq!(c.policy_copy.add, ["extra"]);
        assert_eq!(c.issuer, IssuerConfig::AwsIot);
    }

    const CA: &str = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/abc";

    #[test]
    fn reads_a_private_ca_issuer() {
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("ISSUER", "private_ca"),
            ("PCA_CA_ARN", CA),
            ("PCA_SIGNING_ALGORITHM", "SHA256WITHECDSA"),
        ]);
        let c = Config::from_lookup(env(&pairs)).unwrap_or_else(|e| panic!("{e}"));
        let IssuerConfig::PrivateCa(pca) = &c.issuer else {
            panic!("{:?}", c.issuer)
        };
        assert_eq!(c.issuer.kind(), Issuer::PrivateCa);
        assert_eq!(pca.ca_arn, CA);
        assert_eq!(pca.validity_days, DEFAULT_VALIDITY_DAYS);
        assert_eq!(
            pca.template_arn,
            "arn:aws:acm-pca:::template/EndEntityCertificate/V1"
        );
    }

    #[test]
    fn a_bad_issuer_setting_names_its_variable() {
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[("ISSUER", "acm")], "ISSUER"),
            (&[("ISSUER", "private_ca")], "PCA_CA_ARN"),
            (
                &[("ISSUER", "private_ca"), ("PCA_CA_ARN", "arn:aws:iot:x")],
                "PCA_CA_ARN",
            ),
            (
                &[("ISSUER", "private_ca"), ("PCA_CA_ARN", CA)],
                "PCA_SIGNING_ALGORITHM",
            ),
            (
                &[
                    ("ISSUER", "private_ca"),
                    ("PCA_CA_ARN", CA),
                    ("PCA_SIGNING_ALGORITHM", "SHA256WITHRSA"),
                    ("PCA_VALIDITY_DAYS", "0"),
                ],
                "PCA_VALIDITY_DAYS",
            ),
            (
                &[
                    ("ISSUER", "private_ca"),
                    ("PCA_CA_ARN", CA),
                    ("PCA_SIGNING_ALGORITHM", "SHA256WITHRSA"),
                    ("PCA_TEMPLATE_ARN", "EndEntity"),
                ],
                "PCA_TEMPLATE_ARN",
            ),
        ];
        for (extra, expected) in cases {
            let mut pairs = BASE.to_vec();
            pairs.extend_from_slice(extra);
            let named = match Config::from_lookup(env(&pairs)) {
                Err(ConfigError::Missing { name } | ConfigError::Invalid { name, .. }) => name,
                other => panic!("{extra:?}: {other:?}"),
            };
            assert_eq!(named, expected, "{extra:?}");
        }
    }
}
