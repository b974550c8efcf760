//! Which IoT policies a rotation puts on the new certificate: the old
//! certificate's policies that the platform team allows to be copied
//! (every one, fleetcert's first behaviour, or an allow-list of names and
//! name prefixes), plus the policies it asks to add.
//!
//! IAM cannot enforce this: AWS authorizes `iot:AttachPolicy` on the target
//! certificate (or thing group) only, never on the policy
//! (`rules/data/aws-iam.json`), so a role that may attach one policy to a
//! certificate may attach any. csr-issuer decides with [`PolicyCopy::plan`]
//! before it creates a certificate, and attaches only what the plan names.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

/// The most patterns an allow-list (or names an add list) holds: each is
/// one comma-separated entry of a Lambda environment variable, whose
/// variables together stay under Lambda's 4 KB.
pub const MAX_ENTRIES: usize = 32;

/// An IoT policy name as `CreatePolicy` accepts it: 1 to 128 characters of
/// `[\w+=,.@-]` (AWS IoT API reference, `CreatePolicy`, `policyName`).
pub fn is_policy_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

/// One entry of an allow-list: `*` (every policy), a name, or a prefix
/// ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub enum PolicyPattern {
    /// `*`: every policy.
    Any,
    /// Exactly this name.
    Name(String),
    /// Every name starting with this (written `prefix*`).
    Prefix(String),
}

impl PolicyPattern {
    /// Parses `*`, `name` or `prefix*`.
    ///
    /// # Errors
    /// [`PolicyCopyError::Pattern`] for anything else (a `*` not at the end,
    /// a character IoT policy names cannot hold, an empty entry).
    pub fn parse(s: &str) -> Result<Self, PolicyCopyError> {
        let bad = || PolicyCopyError::Pattern(s.to_owned());
        if s == "*" {
            return Ok(Self::Any);
        }
        match s.strip_suffix('*') {
            Some(prefix) if is_policy_name(prefix) => Ok(Self::Prefix(prefix.to_owned())),
            Some(_) => Err(bad()),
            None if is_policy_name(s) => Ok(Self::Name(s.to_owned())),
            None => Err(bad()),
        }
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Name(n) => n == name,
            Self::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

impl fmt::Display for PolicyPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Name(n) => f.write_str(n),
            Self::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

impl From<PolicyPattern> for String {
    fn from(p: PolicyPattern) -> Self {
        p.to_string()
    }
}

/// A copy rule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyCopyError {
    /// An allow-list entry that is neither `*`, a policy name nor `prefix*`.
    #[error(
        "{0:?} is not *, an IoT policy name ([A-Za-z0-9_+=,.@-], 1 to 128) or such a name followed by *"
    )]
    Pattern(String),
    /// A policy to add whose name IoT would refuse.
    #[error("{0:?} is not an IoT policy name ([A-Za-z0-9_+=,.@-], 1 to 128)")]
    Name(String),
    /// An empty allow-list: no rotation could ever copy anything.
    #[error("the allow-list is empty: write \"*\" to copy every policy")]
    Empty,
    /// More entries than [`MAX_ENTRIES`].
    #[error("{0} entries, at most {MAX_ENTRIES}")]
    TooMany(usize),
}

/// The policies of the old certificate the allow-list refuses: the
/// rotation fails before any certificate is created, and support is told
/// which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the old certificate carries {} outside the allow-list ({}): {}",
    if .refused.len() == 1 { "a policy" } else { "policies" },
    .allow_list,
    .refused.join(", ")
)]
pub struct PoliciesRefused {
    /// The refused policy names, sorted.
    pub refused: Vec<String>,
    /// The allow-list, as configured (comma-separated).
    pub allow_list: String,
}

/// Which policies move to the new certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyCopy {
    /// The allow-list (`*` alone: every policy).
    pub allow: Vec<PolicyPattern>,
    /// Policies attached to every new certificate besides those copied.
    pub add: Vec<String>,
}

impl Default for PolicyCopy {
    /// Every policy of the old certificate, nothing added.
    fn default() -> Self {
        Self {
            allow: vec![PolicyPattern::Any],
            add: Vec::new(),
        }
    }
}

impl PolicyCopy {
    /// Builds a rule from allow-list entries and names to add.
    ///
    /// # Errors
    /// A [`PolicyCopyError`] for the first unusable entry.
    pub fn new<A: AsRef<str>, B: AsRef<str>>(
        allow: &[A],
        add: &[B],
    ) -> Result<Self, PolicyCopyError> {
        if allow.is_empty() {
            return Err(PolicyCopyError::Empty);
        }
        for n in [allow.len(), add.len()] {
            if n > MAX_ENTRIES {
                return Err(PolicyCopyError::TooMany(n));
            }
        }
        let allow = allow
            .iter()
            .map(|p| PolicyPattern::parse(p.as_ref()))
            .collect::<Result<BTreeSet<_>, _>>()?
            .into_iter()
            .collect();
        let add = add
            .iter()
            .map(|n| {
                let n = n.as_ref();
                if is_policy_name(n) {
                    Ok(n.to_owned())
                } else {
                    Err(PolicyCopyError::Name(n.to_owned()))
                }
            })
            .collect::<Result<BTreeSet<_>, _>>()?
            .into_iter()
            .collect();
        Ok(Self { allow, add })
    }

