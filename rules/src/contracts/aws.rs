//! AWS shapes fleetcert reads (DESIGN.md, "Documented AWS shapes").
//!
//! These are open: AWS may add fields, so unknown fields are accepted (and
//! dropped) by serde and allowed by the schema.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::fields::{CertificateId, MillisString, uint};
use super::{Contract, ContractError, json_object};

/// Declares an open string enum: known values as variants, anything else
/// kept verbatim in `Other`.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )+ }
        description = $desc:literal
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value fleetcert does not know, kept as AWS sent it.
            Other(String),
        }

        impl $name {
            /// The wire spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )+
                    Self::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $( $wire => Self::$variant, )+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = Cow::<'de, str>::deserialize(d)?;
                Ok(Self::from(s.as_ref()))
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "description": $desc,
                    "type": "string",
                    "examples": [$($wire),+]
                })
            }
        }
    };
}

open_enum! {
    /// A Device Defender audit check name.
    CheckName {
        /// The certificate-expiry check as most documentation spells it.
        DeviceCertificateExpiring = "DEVICE_CERTIFICATE_EXPIRING_CHECK",
        /// The certificate-expiry check as some documentation spells it.
        DeviceCertApproachingExpiration = "DEVICE_CERT_APPROACHING_EXPIRATION_CHECK",
        /// The certificate-age check: a certificate active for at least
        /// its threshold (30 to 3652 days, AWS IoT Device Defender guide,
        /// "Device certificate age check").
        DeviceCertificateAge = "DEVICE_CERTIFICATE_AGE_CHECK",
    }
    description = "Device Defender audit check name; the device certificate expiry check is spelled two ways in AWS documentation, both accepted; the age check starts rotations too; other checks pass through"
}

impl CheckName {
    /// Whether this is the device certificate expiry check, in either
    /// spelling.
    pub fn is_certificate_expiring(&self) -> bool {
        matches!(
            self,
            Self::DeviceCertificateExpiring | Self::DeviceCertApproachingExpiration
        )
    }

    /// Whether this check's findings start rotations: the expiry check
    /// (either spelling) or the age check.
    pub fn starts_rotations(&self) -> bool {
        self.is_certificate_expiring() || *self == Self::DeviceCertificateAge
    }
}

open_enum! {
    /// Why an audit finding is non-compliant.
    ReasonCode {
        /// The certificate expires soon.
        CertificateApproachingExpiration = "CERTIFICATE_APPROACHING_EXPIRATION",
        /// The certificate has expired.
        CertificatePastExpiration = "CERTIFICATE_PAST_EXPIRATION",
        /// The certificate has been active for at least the age check's
        /// threshold.
        CertificatePastAgeThreshold = "CERTIFICATE_PAST_AGE_THRESHOLD",
    }
    description = "reasonForNonComplianceCode of an audit finding"
}

/// The Lambda event SNS delivers: `Records[].Sns.Message` is a JSON string
/// holding the published message (for fleetcert, an
/// [`AuditNotification`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[schemars(rename = "SnsEvent")]
pub struct SnsEvent {
    /// The delivered messages (SNS delivers one per invocation).
    #[serde(rename = "Records")]
    pub records: Vec<SnsRecord>,
}
json_object!(SnsEvent);

/// One record of an [`SnsEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[schemars(rename = "SnsRecord")]
pub struct SnsRecord {
    /// `aws:sns`.
    #[serde(
        rename = "EventSource",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub event_source: Option<String>,
    /// The SNS message.
    #[serde(rename = "Sns")]
    pub sns: SnsMessage,
}
json_object!(SnsRecord);

/// The `Sns` object of an [`SnsRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "PascalCase")]
#[schemars(rename = "SnsMessage")]
pub struct SnsMessage {
    /// The SNS message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The topic the message was published to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_arn: Option<String>,
    /// The message as published: a JSON document in a string.
    pub message: String,
}
json_object!(SnsMessage);

impl SnsRecord {
    /// Validates the record's message as an [`AuditNotification`]; errors
    /// are those of [`super::validate`] on the message text.
    pub fn audit_notification(&self) -> Result<AuditNotification, ContractError> {
        super::parse(Contract::AuditNotification, self.sns.message.as_bytes())
    }
}

/// The Device Defender audit notification published to SNS when an audit
/// task ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "camelCase")]
#[schemars(rename = "AuditNotification")]
pub struct AuditNotification {
    /// The AWS account.
    pub account_id: String,
    /// The audit task id (for `ListAuditFindings`).
    pub task_id: String,
    /// e.g. `COMPLETED`, `FAILED`, `CANCELED`.
    pub task_status: String,
    /// `SCHEDULED_AUDIT_TASK` or `ON_DEMAND_AUDIT_TASK`.
    pub task_type: String,
    /// The scheduled audit's name (absent for on-demand audits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_audit_name: Option<String>,
    /// Checks that failed to run.
    #[serde(deserialize_with = "uint::deserialize")]
    #[schemars(schema_with = "uint::schema")]
    pub failed_checks_count: u64,
    /// Checks that were canceled.
    #[serde(deserialize_with = "uint::deserialize")]
    #[schemars(schema_with = "uint::schema")]
    pub canceled_checks_count: u64,
    /// Checks that found non-compliant resources.
    #[serde(deserialize_with = "uint::deserialize")]
    #[schemars(schema_with = "uint::schema")]
    pub non_compliant_checks_count: u64,
    /// Checks that found none.
    #[serde(deserialize_with = "uint::deserialize")]
    #[schemars(schema_with = "uint::schema")]
    pub compliant_checks_count: u64,
    /// All checks of the task.
    #[serde(deserialize_with = "uint::deserialize")]
    #[schemars(schema_with = "uint::schema")]
    pub total_checks_count: u64,
    /// When the task started, in milliseconds since the Unix epoch.
    #[serde(deserialize_with = "uint::deserialize")]
    #[schemars(schema_with = "uint::schema")]
    pub task_start_time: u64,
    /// One entry per check run.
    pub audit_details: Vec<AuditDetail>,
}
json_object!(AuditNotification);

