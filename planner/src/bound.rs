//! The quota bound on makespan, derived rather than typed: one rotation is
//! run through the real handlers with nothing else in the account, and the
//! calls each function made of each operation are counted (each must be in
//! that function's `rules::functions::operations` list, or the list is
//! wrong). With `c(op)` calls of `op` per rotation and `q(op)` its account
//! quota, `N` rotations need at least `max over op of N·c(op)/q(op)`
//! seconds: no schedule of the functions can beat it.

use std::collections::BTreeMap;

use lambdas::ports::Operation;
use rules::functions::{Function, operations};
use serde::Serialize;

use crate::deployment::Deployment;
use crate::options::PlanOptions;
use crate::run::Engine;

/// The per-rotation call counts and the bound they give.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaBound {
    /// Calls of each operation one rotation makes (all functions).
    pub calls_per_rotation: BTreeMap<String, f64>,
    /// Which functions call each operation per rotation.
    pub callers: BTreeMap<String, Vec<String>>,
    /// Calls per rotation by function and operation (what
    /// `infra/data/calls-per-rotation.json` holds for the default stack).
    pub calls_by_function: BTreeMap<String, BTreeMap<String, f64>>,
    /// Each operation's account quota, requests per second.
    pub quota: BTreeMap<String, f64>,
    /// The rotations per second each operation's quota allows.
    pub rotations_per_second: BTreeMap<String, f64>,
    /// The operation whose quota allows the fewest rotations per second.
    pub binding: String,
    /// Lower bound on the makespan of the fleet, seconds.
    pub seconds: f64,
    /// Each function's fair share of each shared quota, requests per second:
    /// the quota split by the function's calls per rotation. Deployed as
    /// `FLEETCERT_QUOTA_<operation>` on each function, the functions together
    /// stay under the account's quota (`--split-quotas` plans with them).
    pub shares: BTreeMap<String, BTreeMap<String, f64>>,
}

/// Counts one rotation's calls and derives the bound for `options.devices`.
///
/// # Errors
/// When the one-device run cannot be set up, or a function called an
/// operation its `operations` list does not name.
pub fn derive(options: &PlanOptions, deployment: &Deployment) -> Result<QuotaBound, String> {
    let mut one = PlanOptions {
        devices: 1,
        mix: crate::options::DeviceMix::default(),
        horizon_days: None,
        ..options.clone()
    };
    one.expiry_days = (options.expiry_days.1, options.expiry_days.1);
    let outcome = Engine::new(one, deployment.clone())?.run();
    if outcome.fleet.devices.iter().any(|d| d.rotated_ns.is_none()) {
        return Err("one device alone did not rotate: no bound can be derived".into());
    }
    let mut per_op: BTreeMap<Operation, f64> = BTreeMap::new();
    let mut per_function: BTreeMap<(Function, Operation), f64> = BTreeMap::new();
    let mut callers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((function, op), n) in &outcome.counters.admitted {
        if *function == Function::Sweeper {
            continue; // periodic, not per rotation
        }
        if !operations(*function).contains(op) {
            return Err(format!(
                "{} called {op}, which rules::functions::operations does not list for it",
                function.name()
            ));
        }
        // the audit's per-page and per-batch calls are shared by 250 and 10 findings
        let share = match op {
            Operation::ListAuditFindings => 1.0 / 250.0,
            Operation::SendMessageBatch => 1.0 / 10.0,
            _ => *n as f64,
        };
        *per_op.entry(*op).or_default() += share;
        *per_function.entry((*function, *op)).or_default() += share;
        callers
            .entry(op.name().to_owned())
            .or_default()
            .push(function.name().to_owned());
    }
    let mut bound = QuotaBound {
        calls_per_rotation: BTreeMap::new(),
        callers,
        calls_by_function: BTreeMap::new(),
        quota: BTreeMap::new(),
        rotations_per_second: BTreeMap::new(),
        binding: String::new(),
        seconds: 0.0,
        shares: BTreeMap::new(),
    };
    for ((function, op), c) in &per_function {
        bound
            .calls_by_function
            .entry(function.name().to_owned())
            .or_default()
            .insert(op.name().to_owned(), *c);
        let total = per_op.get(op).copied().unwrap_or(*c);
        if *c < total {
            bound
                .shares
                .entry(function.name().to_owned())
                .or_default()
                .insert(op.name().to_owned(), options.quota(*op) * c / total);
        }
    }
    let mut slowest = f64::INFINITY;
    for (op, c) in per_op {
        let q = options.quota(op);
        let rate = q / c;
        bound.calls_per_rotation.insert(op.name().to_owned(), c);
        bound.quota.insert(op.name().to_owned(), q);
        bound
            .rotations_per_second
            .insert(op.name().to_owned(), rate);
        if rate < slowest {
            slowest = rate;
            bound.binding = op.name().to_owned();
        }
    }
    bound.seconds = options.devices as f64 / slowest;
    Ok(bound)
}
