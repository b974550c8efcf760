//! `fleetcert plan`: will a fleet rotate before its certificates expire, at
//! the account's quotas, and what will it cost?
//!
//! The deployed system is simulated in **virtual time**: the stack is
//! synthesized from the configuration and read back (`deployment`), the
//! real handlers of `lambdas` run on the memory registry and rotation
//! store inside a simulated account that throttles each operation at its
//! quota (`cloud`), each function instance wraps them in the real
//! `lambdas::limits::Limited` on a virtual clock (`clock`, `lambda`), and a
//! discrete-event loop (`run`) plays the audit, the queue, the Lambda
//! service, IoT Core and the devices (`fleet`). `bound` derives the quota
//! bound on makespan, `report` and `advice` say what happened and what to
//! change, `prices` costs it, `chart` draws it. Same seed, same report.
//!
//! **Architecture Invariant:** no handler is copied or simplified here: the
//! futures polled are `lambdas::handlers::*::handle`, and every port they
//! call is an adapter of `lambdas::memory` behind the account.

pub mod advice;
pub mod bound;
pub mod chart;
pub mod clock;
pub mod cloud;
pub mod deployment;
pub mod fleet;
pub mod lambda;
pub mod options;
pub mod prices;
pub mod report;
pub mod rng;
pub mod run;

pub use options::{DeviceMix, PlanCampaign, PlanError, PlanOptions};
pub use report::Report;

/// Plans `options`: checks them, synthesizes and reads the stack, derives
/// the quota bound, runs the fleet and reports. `progress(now, horizon)`
/// is called about every simulated hour.
///
/// # Errors
/// A [`PlanError`] naming the field of an input that cannot work.
pub fn plan(
    options: &PlanOptions,
    progress: impl FnMut(u64, u64) + 'static,
) -> Result<Report, PlanError> {
    let mut deployment = deployment::Deployment::of(options)?;
    let setup = |reason: String| PlanError::Invalid {
        field: "simulation".to_owned(),
        reason,
    };
    let bound = bound::derive(options, &deployment).map_err(setup)?;
    if options.split_quotas {
        for (function, shares) in &bound.shares {
            let Some(f) = deployment
                .functions
                .values_mut()
                .find(|f| f.function.name() == function)
            else {
                continue;
            };
            for (op, rate) in shares {
                if let Some(op) = lambdas::ports::Operation::from_name(op) {
                    f.limits.quotas.insert(op, *rate);
                }
            }
        }
    }
    let mut engine = run::Engine::new(options.clone(), deployment.clone()).map_err(setup)?;
    engine.on_progress(progress);
    let outcome = engine.run();
    Ok(Report::new(
        options,
        &deployment,
        bound,
        &outcome,
        &prices::Prices::bundled(),
    ))
}
