//! `fleetcert campaign status|pause|resume|cancel <id>` (feature `rotate`)
//! and the campaign `fleetcert rotate --canary …` writes: the campaign
//! items of the rotation table (`rules::campaign`: the `campaign#…` keys,
//! the `campaign` attribute holding the item's JSON), written with the same
//! conditions as the handlers' DynamoDB adapter (`lambdas::aws::dynamo`):
//! absent for a new item, else the item exactly as read. The sweeper reads
//! them at every sweep; a change the operator makes here is what it acts
//! on next.

use anyhow::{Context, bail};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use clap::{Args, Subcommand};
use rules::campaign::{
    ACTIVE_KEY, ActiveCampaigns, CAMPAIGN_ATTRIBUTE, Campaign, CampaignError, CampaignItem,
    CampaignState, MemberChunk, campaign_key, chunk_key,
};
use rules::contracts::CampaignId;
use serde::Serialize;

use crate::ca::aws::{Connection, sdk_config};

/// The table's hash key (`lambdas::aws::dynamo::KEY`).
const KEY: &str = "rotationId";

/// Arguments of `campaign`.
#[derive(Debug, Args, Clone)]
pub struct CampaignArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand, Clone)]
enum Action {
    /// The campaign's state, wave, counts and, when paused by its abort
    /// rule, the numbers it tripped on.
    Status(Target),
    /// Stop releasing members (open rotations finish).
    Pause(Target),
    /// Release members again; the abort rule starts over (its last
    /// outcomes were the reason it paused). Failed members are released
    /// again unless `--no-retry-failed`.
    Resume {
        #[command(flatten)]
        target: Target,
        /// Leave the failed members failed.
        #[arg(long)]
        no_retry_failed: bool,
    },
    /// Release nothing more, ever (open rotations finish).
    Cancel(Target),
}

/// Which campaign, in which table, through which AWS endpoint.
#[derive(Debug, Args, Clone)]
pub struct Target {
    /// The campaign id (`fleetcert rotate --canary` printed it).
    id: String,
    #[command(flatten)]
    table: TableArgs,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// The rotation table and how to reach it.
#[derive(Debug, Args, Clone)]
pub struct TableArgs {
    /// The rotation table (the stack's output `RotationTableName`); default
    /// `FLEETCERT_TABLE`.
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    /// AWS endpoint to call instead of AWS's (e.g. a local moto server).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region. Default: AWS_REGION, else the profile's region.
    #[arg(long)]
    pub region: Option<String>,
    /// AWS profile to take credentials and region from.
    #[arg(long)]
    pub profile: Option<String>,
    /// Attempts per AWS call (standard retry with back-off).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub max_attempts: u32,
}

impl TableArgs {
    /// The table name: `--table`, else `FLEETCERT_TABLE`.
    ///
    /// # Errors
    /// Neither given.
    pub fn table_name(&self) -> anyhow::Result<String> {
        self.table
            .clone()
            .or_else(|| std::env::var("FLEETCERT_TABLE").ok())
            .filter(|t| !t.is_empty())
            .context("no rotation table: pass --table NAME (the stack's RotationTableName) or set FLEETCERT_TABLE")
    }

