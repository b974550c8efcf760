//! `fleetcert status`: the fleet's rotations as the rotation table holds
//! them, read through the AWS SDK (standard credential chain,
//! `--endpoint-url` for a local DynamoDB such as moto).
//!
//! What it reads (the table layout is `lambdas::aws::dynamo`'s):
//! - by default, the sparse `due` index, paged: exactly the open rows and
//!   the closed rows still owing a cleanup, never the finished rows of the
//!   whole fleet (a Scan of a million-device table reads every row and
//!   bills for it);
//! - `--thing NAME`: the thing's pointer (`thing#NAME`) and the row it
//!   points at, two `GetItem`s;
//! - `--scan`: asked for explicitly, a paged Scan of the whole table for
//!   the counts of finished rows too.
//!
//! Pages are paced by a `governor` limiter (`--pages-per-second`) and
//! counted by a progress bar on stderr. The summary ([`Summary`]) is a pure
//! function of the rows and the time, tested without AWS.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::Context;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use clap::Args;
use governor::{Quota, RateLimiter};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rules::functions::{DEADLINE_ATTRIBUTE, DUE_INDEX, DUE_KEY_ATTRIBUTE, DUE_KEY_VALUE};
use rules::rotation::Rotation;
use serde::Serialize;

/// The table's hash key (`lambdas::aws::dynamo::KEY`).
const KEY: &str = "rotationId";
/// Prefix of a thing's pointer row (`lambdas::aws::dynamo::THING_PREFIX`).
const THING_PREFIX: &str = "thing#";

/// `fleetcert status` arguments.
#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    /// The rotation table's name (the stack's `RotationTable`, e.g. from
    /// `aws cloudformation describe-stack-resource --stack-name FleetcertStack
    /// --logical-resource-id RotationTable`). Default: $FLEETCERT_TABLE.
    #[arg(long, value_name = "NAME")]
    table: Option<String>,
    /// One thing: its pointer and the rotation it points at.
    #[arg(long, value_name = "NAME")]
    thing: Option<String>,
    /// Read the whole table (a Scan) for the counts of finished rotations
    /// too; without it only open rows and rows owing a cleanup are read.
    #[arg(long, conflicts_with = "thing")]
    scan: bool,
    /// How many of the oldest open rotations to list.
    #[arg(long, default_value_t = 10, value_name = "N")]
    oldest: usize,
    /// Items per page (the Query/Scan `Limit`).
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=1000))]
    page_size: i32,
    /// Pages read per second at most (each page is up to `--page-size`
    /// items, and DynamoDB bills reads per page).
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pages_per_second: u32,
    /// DynamoDB endpoint to call instead of AWS's (e.g. a local moto).
    /// Default: AWS_ENDPOINT_URL, else AWS.
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// AWS region. Default: AWS_REGION, else the profile's region.
    #[arg(long)]
    region: Option<String>,
    /// AWS profile to take credentials and region from.
    #[arg(long)]
    profile: Option<String>,
    /// Print JSON on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// The age buckets of open rotations, upper bounds in hours (the last is
/// open-ended).
const AGE_BUCKETS: [(&str, i64); 5] = [
    ("under 1 h", 1),
    ("1 h to 1 day", 24),
    ("1 to 3 days", 72),
    ("3 to 7 days", 168),
    ("7 days or more", i64::MAX),
];

/// One open (or cleanup-owing) rotation, for the "oldest" list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    /// The thing.
    pub thing_name: String,
    /// The rotation id.
    pub rotation_id: String,
    /// REQUESTED, ISSUING, ISSUED (or a closed state owing a cleanup).
    pub state: String,
    /// Hours since the rotation started.
    pub age_hours: i64,
    /// Hours until its deadline (negative: past it).
    pub deadline_in_hours: i64,
    /// The sweeper already sent its message again.
    pub resent: bool,
    /// A closed row whose cleanup is owed.
    pub cleanup_pending: bool,
}

