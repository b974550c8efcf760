//! The stack's typed configuration: defaults, a TOML file, then overrides
//! (CLI flags); [`Config::validate`] names the field of any invalid value.

use std::path::{Path, PathBuf};

use der::DecodePem;
use serde::Deserialize;

/// Why a configuration is rejected. Each names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not valid TOML for this configuration (unknown field,
    /// wrong type); the message names the field.
    #[error("config file {path}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// The TOML error, naming the field.
        reason: String,
    },
    /// A field with a value AWS (or fleetcert) rejects.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Dotted field name, e.g. `audit.expiring_threshold_days`.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// Lambda CPU architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Graviton (the default).
    #[default]
    Arm64,
    /// x86-64.
    X86_64,
}

/// How often Device Defender audits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Frequency {
    /// Every day (the default).
    #[default]
    Daily,
    /// Every week on `day_of_week`.
    Weekly,
    /// Every other week on `day_of_week`.
    Biweekly,
    /// Every month on `day_of_month`.
    Monthly,
}

/// Device Defender settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// Days before expiry at which a certificate is reported (AWS accepts 1 to 3652).
    pub expiring_threshold_days: u32,
    /// Scheduled audit frequency.
    pub frequency: Frequency,
    /// `SUN` … `SAT`, for weekly and biweekly audits.
    pub day_of_week: Option<String>,
    /// `1` … `31` or `LAST`, for monthly audits.
    pub day_of_month: Option<String>,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            expiring_threshold_days: 30,
            frequency: Frequency::Daily,
            day_of_week: None,
            day_of_month: None,
        }
    }
}

/// Lambda settings shared by the functions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lambda {
    /// CPU architecture.
    pub architecture: Architecture,
    /// Memory in MB (128 to 10240).
    pub memory_mb: u32,
    /// Timeout in seconds (1 to 900).
    pub timeout_seconds: u32,
    /// Log retention in days (a value CloudWatch Logs accepts).
    pub log_retention_days: u32,
    /// Where `cargo xtask lambdas` puts `<function>/bootstrap.zip`.
    pub asset_dir: Option<PathBuf>,
}

impl Default for Lambda {
    fn default() -> Self {
        Lambda {
            architecture: Architecture::Arm64,
            memory_mb: 256,
            timeout_seconds: 30,
            log_retention_days: 365,
            asset_dir: None,
        }
    }
}

/// Just-in-time registration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Jitr {
    /// A CA certificate PEM file to register with auto-registration on.
    pub ca_certificate_pem_file: Option<PathBuf>,
    /// Its verification certificate PEM file (signed by the CA, subject =
    /// the account's registration code).
    pub verification_certificate_pem_file: Option<PathBuf>,
    /// Ids of CAs registered outside this stack (`fleetcert ca register`).
    pub ca_certificate_ids: Vec<String>,
    /// Create the thing named by a JITR certificate's subject CN when it
    /// does not exist (otherwise such a certificate is rejected).
    pub create_thing: bool,
}

impl Default for Jitr {
    fn default() -> Self {
        Jitr {
            ca_certificate_pem_file: None,
            verification_certificate_pem_file: None,
            ca_certificate_ids: Vec::new(),
            create_thing: true,
        }
    }
}

/// How a rotation runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rotation {
    /// Hours a device has to answer `csr_req` and confirm the new
    /// certificate before the sweeper expires the rotation (and the next
    /// audit starts another). Shorter than the audit's threshold, so that a
    /// rotation ends before the certificate expires. Unset: 168 (7 days),
    /// or half the threshold when that is shorter
    /// ([`Config::rotation_deadline_hours`]).
    pub deadline_hours: Option<u32>,
    /// The most rows one sweep acts on (the rest wait for the next sweep).
    pub sweep_max_rows: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            deadline_hours: None,
            sweep_max_rows: u32::try_from(lambdas::config::DEFAULT_SWEEP_MAX_ROWS).unwrap_or(200),
        }
    }
}

/// The CSR acceptance policy of csr-issuer (`rules::csr::CsrPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Csr {
    /// Smallest RSA key accepted, in bits.
    pub min_rsa_bits: u32,
    /// Largest RSA key accepted, in bits.
    pub max_rsa_bits: u32,
    /// Accept EC P-256 keys.
    pub allow_p256: bool,
    /// Accept EC P-384 keys.
    pub allow_p384: bool,
    /// Refuse a CSR whose key is the current certificate's.
    pub require_new_key: bool,
    /// Refuse a CSR whose subject CN is not the thing name.
    pub require_cn_matches_thing: bool,
}

