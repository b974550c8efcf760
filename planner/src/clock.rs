//! Virtual time: one clock that the event loop moves, the handlers' `now_ms`
//! comes from, and `lambdas::limits::Limited` reads and sleeps on (its
//! token buckets and its back-off) through [`VirtualTimer`].
//!
//! A sleep never blocks: polled before its time it records when it wants to
//! be polled again ([`take_wake`]) and returns `Pending`; the event loop
//! schedules the invocation at that instant and polls it then.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use governor::clock::Clock;
use lambdas::limits::Timer;

thread_local! {
    /// The earliest instant (ns) a sleep polled since the last
    /// [`take_wake`] asked to be woken at.
    static WAKE_AT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The instant the future just polled wants to be polled again, if it
/// slept; clears it.
pub fn take_wake() -> Option<u64> {
    WAKE_AT.with(Cell::take)
}

/// The simulation's clock: nanoseconds since the start of the run. Clones
/// share the time.
#[derive(Debug, Clone, Default)]
pub struct VirtualTimer {
    now_ns: Arc<AtomicU64>,
}

impl VirtualTimer {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Nanoseconds since the start.
    pub fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::Relaxed)
    }

    /// Moves the clock to `ns` (never backwards).
    pub fn set_ns(&self, ns: u64) {
        self.now_ns.fetch_max(ns, Ordering::Relaxed);
    }
}

impl Clock for VirtualTimer {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Duration::from_nanos(self.now_ns())
    }
}

impl Timer for VirtualTimer {
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static + use<> {
        let until = self
            .now_ns()
            .saturating_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
        Sleep {
            until,
            now_ns: self.now_ns.clone(),
        }
    }
}

/// A sleep until an instant of virtual time.
#[derive(Debug)]
pub struct Sleep {
    until: u64,
    now_ns: Arc<AtomicU64>,
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.now_ns.load(Ordering::Relaxed) >= self.until {
            return Poll::Ready(());
        }
        let until = self.until;
        WAKE_AT.with(|w| w.set(Some(w.get().map_or(until, |t| t.min(until)))));
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_waits_for_the_clock_and_says_when() {
        let timer = VirtualTimer::new();
        let mut sleep = Box::pin(timer.sleep(Duration::from_millis(5)));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert_eq!(take_wake(), Some(5_000_000));
        assert_eq!(take_wake(), None);
        timer.set_ns(5_000_000);
        assert!(sleep.as_mut().poll(&mut cx).is_ready());
    }
}
