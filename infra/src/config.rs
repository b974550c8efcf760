//! The stack's typed configuration: defaults, a TOML file, then overrides
//! (CLI flags); [`Config::validate`] names the field of any invalid value.
//!
//! Every value that ends up in the template is checked against the range
//! AWS documents for it, with the source beside the check, so that a value
//! `cdk deploy` would fail on never leaves `cargo run`. Values that are
//! fleetcert's own (the rotation deadline, sweep size, row TTL, the largest
//! RSA key csr-issuer verifies) say so.

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
    /// Days before expiry at which a certificate is reported (AWS accepts
    /// 30 to 3652, [`EXPIRING_THRESHOLD_DAYS`]).
    pub expiring_threshold_days: u32,
    /// Days a certificate may be active before the certificate-age check
    /// (`DEVICE_CERTIFICATE_AGE_CHECK`) reports it and it rotates, whatever
    /// its expiry (AWS accepts 30 to 3652, [`AGE_THRESHOLD_DAYS`]); unset:
    /// the check is off (AWS's default).
    pub age_threshold_days: Option<u32>,
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
            age_threshold_days: None,
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
    /// Timeout in seconds (1 to 900) of every function but audit-fanout.
    pub timeout_seconds: u32,
    /// audit-fanout's timeout in seconds (1 to 900): one invocation queues
    /// every finding of an audit, a few thousand a second, once per audit.
    pub fanout_timeout_seconds: u32,
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
            fanout_timeout_seconds: 900,
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
    /// The IoT policy jitr-activator attaches, when it is not fleetcert's
    /// device policy: an existing customer policy's name. Required with
    /// `policies.device_policy = "none"` when JITR is configured.
    pub policy_name: Option<String>,
}

impl Default for Jitr {
    fn default() -> Self {
        Jitr {
            ca_certificate_pem_file: None,
            verification_certificate_pem_file: None,
            ca_certificate_ids: Vec::new(),
            create_thing: true,
            policy_name: None,
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
            sweep_max_rows: u32::try_from(rules::functions::DEFAULT_SWEEP_MAX_ROWS).unwrap_or(200),
        }
    }
}

/// Default of [`Alarms::failed_rotations_per_hour`].
pub const DEFAULT_FAILED_ROTATIONS_PER_HOUR: u32 = 10;

/// The range of [`Alarms::failed_rotations_per_hour`]: fleetcert's own
/// bounds (at least one, so that the alarm can fire; at most a rate no
/// fleet reaches under the API quotas, whose `CreateCertificateFromCsr`
/// 15/s is 54,000 rotations an hour).
pub const FAILED_ROTATIONS_PER_HOUR: std::ops::RangeInclusive<u32> = 1..=54_000;

/// The CloudWatch alarms of the stack.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alarms {
    /// Rotations that end FAILED or EXPIRED within one hour, at or above
    /// which the "rotations failing" alarm fires (default 10).
    pub failed_rotations_per_hour: u32,
}