    /// The campaign items of the table.
    ///
    /// # Errors
    /// No table named, or the SDK's configuration fails.
    pub async fn items(&self) -> anyhow::Result<Items> {
        let table = self.table_name()?;
        let config = sdk_config(&Connection {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            profile: self.profile.clone(),
            max_attempts: self.max_attempts,
        })
        .await?;
        Ok(Items {
            client: Client::new(&config),
            table,
        })
    }
}

/// The campaign items of one rotation table.
pub struct Items {
    client: Client,
    table: String,
}

/// A write that lost its condition: the item changed since it was read.
#[derive(Debug, thiserror::Error)]
#[error("{0} changed since it was read")]
pub struct Changed(String);

impl Items {
    /// The item under `key`.
    ///
    /// # Errors
    /// The call fails, or the item is no campaign item.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<CampaignItem>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .with_context(|| format!("GetItem {key} of table {}", self.table))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let Some(AttributeValue::S(json)) = item.get(CAMPAIGN_ATTRIBUTE) else {
            bail!(
                "item {key} of table {} has no {CAMPAIGN_ATTRIBUTE} attribute",
                self.table
            );
        };
        serde_json::from_str(json)
            .map(Some)
            .with_context(|| format!("item {key} is no campaign item"))
    }

    /// Writes `(expected, next)` pairs in one transaction, each on
    /// condition that the stored item is `expected` (`None`: absent).
    ///
    /// # Errors
    /// [`Changed`] (downcast) when a condition failed; other failures.
    pub async fn put(&self, writes: &[(Option<CampaignItem>, CampaignItem)]) -> anyhow::Result<()> {
        let mut items = Vec::with_capacity(writes.len());
        for (expected, next) in writes {
            let mut put = Put::builder()
                .table_name(&self.table)
                .item(KEY, AttributeValue::S(next.key()))
                .item(
                    CAMPAIGN_ATTRIBUTE,
                    AttributeValue::S(serde_json::to_string(next)?),
                );
            put = match expected {
                None => put
                    .condition_expression("attribute_not_exists(#k)")
                    .expression_attribute_names("#k", KEY),
                Some(e) => put
                    .condition_expression("#c = :expected")
                    .expression_attribute_names("#c", CAMPAIGN_ATTRIBUTE)
                    .expression_attribute_values(
                        ":expected",
                        AttributeValue::S(serde_json::to_string(e)?),
                    ),
            };
            items.push(
                TransactWriteItem::builder()
                    .put(put.build().context("put")?)
                    .build(),
            );
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(c)) =
                    e.as_service_error()
                {
                    let changed: Vec<String> = c
                        .cancellation_reasons()
                        .iter()
                        .zip(writes)
                        .filter(|(r, _)| r.code() == Some("ConditionalCheckFailed"))
                        .map(|(_, (_, next))| next.key())
                        .collect();
                    if !changed.is_empty() {
                        return Err(Changed(changed.join(", ")).into());
                    }
                }
                Err(anyhow::Error::new(e)
                    .context(format!("TransactWriteItems on table {}", self.table)))
            }
        }
    }

    /// The campaign `id`.
    ///
    /// # Errors
    /// The call fails.
    pub async fn campaign(&self, id: &CampaignId) -> anyhow::Result<Option<Campaign>> {
        Ok(match self.get(&campaign_key(id)).await? {
            Some(CampaignItem::Campaign(c)) => Some(c),
            _ => None,
        })
    }

    /// Writes a new campaign: its member chunks, then the campaign row and
    /// its place in the active list in one transaction (what the sweeper
    /// looks for). A campaign with this id already there is refused before
    /// anything is written.
    ///
    /// # Errors
    /// The id is taken, or a call fails.
    pub async fn create(&self, campaign: &Campaign, chunks: &[MemberChunk]) -> anyhow::Result<()> {
        if self.campaign(&campaign.id).await?.is_some() {
            bail!(
                "campaign {} exists already: choose another --campaign-id",
                campaign.id
            );
        }
        for chunk in chunks {
            let key = chunk_key(&chunk.campaign_id, chunk.index);
            let expected = self.get(&key).await?;
            self.put(&[(expected, CampaignItem::Members(chunk.clone()))])
                .await?;
        }
        for _ in 0..5 {
            let active = self.get(ACTIVE_KEY).await?;
            let mut ids = match &active {
                Some(CampaignItem::Active(a)) => a.ids.clone(),
                _ => Vec::new(),
            };
            ids.push(campaign.id.clone());
            let writes = [
                (None, CampaignItem::Campaign(campaign.clone())),
                (active, CampaignItem::Active(ActiveCampaigns { ids })),
            ];
            match self.put(&writes).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is::<Changed>() => {}
                Err(e) => return Err(e),
            }
        }
        bail!("the list of active campaigns kept changing: try again")
    }

    /// Applies `f` to the campaign with a conditional write, reading it
    /// again when a sweep wrote it meanwhile.
    ///
    /// # Errors
    /// No such campaign, the change refused, or a call fails.
    pub async fn change(
        &self,
        id: &CampaignId,
        f: impl Fn(&Campaign) -> Result<Campaign, CampaignError>,
    ) -> anyhow::Result<Campaign> {
        for _ in 0..10 {
            let Some(current) = self.campaign(id).await? else {
                bail!("no campaign {id} in table {}", self.table);
            };
            let next = f(&current)?;
            if next == current {
                return Ok(next);
            }
            let write = (
                Some(CampaignItem::Campaign(current)),
                CampaignItem::Campaign(next.clone()),
            );
            match self.put(&[write]).await {
                Ok(()) => return Ok(next),
                Err(e) if e.is::<Changed>() => {}
                Err(e) => return Err(e),
            }
        }
        bail!("campaign {id} kept changing under the sweeper: try again")
    }
}