impl Default for Csr {
    fn default() -> Self {
        let p = rules::csr::CsrPolicy::default();
        Csr {
            min_rsa_bits: p.min_rsa_bits,
            max_rsa_bits: p.max_rsa_bits,
            allow_p256: p.allow_p256,
            allow_p384: p.allow_p384,
            require_new_key: p.require_new_key,
            require_cn_matches_thing: p.require_cn_matches_thing,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// CloudFormation stack name.
    pub stack_name: String,
    /// Deploy region; unset = the CLI's environment.
    pub region: Option<String>,
    /// Device Defender.
    pub audit: Audit,
    /// Lambda functions.
    pub lambda: Lambda,
    /// JITR.
    pub jitr: Jitr,
    /// Rotation deadline and sweeping.
    pub rotation: Rotation,
    /// CSR acceptance policy.
    pub csr: Csr,
    /// Days a finished rotation row is kept (DynamoDB TTL).
    pub rotation_ttl_days: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stack_name: "FleetcertStack".into(),
            region: None,
            audit: Audit::default(),
            lambda: Lambda::default(),
            jitr: Jitr::default(),
            rotation: Rotation::default(),
            csr: Csr::default(),
            rotation_ttl_days: lambdas::config::DEFAULT_ROTATION_TTL_DAYS,
        }
    }
}

impl Config {
    /// The rotation deadline in hours: `rotation.deadline_hours`, or when
    /// unset the handlers' default (168, 7 days), or half the audit
    /// threshold when that is shorter.
    pub fn rotation_deadline_hours(&self) -> u32 {
        const DEFAULT_HOURS: i64 = lambdas::config::DEFAULT_ROTATION_DEADLINE_MS / 3_600_000;
        self.rotation.deadline_hours.unwrap_or_else(|| {
            let half_threshold = self.audit.expiring_threshold_days.saturating_mul(12).max(1);
            u32::try_from(DEFAULT_HOURS).map_or(half_threshold, |d| d.min(half_threshold))
        })
    }
}

/// Regions fleetcert knows (those with AWS IoT Core and Device Defender).
pub const REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "sa-east-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "me-south-1",
    "me-central-1",
    "il-central-1",
    "af-south-1",
    "ap-east-1",
    "ap-south-1",
    "ap-south-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "cn-north-1",
    "cn-northwest-1",
    "us-gov-east-1",
    "us-gov-west-1",
];