impl Default for Alarms {
    fn default() -> Self {
        Alarms {
            failed_rotations_per_hour: DEFAULT_FAILED_ROTATIONS_PER_HOUR,
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

/// Whether the stack creates fleetcert's own device policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DevicePolicy {
    /// `DevicePolicy`, the least-privilege policy of `rules::policy` (the
    /// default): what JITR attaches unless `jitr.policy_name` is set.
    #[default]
    Fleetcert,
    /// None: the fleet's own policies already allow the management topics
    /// (`fleetcert check-policy` says whether they do).
    None,
}

/// Which IoT policies a rotation puts on the new certificate
/// (`rules::policy_copy`). IAM cannot restrict this (AWS authorizes
/// `iot:AttachPolicy` on the certificate only), so csr-issuer enforces it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policies {
    /// fleetcert's own device policy, or none.
    pub device_policy: DevicePolicy,
    /// The old certificate's policies that may be copied: `"*"` (every
    /// one, the default), names, or name prefixes ending in `*`. A
    /// rotation whose old certificate carries any other fails before a
    /// certificate is created, and support is told which.
    pub copy: Vec<String>,
    /// Policies attached to every new certificate besides those copied.
    pub add: Vec<String>,
}

impl Default for Policies {
    fn default() -> Self {
        Policies {
            device_policy: DevicePolicy::Fleetcert,
            copy: vec!["*".to_owned()],
            add: Vec::new(),
        }
    }
}

impl Policies {
    /// The copy rule, as csr-issuer reads it.
    ///
    /// # Errors
    /// The field and reason of an unusable entry.
    pub fn copy_rule(&self) -> Result<rules::policy_copy::PolicyCopy, ConfigError> {
        use rules::policy_copy::PolicyCopy;
        let invalid = |field: &'static str| {
            move |e: rules::policy_copy::PolicyCopyError| ConfigError::Invalid {
                field,
                reason: e.to_string(),
            }
        };
        PolicyCopy::new(&self.copy, &[] as &[&str]).map_err(invalid("policies.copy"))?;
        PolicyCopy::new(&["*"], &self.add).map_err(invalid("policies.add"))?;
        PolicyCopy::new(&self.copy, &self.add).map_err(invalid("policies.copy"))
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
    /// CloudWatch alarms.
    pub alarms: Alarms,
    /// fleetcert's device policy, and which policies rotations copy.
    pub policies: Policies,
    /// Where csr-issuer's new certificates come from.
    pub issuer: IssuerSection,
}

/// `[issuer] kind`: AWS IoT's CA or AWS Private CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IssuerKind {
    /// AWS IoT's CA: `CreateCertificateFromCsr` (the default, the
    /// original protocol).
    #[default]
    AwsIot,
    /// AWS Private CA (`acm-pca:IssueCertificate` on `ca_arn`), the
    /// certificate then registered in AWS IoT (`RegisterCertificate`; the
    /// CA must be registered there, ACTIVE).
    PrivateCa,
}

/// Where csr-issuer's new certificates come from (`[issuer]`). A fleet on
/// its own CA keeps it: with `private_ca`, the certificates come from the
/// AWS Private CA `ca_arn`, and the role may call that CA only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IssuerSection {
    /// `aws_iot` (the default) or `private_ca`.
    pub kind: IssuerKind,
    /// The certificate authority
    /// (`arn:<partition>:acm-pca:<region>:<account>:certificate-authority/<id>`);
    /// required with `private_ca`.
    pub ca_arn: Option<String>,
    /// ACM PCA's `SigningAlgorithm` matching the CA's key (e.g.
    /// `SHA256WITHECDSA`, `SHA256WITHRSA`); required with `private_ca`.
    pub signing_algorithm: Option<String>,
    /// Validity of each certificate in days (1 to 3650, fleetcert's own
    /// bound; ACM PCA refuses one that outlives the CA). Default 365.
    pub validity_days: u32,
    /// An ACM PCA template (`arn:<partition>:acm-pca:::template/<name>/V<n>`);
    /// default ACM PCA's `EndEntityCertificate/V1`. The role pins it
    /// (`acm-pca:TemplateArn`).
    pub template_arn: Option<String>,
}

impl Default for IssuerSection {
    fn default() -> Self {
        IssuerSection {
            kind: IssuerKind::AwsIot,
            ca_arn: None,
            signing_algorithm: None,
            validity_days: rules::issuer::DEFAULT_VALIDITY_DAYS,
            template_arn: None,
        }
    }
}

impl IssuerSection {
    /// The issuer, as `rules::functions` names it.
    pub fn kind(&self) -> rules::functions::Issuer {
        match self.kind {
            IssuerKind::AwsIot => rules::functions::Issuer::AwsIot,
            IssuerKind::PrivateCa => rules::functions::Issuer::PrivateCa,
        }
    }

