//! Just-in-time registration decisions: pure, no I/O.
//!
//! The `jitr-activator` Lambda describes the certificate and its CA, then
//! asks [`decide`]. The registration event repeats every time a
//! PENDING_ACTIVATION certificate tries to connect, so the decision is a
//! function of the inputs only: the same inputs always give the same answer,
//! and an already ACTIVE certificate gives [`JitrDecision::AlreadyActive`]
//! (ensure the attachments, change no status).

use serde::{Deserialize, Serialize};

use crate::status::CertificateStatus;

/// Longest thing name AWS IoT accepts.
pub const MAX_THING_NAME_LEN: usize = 128;

/// What the handler knows when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitrInput<'a> {
    /// `certificateId` from the registration event.
    pub certificate_id: &'a str,
    /// `caCertificateId` from the registration event.
    pub ca_certificate_id: &'a str,
    /// `DescribeCertificate` of the certificate.
    pub certificate: CertificateDescription<'a>,
    /// `DescribeCACertificate` of the event's CA.
    pub ca: CaDescription<'a>,
    /// When the event is handled (ms since the Unix epoch).
    pub now_ms: i64,
}

/// The fields of `DescribeCertificate` the decision uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateDescription<'a> {
    /// The certificate's id.
    pub certificate_id: &'a str,
    /// Its status: `PENDING_ACTIVATION`, `ACTIVE`, `INACTIVE`, `REVOKED`, ...
    pub status: &'a CertificateStatus,
    /// The CA that signed it, if AWS reports one.
    pub ca_certificate_id: Option<&'a str>,
    /// Start of validity (ms since the Unix epoch).
    pub not_before_ms: i64,
    /// End of validity, inclusive (ms since the Unix epoch).
    pub not_after_ms: i64,
    /// The subject's common name, if it has one.
    pub subject_cn: Option<&'a str>,
}

/// The fields of `DescribeCACertificate` the decision uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaDescription<'a> {
    /// The CA certificate's id.
    pub ca_certificate_id: &'a str,
    /// Status as AWS returns it: `ACTIVE` or `INACTIVE`.
    pub status: &'a str,
    /// `autoRegistrationStatus` as AWS returns it: `ENABLE` or `DISABLE`.
    pub auto_registration_status: &'a str,
}

/// Where the thing name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ThingNameSource {
    /// The certificate's subject common name is the thing name.
    #[default]
    SubjectCn,
}

/// Deployment configuration of the JITR activator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JitrConfig {
    /// CA certificate ids whose certificates may be activated; empty means
    /// any CA registered with AWS IoT.
    pub allowed_ca_ids: Vec<String>,
    /// Where the thing name comes from.
    pub thing_name_from: ThingNameSource,
    /// Create the thing when it does not exist.
    pub create_thing: bool,
    /// The device policy to attach.
    pub policy_name: String,
}

impl Default for JitrConfig {
    fn default() -> Self {
        Self {
            allowed_ca_ids: Vec::new(),
            thing_name_from: ThingNameSource::SubjectCn,
            create_thing: true,
            policy_name: "fleetcert-device".to_owned(),
        }
    }
}

/// What the activator does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "decision",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum JitrDecision {
    /// Attach the policy and the thing (creating it when asked), then set ACTIVE.
    Activate {
        /// The thing to attach.
        thing_name: String,
        /// Create the thing if it does not exist.
        create_thing: bool,
        /// The policy to attach.
        policy_name: String,
    },
    /// A repeat for a certificate already ACTIVE: ensure the same attachments
    /// (all idempotent), change no status.
    AlreadyActive {
        /// The thing to attach.
        thing_name: String,
        /// Create the thing if it does not exist.
        create_thing: bool,
        /// The policy to attach.
        policy_name: String,
    },
    /// Do not activate; the activator sets the certificate REVOKED (unless it
    /// is already) and reports the reason.
    Reject {
        /// Why.
        reason: JitrRejection,
    },
}