const LOG_RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// A validated configuration, with the JITR PEMs read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The configuration.
    pub config: Config,
    /// CA PEM and verification PEM, when JITR registers a CA.
    pub jitr_ca: Option<(String, Option<String>)>,
}

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Config::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { reason, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    /// Parses TOML over the defaults.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<inline>".into(),
            // the rendered error quotes the offending line, so it names the field
            reason: e.to_string().trim_end().to_owned(),
        })
    }

    /// Checks every value against what AWS accepts; reads the JITR PEMs.
    pub fn validate(self) -> Result<Validated, ConfigError> {
        let invalid = |field: &'static str, reason: String| ConfigError::Invalid { field, reason };
        let name = &self.stack_name;
        if name.is_empty()
            || name.len() > 128
            || !name.starts_with(|c: char| c.is_ascii_alphabetic())
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(invalid(
                "stack_name",
                format!(
                    "{name:?} must be 1 to 128 letters, digits and hyphens, starting with a letter"
                ),
            ));
        }
        if let Some(r) = &self.region
            && !REGIONS.contains(&r.as_str())
        {
            return Err(invalid("region", format!("unknown region {r:?}")));
        }
        let a = &self.audit;
        if !(1..=3652).contains(&a.expiring_threshold_days) {
            return Err(invalid(
                "audit.expiring_threshold_days",
                format!("{} is outside 1 to 3652", a.expiring_threshold_days),
            ));
        }
        match a.frequency {
            Frequency::Weekly | Frequency::Biweekly => {
                let day = a.day_of_week.as_deref().unwrap_or("");
                if !["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"].contains(&day) {
                    return Err(invalid(
                        "audit.day_of_week",
                        format!(
                            "{day:?} is not one of SUN MON TUE WED THU FRI SAT (required for weekly audits)"
                        ),
                    ));
                }
                if a.day_of_month.is_some() {
                    return Err(invalid(
                        "audit.day_of_month",
                        "only for monthly audits".into(),
                    ));
                }
            }
            Frequency::Monthly => {
                let day = a.day_of_month.as_deref().unwrap_or("");
                let ok = day == "LAST" || day.parse::<u8>().is_ok_and(|d| (1..=31).contains(&d));
                if !ok {
                    return Err(invalid(
                        "audit.day_of_month",
                        format!("{day:?} is not 1 to 31 or LAST (required for monthly audits)"),
                    ));
                }
                if a.day_of_week.is_some() {
                    return Err(invalid(
                        "audit.day_of_week",
                        "only for weekly audits".into(),
                    ));
                }
            }
            Frequency::Daily => {
                if a.day_of_week.is_some() || a.day_of_month.is_some() {
                    return Err(invalid(
                        "audit.frequency",
                        "DAILY takes neither day_of_week nor day_of_month".into(),
                    ));
                }
            }
        }
        let l = &self.lambda;
        if !(128..=10240).contains(&l.memory_mb) {
            return Err(invalid(
                "lambda.memory_mb",
                format!("{} is outside 128 to 10240", l.memory_mb),
            ));
        }
        if !(1..=900).contains(&l.timeout_seconds) {
            return Err(invalid(
                "lambda.timeout_seconds",
                format!("{} is outside 1 to 900", l.timeout_seconds),
            ));
        }
        if !LOG_RETENTION_DAYS.contains(&l.log_retention_days) {
            return Err(invalid(
                "lambda.log_retention_days",
                format!(
                    "{} is not one of {LOG_RETENTION_DAYS:?}",
                    l.log_retention_days
                ),
            ));
        }
        if !(1..=lambdas::config::MAX_ROTATION_TTL_DAYS).contains(&self.rotation_ttl_days) {
            return Err(invalid(
                "rotation_ttl_days",
                format!(
                    "{} is outside 1 to {}",
                    self.rotation_ttl_days,
                    lambdas::config::MAX_ROTATION_TTL_DAYS
                ),
            ));
        }
        let r = &self.rotation;
        let threshold_hours = u64::from(a.expiring_threshold_days) * 24;
        if let Some(hours) = r.deadline_hours
            && (hours == 0 || u64::from(hours) >= threshold_hours)
        {
            return Err(invalid(
                "rotation.deadline_hours",
                format!(
                    "{hours} must be at least 1 and less than audit.expiring_threshold_days in hours ({threshold_hours}), so that a rotation ends before the certificate expires"
                ),
            ));
        }
        if !(1..=10_000).contains(&r.sweep_max_rows) {
            return Err(invalid(
                "rotation.sweep_max_rows",
                format!("{} is outside 1 to 10000", r.sweep_max_rows),
            ));
        }
        let csr = &self.csr;
        let max_verifiable = rules::csr::MAX_VERIFIABLE_RSA_BITS;
        if !(2048..=max_verifiable).contains(&csr.min_rsa_bits) {
            return Err(invalid(
                "csr.min_rsa_bits",
                format!("{} is outside 2048 to {max_verifiable}", csr.min_rsa_bits),
            ));
        }
        if !(csr.min_rsa_bits..=max_verifiable).contains(&csr.max_rsa_bits) {
            return Err(invalid(
                "csr.max_rsa_bits",
                format!(
                    "{} is outside csr.min_rsa_bits ({}) to {max_verifiable}",
                    csr.max_rsa_bits, csr.min_rsa_bits
                ),
            ));
        }
        for id in &self.jitr.ca_certificate_ids {
            if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    "jitr.ca_certificate_ids",
                    format!("{id:?} is not a 64-hex-digit certificate id"),
                ));
            }
        }
        let jitr_ca = match &self.jitr.ca_certificate_pem_file {
            None => {
                if self.jitr.verification_certificate_pem_file.is_some() {
                    return Err(invalid(
                        "jitr.verification_certificate_pem_file",
                        "set without jitr.ca_certificate_pem_file".into(),
                    ));
                }
                None
            }
            Some(path) => {
                let ca = read_certificate("jitr.ca_certificate_pem_file", path)?;
                let verification = match &self.jitr.verification_certificate_pem_file {
                    Some(p) => Some(read_certificate(
                        "jitr.verification_certificate_pem_file",
                        p,
                    )?),
                    None => None,
                };
                Some((ca, verification))
            }
        };
        Ok(Validated {
            config: self,
            jitr_ca,
        })
    }
}

