//! `rules`: fleetcert's pure protocol core.
//!
//! Architecture invariant: no I/O, no tokio, no AWS SDK. Everything here
//! builds for `wasm32-unknown-unknown`; the `wasm-bindgen` exports live in
//! the `wasm` module only.

pub mod campaign;
pub mod contracts;
pub mod csr;
pub mod device_policy;
pub mod functions;
pub mod iam;
pub mod issuer;
pub mod jitr;
pub mod js;
pub mod policy;
pub mod policy_check;
pub mod policy_copy;
pub mod rotation;
pub mod routes;
pub mod sql;
pub mod status;
pub mod topic;

#[cfg(target_arch = "wasm32")]
mod wasm;
