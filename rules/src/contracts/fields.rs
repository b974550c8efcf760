//! Checked field types shared by the contracts.
//!
//! Each type checks its value while serde reads it (one pass, no regex at
//! run time) and renders the very same rule into the JSON Schema
//! (`pattern`, `maxLength`, `minimum`, `maximum`), so that a payload gets the
//! same verdict from `validate` and from the schema.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Largest PEM text accepted in a `CSR` or `certificatePem` field (16 KiB).
pub const MAX_PEM_BYTES: usize = 16 * 1024;

/// Largest `error` text accepted in a `crt_err` message, in characters.
pub const MAX_ERROR_CHARS: usize = 1024;

/// Largest integer accepted for times and counts: 2^53 - 1, the largest
/// integer a JavaScript (or any IEEE double) JSON reader holds exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a field value was refused; rendered into serde's error message.
#[derive(Debug)]
struct FieldError {
    what: &'static str,
    rule: &'static str,
    found: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}: {} (found {})",
            self.what, self.rule, self.found
        )
    }
}

/// A short excerpt of a refused value, so errors stay small.
fn excerpt(value: &str) -> String {
    const MAX: usize = 40;
    let chars = value.chars().count();
    if chars <= MAX {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head:?}… ({chars} characters)")
    }
}

/// Declares a checked string newtype: `$check` says whether a value is
/// acceptable, `$schema` is the JSON Schema that says the same.
macro_rules! checked_string {
    (
        $(#[$meta:meta])*
        $name:ident, what = $what:literal, rule = $rule:literal,
        check = $check:expr, schema = $schema:tt
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Checks `value` and wraps it.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidField> {
                let value = value.into();
                let check: fn(&str) -> bool = $check;
                if check(&value) {
                    Ok(Self(value))
                } else {
                    Err(InvalidField(FieldError { what: $what, rule: $rule, found: excerpt(&value) }.to_string()))
                }
            }

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The value as an owned `String`.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidField;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidField;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidField;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a {}: {}", $what, $rule)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        let check: fn(&str) -> bool = $check;
                        if check(v) {
                            Ok($name(v.to_owned()))
                        } else {
                            Err(E::custom(FieldError { what: $what, rule: $rule, found: excerpt(v) }))
                        }
                    }
                    fn visit_string<E: de::Error>(self, v: String) -> Result<$name, E> {
                        let check: fn(&str) -> bool = $check;
                        if check(&v) {
                            Ok($name(v))
                        } else {
                            Err(E::custom(FieldError { what: $what, rule: $rule, found: excerpt(&v) }))
                        }
                    }
                }
                d.deserialize_string(V)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

/// A value refused by one of the checked field types' constructors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidField(String);

fn is_certificate_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_campaign_id(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s != "active"
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_rotation_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_client_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'-')
}

/// Whether `s` is one PEM block with `label`, base64 lines inside, an
/// optional final line break, and at most [`MAX_PEM_BYTES`] bytes. Exactly
/// the JSON Schema pattern
/// `^-----BEGIN <label>-----\r?\n[A-Za-z0-9+/=\r\n]+-----END <label>-----(\r?\n)?$`
/// with `maxLength` [`MAX_PEM_BYTES`] (the pattern admits ASCII only, so
/// characters and bytes count the same).
fn is_pem(s: &str, label: &str) -> bool {
    if s.len() > MAX_PEM_BYTES {
        return false;
    }
    let Some(rest) = s
        .strip_prefix("-----BEGIN ")
        .and_then(|r| r.strip_prefix(label))
        .and_then(|r| r.strip_prefix("-----"))
    else {
        return false;
    };
    let Some(rest) = rest
        .strip_prefix("\r\n")
        .or_else(|| rest.strip_prefix('\n'))
    else {
        return false;
    };
    let rest = rest
        .strip_suffix("\r\n")
        .or_else(|| rest.strip_suffix('\n'))
        .unwrap_or(rest);
    let Some(body) = rest
        .strip_suffix("-----")
        .and_then(|r| r.strip_suffix(label))
        .and_then(|r| r.strip_suffix("-----END "))
    else {
        return false;
    };
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\r' | b'\n'))
}

fn is_csr_pem(s: &str) -> bool {
    is_pem(s, "CERTIFICATE REQUEST")
}

fn is_certificate_pem(s: &str) -> bool {
    is_pem(s, "CERTIFICATE")
}

