//! `lambdas`: fleetcert's Lambda handlers, written against ports.
//!
//! Architecture invariant: the handlers (`handlers`) see only the traits in
//! [`ports`]; the AWS SDK adapters sit behind the `aws` feature, and the
//! in-memory adapters (`memory`) need no AWS SDK, so the emulator and the
//! tests run the same handlers.

#[cfg(feature = "aws")]
pub mod aws;
pub mod config;
pub mod events;
pub mod handlers;
#[cfg(feature = "limits")]
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod ports;
#[cfg(feature = "aws")]
pub mod runtime;
