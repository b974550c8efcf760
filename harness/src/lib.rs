//! `harness`: fleetcert's whole loop run locally, the local cloud
//! ([`emulator`]) driven by device agents ([`device`]) on the in-memory
//! synthesis ([`infra`]).
//!
//! [`simulate`] runs a fleet of agents against an in-process
//! [`emulator::Cloud`] (faults: dropped/duplicated messages, agent crashes
//! restarted from their slots, registry throttling and errors) and reports
//! the invariants; [`emulate`] serves a `Cloud` to outside devices through a
//! directory (root CA out, CSRs in, certificates out, audit trigger,
//! notifications). `fleetcert simulate`/`emulate` (feature `local` of
//! `cli`) are thin wrappers around them.

pub mod emulate;
pub mod simulate;

/// Logs to stderr with `RUST_LOG`'s filter, else `default` (e.g. `info`);
/// a subscriber already installed is kept.
pub fn log_to_stderr(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .try_init();
}
