//! [`DynamoStore`]: rotation rows in the DynamoDB table `ROTATION_TABLE`
//! (hash key `rotationId`, type S, as infra deploys it).
//!
//! Two kinds of items share the table:
//!
//! | `rotationId`          | other attributes                                                   |
//! |-----------------------|--------------------------------------------------------------------|
//! | `<rotation id>`       | `row` (the [`Rotation`] as JSON), `thingName`, `state`, `open` (BOOL), `cleanupPending` (BOOL), `deadlineMs` (N), `createdAtMs` (N); `dueKey` = `due` while open or owing a cleanup, else `expiresAt` (N, the TTL) |
//! | `thing#<thing name>`  | `latest` (the thing's most recently created rotation id), `open` (BOOL); `expiresAt` once closed |
//! | `campaign#…`          | `campaign` (a `rules::campaign::CampaignItem` as JSON): a campaign, its member chunks, the list of active campaigns |
//!
//! The sparse global secondary index `due` (partition `dueKey`, sort
//! `deadlineMs`, projecting `row`) holds only the rows the sweeper may act
//! on: `open_due` is one `Query` page of it, never a scan of the fleet.
//! The global secondary index `certificate` (partition `oldCertificateId`,
//! sort `createdAtMs`, projecting `row`; pointer rows have neither) finds a
//! certificate's latest rotation: `latest_for_certificate` is one `Query`
//! of one item, newest first.
//!
//! Rotation ids are `[A-Za-z0-9_-]`, so no rotation id starts with `thing#`.
//! The pointer row makes "one open rotation per thing" a condition
//! DynamoDB checks: `create` writes the rotation row and the pointer in
//! one transaction, the pointer only if the thing has none or its rotation
//! is closed; `update` writes the row on condition that the stored `row`
//! is the JSON of `expected`, and closes the pointer in the same
//! transaction when the rotation ends.
//!
//! IAM actions: `dynamodb:PutItem` and `dynamodb:UpdateItem` (the items of
//! `TransactWriteItems`), `dynamodb:GetItem`, `dynamodb:Query` (the due
//! and certificate indexes).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use rules::campaign::{CAMPAIGN_ATTRIBUTE, CAMPAIGN_PREFIX, CampaignItem};
use rules::rotation::Rotation;

use super::error::{classify, unexpected};
use crate::config::{
    CERTIFICATE_INDEX, CREATED_AT_ATTRIBUTE, DEADLINE_ATTRIBUTE, DEFAULT_ROTATION_TTL_DAYS,
    DUE_INDEX, DUE_KEY_ATTRIBUTE, DUE_KEY_VALUE, OLD_CERTIFICATE_ATTRIBUTE, ROTATION_TTL_ATTRIBUTE,
};
use crate::ports::{CampaignWrite, Operation, Page, PortError, PortResult, RotationStore};

/// The table's hash key.
pub const KEY: &str = "rotationId";
/// Prefix of a thing's pointer row key.
pub const THING_PREFIX: &str = "thing#";

type Item = HashMap<String, AttributeValue>;

/// Rotation rows in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    page_size: Option<i32>,
    ttl_days: u32,
}