impl AuditNotification {
    /// The certificate expiry check's entry (either spelling), if the task
    /// ran it.
    pub fn expiring_check(&self) -> Option<&AuditDetail> {
        self.audit_details
            .iter()
            .find(|d| d.check_name.is_certificate_expiring())
    }

    /// Whether a check that starts rotations (expiry or age) found
    /// non-compliant certificates, i.e. whether there is rotation work to
    /// fan out.
    pub fn has_rotation_work(&self) -> bool {
        self.audit_details
            .iter()
            .any(|d| d.check_name.starts_rotations() && d.non_compliant_resources_count > 0)
    }
}

/// One check's result in an [`AuditNotification`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "camelCase")]
#[schemars(rename = "AuditDetail")]
pub struct AuditDetail {
    /// The check.
    pub check_name: CheckName,
    /// e.g. `COMPLETED_COMPLIANT`, `COMPLETED_NON_COMPLIANT`, `FAILED`.
    pub check_run_status: String,
    /// Resources the check found non-compliant.
    #[serde(deserialize_with = "uint::deserialize")]
    #[schemars(schema_with = "uint::schema")]
    pub non_compliant_resources_count: u64,
    /// Resources the check looked at.
    #[serde(deserialize_with = "uint::deserialize")]
    #[schemars(schema_with = "uint::schema")]
    pub total_resources_count: u64,
    /// Why the check failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The error code, if the check failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}
json_object!(AuditDetail);

/// The fields fleetcert uses of one `ListAuditFindings` finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "camelCase")]
#[schemars(rename = "AuditFinding")]
pub struct AuditFinding {
    /// The finding id.
    pub finding_id: String,
    /// The audit task that produced it.
    pub task_id: String,
    /// The check that produced it.
    pub check_name: CheckName,
    /// The resource found non-compliant.
    pub non_compliant_resource: NonCompliantResource,
    /// Why it is non-compliant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_for_non_compliance_code: Option<ReasonCode>,
    /// `CRITICAL`, `HIGH`, `MEDIUM` or `LOW`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}
json_object!(AuditFinding);

impl AuditFinding {
    /// The non-compliant device certificate, if the resource is one.
    pub fn device_certificate_id(&self) -> Option<&CertificateId> {
        self.non_compliant_resource
            .resource_identifier
            .device_certificate_id
            .as_ref()
    }

    /// `additionalInfo.EXPIRATION_TIME` in milliseconds since the Unix epoch.
    pub fn expiration_time_ms(&self) -> Option<u64> {
        let info = self.non_compliant_resource.additional_info.as_ref()?;
        info.expiration_time.as_ref().map(MillisString::millis)
    }

    /// Whether the certificate has already expired (reason code
    /// `CERTIFICATE_PAST_EXPIRATION`): it cannot connect any more.
    pub fn is_past_expiration(&self) -> bool {
        self.reason_for_non_compliance_code == Some(ReasonCode::CertificatePastExpiration)
    }
}

/// `nonCompliantResource` of an [`AuditFinding`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "camelCase")]
#[schemars(rename = "NonCompliantResource")]
pub struct NonCompliantResource {
    /// e.g. `DEVICE_CERTIFICATE`.
    pub resource_type: String,
    /// Which resource.
    pub resource_identifier: ResourceIdentifier,
    /// Check-specific details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_info: Option<AdditionalInfo>,
}
json_object!(NonCompliantResource);

/// `resourceIdentifier` of a [`NonCompliantResource`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "camelCase")]
#[schemars(rename = "ResourceIdentifier")]
pub struct ResourceIdentifier {
    /// The device certificate, for device certificate checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_certificate_id: Option<CertificateId>,
}
json_object!(ResourceIdentifier);

/// `additionalInfo` of a [`NonCompliantResource`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[schemars(rename = "AdditionalInfo")]
pub struct AdditionalInfo {
    /// When the certificate expires: milliseconds since the Unix epoch, as a
    /// string.
    #[serde(
        rename = "EXPIRATION_TIME",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub expiration_time: Option<MillisString>,
}
json_object!(AdditionalInfo);

/// The event AWS IoT publishes on
/// `$aws/events/certificates/registered/<caCertificateId>` when a
/// certificate signed by a registered CA is auto-registered, and again each
/// time a `PENDING_ACTIVATION` certificate tries to connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "camelCase")]
#[schemars(rename = "JitrRegistrationEvent")]
pub struct JitrRegistrationEvent {
    /// The registered device certificate.
    pub certificate_id: CertificateId,
    /// The CA that signed it.
    pub ca_certificate_id: CertificateId,
    /// When the event was published, in milliseconds since the Unix epoch.
    #[serde(deserialize_with = "uint::deserialize")]
    #[schemars(schema_with = "uint::schema")]
    pub timestamp: u64,
    /// `PENDING_ACTIVATION` for auto-registered certificates.
    pub certificate_status: String,
    /// The AWS account.
    pub aws_account_id: String,
    /// When the certificate was registered, in milliseconds since the Unix
    /// epoch (may be absent or null).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "uint::deserialize_opt"
    )]
    #[schemars(schema_with = "uint::schema_opt")]
    pub certificate_registration_timestamp: Option<u64>,
}
json_object!(JitrRegistrationEvent);
