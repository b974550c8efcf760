//! `fleetcert adopt` (feature `ca`): the account's ACTIVE device
//! certificates as fleetcert would find them, read-only. For each: its
//! things, its policies (and whether together they allow every MQTT
//! operation of a rotation, `rules::policy_check`), what its new
//! certificate would carry under the stack's `[policies]`, the thing its
//! rotation talks to (a certificate shared by several things rotates once,
//! the new one joining them all), its CA, and what would block its
//! rotation: no thing, a policy outside the allow-list, no policy, a policy
//! that blocks a protocol step, an inactive CA.
//!
//! Every listing is followed to its last page; calls are paced to the
//! lowest published IoT quota of the operations used (10 per second) and
//! retried by the SDK on throttling.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use anyhow::Context;
use aws_sdk_iot::types::CertificateStatus;
use clap::Args;
use governor::{Quota, RateLimiter};
use rules::policy::PolicyDocument;
use rules::policy_check::{Subscription, check_protocol};
use rules::policy_copy::PolicyCopy;
use rules::rotation::primary_thing;
use serde::Serialize;

use crate::ca::aws::{Connection, Iot, paced_pages};
use crate::check_policy::scope_in;

/// Arguments of `adopt`.
#[derive(Debug, Args, Clone)]
pub struct AdoptArgs {
    /// AWS IoT endpoint to call instead of AWS's (e.g. a local moto server).
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// AWS region. Default: AWS_REGION, else the profile's region.
    #[arg(long)]
    region: Option<String>,
    /// AWS profile to take credentials and region from.
    #[arg(long)]
    profile: Option<String>,
    /// Attempts per AWS call (standard retry with back-off).
    #[arg(long, default_value_t = 3, value_name = "N")]
    max_attempts: u32,
    /// Calls per second at most (the lowest published quota of the calls
    /// made: DescribeCertificate and ListPrincipalThings, 10/s).
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// The devices subscribe to `management/topic/<thing>/#`.
    #[arg(long)]
    wildcard_subscription: bool,
    /// The stack's configuration (the file synth reads): its `[policies]`
    /// allow-list and additions decide what would be copied.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// The allow-list of policies a rotation may copy, comma-separated
    /// (`*`, names, prefixes ending in `*`); overrides the config's.
    #[arg(long, value_name = "LIST")]
    copy_policies: Option<String>,
    /// Print JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

/// What fleetcert would find for one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The certificate.
    pub certificate_id: String,
    /// When it expires (RFC 3339), if AWS said.
    pub not_after: Option<String>,
    /// The things it is attached to.
    pub things: Vec<String>,
    /// The thing its rotation talks to (`rules::rotation::primary_thing`):
    /// the device connects as it; the new certificate joins every thing.
    pub rotation_thing: Option<String>,
    /// The policies attached to it.
    pub policies: Vec<String>,
    /// The policies its new certificate would carry (those the allow-list
    /// copies, plus those added); empty when one is refused.
    pub new_policies: Vec<String>,
    /// The CA that signed it, when registered with one.
    pub ca_certificate_id: Option<String>,
    /// What blocks its rotation; empty: fleetcert would rotate it.
    pub blockers: Vec<String>,
}

/// Runs `adopt`.
///
/// # Errors
/// When AWS cannot be reached or answers with an error.
pub fn run(args: AdoptArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let candidates = runtime.block_on(survey(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&candidates)?);
        return Ok(());
    }
    println!(
        "{:<66} {:<22} {:<24} rotation",
        "certificate", "expires", "things"
    );
    for c in &candidates {
        println!(
            "{:<66} {:<22} {:<24} {}",
            c.certificate_id,
            c.not_after.as_deref().unwrap_or("-"),
            match (c.things.len(), &c.rotation_thing) {
                (0, _) => "-".to_owned(),
                (n, Some(told)) if n > 1 => format!("{told} (+{} shared)", n - 1),
                _ => c.things.join(","),
            },
            if c.blockers.is_empty() {
                "ready".to_owned()
            } else {
                format!("blocked: {}", c.blockers.join("; "))
            }
        );
    }
    let ready = candidates.iter().filter(|c| c.blockers.is_empty()).count();
    println!(
        "{ready} of {} active certificates are ready to rotate",
        candidates.len()
    );
    Ok(())
}

/// The copy rule: `--copy-policies`, else the config's `[policies]`, else
/// every policy.
fn copy_rule(args: &AdoptArgs) -> anyhow::Result<PolicyCopy> {
    let mut policies = match &args.config {
        Some(file) => infra::config::Config::from_file(file)?.policies,
        None => infra::config::Policies::default(),
    };
    if let Some(list) = &args.copy_policies {
        policies.copy = list.split(',').map(|p| p.trim().to_owned()).collect();
    }
    Ok(policies.copy_rule()?)
}

