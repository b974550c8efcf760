//! `test-support`: the fixtures fleetcert's tests share, one of each.
//!
//! [`TestRng`] is a seeded RNG for throw-away RSA keys (the `rsa` crate
//! needs one, and a test should not wait on the OS for it); [`rsa_key`]
//! and [`rsa_keypair`] are the RSA test keys made with it, once per
//! process; [`TestCa`] is a CA (rcgen) that signs device certificates;
//! [`Moto`] a local AWS API for the SDK adapters' and `fleetcert ca`'s
//! tests. No
//! workspace crate depends on this one except as a dev-dependency, and
//! `harness` (whose simulation plays a customer CA with [`TestCa`]); it
//! depends on no workspace crate, so any crate's unit tests may use it.
//!
//! Test certificates and keys are generated at test time, never committed.

mod ca;
mod moto;
mod rng;

pub use ca::{DeviceCert, TestCa};
pub use moto::{IsolatedAws, Moto, free_port, workspace_root};
pub use rng::{TestRng, rsa_key, rsa_keypair};
