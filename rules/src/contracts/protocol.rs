//! The rotation protocol's messages (DESIGN.md, "The rotation protocol"),
//! what each topic rule hands its Lambda, and the work queue message.
//!
//! All of these are closed: an unknown field is an error, in serde
//! (`deny_unknown_fields`) and in the schema (`additionalProperties: false`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::aws::CheckName;
use super::fields::{
    CampaignId, CertificateId, CertificatePem, ClientId, CsrPem, ErrorText, RotationId, uint,
};
use super::json_object;

/// The key a device should generate for its new certificate, sent in
/// `csr_req`. These are the keys fleetcert's default CSR policy accepts
/// (AWS IoT also accepts larger RSA keys and P-521, which a configured
/// policy may allow, but fleetcert never asks for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 (secp256r1).
    #[serde(rename = "EC_P256")]
    EcP256,
    /// ECDSA on NIST P-384 (secp384r1).
    #[serde(rename = "EC_P384")]
    EcP384,
    /// RSA with a 2048-bit modulus.
    #[serde(rename = "RSA_2048")]
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    #[serde(rename = "RSA_3072")]
    Rsa3072,
}

impl KeyAlgorithm {
    /// The wire spelling, e.g. `"EC_P256"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcP256 => "EC_P256",
            Self::EcP384 => "EC_P384",
            Self::Rsa2048 => "RSA_2048",
            Self::Rsa3072 => "RSA_3072",
        }
    }
}

/// Step 2, `management/topic/{clientId}/csr_req`, cloud → device: asks the
/// device for a CSR. `{}` is valid (the original protocol's request);
/// fleetcert always sends `rotationId` and may send `keyAlgorithm` and
/// `deadline`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "CsrReq")]
pub struct CsrReq {
    /// The rotation this request belongs to; echo it in `csr_res`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_id: Option<RotationId>,
    /// The key to generate; absent means the device's own choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<KeyAlgorithm>,
    /// Answer before this time, in milliseconds since the Unix epoch.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "uint::deserialize_opt"
    )]
    #[schemars(schema_with = "uint::schema_opt")]
    pub deadline: Option<u64>,
}
json_object!(CsrReq);

/// Step 3, `management/topic/{clientId}/csr_res`, device → cloud: the CSR
/// for the new key. `{"CSR": "<PEM>"}` is the original protocol's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "CsrRes")]
pub struct CsrRes {
    /// The CSR in PEM form (the field is spelled `CSR`).
    #[serde(rename = "CSR")]
    pub csr: CsrPem,
    /// The `rotationId` of the `csr_req` being answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_id: Option<RotationId>,
}
json_object!(CsrRes);

/// Step 4, `management/topic/{clientId}/crt`, cloud → device: the new
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "Crt")]
pub struct Crt {
    /// The rotation this certificate belongs to.
    pub rotation_id: RotationId,
    /// The new certificate's AWS IoT id.
    pub certificate_id: CertificateId,
    /// The new certificate in PEM form.
    pub certificate_pem: CertificatePem,
}
json_object!(Crt);

/// Step 5a, `management/topic/{clientId}/crt_ack`, device → cloud, sent on
/// a connection made with the new certificate. `{}` is valid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "CrtAck")]
pub struct CrtAck {
    /// The rotation being acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_id: Option<RotationId>,
    /// The id of the certificate the device now uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<CertificateId>,
}
json_object!(CrtAck);

/// Step 5b, `management/topic/{clientId}/crt_err`, device → cloud, on the
/// old certificate: the rotation failed on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "CrtErr")]
pub struct CrtErr {
    /// What went wrong, for support staff (at most 1024 characters).
    pub error: ErrorText,
    /// The rotation that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_id: Option<RotationId>,
}
json_object!(CrtErr);