async fn survey(args: &AdoptArgs) -> anyhow::Result<Vec<Candidate>> {
    let copy = copy_rule(args)?;
    let iot = Iot::connect(&Connection {
        endpoint_url: args.endpoint_url.clone(),
        region: args.region.clone(),
        profile: args.profile.clone(),
        max_attempts: args.max_attempts,
    })
    .await?;
    let client = iot.client();
    let rate = NonZeroU32::new(args.rate).context("--rate must be at least 1")?;
    let limiter = RateLimiter::direct(Quota::per_second(rate));
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_draw_target(if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    });
    progress.set_message("listing certificates");
    let certificates = paced_pages(&limiter, "ListCertificates", |marker| async move {
        let out = client
            .list_certificates()
            .set_marker(marker)
            .page_size(250)
            .send()
            .await
            .context("ListCertificates")?;
        let ids = out
            .certificates()
            .iter()
            .filter(|c| c.status() == Some(&CertificateStatus::Active))
            .filter_map(|c| c.certificate_id().map(str::to_owned))
            .collect();
        Ok((ids, out.next_marker().map(str::to_owned)))
    })
    .await?;
    let mut documents: BTreeMap<String, Option<PolicyDocument>> = BTreeMap::new();
    let mut ca_status: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut out = Vec::with_capacity(certificates.len());
    for (i, id) in certificates.iter().enumerate() {
        progress.set_message(format!("certificate {} of {}", i + 1, certificates.len()));
        limiter.until_ready().await;
        let described = client
            .describe_certificate()
            .certificate_id(id)
            .send()
            .await
            .with_context(|| format!("DescribeCertificate {id}"))?;
        let description = described.certificate_description();
        let arn = description
            .and_then(|d| d.certificate_arn())
            .map(str::to_owned)
            .with_context(|| format!("DescribeCertificate {id} returned no ARN"))?;
        let not_after = description
            .and_then(|d| d.validity())
            .and_then(|v| v.not_after())
            .and_then(|t| {
                t.fmt(aws_sdk_iot::primitives::DateTimeFormat::DateTime)
                    .ok()
            });
        let ca_id = description
            .and_then(|d| d.ca_certificate_id())
            .map(str::to_owned);
        let arn_ref = arn.as_str();
        let things = paced_pages(&limiter, "ListPrincipalThings", |token| async move {
            let out = client
                .list_principal_things()
                .principal(arn_ref)
                .set_next_token(token)
                .send()
                .await
                .context("ListPrincipalThings")?;
            Ok((out.things().to_vec(), out.next_token().map(str::to_owned)))
        })
        .await?;
        let policies = paced_pages(&limiter, "ListAttachedPolicies", |marker| async move {
            let out = client
                .list_attached_policies()
                .target(arn_ref)
                .set_marker(marker)
                .send()
                .await
                .context("ListAttachedPolicies")?;
            let names = out
                .policies()
                .iter()
                .filter_map(|p| p.policy_name().map(str::to_owned))
                .collect();
            Ok((names, out.next_marker().map(str::to_owned)))
        })
        .await?;
        let cn = description
            .and_then(|d| d.certificate_pem())
            .and_then(|pem| rules::csr::inspect_certificate(pem).ok())
            .and_then(|i| i.subject_cn);
        let rotation_thing = primary_thing(&things, cn.as_deref()).map(str::to_owned);
        let mut blockers = Vec::new();
        if things.is_empty() {
            blockers.push(
                "no thing is attached (the rotation finds its device by its thing)".to_owned(),
            );
        }
        let new_policies = match copy.plan(&policies) {
            Ok(p) => p,
            Err(refused) => {
                blockers.push(refused.to_string());
                Vec::new()
            }
        };
        if policies.is_empty() {
            blockers.push("no policy is attached: the device cannot take part".to_owned());
        }
        let mut docs = Vec::new();
        for name in &policies {
            if !documents.contains_key(name) {
                limiter.until_ready().await;
                let got = client
                    .get_policy()
                    .policy_name(name)
                    .send()
                    .await
                    .with_context(|| format!("GetPolicy {name}"))?;
                let doc = got
                    .policy_document()
                    .and_then(|text| PolicyDocument::parse(text).ok());
                documents.insert(name.clone(), doc);
            }
            match documents.get(name).cloned().flatten() {
                Some(doc) => docs.push(doc),
                None => blockers.push(format!("policy {name} is not a policy fleetcert can read")),
            }
        }
        if let (Some(thing), false) = (rotation_thing.as_deref(), docs.is_empty()) {
            // a certificate ARN always names its partition, region and account
            let scope = scope_in(&arn).with_context(|| format!("{arn} is not an IoT ARN"))?;
            let subscription = if args.wildcard_subscription {
                Subscription::Wildcard
            } else {
                Subscription::Exact
            };
            let blocked: Vec<String> = check_protocol(&docs, &scope, thing, None, subscription)
                .into_iter()
                .filter(|v| !v.allowed)
                .map(|v| v.step)
                .collect();
            if !blocked.is_empty() {
                blockers.push(format!("its policies block: {}", blocked.join(", ")));
            }
        }
        if let Some(ca) = &ca_id {
            if !ca_status.contains_key(ca) {
                limiter.until_ready().await;
                let status = client
                    .describe_ca_certificate()
                    .certificate_id(ca)
                    .send()
                    .await
                    .ok()
                    .and_then(|o| {
                        o.certificate_description()
                            .and_then(|d| d.status())
                            .map(|s| s.as_str().to_owned())
                    });
                ca_status.insert(ca.clone(), status);
            }
            if let Some(Some(status)) = ca_status.get(ca)
                && status != "ACTIVE"
            {
                blockers.push(format!("its CA {ca} is {status}"));
            }
        }
        out.push(Candidate {
            certificate_id: id.clone(),
            not_after,
            things,
            rotation_thing,
            policies,
            new_policies,
            ca_certificate_id: ca_id,
            blockers,
        });
    }
    progress.finish_and_clear();
    Ok(out)
}
