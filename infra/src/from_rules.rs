//! What the stack takes from `rules`, behind one seam: the topic rules and
//! the device policy are defined once in `rules` (the emulator runs the same
//! definitions) and only rendered to CloudFormation here.

use rules::policy::ArnScope;
use serde_json::Value as Json;

pub use rules::routes::DeployedRule;

/// The topic rules: `csr_res`, `crt_ack`, `crt_err`, one JITR rule per CA.
///
/// An id may be a literal certificate id (checked by the config) or a
/// `${Logical.Id}` reference that `Fn::Sub` resolves at deploy time.
pub fn deployed_rules(jitr_ca_certificate_ids: &[&str]) -> Vec<DeployedRule> {
    rules::routes::deployed_rules(jitr_ca_certificate_ids)
}

/// The device policy as AWS policy JSON, with the given partition, region
/// and account strings (`${AWS::…}` for a template).
pub fn device_policy(partition: &str, region: &str, account: &str) -> Json {
    let scope = ArnScope {
        partition: partition.to_owned(),
        region: region.to_owned(),
        account: account.to_owned(),
    };
    serde_json::to_value(rules::policy::device_policy(&scope))
        .expect("a policy document serializes to JSON")
}