fn is_error_text(s: &str) -> bool {
    // Cheap bound first: a UTF-8 character is at most 4 bytes.
    s.len() <= MAX_ERROR_CHARS
        || (s.len() <= 4 * MAX_ERROR_CHARS && s.chars().count() <= MAX_ERROR_CHARS)
}

fn is_millis_string(s: &str) -> bool {
    (1..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

checked_string! {
    /// An AWS IoT certificate id: 64 lowercase hexadecimal digits (the
    /// SHA-256 of the certificate's DER encoding).
    CertificateId, what = "certificate id", rule = "64 lowercase hexadecimal digits",
    check = is_certificate_id,
    schema = {
        "description": "AWS IoT certificate id: 64 lowercase hexadecimal digits",
        "type": "string",
        "pattern": "^[0-9a-f]{64}$"
    }
}

checked_string! {
    /// The id fleetcert gives one rotation: 1 to 64 of `A-Z a-z 0-9 _ -`.
    RotationId, what = "rotation id", rule = "1 to 64 characters of A-Z a-z 0-9 _ -",
    check = is_rotation_id,
    schema = {
        "description": "rotation id: 1 to 64 characters of A-Z a-z 0-9 _ -",
        "type": "string",
        "pattern": "^[A-Za-z0-9_-]{1,64}$"
    }
}

checked_string! {
    /// The id of a rotation campaign (`rules::campaign`): 1 to 32 of
    /// `A-Z a-z 0-9 _ -`, not `active` (the key of the active campaigns'
    /// list). Short enough that a member's rotation id
    /// (`c-<campaign>-<member>-<attempt>`) stays a [`RotationId`].
    CampaignId, what = "campaign id", rule = "1 to 32 characters of A-Z a-z 0-9 _ -, not \"active\"",
    check = is_campaign_id,
    schema = {
        "description": "campaign id: 1 to 32 characters of A-Z a-z 0-9 _ -, not \"active\"",
        "type": "string",
        "pattern": "^[A-Za-z0-9_-]{1,32}$"
    }
}

checked_string! {
    /// An MQTT client id, which in fleetcert is the thing name: 1 to 128 of
    /// `a-z A-Z 0-9 : _ -` (AWS IoT's thing name alphabet).
    ClientId, what = "client id / thing name", rule = "1 to 128 characters of a-z A-Z 0-9 : _ -",
    check = is_client_id,
    schema = {
        "description": "MQTT client id = thing name: 1 to 128 characters of a-z A-Z 0-9 : _ -",
        "type": "string",
        "pattern": "^[a-zA-Z0-9:_-]{1,128}$"
    }
}

checked_string! {
    /// A PKCS#10 certificate signing request in PEM form (one
    /// `CERTIFICATE REQUEST` block, at most 16 KiB). Only the shape is
    /// checked here; `rules::csr` parses and verifies it.
    CsrPem, what = "CSR", rule = "one PEM block \"-----BEGIN CERTIFICATE REQUEST-----\" ... \"-----END CERTIFICATE REQUEST-----\" of at most 16384 bytes",
    check = is_csr_pem,
    schema = {
        "description": "PKCS#10 CSR in PEM form: one CERTIFICATE REQUEST block, at most 16384 bytes",
        "type": "string",
        "maxLength": 16384,
        "pattern": "^-----BEGIN CERTIFICATE REQUEST-----\\r?\\n[A-Za-z0-9+/=\\r\\n]+-----END CERTIFICATE REQUEST-----(\\r?\\n)?$"
    }
}

checked_string! {
    /// An X.509 certificate in PEM form (one `CERTIFICATE` block, at most
    /// 16 KiB).
    CertificatePem, what = "certificate PEM", rule = "one PEM block \"-----BEGIN CERTIFICATE-----\" ... \"-----END CERTIFICATE-----\" of at most 16384 bytes",
    check = is_certificate_pem,
    schema = {
        "description": "X.509 certificate in PEM form: one CERTIFICATE block, at most 16384 bytes",
        "type": "string",
        "maxLength": 16384,
        "pattern": "^-----BEGIN CERTIFICATE-----\\r?\\n[A-Za-z0-9+/=\\r\\n]+-----END CERTIFICATE-----(\\r?\\n)?$"
    }
}

checked_string! {
    /// A device's error message: free text of at most 1024 characters.
    ErrorText, what = "error text", rule = "at most 1024 characters",
    check = is_error_text,
    schema = {
        "description": "free text, at most 1024 characters",
        "type": "string",
        "maxLength": 1024
    }
}

checked_string! {
    /// A time in milliseconds since the Unix epoch written as a decimal
    /// string, as AWS writes `additionalInfo.EXPIRATION_TIME`.
    MillisString, what = "millisecond time", rule = "1 to 19 decimal digits",
    check = is_millis_string,
    schema = {
        "description": "milliseconds since the Unix epoch, as a string of 1 to 19 decimal digits",
        "type": "string",
        "pattern": "^[0-9]{1,19}$"
    }
}

impl MillisString {
    /// The time in milliseconds since the Unix epoch.
    pub fn millis(&self) -> u64 {
        // 19 decimal digits always fit a u64; the fallback cannot be reached.
        self.0.parse().unwrap_or(u64::MAX)
    }
}

/// Serde and schemars helpers for non-negative integers (times in ms,
/// counts) up to [`MAX_SAFE_INTEGER`]. JSON Schema's `integer` admits `5.0`
/// and `5e3`, so this reader admits them too, and both refuse fractions,
/// negatives and anything above 2^53 - 1.
pub(crate) mod uint {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(UintVisitor)
    }

    pub(crate) fn deserialize_opt<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<u64>, D::Error> {
        d.deserialize_option(OptVisitor)
    }

    pub(crate) fn schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "minimum": 0, "maximum": MAX_SAFE_INTEGER })
    }

    pub(crate) fn schema_opt(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["integer", "null"], "minimum": 0, "maximum": MAX_SAFE_INTEGER })
    }

    struct UintVisitor;

    impl<'de> Visitor<'de> for UintVisitor {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a whole number from 0 to {MAX_SAFE_INTEGER}")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            if v <= MAX_SAFE_INTEGER {
                Ok(v)
            } else {
                Err(E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
            }
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
            if v.fract() == 0.0 && (0.0..=MAX_SAFE_INTEGER as f64).contains(&v) {
                Ok(v as u64)
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
    }

    struct OptVisitor;

    impl<'de> Visitor<'de> for OptVisitor {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "null or a whole number from 0 to {MAX_SAFE_INTEGER}")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const CSR_BODY: &str = "MIIBAzCBqgIBADAP\nMQ0wCwYDVQQDDAR0ZXN0\n";

    fn csr(body: &str) -> String {
        format!("-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n")
    }

    #[rstest]
    #[case::unix_line_ends(csr(CSR_BODY), true)]
    #[case::windows_line_ends(csr(CSR_BODY).replace('\n', "\r\n"), true)]
    #[case::no_final_newline(csr(CSR_BODY).trim_end().to_owned(), true)]
    #[case::two_final_newlines(format!("{}\n", csr(CSR_BODY)), false)]
    #[case::empty_body(csr(""), false)]
    #[case::certificate_label("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned(), false)]
    #[case::text_before(format!("x{}", csr(CSR_BODY)), false)]
    #[case::space_in_body(csr("AAAA AAAA\n"), false)]
    #[case::no_newline_after_begin("-----BEGIN CERTIFICATE REQUEST-----AAAA\n-----END CERTIFICATE REQUEST-----".to_owned(), false)]
    #[case::just_over_16k(csr(&"A".repeat(MAX_PEM_BYTES)), false)]
    fn csr_shape(#[case] pem: String, #[case] ok: bool) {
        assert_eq!(CsrPem::new(pem).is_ok(), ok);
    }

    #[rstest]
    #[case("a".repeat(64), true)]
    #[case("A".repeat(64), false)]
    #[case("a".repeat(63), false)]
    #[case("g".repeat(64), false)]
    fn certificate_ids(#[case] id: String, #[case] ok: bool) {
        assert_eq!(CertificateId::new(id).is_ok(), ok);
    }

    #[rstest]
    #[case("thing-1:a_b", true)]
    #[case("", false)]
    #[case("thing/1", false)]
    #[case("thing 1", false)]
    fn client_ids(#[case] id: &str, #[case] ok: bool) {
        assert_eq!(ClientId::new(id).is_ok(), ok);
    }

    #[test]
    fn error_text_counts_characters_not_bytes() {
        assert!(ErrorText::new("é".repeat(MAX_ERROR_CHARS)).is_ok());
        assert!(ErrorText::new("é".repeat(MAX_ERROR_CHARS + 1)).is_err());
    }

    #[test]
    fn refusal_names_the_rule_and_an_excerpt() {
        let err = RotationId::new("has space").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid rotation id: 1 to 64 characters of A-Z a-z 0-9 _ - (found \"has space\")"
        );
    }
}