/// Why a thing name is not valid for AWS IoT (`[a-zA-Z0-9:_-]+`, at most 128).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ThingNameError {
    /// The name is empty.
    #[error("thing name is empty")]
    Empty,
    /// The name is longer than 128 characters.
    #[error("thing name has {len} characters, more than {MAX_THING_NAME_LEN}")]
    TooLong {
        /// Its length in characters.
        len: usize,
    },
    /// The name contains a character outside `[a-zA-Z0-9:_-]`.
    #[error("thing name has {character:?} at position {position}, outside [a-zA-Z0-9:_-]")]
    InvalidCharacter {
        /// The first offending character.
        character: char,
        /// Its index in characters.
        position: usize,
    },
}

/// Checks a thing name against AWS IoT's rules.
pub fn validate_thing_name(name: &str) -> Result<(), ThingNameError> {
    if name.is_empty() {
        return Err(ThingNameError::Empty);
    }
    if let Some((position, character)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-')))
    {
        return Err(ThingNameError::InvalidCharacter {
            character,
            position,
        });
    }
    if name.len() > MAX_THING_NAME_LEN {
        return Err(ThingNameError::TooLong { len: name.len() });
    }
    Ok(())
}

/// Why a registered certificate is not activated.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum JitrRejection {
    /// The description is of another certificate than the event's.
    #[error("event is for certificate {event}, but the description is of {described}")]
    CertificateMismatch {
        /// `certificateId` in the event.
        event: String,
        /// `certificateId` in the description.
        described: String,
    },
    /// The event's CA is not the certificate's CA (or not the CA described).
    #[error("event names ca {event}, but the certificate was issued by {actual}")]
    CaMismatch {
        /// `caCertificateId` in the event.
        event: String,
        /// The CA of the certificate (or of the CA description); `none` if unknown.
        actual: String,
    },
    /// The CA is not in the configured allow-list.
    #[error("ca {ca_certificate_id} is not in the allowed list")]
    CaNotAllowed {
        /// The CA.
        ca_certificate_id: String,
    },
    /// The CA is not ACTIVE.
    #[error("ca {ca_certificate_id} is {status}, not ACTIVE")]
    CaNotActive {
        /// The CA.
        ca_certificate_id: String,
        /// Its status as AWS returned it.
        status: String,
    },
    /// Auto-registration is turned off for the CA: onboarding from it is stopped.
    #[error("ca {ca_certificate_id} has auto-registration {status}, not ENABLE")]
    AutoRegistrationDisabled {
        /// The CA.
        ca_certificate_id: String,
        /// `autoRegistrationStatus` as AWS returned it.
        status: String,
    },
    /// The certificate is past its validity.
    #[error("certificate expired at {not_after_ms}, now is {now_ms}")]
    Expired {
        /// End of validity (ms).
        not_after_ms: i64,
        /// Now (ms).
        now_ms: i64,
    },
    /// The certificate is not valid yet.
    #[error("certificate is not valid before {not_before_ms}, now is {now_ms}")]
    NotYetValid {
        /// Start of validity (ms).
        not_before_ms: i64,
        /// Now (ms).
        now_ms: i64,
    },
    /// The certificate's subject has no common name to take the thing name from.
    #[error("certificate subject has no common name to name the thing")]
    MissingSubjectCn,
    /// The subject CN is not a valid thing name.
    #[error("subject common name {subject_cn:?} is not a valid thing name: {error}")]
    BadThingName {
        /// The subject CN.
        subject_cn: String,
        /// What is wrong with it.
        error: ThingNameError,
    },
    /// The certificate was revoked.
    #[error("certificate is REVOKED")]
    Revoked,
    /// The certificate was deactivated by an operator; it is not reactivated.
    #[error("certificate is INACTIVE: an operator deactivated it")]
    Inactive,
    /// A status JITR does not activate from (e.g. `PENDING_TRANSFER`).
    #[error("certificate status {status} is not one jitr activates from")]
    UnexpectedStatus {
        /// The status as AWS returned it.
        status: String,
    },
    /// The configuration names no policy.
    #[error("jitr configuration has no policy name")]
    PolicyNameMissing,
}

