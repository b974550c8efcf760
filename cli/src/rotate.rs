//! `fleetcert rotate` (feature `rotate`): rotate a chosen set of
//! certificates now, after a key or CA compromise or a policy change,
//! instead of waiting for the audit. It selects ACTIVE device certificates
//! (of things, of a thing group, issued by a CA, older than a date, or
//! listed in a file), shows how many and asks, then puts one `rotation_work`
//! message per certificate on the stack's rotation queue: the same queue
//! and message the audit uses, so every guarantee of an audit's rotation
//! holds (one open rotation per thing, the API quotas, the sweeper).
//!
//! Every listing is followed to its last page; calls are paced (`--rate`)
//! and retried by the SDK on throttling. `--dry-run` lists without
//! enqueuing; `--json` prints the selection and what was queued.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use aws_sdk_iot::types::CertificateStatus;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use clap::Args;
use governor::{Quota, RateLimiter};
use rules::contracts::{CertificateId, CheckName, RotationWork};
use serde::Serialize;

use crate::ca::aws::{Connection, Limiter, paced_pages, sdk_config};

/// The check name of on-demand work (the audit's messages name the
/// Device Defender check that found the certificate).
pub const ON_DEMAND_CHECK: &str = "FLEETCERT_ON_DEMAND";

/// Arguments of `rotate`.
#[derive(Debug, Args, Clone)]
pub struct RotateArgs {
    /// Rotate the certificates of this thing (repeatable).
    #[arg(long = "thing", value_name = "NAME")]
    things: Vec<String>,
    /// Rotate the certificates of every thing in this thing group.
    #[arg(long, value_name = "NAME")]
    thing_group: Option<String>,
    /// Rotate every certificate issued by this registered CA (its id).
    #[arg(long = "ca", value_name = "ID")]
    ca: Option<String>,
    /// Only certificates created before this date (YYYY-MM-DD) or more than
    /// this many days ago; alone, every certificate so old.
    #[arg(long, value_name = "DATE|DAYS")]
    older_than: Option<String>,
    /// A file of thing names and certificate ids, one per line (`#`
    /// comments and blank lines skipped).
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// The stack's rotation queue (the `RotationQueue` the audit feeds).
    #[arg(long, value_name = "URL")]
    queue_url: Option<String>,
    /// List what would rotate; enqueue nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Print JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// AWS endpoint to call instead of AWS's (e.g. a local moto server),
    /// for IoT and SQS.
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
    /// made: ListThingPrincipals and DescribeCertificate, 10/s).
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// Rotate in waves: a campaign whose first wave is this share (`5%`)
    /// or count (`20`) of the selection, written to the rotation table
    /// (`--table`) instead of the queue; the sweeper releases the waves.
    #[arg(long, value_name = "SHARE")]
    canary: Option<String>,
    /// Each later wave of the campaign: a share or a count.
    #[arg(long, value_name = "SHARE", default_value = "20%", requires = "canary")]
    cohort: String,
    /// The campaign releases at most this many members per second.
    #[arg(long, value_name = "N", default_value_t = 10, requires = "canary")]
    wave_rate: u32,
    /// The campaign pauses itself when failed + expired rotations among the
    /// last `--abort-window` are above this share.
    #[arg(
        long,
        value_name = "PERCENT",
        default_value = "2%",
        requires = "canary"
    )]
    abort_above: String,
    /// How many of the last rotations the abort rule counts (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 50, requires = "canary")]
    abort_window: u32,
    /// A released member without a rotation after this many seconds was
    /// refused by the starter (support was told) and counts as skipped.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 900,
        requires = "canary"
    )]
    grace_secs: u32,
    /// The campaign's id (default `c<unix seconds>`).
    #[arg(long, value_name = "ID", requires = "canary")]
    campaign_id: Option<String>,
    /// The rotation table a campaign is written to (the stack's output
    /// `RotationTableName`); default `FLEETCERT_TABLE`.
    #[arg(long, value_name = "NAME", requires = "canary")]
    table: Option<String>,
}

