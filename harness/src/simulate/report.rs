//! What a simulation found: the [`Report`] and its invariants.

use serde::Serialize;

use super::timeline::Timeline;

/// The simulation's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Devices provisioned by the cloud.
    pub devices: usize,
    /// Of those, with an expiring certificate.
    pub expiring: usize,
    /// Devices that came in by JITR (asked).
    pub jitr: usize,
    /// JITR devices whose certificate became ACTIVE and connected.
    pub jitr_activated: usize,
    /// Expiring devices now on a new certificate.
    pub rotated: usize,
    /// Expiring devices still on their old certificate at the end.
    pub failed: usize,
    /// Devices whose current certificate is not ACTIVE, attached to their
    /// thing and the device policy (must be 0).
    pub bricked: usize,
    /// Certificates ACTIVE or attached that no device holds (must be 0).
    pub orphaned_certificates: usize,
    /// Whether no certificate expiring within the threshold is left.
    pub converged: bool,
    /// Audit cycles run.
    pub audit_cycles: u32,
    /// Rotations completed (events, duplicates after restarts included).
    pub rotation_events: usize,
    /// Rollbacks reported by devices.
    pub rollbacks: usize,
    /// Device agents restarted after a (simulated) crash.
    pub device_restarts: u64,
    /// Cloud messages dropped by fault injection.
    pub messages_dropped: u64,
    /// Cloud messages duplicated by fault injection.
    pub messages_duplicated: u64,
    /// Rotations whose commit was made to fail on the invocation and every
    /// retry by fault injection (the ack delivered, the commit never landed).
    pub commits_lost: u64,
    /// Support notifications sent.
    pub notifications: usize,
    /// Seconds from the first audit to the last rotation.
    pub rotation_seconds: f64,
    /// Rotated devices per second over that time.
    pub rotations_per_second: f64,
    /// Median rotation latency (csr_req to crt_ack), ms.
    pub latency_p50_ms: f64,
    /// 99th percentile rotation latency, ms.
    pub latency_p99_ms: f64,
    /// Seconds to provision and connect the fleet.
    pub setup_seconds: f64,
    /// Peak resident memory of the process (VmHWM), bytes.
    pub peak_memory_bytes: u64,
    /// The machine's bound, when measured: rotations per second the
    /// cryptography of one rotation allows on every core.
    pub crypto_bound_per_second: Option<f64>,
    /// `rotations_per_second` / `crypto_bound_per_second`.
    pub ratio_to_crypto_bound: Option<f64>,
    /// The rotation phase over time, sampled (what `--html` plots).
    pub timeline: Timeline,
    /// What a brownfield fleet (`--brownfield`) was made of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brownfield: Option<BrownfieldMix>,
    /// What the campaign did (`--campaign`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<super::CampaignReport>,
}

/// The shapes of a brownfield fleet's provisioned devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BrownfieldMix {
    /// On customer policies rather than fleetcert's.
    pub customer_policies: usize,
    /// Whose thing name is not their certificate's CN.
    pub thing_not_cn: usize,
    /// Whose certificate is attached to more than one thing.
    pub shared_certificates: usize,
    /// Subscribing to `management/topic/<thing>/#`.
    pub wildcard_subscribers: usize,
}

impl Report {
    /// Whether the invariants hold: nothing bricked, nothing orphaned,
    /// converged.
    pub fn ok(&self) -> bool {
        self.bricked == 0
            && self.orphaned_certificates == 0
            && self.converged
            && self
                .campaign
                .as_ref()
                .is_none_or(|c| c.finished && c.rotated_while_paused == 0)
    }

    /// The report as text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut line = |k: &str, v: String| s.push_str(&format!("{k:<28} {v}\n"));
        line("devices", self.devices.to_string());
        if let Some(mix) = &self.brownfield {
            line(
                "brownfield",
                format!(
                    "{} on customer policies, {} thing != CN, {} shared by two things, {} subscribe to #",
                    mix.customer_policies,
                    mix.thing_not_cn,
                    mix.shared_certificates,
                    mix.wildcard_subscribers
                ),
            );
        }
        line("expiring", self.expiring.to_string());
        if let Some(c) = &self.campaign {
            line(
                "campaign",
                format!(
                    "{} members in waves {:?}; {} broken devices ({} in the canary)",
                    c.members, c.waves, c.broken_devices, c.broken_in_canary
                ),
            );
            match (&c.paused_in_wave, &c.trip) {
                (Some(wave), Some(trip)) => line(
                    "campaign paused",
                    format!(
                        "in wave {wave}: {trip}; {} released, {} untouched, {} of those rotated; support told: {}",
                        c.released_at_pause,
                        c.untouched_at_pause,
                        c.rotated_while_paused,
                        c.support_notified
                    ),
                ),
                _ => line("campaign paused", "no".to_owned()),
            }
            line(
                "campaign end",
                format!(
                    "finished {}: {} committed, {} failed, {} expired, {} skipped",
                    c.finished, c.committed, c.failed, c.expired, c.skipped
                ),
            );
        }
        line(
            "jitr (activated/asked)",
            format!("{}/{}", self.jitr_activated, self.jitr),
        );
        line("rotated", self.rotated.to_string());
        line("failed", self.failed.to_string());
        line("bricked", self.bricked.to_string());
        line(
            "orphaned certificates",
            self.orphaned_certificates.to_string(),
        );
        line(
            "converged",
            format!("{} ({} audit cycles)", self.converged, self.audit_cycles),
        );
        line("rollbacks", self.rollbacks.to_string());
        line("device restarts", self.device_restarts.to_string());
        line(
            "messages dropped/duplicated",
            format!("{}/{}", self.messages_dropped, self.messages_duplicated),
        );
        line("commits never landed", self.commits_lost.to_string());
        line("support notifications", self.notifications.to_string());
        line("setup", format!("{:.1} s", self.setup_seconds));
        line(
            "rotations/s",
            format!(
                "{:.1} ({} in {:.2} s)",
                self.rotations_per_second, self.rotated, self.rotation_seconds
            ),
        );
        line(
            "rotation latency p50/p99",
            format!(
                "{:.0} ms / {:.0} ms",
                self.latency_p50_ms, self.latency_p99_ms
            ),
        );
        line(
            "peak memory (VmHWM)",
            format!("{:.1} MiB", self.peak_memory_bytes as f64 / 1_048_576.0),
        );
        if let (Some(bound), Some(ratio)) =
            (self.crypto_bound_per_second, self.ratio_to_crypto_bound)
        {
            line(
                "crypto bound",
                format!(
                    "{bound:.1} rotations/s; achieved {:.1}% of it",
                    ratio * 100.0
                ),
            );
        }
        s
    }
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
