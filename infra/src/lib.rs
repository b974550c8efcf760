//! `infra`: fleetcert's CloudFormation.
//!
//! Architecture invariant: typed resources are generated from the vendored
//! AWS provider schemas (`infra/cfn-schemas/`) by `cargo xtask codegen`; the
//! stack is built from them and from `rules` (topic rule SQL, device policy),
//! and written as a cloud assembly the stock CDK CLI deploys. No AWS SDK.

pub mod assembly;
pub mod config;
pub mod fleetcert;
pub mod from_rules;
pub mod generated;
pub mod intrinsics;
pub mod quota_shares;
pub mod resource;
pub mod stack;
pub mod watch;
