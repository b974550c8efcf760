//! A certificate's status as AWS IoT names it: one type for the registry
//! ports of `lambdas`, the emulator's registry and the JITR decision.

use std::fmt;

/// A certificate status as AWS IoT names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertificateStatus {
    /// `ACTIVE`: may connect.
    Active,
    /// `INACTIVE`.
    Inactive,
    /// `REVOKED`.
    Revoked,
    /// `PENDING_TRANSFER`.
    PendingTransfer,
    /// `REGISTER_INACTIVE`.
    RegisterInactive,
    /// `PENDING_ACTIVATION`: JITR auto-registered, not yet activated.
    PendingActivation,
    /// A status fleetcert does not know, as AWS sent it.
    Other(String),
}

impl CertificateStatus {
    /// The AWS spelling, e.g. `PENDING_ACTIVATION`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
            Self::Revoked => "REVOKED",
            Self::PendingTransfer => "PENDING_TRANSFER",
            Self::RegisterInactive => "REGISTER_INACTIVE",
            Self::PendingActivation => "PENDING_ACTIVATION",
            Self::Other(s) => s,
        }
    }
}

impl From<&str> for CertificateStatus {
    fn from(s: &str) -> Self {
        match s {
            "ACTIVE" => Self::Active,
            "INACTIVE" => Self::Inactive,
            "REVOKED" => Self::Revoked,
            "PENDING_TRANSFER" => Self::PendingTransfer,
            "REGISTER_INACTIVE" => Self::RegisterInactive,
            "PENDING_ACTIVATION" => Self::PendingActivation,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for CertificateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