    /// The Private CA settings (`None` with `aws_iot`).
    ///
    /// # Errors
    /// The `issuer.*` field ACM PCA would refuse, a required one missing,
    /// or a Private CA setting given with `aws_iot`.
    pub fn private_ca(&self) -> Result<Option<rules::issuer::PrivateCaSettings>, ConfigError> {
        let invalid = |field: &'static str, reason: String| ConfigError::Invalid { field, reason };
        if self.kind == IssuerKind::AwsIot {
            let set = [
                ("issuer.ca_arn", self.ca_arn.is_some()),
                ("issuer.signing_algorithm", self.signing_algorithm.is_some()),
                ("issuer.template_arn", self.template_arn.is_some()),
            ];
            if let Some((field, _)) = set.iter().find(|(_, is_set)| *is_set) {
                return Err(invalid(
                    field,
                    "is a Private CA setting; set issuer.kind = \"private_ca\" or remove it".into(),
                ));
            }
            return Ok(None);
        }
        let ca_arn = self.ca_arn.as_deref().ok_or_else(|| {
            invalid(
                "issuer.ca_arn",
                "required with kind = \"private_ca\"".into(),
            )
        })?;
        let algorithm = self.signing_algorithm.as_deref().ok_or_else(|| {
            invalid(
                "issuer.signing_algorithm",
                "required with kind = \"private_ca\"".into(),
            )
        })?;
        rules::issuer::PrivateCaSettings::new(
            ca_arn,
            algorithm,
            u64::from(self.validity_days),
            self.template_arn.as_deref(),
        )
        .map(Some)
        .map_err(|e| {
            let field = match e.field() {
                "ca_arn" => "issuer.ca_arn",
                "signing_algorithm" => "issuer.signing_algorithm",
                "validity_days" => "issuer.validity_days",
                _ => "issuer.template_arn",
            };
            invalid(field, e.to_string())
        })
    }
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
            rotation_ttl_days: rules::functions::DEFAULT_ROTATION_TTL_DAYS,
            alarms: Alarms::default(),
            policies: Policies::default(),
            issuer: IssuerSection::default(),
        }
    }
}

