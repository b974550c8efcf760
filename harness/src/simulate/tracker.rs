//! Follows the fleet's events: connections, rotations, rollbacks, latencies.

use std::collections::HashSet;

use device::AgentEvent;

use super::fleet::FleetEvent;
use super::timeline::Timeline;

/// Follows the fleet's events.
#[derive(Debug)]
pub(super) struct Tracker {
    pub(super) connected: Vec<bool>,
    pub(super) connected_once: usize,
    pub(super) rotated_devices: HashSet<usize>,
    pub(super) rotation_events: usize,
    pub(super) rollbacks: usize,
    pub(super) latencies_ms: Vec<f64>,
    /// The sampled series of the rotation phase.
    pub(super) timeline: Timeline,
}

impl Tracker {
    pub(super) fn new(n: usize) -> Tracker {
        Tracker {
            connected: vec![false; n],
            connected_once: 0,
            rotated_devices: HashSet::new(),
            rotation_events: 0,
            rollbacks: 0,
            latencies_ms: Vec::new(),
            timeline: Timeline::default(),
        }
    }

    /// Returns true for a connection (first) or a rotation.
    pub(super) fn observe(&mut self, ev: &FleetEvent) -> bool {
        match &ev.event {
            AgentEvent::Connected { .. } => {
                if !self.connected[ev.device] {
                    self.connected[ev.device] = true;
                    self.connected_once += 1;
                    return true;
                }
                false
            }
            AgentEvent::Rotated { latency, .. } => {
                self.rotation_events += 1;
                self.rotated_devices.insert(ev.device);
                if let Some(l) = latency {
                    let ms = l.as_secs_f64() * 1000.0;
                    self.latencies_ms.push(ms);
                    self.timeline.latency(ms);
                }
                true
            }
            AgentEvent::RolledBack { .. } => {
                self.rollbacks += 1;
                false
            }
            _ => false,
        }
    }
}
