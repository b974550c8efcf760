//! The simulation's time series, sampled in bounded memory: what the HTML
//! report plots.
//!
//! A [`Sample`] is taken every [`Timeline::interval_s`] seconds of the
//! rotation phase. When [`MAX_SAMPLES`] are held, every other one is
//! dropped and the interval doubles, so a run of any length keeps at most
//! [`MAX_SAMPLES`] samples, evenly spaced. Latency percentiles are those of
//! the rotations that ended since the previous sample (at most
//! [`MAX_WINDOW`] of them are kept, every other one dropped past that).

use serde::Serialize;

use super::report::percentile;

/// Samples kept at most.
pub const MAX_SAMPLES: usize = 256;
/// Latencies kept between two samples at most.
pub const MAX_WINDOW: usize = 65_536;
/// The first sampling interval, seconds.
pub const FIRST_INTERVAL_S: f64 = 0.25;

/// The fleet at one moment of the rotation phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the first audit.
    pub t_s: f64,
    /// Devices on a new certificate so far.
    pub rotated: usize,
    /// Rotations open, or closed with a cleanup owed.
    pub open_rotations: usize,
    /// Rotation work waiting in the queue.
    pub queued: usize,
    /// Latency percentiles of the rotations that ended since the previous
    /// sample (csr_req to crt_ack), ms; `None` when none ended.
    pub latency_p50_ms: Option<f64>,
    /// The 90th percentile of the same.
    pub latency_p90_ms: Option<f64>,
    /// The 99th percentile of the same.
    pub latency_p99_ms: Option<f64>,
    /// Injected faults so far: cloud messages dropped.
    pub messages_dropped: u64,
    /// Cloud messages duplicated.
    pub messages_duplicated: u64,
    /// Commits made never to land.
    pub commits_lost: u64,
    /// Device agents crashed and restarted.
    pub device_restarts: u64,
}

/// The sampled series of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    /// Seconds between two samples (as last doubled).
    pub interval_s: f64,
    /// The samples, oldest first.
    pub samples: Vec<Sample>,
    #[serde(skip)]
    window: Vec<f64>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            interval_s: FIRST_INTERVAL_S,
            samples: Vec::new(),
            window: Vec::new(),
        }
    }
}

impl Timeline {
    /// A rotation ended after `ms`.
    pub fn latency(&mut self, ms: f64) {
        if self.window.len() >= MAX_WINDOW {
            let mut i = 0;
            self.window.retain(|_| {
                i += 1;
                i % 2 == 0
            });
        }
        self.window.push(ms);
    }

    /// Whether a sample is due at `t_s`.
    pub fn due(&self, t_s: f64) -> bool {
        self.samples
            .last()
            .is_none_or(|last| t_s - last.t_s >= self.interval_s)
    }

    /// Records `sample` (its latency fields are filled from the rotations
    /// that ended since the previous one), thinning the samples when full.
    pub fn record(&mut self, mut sample: Sample) {
        if !self.window.is_empty() {
            self.window.sort_by(f64::total_cmp);
            sample.latency_p50_ms = Some(percentile(&self.window, 50.0));
            sample.latency_p90_ms = Some(percentile(&self.window, 90.0));
            sample.latency_p99_ms = Some(percentile(&self.window, 99.0));
            self.window.clear();
        }
        if self.samples.len() >= MAX_SAMPLES {
            let mut i = 0;
            self.samples.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.interval_s *= 2.0;
        }
        self.samples.push(sample);
    }

    /// One series: `(t_s, value)` for each sample that has a value.
    pub fn series(&self, value: impl Fn(&Sample) -> Option<f64>) -> Vec<(f64, f64)> {
        self.samples
            .iter()
            .filter_map(|s| value(s).map(|v| (s.t_s, v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_run_keeps_at_most_max_samples_evenly_spaced() {
        let mut t = Timeline::default();
        let mut now = 0.0;
        for i in 0..100_000 {
            if t.due(now) {
                t.record(Sample {
                    t_s: now,
                    rotated: i,
                    ..Sample::default()
                });
            }
            now += 0.01;
        }
        assert!(t.samples.len() <= MAX_SAMPLES);
        assert!(t.samples.len() > MAX_SAMPLES / 2, "{}", t.samples.len());
        assert!(t.interval_s > FIRST_INTERVAL_S);
        let gaps: Vec<f64> = t.samples.windows(2).map(|w| w[1].t_s - w[0].t_s).collect();
        let (lo, hi) = gaps
            .iter()
            .fold((f64::MAX, 0.0_f64), |(lo, hi), g| (lo.min(*g), hi.max(*g)));
        assert!(hi <= 2.0 * lo + 0.02, "uneven gaps {lo}..{hi}");
    }

    #[test]
    fn latencies_are_the_percentiles_since_the_previous_sample() {
        let mut t = Timeline::default();
        for ms in 1..=100 {
            t.latency(f64::from(ms));
        }
        t.record(Sample::default());
        t.record(Sample {
            t_s: 1.0,
            ..Sample::default()
        });
        assert_eq!(t.samples[0].latency_p50_ms, Some(51.0));
        assert_eq!(t.samples[0].latency_p99_ms, Some(99.0));
        assert_eq!(t.samples[1].latency_p50_ms, None, "nothing ended since");
        assert_eq!(t.series(|s| s.latency_p90_ms).len(), 1);
    }
}