/// What `status` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// `due-index` or `scan`.
    pub source: &'static str,
    /// Rotation rows read.
    pub rows: usize,
    /// Rows per state.
    pub by_state: BTreeMap<String, usize>,
    /// Open rotations.
    pub open: usize,
    /// Closed rows still owing a cleanup.
    pub cleanup_owed: usize,
    /// Open rotations per age bucket, in [`AGE_BUCKETS`] order.
    pub open_by_age: Vec<(String, usize)>,
    /// Open rotations past their deadline (the sweeper has not closed them yet).
    pub past_deadline: usize,
    /// The oldest open rotations, oldest first.
    pub oldest: Vec<Listed>,
}

const HOUR_MS: i64 = 3_600_000;

impl Summary {
    /// The summary of `rows` at `now_ms`, listing the `oldest` oldest open ones.
    pub fn of(source: &'static str, rows: &[Rotation], now_ms: i64, oldest: usize) -> Self {
        let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
        let mut by_age = vec![0_usize; AGE_BUCKETS.len()];
        let mut open = Vec::new();
        let mut cleanup_owed = 0;
        let mut past_deadline = 0;
        for r in rows {
            *by_state.entry(r.state.name().to_owned()).or_default() += 1;
            if r.state.is_open() {
                let age_hours = (now_ms - r.created_at_ms).max(0) / HOUR_MS;
                let bucket = AGE_BUCKETS
                    .iter()
                    .position(|(_, upper)| age_hours < *upper)
                    .unwrap_or(AGE_BUCKETS.len() - 1);
                by_age[bucket] += 1;
                if now_ms > r.deadline_ms {
                    past_deadline += 1;
                }
                open.push(r);
            } else if r.cleanup_pending {
                cleanup_owed += 1;
            }
        }
        open.sort_by_key(|r| (r.created_at_ms, r.rotation_id.clone()));
        Summary {
            source,
            rows: rows.len(),
            by_state,
            open: open.len(),
            cleanup_owed,
            open_by_age: AGE_BUCKETS
                .iter()
                .zip(by_age)
                .map(|((label, _), n)| ((*label).to_owned(), n))
                .collect(),
            past_deadline,
            oldest: open
                .into_iter()
                .take(oldest)
                .map(|r| Listed {
                    thing_name: r.thing_name.clone(),
                    rotation_id: r.rotation_id.clone(),
                    state: r.state.name().to_owned(),
                    age_hours: (now_ms - r.created_at_ms).max(0) / HOUR_MS,
                    deadline_in_hours: (r.deadline_ms - now_ms).div_euclid(HOUR_MS),
                    resent: r.resent_at_ms.is_some(),
                    cleanup_pending: r.cleanup_pending,
                })
                .collect(),
        }
    }

    /// The text report.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let what = match self.source {
            "scan" => "every row (Scan)",
            _ => "the due index: open rotations and closed ones owing a cleanup",
        };
        let _ = writeln!(out, "read {} rotation rows from {what}", self.rows);
        let _ = writeln!(out, "\nby state:");
        for (state, n) in &self.by_state {
            let _ = writeln!(out, "  {state:<10} {n:>8}");
        }
        let _ = writeln!(out, "\nopen rotations: {}", self.open);
        let _ = writeln!(out, "closed, cleanup owed: {}", self.cleanup_owed);
        let _ = writeln!(
            out,
            "past their deadline, not yet swept: {}",
            self.past_deadline
        );
        let _ = writeln!(out, "\nopen rotations by age:");
        for (label, n) in &self.open_by_age {
            let _ = writeln!(out, "  {label:<15} {n:>8}");
        }
        if !self.oldest.is_empty() {
            let _ = writeln!(out, "\noldest open rotations:");
            let _ = writeln!(
                out,
                "  {:<24} {:<10} {:>8} {:>12}  {:<7} rotation",
                "thing", "state", "age (h)", "deadline (h)", "resent"
            );
            for l in &self.oldest {
                let _ = writeln!(
                    out,
                    "  {:<24} {:<10} {:>8} {:>12}  {:<7} {}",
                    l.thing_name,
                    l.state,
                    l.age_hours,
                    l.deadline_in_hours,
                    if l.resent { "yes" } else { "no" },
                    l.rotation_id
                );
            }
        }
        out
    }
}

/// One thing's pointer and the rotation it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThingStatus {
    /// The thing.
    pub thing_name: String,
    /// The pointer's `latest` rotation id; `None`: the thing never rotated
    /// (or its rows expired by TTL).
    pub latest: Option<String>,
    /// The pointer says the rotation is open.
    pub open: bool,
    /// The row of `latest`.
    pub rotation: Option<Rotation>,
}

