//! `tests`: workspace-level checks (see ARCHITECTURE.md).
//!
//! [`model`] is the rotation protocol's model for the `stateright` model
//! checker; `tests/protocol_model.rs` runs it bounded in `cargo test`,
//! `examples/model_deep.rs` deeper (BENCHMARKS.md).

pub mod model;