impl JitrRejection {
    /// A stable snake_case code for log lines and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::CertificateMismatch { .. } => "certificate_mismatch",
            Self::CaMismatch { .. } => "ca_mismatch",
            Self::CaNotAllowed { .. } => "ca_not_allowed",
            Self::CaNotActive { .. } => "ca_not_active",
            Self::AutoRegistrationDisabled { .. } => "auto_registration_disabled",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::MissingSubjectCn => "missing_subject_cn",
            Self::BadThingName { .. } => "bad_thing_name",
            Self::Revoked => "revoked",
            Self::Inactive => "inactive",
            Self::UnexpectedStatus { .. } => "unexpected_status",
            Self::PolicyNameMissing => "policy_name_missing",
        }
    }
}

/// Decides what to do with a registered certificate. Checks, in order: the
/// description matches the event, the CA (same CA, allowed, ACTIVE,
/// auto-registration on), the configuration, the certificate's status,
/// validity, and the thing name.
pub fn decide(input: &JitrInput<'_>, config: &JitrConfig) -> JitrDecision {
    match check(input, config) {
        Ok((thing_name, active)) => {
            let thing_name = thing_name.to_owned();
            let create_thing = config.create_thing;
            let policy_name = config.policy_name.clone();
            if active {
                JitrDecision::AlreadyActive {
                    thing_name,
                    create_thing,
                    policy_name,
                }
            } else {
                JitrDecision::Activate {
                    thing_name,
                    create_thing,
                    policy_name,
                }
            }
        }
        Err(reason) => JitrDecision::Reject { reason },
    }
}