/// What `campaign status` prints as JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    #[serde(flatten)]
    campaign: &'a Campaign,
    waves: Vec<u32>,
}

/// Runs `campaign`.
///
/// # Errors
/// Bad arguments, a refused change, AWS errors.
pub fn run(args: CampaignArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(campaign(args))
}

/// An operator's change of a campaign.
type Change = Box<dyn Fn(&Campaign) -> Result<Campaign, CampaignError>>;

async fn campaign(args: CampaignArgs) -> anyhow::Result<()> {
    let (target, change): (&Target, Option<Change>) = match &args.action {
        Action::Status(t) => (t, None),
        Action::Pause(t) => (t, Some(Box::new(Campaign::pause))),
        Action::Cancel(t) => (t, Some(Box::new(Campaign::cancel))),
        Action::Resume {
            target,
            no_retry_failed,
        } => {
            let retry = !*no_retry_failed;
            (target, Some(Box::new(move |c: &Campaign| c.resume(retry))))
        }
    };
    let id = CampaignId::new(target.id.clone())
        .map_err(|e| anyhow::anyhow!("campaign id {:?}: {e}", target.id))?;
    let items = target.table.items().await?;
    let c = match change {
        None => items
            .campaign(&id)
            .await?
            .with_context(|| format!("no campaign {id}"))?,
        Some(f) => items.change(&id, f).await?,
    };
    if target.json {
        let status = Status {
            campaign: &c,
            waves: c.waves().iter().map(|w| w.end - w.start).collect(),
        };
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&c));
    }
    Ok(())
}

/// The campaign as text.
pub fn render(c: &Campaign) -> String {
    let waves = c.waves();
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("{k:<12} {v}\n"));
    line("campaign", c.id.to_string());
    line("state", c.state.name().to_owned());
    if let CampaignState::Paused { trip: Some(trip) } = &c.state {
        line("paused by", format!("its abort rule: {trip}"));
    }
    line(
        "wave",
        format!(
            "{} of {} (sizes {:?})",
            (c.wave as usize + 1).min(waves.len()),
            waves.len(),
            waves.iter().map(|w| w.end - w.start).collect::<Vec<_>>()
        ),
    );
    line(
        "rollout",
        format!(
            "canary {}, cohorts {}, at most {}/s",
            c.rollout.canary, c.rollout.cohort, c.rollout.rate_per_second
        ),
    );
    line(
        "abort rule",
        format!(
            "failed + expired above {}% of the last {}",
            f64::from(c.abort.above_basis_points) / 100.0,
            c.abort.window
        ),
    );
    let n = &c.counts;
    line(
        "members",
        format!(
            "{} total, {} released, {} committed, {} failed, {} expired, {} skipped",
            c.total, n.released, n.committed, n.failed, n.expired, n.skipped
        ),
    );
    s
}