fn read_certificate(field: &'static str, path: &Path) -> Result<String, ConfigError> {
    let pem = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
        field,
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    x509_cert::Certificate::from_pem(pem.as_bytes()).map_err(|e| ConfigError::Invalid {
        field,
        reason: format!("{} is not a PEM X.509 certificate: {e}", path.display()),
    })?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validate().is_ok());
    }

    #[rstest]
    #[case::default("", 168)]
    #[case::short_threshold("[audit]\nexpiring_threshold_days = 3", 36)]
    #[case::one_day("[audit]\nexpiring_threshold_days = 1", 12)]
    #[case::explicit("[rotation]\ndeadline_hours = 24", 24)]
    fn the_rotation_deadline_defaults_to_a_week_or_half_the_threshold(
        #[case] toml: &str,
        #[case] hours: u32,
    ) {
        let c = Config::from_toml(toml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.rotation_deadline_hours(), hours);
        assert!(c.validate().is_ok());
    }

    #[rstest]
    #[case::threshold(
        "[audit]\nexpiring_threshold_days = 0",
        "audit.expiring_threshold_days"
    )]
    #[case::threshold_high(
        "[audit]\nexpiring_threshold_days = 4000",
        "audit.expiring_threshold_days"
    )]
    #[case::region("region = \"mars-north-1\"", "region")]
    #[case::weekly_without_day("[audit]\nfrequency = \"WEEKLY\"", "audit.day_of_week")]
    #[case::monthly_bad_day(
        "[audit]\nfrequency = \"MONTHLY\"\nday_of_month = \"32\"",
        "audit.day_of_month"
    )]
    #[case::daily_with_day("[audit]\nday_of_week = \"MON\"", "audit.frequency")]
    #[case::memory("[lambda]\nmemory_mb = 64", "lambda.memory_mb")]
    #[case::timeout("[lambda]\ntimeout_seconds = 901", "lambda.timeout_seconds")]
    #[case::retention("[lambda]\nlog_retention_days = 31", "lambda.log_retention_days")]
    #[case::stack_name("stack_name = \"1bad_name\"", "stack_name")]
    #[case::ca_id("[jitr]\nca_certificate_ids = [\"abc\"]", "jitr.ca_certificate_ids")]
    #[case::deadline_zero("[rotation]\ndeadline_hours = 0", "rotation.deadline_hours")]
    #[case::deadline_equal_threshold(
        "[audit]\nexpiring_threshold_days = 2\n[rotation]\ndeadline_hours = 48",
        "rotation.deadline_hours"
    )]
    #[case::deadline_past_threshold(
        "[audit]\nexpiring_threshold_days = 7\n[rotation]\ndeadline_hours = 168",
        "rotation.deadline_hours"
    )]
    #[case::sweep_rows("[rotation]\nsweep_max_rows = 0", "rotation.sweep_max_rows")]
    #[case::weak_rsa("[csr]\nmin_rsa_bits = 1024", "csr.min_rsa_bits")]
    #[case::rsa_range("[csr]\nmin_rsa_bits = 4096\nmax_rsa_bits = 3072", "csr.max_rsa_bits")]
    fn invalid_values_name_their_field(#[case] toml: &str, #[case] field: &str) {
        let err = Config::from_toml(toml).and_then(Config::validate).err();
        assert!(
            matches!(&err, Some(ConfigError::Invalid { field: f, .. }) if *f == field),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_fields_and_wrong_types_name_the_field() {
        let e = Config::from_toml("[audit]\nthreshold = 3")
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("threshold")),
            "{e:?}"
        );
        let e = Config::from_toml("[lambda]\nmemory_mb = \"big\"")
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("memory_mb")),
            "{e:?}"
        );
    }

    #[test]
    fn a_ca_pem_that_does_not_parse_is_rejected() {
        let dir = tempfile::tempdir().ok();
        let dir = dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default();
        let path = dir.join("ca.pem");
        assert!(
            std::fs::write(
                &path,
                "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"
            )
            .is_ok()
        );
        let mut c = Config::default();
        c.jitr.ca_certificate_pem_file = Some(path);
        let err = c.validate().err();
        assert!(
            matches!(
                err,
                Some(ConfigError::Invalid {
                    field: "jitr.ca_certificate_pem_file",
                    ..
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_generated_ca_pem_is_accepted() {
        let ca = rcgen::generate_simple_self_signed(vec!["fleetcert test ca".into()]).ok();
        let pem = ca.map(|c| c.cert.pem()).unwrap_or_default();
        let dir = tempfile::tempdir().ok();
        let path = dir
            .as_ref()
            .map(|d| d.path().join("ca.pem"))
            .unwrap_or_default();
        assert!(std::fs::write(&path, &pem).is_ok());
        let mut c = Config::default();
        c.jitr.ca_certificate_pem_file = Some(path);
        assert_eq!(
            c.validate().ok().and_then(|v| v.jitr_ca).map(|(ca, _)| ca),
            Some(pem)
        );
    }
}