impl Config {
    /// The rotation deadline in hours: `rotation.deadline_hours`, or when
    /// unset the handlers' default (168, 7 days), or half the audit
    /// threshold when that is shorter.
    pub fn rotation_deadline_hours(&self) -> u32 {
        const DEFAULT_HOURS: i64 = rules::functions::DEFAULT_ROTATION_DEADLINE_MS / 3_600_000;
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

/// Device Defender's `DEVICE_CERTIFICATE_EXPIRING_CHECK` threshold,
/// `CERT_EXPIRATION_THRESHOLD_IN_DAYS`: "The certificate expiration check
/// threshold can be configured between 30 days (minimum) and 3652 days (10
/// years, maximum) with a default value of 30 days." (AWS IoT Device
/// Defender developer guide, "Device certificate expiring",
/// <https://docs.aws.amazon.com/iot-device-defender/latest/devguide/audit-chk-device-cert-approaching-expiration.html>).
/// The CloudFormation property is a string of 1 to 64 characters, so only
/// the API refuses a value outside this range, at deploy time.
pub const EXPIRING_THRESHOLD_DAYS: std::ops::RangeInclusive<u32> = 30..=3652;

/// Device Defender's `DEVICE_CERTIFICATE_AGE_CHECK` threshold,
/// `CERT_AGE_THRESHOLD_IN_DAYS`: "The certificate age check threshold can
/// be configured between 30 days (minimum) and 3652 days (10 years,
/// maximum) with a default value of 365 days." (AWS IoT Device Defender
/// developer guide, "Device certificate age check",
/// <https://docs.aws.amazon.com/iot-device-defender/latest/devguide/device-certificate-age-check.html>).
pub const AGE_THRESHOLD_DAYS: std::ops::RangeInclusive<u32> = 30..=3652;

/// Lambda function memory: "128 MB to 10,240 MB, in 1-MB increments" (AWS
/// Lambda quotas, <https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>).
/// The vendored `AWS::Lambda::Function` schema allows `MemorySize` up to
/// 32768, a bound only Lambda Managed Instances reach.
pub const LAMBDA_MEMORY_MB: std::ops::RangeInclusive<u32> = 128..=10_240;

/// Lambda function timeout: "900 seconds (15 minutes)" at most (AWS Lambda
/// quotas, as above), at least 1 (`Timeout` minimum in the vendored
/// `AWS::Lambda::Function` schema, whose maximum of 5400 applies to Lambda
/// Managed Instances only). The rotation queue's visibility timeout is six
/// times this, at most 5,400 s, inside SQS's 0 to 43,200.
pub const LAMBDA_TIMEOUT_SECONDS: std::ops::RangeInclusive<u32> = 1..=900;

/// CloudWatch Logs retention: the `RetentionInDays` enum of the vendored
/// `AWS::Logs::LogGroup` schema (`infra/cfn-schemas/aws-logs-loggroup.json`,
/// the same list as the `PutRetentionPolicy` API reference,
/// <https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html>).
pub const LOG_RETENTION_DAYS: &[u32] = &[
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
    /// The AWS Private CA csr-issuer uses, when `issuer.kind = "private_ca"`.
    pub private_ca: Option<rules::issuer::PrivateCaSettings>,
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
        // CloudFormation `CreateStack`: "A stack name can contain only
        // alphanumeric characters (case-sensitive) and hyphens. It must start
        // with an alphabetical character and can't be longer than 128
        // characters." (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html)
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
        // regions with both AWS IoT Core and Device Defender (AWS General
        // Reference, the IoT Core and Device Defender endpoint tables)
        if let Some(r) = &self.region
            && !REGIONS.contains(&r.as_str())
        {
            return Err(invalid("region", format!("unknown region {r:?}")));
        }
        let a = &self.audit;
        if !EXPIRING_THRESHOLD_DAYS.contains(&a.expiring_threshold_days) {
            return Err(invalid(
                "audit.expiring_threshold_days",
                format!(
                    "{} is outside {} to {} (Device Defender's certificate expiration check threshold)",
                    a.expiring_threshold_days,
                    EXPIRING_THRESHOLD_DAYS.start(),
                    EXPIRING_THRESHOLD_DAYS.end()
                ),
            ));
        }
        if let Some(days) = a.age_threshold_days
            && !AGE_THRESHOLD_DAYS.contains(&days)
        {
            return Err(invalid(
                "audit.age_threshold_days",
                format!(
                    "{days} is outside {} to {} (Device Defender's certificate age check threshold)",
                    AGE_THRESHOLD_DAYS.start(),
                    AGE_THRESHOLD_DAYS.end()
                ),
            ));
        }
        // `CreateScheduledAudit` / the vendored `AWS::IoT::ScheduledAudit`
        // schema: `Frequency` DAILY | WEEKLY | BIWEEKLY | MONTHLY (the enum
        // above); `DayOfWeek` SUN..SAT, "required if the frequency parameter
        // is set to WEEKLY or BIWEEKLY"; `DayOfMonth` "1 through 31 or LAST",
        // "required if the frequency parameter is set to MONTHLY"
        // (https://docs.aws.amazon.com/iot/latest/apireference/API_CreateScheduledAudit.html)
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
        if !LAMBDA_MEMORY_MB.contains(&l.memory_mb) {
            return Err(invalid(
                "lambda.memory_mb",
                format!(
                    "{} is outside {} to {} (Lambda's memory quota)",
                    l.memory_mb,
                    LAMBDA_MEMORY_MB.start(),
                    LAMBDA_MEMORY_MB.end()
                ),
            ));
        }
        for (field, value) in [
            ("lambda.timeout_seconds", l.timeout_seconds),
            ("lambda.fanout_timeout_seconds", l.fanout_timeout_seconds),
        ] {
            if !LAMBDA_TIMEOUT_SECONDS.contains(&value) {
                return Err(invalid(
                    field,
                    format!(
                        "{value} is outside {} to {} (Lambda's timeout quota)",
                        LAMBDA_TIMEOUT_SECONDS.start(),
                        LAMBDA_TIMEOUT_SECONDS.end()
                    ),
                ));
            }
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
        self.policies.copy_rule()?;
        let private_ca = self.issuer.private_ca()?;
        if let Some(name) = &self.jitr.policy_name
            && !rules::policy_copy::is_policy_name(name)
        {
            return Err(invalid(
                "jitr.policy_name",
                format!("{name:?} is not an IoT policy name ([A-Za-z0-9_+=,.@-], 1 to 128)"),
            ));
        }
        let jitr_configured =
            self.jitr.ca_certificate_pem_file.is_some() || !self.jitr.ca_certificate_ids.is_empty();
        if jitr_configured
            && self.policies.device_policy == DevicePolicy::None
            && self.jitr.policy_name.is_none()
        {
            return Err(invalid(
                "jitr.policy_name",
                "JITR is configured and policies.device_policy is \"none\": name the policy JITR attaches to the devices it activates".into(),
            ));
        }
        // fleetcert's own bound: DynamoDB TTL takes any epoch time
        if !(1..=rules::functions::MAX_ROTATION_TTL_DAYS).contains(&self.rotation_ttl_days) {
            return Err(invalid(
                "rotation_ttl_days",
                format!(
                    "{} is outside 1 to {}",
                    self.rotation_ttl_days,
                    rules::functions::MAX_ROTATION_TTL_DAYS
                ),
            ));
        }
        if !FAILED_ROTATIONS_PER_HOUR.contains(&self.alarms.failed_rotations_per_hour) {
            return Err(invalid(
                "alarms.failed_rotations_per_hour",
                format!(
                    "{} is outside {} to {}",
                    self.alarms.failed_rotations_per_hour,
                    FAILED_ROTATIONS_PER_HOUR.start(),
                    FAILED_ROTATIONS_PER_HOUR.end()
                ),
            ));
        }
        // fleetcert's own: a rotation must end before the certificate the
        // audit reported expires
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
        // fleetcert's own: one sweep's work within one Lambda invocation
        if !(1..=10_000).contains(&r.sweep_max_rows) {
            return Err(invalid(
                "rotation.sweep_max_rows",
                format!("{} is outside 1 to 10000", r.sweep_max_rows),
            ));
        }
        // `CreateCertificateFromCsr` accepts RSA keys of at least 2048 bits
        // (AWS IoT Core developer guide, "X.509 client certificates";
        // DESIGN.md's documented shapes); the upper bound is fleetcert's:
        // the largest modulus csr-issuer verifies
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
        // a certificate id: "Length Constraints: Fixed length of 64. Pattern:
        // (0x)?[a-fA-F0-9]+" (AWS IoT API reference, CACertificate)
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
            private_ca,
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
    #[case::shortest_threshold("[audit]\nexpiring_threshold_days = 30", 168)]
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
    #[case::no_failed_rotations_alarm(
        "[alarms]\nfailed_rotations_per_hour = 0",
        "alarms.failed_rotations_per_hour"
    )]
    #[case::failed_rotations_above_quota(
        "[alarms]\nfailed_rotations_per_hour = 54001",
        "alarms.failed_rotations_per_hour"
    )]
    #[case::stack_name("stack_name = \"1bad_name\"", "stack_name")]
    #[case::ca_id("[jitr]\nca_certificate_ids = [\"abc\"]", "jitr.ca_certificate_ids")]
    #[case::deadline_zero("[rotation]\ndeadline_hours = 0", "rotation.deadline_hours")]
    #[case::deadline_equal_threshold(
        "[audit]\nexpiring_threshold_days = 30\n[rotation]\ndeadline_hours = 720",
        "rotation.deadline_hours"
    )]
    #[case::deadline_past_threshold(
        "[audit]\nexpiring_threshold_days = 30\n[rotation]\ndeadline_hours = 1000",
        "rotation.deadline_hours"
    )]
    #[case::sweep_rows("[rotation]\nsweep_max_rows = 0", "rotation.sweep_max_rows")]
    #[case::weak_rsa("[csr]\nmin_rsa_bits = 1024", "csr.min_rsa_bits")]
    #[case::rsa_range("[csr]\nmin_rsa_bits = 4096\nmax_rsa_bits = 3072", "csr.max_rsa_bits")]
    #[case::age_low("[audit]\nage_threshold_days = 29", "audit.age_threshold_days")]
    #[case::age_high("[audit]\nage_threshold_days = 3653", "audit.age_threshold_days")]
    #[case::copy_pattern("[policies]\ncopy = [\"Cust*omer\"]", "policies.copy")]
    #[case::issuer_ca_missing(
        "[issuer]\nkind = \"private_ca\"\nsigning_algorithm = \"SHA256WITHECDSA\"",
        "issuer.ca_arn"
    )]
    #[case::issuer_ca_shape(
        "[issuer]\nkind = \"private_ca\"\nca_arn = \"arn:aws:acm:eu-west-1:123456789012:certificate/x\"\nsigning_algorithm = \"SHA256WITHECDSA\"",
        "issuer.ca_arn"
    )]
    #[case::issuer_algorithm(
        "[issuer]\nkind = \"private_ca\"\nca_arn = \"arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/x\"\nsigning_algorithm = \"SHA1WITHRSA\"",
        "issuer.signing_algorithm"
    )]
    #[case::issuer_validity(
        "[issuer]\nkind = \"private_ca\"\nca_arn = \"arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/x\"\nsigning_algorithm = \"SHA256WITHRSA\"\nvalidity_days = 0",
        "issuer.validity_days"
    )]
    #[case::issuer_template(
        "[issuer]\nkind = \"private_ca\"\nca_arn = \"arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/x\"\nsigning_algorithm = \"SHA256WITHRSA\"\ntemplate_arn = \"EndEntity\"",
        "issuer.template_arn"
    )]
    #[case::issuer_pca_setting_without_pca(
        "[issuer]\nca_arn = \"arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/x\"",
        "issuer.ca_arn"
    )]
    #[case::copy_empty("[policies]\ncopy = []", "policies.copy")]
    #[case::add_name("[policies]\nadd = [\"has space\"]", "policies.add")]
    #[case::jitr_policy_name("[jitr]\npolicy_name = \"a/b\"", "jitr.policy_name")]
    #[case::jitr_without_a_policy(
        "[policies]\ndevice_policy = \"none\"\n[jitr]\nca_certificate_ids = [\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"]",
        "jitr.policy_name"
    )]
    fn invalid_values_name_their_field(#[case] toml: &str, #[case] field: &str) {
        let err = Config::from_toml(toml).and_then(Config::validate).err();
        assert!(
            matches!(&err, Some(ConfigError::Invalid { field: f, .. }) if *f == field),
            "{err:?}"
        );
    }

    /// Each documented bound, from both sides: the value at the bound is
    /// accepted, one past it names the field.
    #[rstest]
    #[case::threshold_below_aws_minimum(
        "[audit]\nexpiring_threshold_days = 29",
        Some("audit.expiring_threshold_days")
    )]
    #[case::threshold_aws_minimum("[audit]\nexpiring_threshold_days = 30", None)]
    #[case::threshold_aws_maximum("[audit]\nexpiring_threshold_days = 3652", None)]
    #[case::threshold_above_aws_maximum(
        "[audit]\nexpiring_threshold_days = 3653",
        Some("audit.expiring_threshold_days")
    )]
    #[case::threshold_of_three_days(
        "[audit]\nexpiring_threshold_days = 3",
        Some("audit.expiring_threshold_days")
    )]
    #[case::memory_below("[lambda]\nmemory_mb = 127", Some("lambda.memory_mb"))]
    #[case::memory_minimum("[lambda]\nmemory_mb = 128", None)]
    #[case::memory_maximum("[lambda]\nmemory_mb = 10240", None)]
    #[case::memory_above("[lambda]\nmemory_mb = 10241", Some("lambda.memory_mb"))]
    #[case::timeout_zero("[lambda]\ntimeout_seconds = 0", Some("lambda.timeout_seconds"))]
    #[case::timeout_minimum("[lambda]\ntimeout_seconds = 1", None)]
    #[case::timeout_maximum("[lambda]\ntimeout_seconds = 900", None)]
    #[case::timeout_above("[lambda]\ntimeout_seconds = 901", Some("lambda.timeout_seconds"))]
    #[case::fanout_timeout_zero(
        "[lambda]\nfanout_timeout_seconds = 0",
        Some("lambda.fanout_timeout_seconds")
    )]
    #[case::fanout_timeout_above(
        "[lambda]\nfanout_timeout_seconds = 901",
        Some("lambda.fanout_timeout_seconds")
    )]
    #[case::retention_shortest("[lambda]\nlog_retention_days = 1", None)]
    #[case::retention_longest("[lambda]\nlog_retention_days = 3653", None)]
    #[case::retention_not_listed(
        "[lambda]\nlog_retention_days = 2",
        Some("lambda.log_retention_days")
    )]
    #[case::retention_ten_years(
        "[lambda]\nlog_retention_days = 3650",
        Some("lambda.log_retention_days")
    )]
    #[case::weekly_sun("[audit]\nfrequency = \"WEEKLY\"\nday_of_week = \"SUN\"", None)]
    #[case::biweekly_lower_case(
        "[audit]\nfrequency = \"BIWEEKLY\"\nday_of_week = \"mon\"",
        Some("audit.day_of_week")
    )]
    #[case::monthly_first("[audit]\nfrequency = \"MONTHLY\"\nday_of_month = \"1\"", None)]
    #[case::monthly_31("[audit]\nfrequency = \"MONTHLY\"\nday_of_month = \"31\"", None)]
    #[case::monthly_last("[audit]\nfrequency = \"MONTHLY\"\nday_of_month = \"LAST\"", None)]
    #[case::monthly_zero(
        "[audit]\nfrequency = \"MONTHLY\"\nday_of_month = \"0\"",
        Some("audit.day_of_month")
    )]
    #[case::monthly_without_day("[audit]\nfrequency = \"MONTHLY\"", Some("audit.day_of_month"))]
    #[case::weekly_with_day_of_month(
        "[audit]\nfrequency = \"WEEKLY\"\nday_of_week = \"SUN\"\nday_of_month = \"1\"",
        Some("audit.day_of_month")
    )]
    #[case::rsa_2047("[csr]\nmin_rsa_bits = 2047", Some("csr.min_rsa_bits"))]
    #[case::rsa_2048("[csr]\nmin_rsa_bits = 2048", None)]
    #[case::rsa_max_verifiable("[csr]\nmax_rsa_bits = 8192", None)]
    #[case::rsa_over_verifiable("[csr]\nmax_rsa_bits = 8193", Some("csr.max_rsa_bits"))]
    #[case::stack_name_128(&format!("stack_name = \"S{}\"", "a".repeat(127)), None)]
    #[case::stack_name_129(&format!("stack_name = \"S{}\"", "a".repeat(128)), Some("stack_name"))]
    #[case::stack_name_underscore("stack_name = \"Fleet_cert\"", Some("stack_name"))]
    #[case::ca_id_64_hex(&format!("[jitr]\nca_certificate_ids = [\"{}\"]", "a".repeat(64)), None)]
    #[case::ca_id_63_hex(&format!("[jitr]\nca_certificate_ids = [\"{}\"]", "a".repeat(63)), Some("jitr.ca_certificate_ids"))]
    #[case::ttl_zero("rotation_ttl_days = 0", Some("rotation_ttl_days"))]
    #[case::ttl_maximum("rotation_ttl_days = 3650", None)]
    #[case::ttl_above("rotation_ttl_days = 3651", Some("rotation_ttl_days"))]
    #[case::sweep_rows_maximum("[rotation]\nsweep_max_rows = 10000", None)]
    #[case::sweep_rows_above("[rotation]\nsweep_max_rows = 10001", Some("rotation.sweep_max_rows"))]
    #[case::deadline_just_under_threshold("[rotation]\ndeadline_hours = 719", None)]
    fn documented_bounds_are_enforced(#[case] toml: &str, #[case] field: Option<&str>) {
        let result = Config::from_toml(toml).and_then(Config::validate);
        match field {
            None => assert!(result.is_ok(), "{toml}: {result:?}"),
            Some(field) => assert!(
                matches!(&result, Err(ConfigError::Invalid { field: f, .. }) if *f == field),
                "{toml}: {result:?}"
            ),
        }
    }

    #[test]
    fn a_threshold_aws_refuses_says_what_aws_accepts() {
        let err = Config::from_toml("[audit]\nexpiring_threshold_days = 3")
            .and_then(Config::validate)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "invalid audit.expiring_threshold_days: 3 is outside 30 to 3652 (Device Defender's certificate expiration check threshold)"
            )
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
