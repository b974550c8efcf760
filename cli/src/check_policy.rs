//! `fleetcert check-policy`: which rotation protocol steps a customer's IoT
//! policy allows, evaluated as AWS IoT Core evaluates it
//! (`rules::policy_check`). For fleets that keep their own policies instead
//! of fleetcert's device policy.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use rules::policy::{ArnScope, PolicyDocument};
use rules::policy_check::{Subscription, check_protocol};

/// Arguments of `check-policy`.
#[derive(Debug, Args, Clone)]
pub struct CheckPolicyArgs {
    /// IoT policy documents (JSON, as `aws iot get-policy` returns the
    /// `policyDocument`); all of them are attached to the certificate.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The thing (= MQTT client id) to check for.
    #[arg(long, default_value = "thing-1")]
    thing: String,
    /// The certificate's subject CN, for policies that use
    /// `${iot:Certificate.Subject.CommonName}` (default: the thing name).
    #[arg(long)]
    certificate_cn: Option<String>,
    /// The device subscribes to `management/topic/<thing>/#` instead of one
    /// filter per message.
    #[arg(long)]
    wildcard_subscription: bool,
    /// Partition, region and account of the ARNs (default: the first ARN of
    /// the policy that names them, else aws, us-east-1, 123456789012).
    #[arg(long)]
    partition: Option<String>,
    /// See `--partition`.
    #[arg(long)]
    region: Option<String>,
    /// See `--partition`.
    #[arg(long)]
    account: Option<String>,
    /// Print the verdicts as JSON.
    #[arg(long)]
    json: bool,
}

/// The scope of the first concrete `arn:<partition>:iot:<region>:<account>:` in `text`.
pub(crate) fn scope_in(text: &str) -> Option<ArnScope> {
    text.match_indices("arn:").find_map(|(i, _)| {
        let mut parts = text[i..].splitn(6, ':');
        let (_, partition, service, region, account) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let concrete = |s: &str| !s.is_empty() && !s.contains(['*', '$', '?', '"']);
        (service == "iot" && concrete(partition) && concrete(region) && concrete(account)).then(
            || ArnScope {
                partition: partition.to_owned(),
                region: region.to_owned(),
                account: account.to_owned(),
            },
        )
    })
}

/// Runs `check-policy`; `Ok(false)` when a step is blocked.
///
/// # Errors
/// A file that cannot be read or is not an IoT policy.
pub fn run(args: CheckPolicyArgs) -> anyhow::Result<bool> {
    let mut policies = Vec::new();
    let mut texts = String::new();
    for file in &args.files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        policies.push(
            PolicyDocument::parse(&text)
                .with_context(|| format!("{} is not an IoT policy", file.display()))?,
        );
        texts.push_str(&text);
    }
    let found = scope_in(&texts);
    let scope = ArnScope {
        partition: args
            .partition
            .or_else(|| found.as_ref().map(|s| s.partition.clone()))
            .unwrap_or_else(|| "aws".into()),
        region: args
            .region
            .or_else(|| found.as_ref().map(|s| s.region.clone()))
            .unwrap_or_else(|| "us-east-1".into()),
        account: args
            .account
            .or_else(|| found.as_ref().map(|s| s.account.clone()))
            .unwrap_or_else(|| "123456789012".into()),
    };
    let subscription = if args.wildcard_subscription {
        Subscription::Wildcard
    } else {
        Subscription::Exact
    };
    let cn = args.certificate_cn.as_deref().unwrap_or(&args.thing);
    let verdicts = check_protocol(&policies, &scope, &args.thing, Some(cn), subscription);
    let ok = verdicts.iter().all(|v| v.allowed);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&verdicts)?);
    } else {
        let width = verdicts.iter().map(|v| v.step.len()).max().unwrap_or(0);
        for v in &verdicts {
            println!(
                "{:<width$}  {:<14}  {}",
                v.step,
                v.action,
                if v.allowed {
                    "allowed".to_owned()
                } else {
                    format!("BLOCKED ({}) on {}", v.decision, v.resource)
                }
            );
        }
        if ok {
            println!("every step of a rotation is allowed for {}", args.thing);
        }
    }
    if !ok {
        let blocked: Vec<&str> = verdicts
            .iter()
            .filter(|v| !v.allowed)
            .map(|v| v.step.as_str())
            .collect();
        eprintln!("error: the policy blocks: {}", blocked.join(", "));
    }
    Ok(ok)
}