    /// Parses the comma-separated forms the handlers read from their
    /// environment (`COPY_POLICIES`, `ADD_POLICIES`); blank entries are
    /// skipped.
    ///
    /// # Errors
    /// As [`PolicyCopy::new`].
    pub fn from_lists(allow: &str, add: &str) -> Result<Self, PolicyCopyError> {
        let split = |s: &str| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect()
        };
        Self::new(&split(allow), &split(add))
    }

    /// The allow-list, comma-separated (the `COPY_POLICIES` value).
    pub fn allow_list(&self) -> String {
        self.allow
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether every policy is copied (so no policy can refuse a rotation
    /// and csr-issuer need not list them before it creates a certificate).
    pub fn copies_all(&self) -> bool {
        self.allow.contains(&PolicyPattern::Any)
    }

    /// Whether `name` may be copied.
    pub fn allows(&self, name: &str) -> bool {
        self.allow.iter().any(|p| p.matches(name))
    }

    /// The policies to attach to the new certificate, sorted and unique,
    /// given the old certificate's; or the old ones the allow-list refuses.
    ///
    /// # Errors
    /// [`PoliciesRefused`] naming every refused policy.
    pub fn plan(&self, old_policies: &[String]) -> Result<Vec<String>, PoliciesRefused> {
        let refused: BTreeSet<&String> = old_policies.iter().filter(|p| !self.allows(p)).collect();
        if !refused.is_empty() {
            return Err(PoliciesRefused {
                refused: refused.into_iter().cloned().collect(),
                allow_list: self.allow_list(),
            });
        }
        Ok(self.attachable(old_policies))
    }

    /// The old policies the allow-list accepts, plus those to add, sorted
    /// and unique: what is attached even when some are refused (never a
    /// refused one).
    pub fn attachable(&self, old_policies: &[String]) -> Vec<String> {
        old_policies
            .iter()
            .filter(|p| self.allows(p))
            .chain(&self.add)
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_default_copies_every_policy_and_adds_none() {
        let c = PolicyCopy::default();
        assert!(c.copies_all());
        assert_eq!(c.plan(&names(&["b", "a", "b"])), Ok(names(&["a", "b"])));
        assert_eq!(c.allow_list(), "*");
    }

    #[test]
    fn names_and_prefixes_are_allowed_and_the_rest_refused_by_name() {
        let c = PolicyCopy::from_lists("CustomerDevice, legacy-*", "fleetcert-extra").unwrap();
        assert!(!c.copies_all());
        assert_eq!(
            c.plan(&names(&["legacy-v2", "CustomerDevice"])),
            Ok(names(&["CustomerDevice", "fleetcert-extra", "legacy-v2"]))
        );
        let refused = c
            .plan(&names(&["CustomerDevice", "Admin", "CustomerDeviceX"]))
            .unwrap_err();
        assert_eq!(refused.refused, names(&["Admin", "CustomerDeviceX"]));
        assert_eq!(
            refused.to_string(),
            "the old certificate carries policies outside the allow-list (CustomerDevice,legacy-*): Admin, CustomerDeviceX"
        );
        assert_eq!(
            c.attachable(&names(&["Admin", "legacy-1"])),
            names(&["fleetcert-extra", "legacy-1"])
        );
    }

    #[test]
    fn unusable_entries_are_named() {
        assert_eq!(
            PolicyCopy::from_lists("a*b", ""),
            Err(PolicyCopyError::Pattern("a*b".into()))
        );
        assert_eq!(
            PolicyCopy::from_lists("ok", "bad name"),
            Err(PolicyCopyError::Name("bad name".into()))
        );
        assert_eq!(
            PolicyCopy::from_lists(" , ", ""),
            Err(PolicyCopyError::Empty)
        );
        let many = vec!["p"; MAX_ENTRIES + 1];
        assert_eq!(
            PolicyCopy::new(&many, &[] as &[&str]),
            Err(PolicyCopyError::TooMany(MAX_ENTRIES + 1))
        );
        assert!(PolicyPattern::parse(&"x".repeat(129)).is_err());
        assert!(PolicyPattern::parse(&format!("{}*", "x".repeat(128))).is_ok());
    }
}
