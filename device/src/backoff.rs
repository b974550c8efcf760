//! Exponential back-off with full jitter, bounded in attempts and time.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Retry policy for connecting: attempt `n` (from 0) waits a uniformly
/// random time in `[0, min(max_delay, initial * 2^n)]` ("full jitter"),
/// and connecting gives up after `max_attempts` attempts or once
/// `max_total` has elapsed since the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The cap of the first delay.
    pub initial: Duration,
    /// The largest cap of any delay.
    pub max_delay: Duration,
    /// Attempts before giving up (at least 1).
    pub max_attempts: u32,
    /// Time after the first attempt after which no new attempt starts.
    pub max_total: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_attempts: 10,
            max_total: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The upper bound of the delay after failed attempt `attempt` (0-based).
    pub fn cap(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// A random delay in `[0, cap(attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let cap = self.cap(attempt);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random_u64() % nanos.saturating_add(1))
    }
}

/// A random number from the standard library's per-instance random hash
/// keys: good enough for jitter, no global state and no RNG dependency.
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_double_and_stop_at_max_delay() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_attempts: 5,
            max_total: Duration::from_secs(10),
        };
        assert_eq!(b.cap(0), Duration::from_millis(100));
        assert_eq!(b.cap(1), Duration::from_millis(200));
        assert_eq!(b.cap(3), Duration::from_millis(800));
        assert_eq!(b.cap(4), Duration::from_secs(1));
        assert_eq!(b.cap(200), Duration::from_secs(1));
    }

    #[test]
    fn delays_are_jittered_within_the_cap() {
        let b = Backoff::default();
        let delays: Vec<Duration> = (0..50).map(|_| b.delay(3)).collect();
        assert!(delays.iter().all(|d| *d <= b.cap(3)));
        let first = delays[0];
        assert!(delays.iter().any(|d| *d != first), "no jitter: {delays:?}");
    }
}
