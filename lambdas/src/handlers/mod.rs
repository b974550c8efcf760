//! The Lambda handlers, generic over [`Ports`].
//!
//! Each handler is `handle(ports, cfg, payload, now_ms)`: `payload` is the
//! raw event JSON (parsed as its own contract with
//! `rules::contracts::Contracted::validate`, so no handler matches a
//! variant it cannot get),
//! `now_ms` the clock (never read inside). A rejection (bad input, policy
//! failure, unknown rotation, topic spoofing) is logged and returned as
//! `Ok(Outcome::Rejected { .. })`: it changed nothing and must not be
//! retried. A retryable port failure is `Err` so that Lambda retries.

mod cleanup;
mod issuer;
mod outcome;
mod paging;
mod workflow;

pub mod audit_fanout;
pub mod campaign;
pub mod commit;
pub mod csr_issuer;
pub mod error_handler;
pub mod jitr_activator;
pub mod rotation_starter;
pub mod sweeper;

pub use outcome::{HandlerError, Outcome};
pub use rules::functions::{closes_rotations, operations, operations_for, publishes};

// what the handlers share, one `use super::{..}` away
pub(crate) use cleanup::remove_certificate;
pub(crate) use outcome::{done, parse_event, port, reject};
pub(crate) use paging::{PageBudget, all_things};
pub(crate) use workflow::{
    IssueContext, SupportNotice, advance, device_event, notify, publish_crt_of, run_actions,
};