impl ThingStatus {
    fn text(&self, now_ms: i64) -> String {
        let Some(id) = &self.latest else {
            return format!(
                "{}: no rotation (never rotated, or its rows expired)\n",
                self.thing_name
            );
        };
        let mut out = format!(
            "{}: latest rotation {id} ({})\n",
            self.thing_name,
            if self.open { "open" } else { "closed" }
        );
        if let Some(r) = &self.rotation {
            let hours = |ms: i64| ms.div_euclid(HOUR_MS);
            out.push_str(&format!(
                "  state            {}\n  started          {} h ago\n  deadline         in {} h\n  old certificate  {}\n",
                r.state.name(),
                hours(now_ms - r.created_at_ms),
                hours(r.deadline_ms - now_ms),
                r.old_certificate_id
            ));
            if let Some(new) = r.state.new_certificate_id() {
                out.push_str(&format!("  new certificate  {new}\n"));
            }
            out.push_str(&format!("  csr_res accepted {}\n", r.attempts));
            if let Some(at) = r.resent_at_ms {
                out.push_str(&format!(
                    "  re-sent          {} h ago\n",
                    hours(now_ms - at)
                ));
            }
            if r.cleanup_pending {
                out.push_str("  cleanup          owed (a retry or the sweeper finishes it)\n");
            }
            if let rules::rotation::RotationState::Failed { reason, .. } = &r.state {
                out.push_str(&format!("  device error     {reason}\n"));
            }
        }
        out
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Runs `fleetcert status`.
pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(status(args))
}

async fn client(args: &StatusArgs) -> anyhow::Result<Client> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(3));
    if let Some(region) = &args.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(profile) = &args.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &args.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        anyhow::bail!(
            "no AWS region: pass --region, or set AWS_REGION or a region in the AWS profile"
        );
    }
    Ok(Client::new(&config))
}

async fn status(mut args: StatusArgs) -> anyhow::Result<()> {
    if args.table.is_none() {
        args.table = std::env::var("FLEETCERT_TABLE")
            .ok()
            .filter(|t| !t.is_empty());
    }
    let Some(table) = args.table.clone() else {
        anyhow::bail!("no rotation table: pass --table NAME or set FLEETCERT_TABLE");
    };
    let client = client(&args).await?;
    let now = now_ms();
    if let Some(thing) = &args.thing {
        let t = thing_status(&client, &table, thing).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&t)?);
        } else {
            print!("{}", t.text(now));
        }
        return Ok(());
    }
    let rows = read_rows(&client, &table, &args).await?;
    let summary = Summary::of(
        if args.scan { "scan" } else { "due-index" },
        &rows,
        now,
        args.oldest,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.text());
    }
    Ok(())
}

type Item = HashMap<String, AttributeValue>;

fn row_of(item: &Item) -> anyhow::Result<Option<Rotation>> {
    match item.get("row") {
        Some(AttributeValue::S(json)) => Ok(Some(
            serde_json::from_str(json).context("a rotation row's `row` is not a rotation")?,
        )),
        _ => Ok(None),
    }
}