fn check<'a>(input: &JitrInput<'a>, config: &JitrConfig) -> Result<(&'a str, bool), JitrRejection> {
    let cert = &input.certificate;
    let ca = &input.ca;
    let event_ca = input.ca_certificate_id;
    if cert.certificate_id != input.certificate_id {
        return Err(JitrRejection::CertificateMismatch {
            event: input.certificate_id.to_owned(),
            described: cert.certificate_id.to_owned(),
        });
    }
    for actual in [cert.ca_certificate_id, Some(ca.ca_certificate_id)] {
        if actual != Some(event_ca) {
            return Err(JitrRejection::CaMismatch {
                event: event_ca.to_owned(),
                actual: actual.unwrap_or("none").to_owned(),
            });
        }
    }
    if !config.allowed_ca_ids.is_empty() && !config.allowed_ca_ids.iter().any(|id| id == event_ca) {
        return Err(JitrRejection::CaNotAllowed {
            ca_certificate_id: event_ca.to_owned(),
        });
    }
    if ca.status != "ACTIVE" {
        return Err(JitrRejection::CaNotActive {
            ca_certificate_id: event_ca.to_owned(),
            status: ca.status.to_owned(),
        });
    }
    if ca.auto_registration_status != "ENABLE" {
        return Err(JitrRejection::AutoRegistrationDisabled {
            ca_certificate_id: event_ca.to_owned(),
            status: ca.auto_registration_status.to_owned(),
        });
    }
    if config.policy_name.is_empty() {
        return Err(JitrRejection::PolicyNameMissing);
    }
    let active = match cert.status {
        CertificateStatus::PendingActivation => false,
        CertificateStatus::Active => true,
        CertificateStatus::Revoked => return Err(JitrRejection::Revoked),
        CertificateStatus::Inactive => return Err(JitrRejection::Inactive),
        other => {
            return Err(JitrRejection::UnexpectedStatus {
                status: other.as_str().to_owned(),
            });
        }
    };
    if input.now_ms < cert.not_before_ms {
        return Err(JitrRejection::NotYetValid {
            not_before_ms: cert.not_before_ms,
            now_ms: input.now_ms,
        });
    }
    if input.now_ms > cert.not_after_ms {
        return Err(JitrRejection::Expired {
            not_after_ms: cert.not_after_ms,
            now_ms: input.now_ms,
        });
    }
    let thing_name = match config.thing_name_from {
        ThingNameSource::SubjectCn => cert.subject_cn.ok_or(JitrRejection::MissingSubjectCn)?,
    };
    validate_thing_name(thing_name).map_err(|error| JitrRejection::BadThingName {
        subject_cn: thing_name.to_owned(),
        error,
    })?;
    Ok((thing_name, active))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn input() -> JitrInput<'static> {
        JitrInput {
            certificate_id: "cert-1",
            ca_certificate_id: "ca-1",
            certificate: CertificateDescription {
                certificate_id: "cert-1",
                status: &CertificateStatus::PendingActivation,
                ca_certificate_id: Some("ca-1"),
                not_before_ms: NOW - 1_000,
                not_after_ms: NOW + 1_000,
                subject_cn: Some("sensor-42"),
            },
            ca: CaDescription {
                ca_certificate_id: "ca-1",
                status: "ACTIVE",
                auto_registration_status: "ENABLE",
            },
            now_ms: NOW,
        }
    }

    fn rejection(input: &JitrInput<'_>, config: &JitrConfig) -> JitrRejection {
        match decide(input, config) {
            JitrDecision::Reject { reason } => reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_pending_certificate_from_an_active_ca_is_activated() {
        let config = JitrConfig {
            create_thing: false,
            policy_name: "devices".into(),
            ..JitrConfig::default()
        };
        assert_eq!(
            decide(&input(), &config),
            JitrDecision::Activate {
                thing_name: "sensor-42".into(),
                create_thing: false,
                policy_name: "devices".into(),
            }
        );
    }

    #[test]
    fn a_repeated_event_for_an_active_certificate_only_ensures_attachments() {
        let mut i = input();
        i.certificate.status = &CertificateStatus::Active;
        assert_eq!(
            decide(&i, &JitrConfig::default()),
            JitrDecision::AlreadyActive {
                thing_name: "sensor-42".into(),
                create_thing: true,
                policy_name: "fleetcert-device".into(),
            }
        );
    }

    #[test]
    fn an_allowed_ca_is_activated_and_another_is_not() {
        let config = JitrConfig {
            allowed_ca_ids: vec!["ca-0".into(), "ca-1".into()],
            ..JitrConfig::default()
        };
        assert!(matches!(
            decide(&input(), &config),
            JitrDecision::Activate { .. }
        ));
        let config = JitrConfig {
            allowed_ca_ids: vec!["ca-0".into()],
            ..JitrConfig::default()
        };
        assert_eq!(
            rejection(&input(), &config),
            JitrRejection::CaNotAllowed {
                ca_certificate_id: "ca-1".into()
            }
        );
    }

    #[test]
    fn validity_bounds_are_inclusive() {
        let mut i = input();
        i.now_ms = i.certificate.not_after_ms;
        assert!(matches!(
            decide(&i, &JitrConfig::default()),
            JitrDecision::Activate { .. }
        ));
        i.now_ms = i.certificate.not_before_ms;
        assert!(matches!(
            decide(&i, &JitrConfig::default()),
            JitrDecision::Activate { .. }
        ));
    }

    type In = JitrInput<'static>;
    type Edit = fn(&mut In, &mut JitrConfig);

    #[rstest]
    #[case::description_of_another_certificate(|i: &mut In, _: &mut JitrConfig| i.certificate.certificate_id = "cert-2", "certificate_mismatch")]
    #[case::event_ca_is_not_the_certificates_ca(|i: &mut In, _: &mut JitrConfig| i.certificate.ca_certificate_id = Some("ca-2"), "ca_mismatch")]
    #[case::certificate_without_ca(|i: &mut In, _: &mut JitrConfig| i.certificate.ca_certificate_id = None, "ca_mismatch")]
    #[case::ca_description_of_another_ca(|i: &mut In, _: &mut JitrConfig| i.ca.ca_certificate_id = "ca-2", "ca_mismatch")]
    #[case::ca_not_allowed(|_: &mut In, c: &mut JitrConfig| c.allowed_ca_ids = vec!["ca-9".into()], "ca_not_allowed")]
    #[case::ca_inactive(|i: &mut In, _: &mut JitrConfig| i.ca.status = "INACTIVE", "ca_not_active")]
    #[case::auto_registration_off(|i: &mut In, _: &mut JitrConfig| i.ca.auto_registration_status = "DISABLE", "auto_registration_disabled")]
    #[case::no_policy(|_: &mut In, c: &mut JitrConfig| c.policy_name = String::new(), "policy_name_missing")]
    #[case::revoked(|i: &mut In, _: &mut JitrConfig| i.certificate.status = &CertificateStatus::Revoked, "revoked")]
    #[case::inactive(|i: &mut In, _: &mut JitrConfig| i.certificate.status = &CertificateStatus::Inactive, "inactive")]
    #[case::pending_transfer(|i: &mut In, _: &mut JitrConfig| i.certificate.status = &CertificateStatus::PendingTransfer, "unexpected_status")]
    #[case::expired(|i: &mut In, _: &mut JitrConfig| i.now_ms = i.certificate.not_after_ms + 1, "expired")]
    #[case::not_yet_valid(|i: &mut In, _: &mut JitrConfig| i.now_ms = i.certificate.not_before_ms - 1, "not_yet_valid")]
    #[case::no_cn(|i: &mut In, _: &mut JitrConfig| i.certificate.subject_cn = None, "missing_subject_cn")]
    #[case::cn_with_space(|i: &mut In, _: &mut JitrConfig| i.certificate.subject_cn = Some("sensor 42"), "bad_thing_name")]
    #[case::cn_with_slash(|i: &mut In, _: &mut JitrConfig| i.certificate.subject_cn = Some("a/b"), "bad_thing_name")]
    #[case::empty_cn(|i: &mut In, _: &mut JitrConfig| i.certificate.subject_cn = Some(""), "bad_thing_name")]
    fn rejected(#[case] edit: Edit, #[case] kind: &str) {
        let mut i = input();
        let mut config = JitrConfig::default();
        edit(&mut i, &mut config);
        let reason = rejection(&i, &config);
        assert_eq!(reason.kind(), kind, "{reason}");
    }

    #[test]
    fn an_inactive_ca_is_rejected_even_for_an_active_certificate() {
        let mut i = input();
        i.certificate.status = &CertificateStatus::Active;
        i.ca.status = "INACTIVE";
        insta::assert_snapshot!(
            rejection(&i, &JitrConfig::default()).to_string(),
            @"ca ca-1 is INACTIVE, not ACTIVE"
        );
    }

    #[rstest]
    #[case("sensor-42", Ok(()))]
    #[case("a:b_c-D9", Ok(()))]
    #[case("", Err(ThingNameError::Empty))]
    #[case("é", Err(ThingNameError::InvalidCharacter { character: 'é', position: 0 }))]
    #[case("ab.c", Err(ThingNameError::InvalidCharacter { character: '.', position: 2 }))]
    fn thing_names(#[case] name: &str, #[case] expected: Result<(), ThingNameError>) {
        assert_eq!(validate_thing_name(name), expected);
    }

    #[test]
    fn thing_names_are_at_most_128_characters() {
        assert_eq!(validate_thing_name(&"a".repeat(128)), Ok(()));
        assert_eq!(
            validate_thing_name(&"a".repeat(129)),
            Err(ThingNameError::TooLong { len: 129 })
        );
    }

    #[test]
    fn config_defaults_and_camel_case() {
        let config: JitrConfig =
            serde_json::from_str(r#"{"allowedCaIds":["ca-1"],"policyName":"p"}"#).unwrap();
        assert_eq!(config.allowed_ca_ids, ["ca-1"]);
        assert_eq!(config.thing_name_from, ThingNameSource::SubjectCn);
        assert!(config.create_thing);
        assert_eq!(config.policy_name, "p");
        let json = serde_json::to_value(JitrConfig::default()).unwrap();
        // Keys sorted: serde_json may keep insertion order (`preserve_order`).
        insta::with_settings!({ sort_maps => true }, {
            insta::assert_json_snapshot!(json, @r#"
            {
              "allowedCaIds": [],
              "createThing": true,
              "policyName": "fleetcert-device",
              "thingNameFrom": "subjectCn"
            }
            "#);
        });
    }
}