impl DynamoStore {
    /// A store over `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            page_size: None,
            ttl_days: DEFAULT_ROTATION_TTL_DAYS,
        }
    }

    /// Finished rows (and their thing's pointer row) get the TTL attribute
    /// [`ROTATION_TTL_ATTRIBUTE`]: `days` after the rotation's deadline.
    /// Open rows, and closed rows whose cleanup is pending, never expire.
    #[must_use]
    pub fn with_ttl_days(mut self, days: u32) -> Self {
        self.ttl_days = days.max(1);
        self
    }

    /// When a finished `rotation`'s rows expire (epoch seconds): `ttl_days`
    /// after its deadline (or its start, if later). Derived from the row
    /// alone, so writing the same row twice writes the same value.
    fn expires_at(&self, rotation: &Rotation) -> i64 {
        let from_ms = rotation.deadline_ms.max(rotation.created_at_ms);
        from_ms.div_euclid(1000) + i64::from(self.ttl_days) * 24 * 60 * 60
    }

    /// The item of a rotation row: in the due index while the sweeper may
    /// have to act on it (open, or a cleanup pending), otherwise with its
    /// expiry.
    fn rotation_item(&self, op: Operation, rotation: &Rotation) -> PortResult<Item> {
        let mut item = rotation_item(op, rotation)?;
        if rotation.is_unsettled() {
            item.insert(
                DUE_KEY_ATTRIBUTE.to_owned(),
                AttributeValue::S(DUE_KEY_VALUE.to_owned()),
            );
        } else {
            item.insert(
                ROTATION_TTL_ATTRIBUTE.to_owned(),
                AttributeValue::N(self.expires_at(rotation).to_string()),
            );
        }
        Ok(item)
    }

    /// Reads at most `items` items per `open_due` page (the Query `Limit`);
    /// without it a page is up to 1 MB.
    #[must_use]
    pub fn with_page_size(mut self, items: u16) -> Self {
        self.page_size = Some(i32::from(items.max(1)));
        self
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get_item(&self, op: Operation, key: &str) -> PortResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        Ok(out.item)
    }

    async fn get_row(&self, op: Operation, rotation_id: &str) -> PortResult<Option<Rotation>> {
        self.get_item(op, rotation_id)
            .await?
            .map(|item| row_of(op, &item))
            .transpose()
    }

    async fn transact(
        &self,
        op: Operation,
        items: Vec<TransactWriteItem>,
        what: &[String],
    ) -> PortResult<()> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let Err(err) = result else { return Ok(()) };
        if let Some(TransactWriteItemsError::TransactionCanceledException(e)) =
            err.as_service_error()
        {
            let codes: Vec<&str> = e
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None"))
                .collect();
            let failed: Vec<&str> = codes
                .iter()
                .zip(what)
                .filter(|(c, _)| **c == "ConditionalCheckFailed")
                .map(|(_, w)| w.as_str())
                .collect();
            if !failed.is_empty() {
                return Err(PortError::ConditionFailed {
                    operation: op,
                    message: failed.join("; "),
                });
            }
            let message = format!("transaction canceled: [{}]", codes.join(", "));
            return Err(
                if codes
                    .iter()
                    .any(|c| *c == "ThrottlingError" || *c == "ProvisionedThroughputExceeded")
                {
                    PortError::Throttled {
                        operation: op,
                        message,
                    }
                } else if codes.contains(&"TransactionConflict") {
                    PortError::Transient {
                        operation: op,
                        message,
                    }
                } else {
                    PortError::Other {
                        operation: op,
                        message,
                    }
                },
            );
        }
        Err(classify(op, &err))
    }

    fn put(
        &self,
        op: Operation,
        item: Item,
        condition: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> PortResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(names_of(names))
            .set_expression_attribute_values(values_of(values))
            .build()
            .map_err(|e| invalid(op, e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

fn invalid(op: Operation, e: impl std::fmt::Display) -> PortError {
    PortError::Invalid {
        operation: op,
        message: e.to_string(),
    }
}

fn names_of(names: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    (!names.is_empty()).then(|| {
        names
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    })
}

fn values_of(values: Vec<(&str, AttributeValue)>) -> Option<Item> {
    (!values.is_empty()).then(|| values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// The pointer row key of `thing_name`.
pub fn thing_key(thing_name: &str) -> String {
    format!("{THING_PREFIX}{thing_name}")
}

fn row_json(op: Operation, rotation: &Rotation) -> PortResult<String> {
    serde_json::to_string(rotation).map_err(|e| invalid(op, e))
}

/// The item of a rotation row, without its TTL.
fn rotation_item(op: Operation, rotation: &Rotation) -> PortResult<Item> {
    Ok(HashMap::from([
        (
            KEY.to_owned(),
            AttributeValue::S(rotation.rotation_id.clone()),
        ),
        ("row".to_owned(), AttributeValue::S(row_json(op, rotation)?)),
        (
            "thingName".to_owned(),
            AttributeValue::S(rotation.thing_name.clone()),
        ),
        (
            "state".to_owned(),
            AttributeValue::S(rotation.state.name().to_owned()),
        ),
        (
            "open".to_owned(),
            AttributeValue::Bool(rotation.state.is_open()),
        ),
        (
            "cleanupPending".to_owned(),
            AttributeValue::Bool(rotation.cleanup_pending),
        ),
        (
            DEADLINE_ATTRIBUTE.to_owned(),
            AttributeValue::N(rotation.deadline_ms.to_string()),
        ),
        (
            CREATED_AT_ATTRIBUTE.to_owned(),
            AttributeValue::N(rotation.created_at_ms.to_string()),
        ),
        (
            OLD_CERTIFICATE_ATTRIBUTE.to_owned(),
            AttributeValue::S(rotation.old_certificate_id.clone()),
        ),
    ]))
}

/// The rotation stored in a rotation row.
fn row_of(op: Operation, item: &Item) -> PortResult<Rotation> {
    let key = item.get(KEY).and_then(|v| v.as_s().ok());
    let Some(AttributeValue::S(json)) = item.get("row") else {
        return Err(unexpected(
            op,
            format_args!("item {key:?} has no row attribute"),
        ));
    };
    serde_json::from_str(json)
        .map_err(|e| unexpected(op, format_args!("item {key:?}: row is not a rotation: {e}")))
}

/// `next_token` ⇄ `ExclusiveStartKey`: the key's attributes (the table's
/// and the due index's: strings and numbers) as a JSON object,
/// `{"rotationId": {"S": "r-1"}, "deadlineMs": {"N": "5000"}, ...}`.
fn token_of(key: &Item) -> Option<String> {
    let map: serde_json::Map<String, serde_json::Value> = key
        .iter()
        .filter_map(|(k, v)| {
            let typed = match v {
                AttributeValue::S(s) => serde_json::json!({ "S": s }),
                AttributeValue::N(n) => serde_json::json!({ "N": n }),
                _ => return None,
            };
            Some((k.clone(), typed))
        })
        .collect();
    (!map.is_empty()).then(|| serde_json::Value::Object(map).to_string())
}

fn key_of(op: Operation, token: &str) -> PortResult<Item> {
    let bad = || PortError::Invalid {
        operation: op,
        message: format!("next token {token:?} is not one this store returned"),
    };
    let map: HashMap<String, HashMap<String, String>> =
        serde_json::from_str(token).map_err(|_| bad())?;
    if !map.contains_key(KEY) {
        return Err(bad());
    }
    map.into_iter()
        .map(|(k, typed)| {
            let mut typed = typed.into_iter();
            let value = match (typed.next(), typed.next()) {
                (Some((t, v)), None) if t == "S" => AttributeValue::S(v),
                (Some((t, v)), None) if t == "N" && v.parse::<i64>().is_ok() => {
                    AttributeValue::N(v)
                }
                _ => return Err(bad()),
            };
            Ok((k, value))
        })
        .collect()
}

impl RotationStore for DynamoStore {
    async fn create(&self, rotation: &Rotation) -> PortResult<()> {
        let op = Operation::CreateRotation;
        let row = self.put(
            op,
            self.rotation_item(op, rotation)?,
            "attribute_not_exists(#k)",
            &[("#k", KEY)],
            vec![],
        )?;
        let pointer = self.put(
            op,
            HashMap::from([
                (
                    KEY.to_owned(),
                    AttributeValue::S(thing_key(&rotation.thing_name)),
                ),
                (
                    "latest".to_owned(),
                    AttributeValue::S(rotation.rotation_id.clone()),
                ),
                (
                    "open".to_owned(),
                    AttributeValue::Bool(rotation.state.is_open()),
                ),
            ]),
            "attribute_not_exists(#k) OR #open = :false",
            &[("#k", KEY), ("#open", "open")],
            vec![(":false", AttributeValue::Bool(false))],
        )?;
        self.transact(
            op,
            vec![row, pointer],
            &[
                format!("rotation {} exists", rotation.rotation_id),
                format!("thing {} has an open rotation", rotation.thing_name),
            ],
        )
        .await
    }

    async fn get(&self, rotation_id: &str) -> PortResult<Option<Rotation>> {
        if rotation_id.starts_with(THING_PREFIX) {
            // A pointer row's key is no rotation id.
            return Ok(None);
        }
        self.get_row(Operation::GetRotation, rotation_id).await
    }

    async fn latest_for_thing(&self, thing_name: &str) -> PortResult<Option<Rotation>> {
        let op = Operation::LatestRotationForThing;
        let Some(pointer) = self.get_item(op, &thing_key(thing_name)).await? else {
            return Ok(None);
        };
        let Some(AttributeValue::S(latest)) = pointer.get("latest") else {
            return Err(unexpected(
                op,
                format_args!("pointer row of thing {thing_name} has no latest attribute"),
            ));
        };
        self.get_row(op, latest).await
    }

    async fn latest_for_certificate(
        &self,
        old_certificate_id: &str,
    ) -> PortResult<Option<Rotation>> {
        let op = Operation::LatestRotationForCertificate;
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(CERTIFICATE_INDEX)
            .key_condition_expression("#old = :old")
            .set_expression_attribute_names(names_of(&[("#old", OLD_CERTIFICATE_ATTRIBUTE)]))
            .set_expression_attribute_values(values_of(vec![(
                ":old",
                AttributeValue::S(old_certificate_id.to_owned()),
            )]))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        out.items().first().map(|item| row_of(op, item)).transpose()
    }

    async fn update(&self, expected: &Rotation, next: &Rotation) -> PortResult<()> {
        let op = Operation::UpdateRotation;
        if expected.rotation_id != next.rotation_id || expected.thing_name != next.thing_name {
            return Err(PortError::Invalid {
                operation: op,
                message: "an update may not change the rotation id or the thing".to_owned(),
            });
        }
        let mut items = vec![self.put(
            op,
            self.rotation_item(op, next)?,
            "#row = :expected",
            &[("#row", "row")],
            vec![(":expected", AttributeValue::S(row_json(op, expected)?))],
        )?];
        let mut what = vec![format!(
            "rotation {} changed since it was read or does not exist",
            expected.rotation_id
        )];
        if expected.closes_into(next) {
            // While a rotation is open its thing's pointer names it (create
            // refuses a second open rotation); the condition keeps it so.
            let close = Update::builder()
                .table_name(&self.table)
                .key(KEY, AttributeValue::S(thing_key(&next.thing_name)))
                .update_expression("SET #open = :false, #expires = :expires")
                .condition_expression("#latest = :id")
                .set_expression_attribute_names(names_of(&[
                    ("#open", "open"),
                    ("#latest", "latest"),
                    ("#expires", ROTATION_TTL_ATTRIBUTE),
                ]))
                .set_expression_attribute_values(values_of(vec![
                    (":false", AttributeValue::Bool(false)),
                    (":id", AttributeValue::S(next.rotation_id.clone())),
                    (
                        ":expires",
                        AttributeValue::N(self.expires_at(next).to_string()),
                    ),
                ]))
                .build()
                .map_err(|e| invalid(op, e))?;
            items.push(TransactWriteItem::builder().update(close).build());
            what.push(format!(
                "thing {} points at another rotation than {}",
                next.thing_name, next.rotation_id
            ));
        }
        self.transact(op, items, &what).await
    }

    async fn open_due(
        &self,
        before_ms: i64,
        next_token: Option<String>,
    ) -> PortResult<Page<Rotation>> {
        let op = Operation::ListDueRotations;
        let start = next_token.as_deref().map(|t| key_of(op, t)).transpose()?;
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("#due = :due AND #deadline < :before")
            .set_expression_attribute_names(names_of(&[
                ("#due", DUE_KEY_ATTRIBUTE),
                ("#deadline", DEADLINE_ATTRIBUTE),
            ]))
            .set_expression_attribute_values(values_of(vec![
                (":due", AttributeValue::S(DUE_KEY_VALUE.to_owned())),
                (":before", AttributeValue::N(before_ms.to_string())),
            ]))
            .set_exclusive_start_key(start)
            .set_limit(self.page_size)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        let items = out
            .items()
            .iter()
            .map(|item| row_of(op, item))
            .collect::<PortResult<_>>()?;
        Ok(Page {
            items,
            next_token: out.last_evaluated_key().and_then(token_of),
        })
    }

    async fn get_campaign(&self, key: &str) -> PortResult<Option<CampaignItem>> {
        let op = Operation::GetCampaign;
        if !key.starts_with(CAMPAIGN_PREFIX) {
            return Err(invalid(op, format_args!("{key} is no campaign key")));
        }
        let Some(item) = self.get_item(op, key).await? else {
            return Ok(None);
        };
        let Some(AttributeValue::S(json)) = item.get(CAMPAIGN_ATTRIBUTE) else {
            return Err(unexpected(
                op,
                format_args!("item {key} has no {CAMPAIGN_ATTRIBUTE} attribute"),
            ));
        };
        serde_json::from_str(json)
            .map(Some)
            .map_err(|e| unexpected(op, format_args!("item {key} is no campaign item: {e}")))
    }

    async fn put_campaign(&self, writes: &[CampaignWrite]) -> PortResult<()> {
        let op = Operation::PutCampaign;
        CampaignWrite::check(writes)?;
        let mut items = Vec::with_capacity(writes.len());
        let mut what = Vec::with_capacity(writes.len());
        for w in writes {
            let key = w.next.key();
            let json = serde_json::to_string(&w.next).map_err(|e| invalid(op, e))?;
            let item = HashMap::from([
                (KEY.to_owned(), AttributeValue::S(key.clone())),
                (CAMPAIGN_ATTRIBUTE.to_owned(), AttributeValue::S(json)),
            ]);
            items.push(match &w.expected {
                None => self.put(op, item, "attribute_not_exists(#k)", &[("#k", KEY)], vec![])?,
                Some(expected) => self.put(
                    op,
                    item,
                    "#c = :expected",
                    &[("#c", CAMPAIGN_ATTRIBUTE)],
                    vec![(
                        ":expected",
                        AttributeValue::S(
                            serde_json::to_string(expected).map_err(|e| invalid(op, e))?,
                        ),
                    )],
                )?,
            });
            what.push(format!("{key} changed since it was read"));
        }
        self.transact(op, items, &what).await
    }
}
