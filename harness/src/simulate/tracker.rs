//! Follows the fleet's events: connections, rotations, rollbacks, latencies.

use std::collections::HashSet;

use device::AgentEvent;

use super::fleet::FleetEvent;

/// Follows the fleet's events.
#[derive(Debug)]
pub(super) struct Tracker {
    pub(super) connected: Vec<bool>,
    pub(super) connected_once: usize,
    pub(super) rotated_devices: HashSet<usize>,
    pub(super) rotation_events: usize,
    pub(super) rollbacks: usize,
    pub(super) latencies_ms: Vec<f64>,
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
                    self.latencies_ms.push(l.as_secs_f64() * 1000.0);
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
