//! Each function's share of the AWS IoT quotas it shares with others.
//!
//! `lambdas::limits` paces every operation at its account quota divided by
//! the function's reserved concurrency, so the instances of one function
//! together stay under the quota; but rotation-starter, csr-issuer and
//! commit all call `DescribeCertificate` (and two of them
//! `ListAttachedPolicies`, `ListPrincipalThings`, `UpdateCertificate`), and
//! each at the whole quota together ask for several times it: the account
//! throttles, and a call still throttled after its retries fails an
//! invocation (`fleetcert plan` measured 3,430 such failures for 10,000
//! devices). Each function therefore gets the quota split by its calls per
//! rotation, deployed as `FLEETCERT_QUOTA_<operation>`.
//!
//! The counts are derived, not typed: `data/calls-per-rotation.json` is
//! what the planner counts when one rotation runs through the real
//! handlers on the default stack (`planner/tests/calls_per_rotation.rs`
//! fails when it is stale). Functions outside a rotation's path
//! (error-handler, the sweeper, jitr-activator) keep the whole quota: they
//! run rarely, and a rotation waits on none of them.

use std::collections::BTreeMap;

use rules::functions::{Function, Operation};

/// Calls per rotation by function name and operation name.
const CALLS: &str = include_str!("../data/calls-per-rotation.json");

fn calls() -> BTreeMap<String, BTreeMap<String, f64>> {
    serde_json::from_str(CALLS).unwrap_or_default()
}

/// `(FLEETCERT_QUOTA_<operation>, requests per second)` for each quota `f`
/// shares with another function in a rotation: the account quota times
/// `f`'s calls over all functions' calls, to three decimals (rounded
/// down, so the shares never add up to more than the quota).
pub fn quota_shares(f: Function) -> Vec<(String, String)> {
    let calls = calls();
    let Some(mine) = calls.get(f.name()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (op_name, c) in mine {
        let Some(op) = Operation::from_name(op_name) else {
            continue;
        };
        let Some(quota) = op.default_quota_per_second() else {
            continue;
        };
        let callers: Vec<f64> = calls
            .values()
            .filter_map(|per_op| per_op.get(op_name).copied())
            .collect();
        if callers.len() < 2 {
            continue;
        }
        let total: f64 = callers.iter().sum();
        let share = (f64::from(quota) * c / total * 1000.0).floor() / 1000.0;
        out.push((format!("{QUOTA_PREFIX}{}", op.name()), format!("{share}")));
    }
    out
}

/// The variables' prefix, as `lambdas::limits::QUOTA_PREFIX` reads it
/// (`infra/tests/template.rs` checks the functions' limits parse).
const QUOTA_PREFIX: &str = "FLEETCERT_QUOTA_";

#[cfg(test)]
mod tests {
    use super::*;

    /// The rotation path's shared quotas are split, and the shares of one
    /// quota never add up to more than it.
    #[test]
    fn shared_quotas_are_split_by_calls_and_never_oversubscribed() {
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for f in Function::ALL {
            for (name, value) in quota_shares(f) {
                *sums.entry(name).or_default() += value.parse::<f64>().expect("number");
            }
        }
        let describe = sums
            .get("FLEETCERT_QUOTA_DescribeCertificate")
            .copied()
            .expect("DescribeCertificate is shared");
        assert!(describe <= 10.0 && describe > 9.9, "{describe}");
        for (name, sum) in &sums {
            let op = Operation::from_name(name.trim_start_matches("FLEETCERT_QUOTA_"))
                .expect("operation");
            let quota = f64::from(op.default_quota_per_second().expect("quota"));
            assert!(*sum <= quota, "{name}: {sum} > {quota}");
        }
        // csr-issuer makes half of DescribeCertificate's calls
        let issuer: BTreeMap<_, _> = quota_shares(Function::CsrIssuer).into_iter().collect();
        assert_eq!(issuer["FLEETCERT_QUOTA_DescribeCertificate"], "5");
        assert!(quota_shares(Function::Sweeper).is_empty());
    }
}