/// One certificate selected for rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Selected {
    /// The certificate.
    pub certificate_id: String,
    /// Why it was selected (`thing pump-1`, `thing group plant-7`, ...).
    pub because: String,
}

/// What `rotate` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// The id the queued work carries as its task id (the rotations it
    /// starts are named after it).
    pub task_id: String,
    /// The selection, sorted by certificate id.
    pub selected: Vec<Selected>,
    /// Messages put on the queue (0 for `--dry-run` or a refusal).
    pub queued: usize,
    /// Whether nothing was sent on purpose.
    pub dry_run: bool,
    /// The campaign written instead of queueing (`--canary`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignOutcome>,
}

/// The campaign `rotate --canary` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CampaignOutcome {
    /// Its id (`fleetcert campaign status <id>`).
    pub id: String,
    /// Its waves' sizes, the canary first.
    pub waves: Vec<u32>,
    /// Whether it was written (not for `--dry-run`).
    pub written: bool,
}

/// The campaign of `args` over `selected` (checked before anything is
/// listed or written).
fn new_campaign(
    args: &RotateArgs,
    task_id: &str,
    now_s: i64,
) -> anyhow::Result<Option<rules::campaign::NewCampaign>> {
    use rules::campaign::NewCampaign;
    let Some(canary) = &args.canary else {
        return Ok(None);
    };
    let id = args
        .campaign_id
        .clone()
        .unwrap_or_else(|| format!("c{now_s}"));
    let id = rules::contracts::CampaignId::new(id.clone())
        .map_err(|e| anyhow::anyhow!("--campaign-id {id:?}: {e}"))?;
    let (rollout, abort) = crate::waves(
        canary,
        &args.cohort,
        args.wave_rate,
        &args.abort_above,
        args.abort_window,
    )?;
    Ok(Some(NewCampaign {
        id,
        task_id: task_id.to_owned(),
        rollout,
        abort,
        grace_ms: i64::from(args.grace_secs) * 1000,
    }))
}