/// What the `csr_res` topic rule hands the CSR Lambda:
/// `SELECT clientid() as clientid, topic(3) as topicClientId, CSR,
/// rotationId FROM 'management/topic/+/csr_res' WHERE topic(3) =
/// clientid()`, i.e. a [`CsrRes`] with the connection's client id and the
/// topic's client id beside it. The payload's fields are selected by name,
/// never with `*`, so no payload key can stand in for a trusted field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", deny_unknown_fields)]
#[schemars(rename = "CsrResRuleEvent")]
pub struct CsrResRuleEvent {
    /// `clientid()`: the MQTT client id of the publishing connection.
    pub clientid: ClientId,
    /// `topic(3)`: the client id in the topic the message was published to.
    #[serde(rename = "topicClientId")]
    pub topic_client_id: ClientId,
    /// The device's CSR.
    #[serde(rename = "CSR")]
    pub csr: CsrPem,
    /// The `rotationId` the device echoed, if any.
    #[serde(
        rename = "rotationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub rotation_id: Option<RotationId>,
}
json_object!(CsrResRuleEvent);

/// What the `crt_ack` topic rule hands the commit Lambda:
/// `SELECT clientid() as clientid, principal() as principal, topic(3) as
/// topicClientId, rotationId, certificateId FROM
/// 'management/topic/+/crt_ack' WHERE topic(3) = clientid()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", deny_unknown_fields)]
#[schemars(rename = "CrtAckRuleEvent")]
pub struct CrtAckRuleEvent {
    /// `clientid()`: the MQTT client id of the publishing connection.
    pub clientid: ClientId,
    /// `principal()`: the id of the certificate the ack arrived on.
    pub principal: CertificateId,
    /// `topic(3)`: the client id in the topic.
    #[serde(rename = "topicClientId")]
    pub topic_client_id: ClientId,
    /// The rotation being acknowledged.
    #[serde(
        rename = "rotationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub rotation_id: Option<RotationId>,
    /// The certificate id the device says it now uses.
    #[serde(
        rename = "certificateId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate_id: Option<CertificateId>,
}
json_object!(CrtAckRuleEvent);

/// What the `crt_err` topic rule hands the error Lambda:
/// `SELECT clientid() as clientid, principal() as principal, topic(3) as
/// topicClientId, error, rotationId FROM 'management/topic/+/crt_err'
/// WHERE topic(3) = clientid()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", deny_unknown_fields)]
#[schemars(rename = "CrtErrRuleEvent")]
pub struct CrtErrRuleEvent {
    /// `clientid()`: the MQTT client id of the publishing connection.
    pub clientid: ClientId,
    /// `principal()`: the id of the certificate the error arrived on.
    pub principal: CertificateId,
    /// `topic(3)`: the client id in the topic.
    #[serde(rename = "topicClientId")]
    pub topic_client_id: ClientId,
    /// The device's error message.
    pub error: ErrorText,
    /// The rotation that failed.
    #[serde(
        rename = "rotationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub rotation_id: Option<RotationId>,
}
json_object!(CrtErrRuleEvent);

/// One certificate to rotate, queued by the audit fan-out Lambda for the
/// rotation starter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "RotationWork")]
pub struct RotationWork {
    /// The certificate to rotate (expiring, or past the age threshold).
    pub certificate_id: CertificateId,
    /// The Device Defender audit task that found it.
    pub task_id: String,
    /// The audit check that found it.
    pub check_name: CheckName,
    /// When the certificate expires, in milliseconds since the Unix epoch.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "uint::deserialize_opt"
    )]
    #[schemars(schema_with = "uint::schema_opt")]
    pub expiration_time_ms: Option<u64>,
    /// The certificate has already expired: it cannot connect, so it goes to
    /// support instead of getting a `csr_req`.
    pub past_expiration: bool,
    /// The campaign member this work releases (`rules::campaign`): the
    /// rotation id is the member's, and nothing starts while the campaign
    /// is not running. Absent: the audit's or `fleetcert rotate`'s own work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignMember>,
}
json_object!(RotationWork);

/// One member of a rotation campaign, released in a wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CampaignMember {
    /// The campaign.
    pub id: CampaignId,
    /// The member's index in the campaign (0-based).
    pub member: u32,
    /// How many times the member was released before (a resume that
    /// retries failed members releases them again with the next attempt).
    pub attempt: u32,
}