/// Every page of the due index (or of a Scan), paced and counted.
async fn read_rows(
    client: &Client,
    table: &str,
    args: &StatusArgs,
) -> anyhow::Result<Vec<Rotation>> {
    let per_second = NonZeroU32::new(args.pages_per_second).unwrap_or(NonZeroU32::MIN);
    let limiter = RateLimiter::direct(Quota::per_second(per_second));
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut rows = Vec::new();
    let mut pages = 0_u64;
    let mut start: Option<Item> = None;
    loop {
        limiter.until_ready().await;
        let (items, next) = if args.scan {
            let out = client
                .scan()
                .table_name(table)
                .limit(args.page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .with_context(|| format!("Scan of table {table}"))?;
            (out.items.unwrap_or_default(), out.last_evaluated_key)
        } else {
            let out = client
                .query()
                .table_name(table)
                .index_name(DUE_INDEX)
                .key_condition_expression("#k = :due")
                .expression_attribute_names("#k", DUE_KEY_ATTRIBUTE)
                .expression_attribute_values(":due", AttributeValue::S(DUE_KEY_VALUE.to_owned()))
                .limit(args.page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .with_context(|| {
                    format!(
                        "Query of index {DUE_INDEX} ({DUE_KEY_ATTRIBUTE}, {DEADLINE_ATTRIBUTE}) of table {table}"
                    )
                })?;
            (out.items.unwrap_or_default(), out.last_evaluated_key)
        };
        pages += 1;
        for item in &items {
            if let Some(row) = row_of(item)? {
                rows.push(row);
            }
        }
        bar.set_message(format!("{} rows, {pages} pages", rows.len()));
        match next {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

async fn get(client: &Client, table: &str, key: &str) -> anyhow::Result<Option<Item>> {
    let out = client
        .get_item()
        .table_name(table)
        .key(KEY, AttributeValue::S(key.to_owned()))
        .send()
        .await
        .with_context(|| format!("GetItem {key} of table {table}"))?;
    Ok(out.item)
}

async fn thing_status(client: &Client, table: &str, thing: &str) -> anyhow::Result<ThingStatus> {
    let pointer = get(client, table, &format!("{THING_PREFIX}{thing}")).await?;
    let latest = pointer.as_ref().and_then(|p| match p.get("latest") {
        Some(AttributeValue::S(id)) => Some(id.clone()),
        _ => None,
    });
    let open = matches!(
        pointer.as_ref().and_then(|p| p.get("open")),
        Some(AttributeValue::Bool(true))
    );
    let rotation = match &latest {
        Some(id) => match get(client, table, id).await? {
            Some(item) => row_of(&item)?,
            None => None,
        },
        None => None,
    };
    Ok(ThingStatus {
        thing_name: thing.to_owned(),
        latest,
        open,
        rotation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rules::rotation::RotationState;

    fn row(id: &str, state: RotationState, created_h: i64, deadline_h: i64) -> Rotation {
        Rotation {
            state,
            ..Rotation::requested(
                id,
                format!("thing-{id}"),
                "old",
                created_h * HOUR_MS,
                deadline_h * HOUR_MS,
            )
        }
    }

    #[test]
    fn counts_by_state_age_and_deadline() {
        let now = 200 * HOUR_MS;
        let issued = RotationState::Issued {
            new_certificate_id: "n".into(),
            csr_fingerprint: "f".into(),
        };
        let committed = RotationState::Committed {
            new_certificate_id: "n".into(),
        };
        let mut owing = row("e", committed.clone(), 10, 20);
        owing.cleanup_pending = true;
        let rows = vec![
            row("a", RotationState::Requested, 199, 300), // 1 h old
            row("b", RotationState::Requested, 150, 318), // 50 h old
            row("c", issued, 20, 188),                    // 180 h old, past deadline
            row("d", committed, 100, 200),
            owing,
        ];
        let s = Summary::of("scan", &rows, now, 2);
        assert_eq!(s.rows, 5);
        assert_eq!(s.open, 3);
        assert_eq!(s.cleanup_owed, 1);
        assert_eq!(s.past_deadline, 1);
        assert_eq!(
            s.by_state,
            BTreeMap::from([
                ("COMMITTED".to_owned(), 2),
                ("ISSUED".to_owned(), 1),
                ("REQUESTED".to_owned(), 2)
            ])
        );
        let ages: Vec<usize> = s.open_by_age.iter().map(|(_, n)| *n).collect();
        assert_eq!(ages, vec![0, 1, 1, 0, 1]);
        let oldest: Vec<(&str, i64, i64)> = s
            .oldest
            .iter()
            .map(|l| (l.rotation_id.as_str(), l.age_hours, l.deadline_in_hours))
            .collect();
        assert_eq!(oldest, vec![("c", 180, -12), ("b", 50, 118)]);
        let text = s.text();
        assert!(text.contains("thing-c"), "{text}");
        assert!(!text.contains("thing-a"), "only the 2 oldest: {text}");
    }

    #[test]
    fn nothing_open_reads_as_zeros() {
        let s = Summary::of("due-index", &[], 0, 10);
        assert_eq!(s.open, 0);
        assert!(s.open_by_age.iter().all(|(_, n)| *n == 0));
        assert!(s.text().contains("open rotations: 0"));
    }
}
