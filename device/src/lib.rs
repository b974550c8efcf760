//! `device`: fleetcert's device agent.
//!
//! - [`slots`]: the `current/` and `next/` certificate slots on disk, with
//!   crash-safe writes and promotion.
//! - [`keys`]: key generation (P-256 by default, P-384, RSA-2048/3072),
//!   CSRs, the mutual-TLS client configuration.
//! - [`backoff`]: exponential back-off with full jitter, bounded.
//! - [`agent`]: the rotation protocol's device half over MQTT 3.1.1
//!   (rumqttc + rustls), JITR first connect, resume after a restart.
//!
//! Architecture invariant: no global state; one [`Agent`] is one tokio task,
//! so a process can run thousands of them (`fleetcert simulate`).

pub mod agent;
pub mod backoff;
pub mod keys;
pub mod slots;

pub use agent::{Agent, AgentConfig, AgentError, AgentEvent, EventSink, Subscription};
pub use backoff::Backoff;
pub use slots::{FaultHook, Slot, SlotError, SlotMeta, SlotState, Slots};