/// `--older-than` as a cut-off in seconds since the Unix epoch.
///
/// # Errors
/// Neither a number of days nor a `YYYY-MM-DD` date.
pub fn cutoff(value: &str, now_s: i64) -> anyhow::Result<i64> {
    if let Ok(days) = value.parse::<u32>() {
        return Ok(now_s - i64::from(days) * 86_400);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(value, &format).with_context(|| {
        format!("--older-than {value:?} is neither a number of days nor a YYYY-MM-DD date")
    })?;
    Ok(date.midnight().assume_utc().unix_timestamp())
}

/// Runs `rotate`.
///
/// # Errors
/// Bad arguments, AWS errors, or a refusal at the prompt.
pub fn run(args: RotateArgs) -> anyhow::Result<()> {
    if args.things.is_empty()
        && args.thing_group.is_none()
        && args.ca.is_none()
        && args.older_than.is_none()
        && args.from_file.is_none()
    {
        bail!(
            "say what to rotate: --thing, --thing-group, --ca, --older-than or --from-file (rotating every certificate needs --older-than 0)"
        );
    }
    if args.canary.is_none() && args.queue_url.is_none() && !args.dry_run {
        bail!("--queue-url is required (the stack's RotationQueue), unless --dry-run or --canary");
    }
    if args.canary.is_some() && args.queue_url.is_some() {
        bail!(
            "--canary writes a campaign the sweeper releases onto the queue: leave out --queue-url"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(rotate(args))
}

async fn rotate(args: RotateArgs) -> anyhow::Result<()> {
    let conn = Connection {
        endpoint_url: args.endpoint_url.clone(),
        region: args.region.clone(),
        profile: args.profile.clone(),
        max_attempts: args.max_attempts,
    };
    let config = sdk_config(&conn).await?;
    let iot = aws_sdk_iot::Client::new(&config);
    let rate = NonZeroU32::new(args.rate).context("--rate must be at least 1")?;
    let limiter = RateLimiter::direct(Quota::per_second(rate));
    let now_s = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("clock")?
            .as_secs(),
    )?;
    let cutoff = args
        .older_than
        .as_deref()
        .map(|v| cutoff(v, now_s))
        .transpose()?;
    let task_id = format!("on-demand-{now_s}");
    // a bad campaign or no table is refused before anything is listed
    let new_campaign = new_campaign(&args, &task_id, now_s)?;
    let table = match &new_campaign {
        Some(_) if !args.dry_run => Some(
            crate::campaign::TableArgs {
                table: args.table.clone(),
                endpoint_url: args.endpoint_url.clone(),
                region: args.region.clone(),
                profile: args.profile.clone(),
                max_attempts: args.max_attempts,
            }
            .items()
            .await?,
        ),
        _ => None,
    };
    let progress = progress_bar();
    let selected = select(&iot, &limiter, &args, cutoff, &progress).await?;
    progress.finish_and_clear();
    let mut outcome = Outcome {
        task_id: task_id.clone(),
        selected,
        queued: 0,
        dry_run: args.dry_run,
        campaign: None,
    };
    if let Some(new) = new_campaign {
        return write_campaign(&args, outcome, new, table, now_s).await;
    }
    if !args.json {
        for s in &outcome.selected {
            println!("{}  {}", s.certificate_id, s.because);
        }
        println!(
            "{} certificates selected{}",
            outcome.selected.len(),
            if args.dry_run {
                " (dry run: nothing queued)"
            } else {
                ""
            }
        );
    }
    if !args.dry_run && !outcome.selected.is_empty() {
        if !args.yes && !confirm(outcome.selected.len())? {
            bail!("not confirmed: nothing queued");
        }
        let queue_url = args.queue_url.as_deref().unwrap_or_default();
        let sqs = aws_sdk_sqs::Client::new(&config);
        let bar = progress_bar();
        bar.set_length(outcome.selected.len() as u64);
        for batch in outcome.selected.chunks(10) {
            limiter.until_ready().await;
            outcome.queued += send_batch(&sqs, queue_url, &task_id, batch).await?;
            bar.set_position(outcome.queued as u64);
        }
        bar.finish_and_clear();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else if !args.dry_run {
        println!(
            "queued {} of {} (task {task_id}); `fleetcert status` follows them",
            outcome.queued,
            outcome.selected.len()
        );
    }
    Ok(())
}

/// `rotate --canary`: the selection as a campaign in the rotation table.
async fn write_campaign(
    args: &RotateArgs,
    mut outcome: Outcome,
    new: rules::campaign::NewCampaign,
    table: Option<crate::campaign::Items>,
    now_s: i64,
) -> anyhow::Result<()> {
    let ids: Vec<String> = outcome
        .selected
        .iter()
        .map(|s| s.certificate_id.clone())
        .collect();
    if ids.is_empty() {
        bail!("nothing selected: no campaign written");
    }
    // sorted by certificate id: the canary is a sample of the selection
    let (campaign, chunks) = rules::campaign::Campaign::new(new, &ids, now_s * 1000)?;
    let waves: Vec<u32> = campaign.waves().iter().map(|w| w.end - w.start).collect();
    if !args.json {
        for s in &outcome.selected {
            println!("{}  {}", s.certificate_id, s.because);
        }
        println!(
            "{} certificates selected; campaign {} in {} waves {:?}{}",
            ids.len(),
            campaign.id,
            waves.len(),
            waves,
            if args.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        );
    }
    let mut written = false;
    if let Some(items) = table {
        if !args.yes && !confirm(ids.len())? {
            bail!("not confirmed: nothing written");
        }
        items.create(&campaign, &chunks).await?;
        written = true;
    }
    outcome.campaign = Some(CampaignOutcome {
        id: campaign.id.to_string(),
        waves,
        written,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else if written {
        println!(
            "campaign {} written; the sweeper releases its canary at the next sweep; `fleetcert campaign status {}` follows it",
            campaign.id, campaign.id
        );
    }
    Ok(())
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(if std::io::stderr().is_terminal() {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    });
    bar
}

/// Asks on the terminal; refuses without one (a script passes `--yes`).
fn confirm(count: usize) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to rotate {count} certificates without a terminal to confirm on: pass --yes"
        );
    }
    eprint!("rotate {count} certificates now? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Every ACTIVE certificate the arguments name, with why; `--older-than`
/// filters the others, or alone selects every certificate so old.
async fn select(
    iot: &aws_sdk_iot::Client,
    limiter: &Limiter,
    args: &RotateArgs,
    cutoff: Option<i64>,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<Selected>> {
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    let mut things: Vec<(String, String)> = args
        .things
        .iter()
        .map(|t| (t.clone(), format!("thing {t}")))
        .collect();
    let mut listed_certificates: Vec<(String, String)> = Vec::new();
    if let Some(file) = &args.from_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if CertificateId::new(line.to_owned()).is_ok() {
                listed_certificates
                    .push((line.to_owned(), format!("listed in {}", file.display())));
            } else {
                things.push((
                    line.to_owned(),
                    format!("thing {line} (listed in {})", file.display()),
                ));
            }
        }
    }
    if let Some(group) = &args.thing_group {
        progress.set_message(format!("listing thing group {group}"));
        let members = paced_pages(limiter, "ListThingsInThingGroup", |token| async move {
            let out = iot
                .list_things_in_thing_group()
                .thing_group_name(group)
                .recursive(true)
                .set_next_token(token)
                .send()
                .await
                .with_context(|| format!("ListThingsInThingGroup {group}"))?;
            Ok((out.things().to_vec(), out.next_token().map(str::to_owned)))
        })
        .await?;
        things.extend(
            members
                .into_iter()
                .map(|t| (t, format!("thing group {group}"))),
        );
    }
    for (thing, because) in &things {
        progress.set_message(format!("thing {thing}"));
        let principals = paced_pages(limiter, "ListThingPrincipals", |token| async move {
            let out = iot
                .list_thing_principals()
                .thing_name(thing)
                .set_next_token(token)
                .send()
                .await
                .with_context(|| format!("ListThingPrincipals {thing}"))?;
            Ok((
                out.principals().to_vec(),
                out.next_token().map(str::to_owned),
            ))
        })
        .await?;
        for arn in principals {
            if let Some(id) = arn.rsplit_once(":cert/").map(|(_, id)| id.to_owned()) {
                listed_certificates.push((id, because.clone()));
            }
        }
    }
    if let Some(ca) = &args.ca {
        progress.set_message(format!("certificates of CA {ca}"));
        let certs = paced_pages(limiter, "ListCertificatesByCA", |marker| async move {
            let out = iot
                .list_certificates_by_ca()
                .ca_certificate_id(ca)
                .set_marker(marker)
                .page_size(250)
                .send()
                .await
                .with_context(|| format!("ListCertificatesByCA {ca}"))?;
            Ok((
                active_before(out.certificates(), cutoff),
                out.next_marker().map(str::to_owned),
            ))
        })
        .await?;
        for id in certs {
            found
                .entry(id)
                .or_insert_with(|| format!("issued by CA {ca}"));
        }
    }
    let only_age = things.is_empty()
        && listed_certificates.is_empty()
        && args.ca.is_none()
        && args.thing_group.is_none();
    if let (true, Some(cut)) = (only_age, cutoff) {
        progress.set_message("listing certificates");
        let certs = paced_pages(limiter, "ListCertificates", |marker| async move {
            let out = iot
                .list_certificates()
                .set_marker(marker)
                .page_size(250)
                .send()
                .await
                .context("ListCertificates")?;
            Ok((
                active_before(out.certificates(), Some(cut)),
                out.next_marker().map(str::to_owned),
            ))
        })
        .await?;
        let since = args.older_than.as_deref().unwrap_or_default();
        for id in certs {
            found.insert(id, format!("older than {since}"));
        }
    }
    // Certificates named by thing or file: ACTIVE only, and old enough.
    let mut described = BTreeSet::new();
    for (id, because) in listed_certificates {
        if found.contains_key(&id) || !described.insert(id.clone()) {
            continue;
        }
        limiter.until_ready().await;
        progress.set_message(format!("certificate {}", &id[..12.min(id.len())]));
        let out = iot
            .describe_certificate()
            .certificate_id(&id)
            .send()
            .await
            .with_context(|| format!("DescribeCertificate {id}"))?;
        let Some(d) = out.certificate_description() else {
            continue;
        };
        if d.status() == Some(&CertificateStatus::Active)
            && created_before(d.creation_date(), cutoff)
        {
            found.insert(id, because);
        }
    }
    Ok(found
        .into_iter()
        .map(|(certificate_id, because)| Selected {
            certificate_id,
            because,
        })
        .collect())
}

/// The ids of a listing page's ACTIVE certificates created before `cutoff`.
fn active_before(certs: &[aws_sdk_iot::types::Certificate], cutoff: Option<i64>) -> Vec<String> {
    certs
        .iter()
        .filter(|c| c.status() == Some(&CertificateStatus::Active))
        .filter(|c| created_before(c.creation_date(), cutoff))
        .filter_map(|c| c.certificate_id().map(str::to_owned))
        .collect()
}

/// Whether a certificate created at `date` is older than `cutoff` (always,
/// without a cut-off).
fn created_before(date: Option<&aws_sdk_iot::primitives::DateTime>, cutoff: Option<i64>) -> bool {
    match (cutoff, date) {
        (None, _) => true,
        (Some(cut), Some(d)) => d.secs() < cut,
        (Some(_), None) => false,
    }
}

/// One `SendMessageBatch` of up to ten `rotation_work` messages; entries
/// SQS fails are sent again (three times), then the command fails naming
/// them.
async fn send_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    task_id: &str,
    batch: &[Selected],
) -> anyhow::Result<usize> {
    let mut pending: Vec<SendMessageBatchRequestEntry> = Vec::new();
    for (i, s) in batch.iter().enumerate() {
        let work = RotationWork {
            certificate_id: CertificateId::new(s.certificate_id.clone())
                .map_err(|e| anyhow::anyhow!("{}: {e}", s.certificate_id))?,
            task_id: task_id.to_owned(),
            check_name: CheckName::from(ON_DEMAND_CHECK),
            expiration_time_ms: None,
            past_expiration: false,
            campaign: None,
        };
        pending.push(
            SendMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .message_body(serde_json::to_string(&work)?)
                .build()
                .context("batch entry")?,
        );
    }
    let total = pending.len();
    for _ in 0..=3 {
        let out = sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(pending.clone()))
            .send()
            .await
            .with_context(|| format!("SendMessageBatch to {queue_url}"))?;
        let failed: BTreeSet<&str> = out.failed().iter().map(|f| f.id()).collect();
        if failed.is_empty() {
            return Ok(total);
        }
        if let Some(f) = out.failed().iter().find(|f| f.sender_fault()) {
            bail!(
                "SendMessageBatch refused entry {}: {} {}",
                f.id(),
                f.code(),
                f.message().unwrap_or_default()
            );
        }
        pending.retain(|e| failed.contains(e.id()));
    }
    bail!(
        "SendMessageBatch still failing for {} entries after 3 retries",
        pending.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_than_takes_days_or_a_date() {
        let now = 1_800_000_000;
        assert_eq!(cutoff("30", now).unwrap(), now - 30 * 86_400);
        assert_eq!(cutoff("2026-01-01", now).unwrap(), 1_767_225_600);
        assert!(cutoff("last week", now).is_err());
        assert!(cutoff("2026-13-01", now).is_err());
    }
}
