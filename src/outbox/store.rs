//! The outbox table: every state change is a conditional write on the row's
//! current state, so a retried batch, a second relay or a late redrive can
//! never move a row the wrong way.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use aws_sdk_dynamodb::Client;
use futures::{stream, StreamExt, TryStreamExt};
use time::OffsetDateTime;

use super::row::{epoch_ms, rfc3339, OutboxRow, Status, DUE_SHARDS};
use crate::kafka::Delivery;

/// The sparse index of rows that have work to do: `due_shard` / `due_at`.
pub const DUE_INDEX: &str = "due";

/// How many conditional writes one relay keeps in flight.
const WRITE_CONCURRENCY: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttling, a network error, a 5xx: the same call may pass later.
    #[error("transient DynamoDB error: {0}")]
    Transient(String),
    /// A request DynamoDB will refuse again whatever the moment (validation,
    /// item too large). A missing table or permission is not one of these:
    /// it is fixed by deploying, and the record must wait for it, not be rejected.
    #[error("DynamoDB refused the request: {0}")]
    Permanent(String),
    #[error("a stored outbox row cannot be read: {0}")]
    Corrupt(String),
}

impl StoreError {
    fn from_sdk<E, R>(err: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let permanent = matches!(
            err.code(),
            Some(
                "ValidationException"
                    | "ResourceNotFoundException"
                    | "AccessDeniedException"
                    | "SerializationException"
            )
        );
        let text = DisplayErrorContext(&err).to_string();
        if permanent {
            StoreError::Permanent(text)
        } else {
            StoreError::Transient(text)
        }
    }
}

/// Whether a conditional write found the row in the state it expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Yes,
    /// The condition did not hold: someone else moved the row first.
    ConditionFailed,
}

fn is_condition_failure<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

#[derive(Clone)]
pub struct OutboxStore {
    client: Client,
    table: String,
}

impl OutboxStore {
    pub fn new(client: Client, table: impl Into<String>) -> OutboxStore {
        OutboxStore {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes a new row unless a row with its id exists (a redelivered
    /// stream record): the outbox never gets a second row for one record.
    pub async fn insert(&self, row: &OutboxRow) -> Result<Written, StoreError> {
        let item = serde_dynamo::to_item(row).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(Written::Yes),
            Err(e) if is_condition_failure(&e) => Ok(Written::ConditionFailed),
            Err(e) => Err(StoreError::from_sdk(e)),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<OutboxRow>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        out.item.map(parse_row).transpose()
    }

    /// Ids of rows due at `now` (PENDING past their backoff, or IN_FLIGHT
    /// with an expired lease), at most `limit`, oldest first per shard.
    pub async fn due_ids(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let per_shard = (limit as u32).div_ceil(DUE_SHARDS).max(1) as i32;
        let now = epoch_ms(now);
        let queries = (0..DUE_SHARDS).map(|shard| {
            self.client
                .query()
                .table_name(&self.table)
                .index_name(DUE_INDEX)
                .key_condition_expression("due_shard = :shard AND due_at <= :now")
                .expression_attribute_values(":shard", s(shard.to_string()))
                .expression_attribute_values(":now", n(now))
                .limit(per_shard)
                .send()
        });
        let pages: Vec<_> = futures::future::join_all(queries).await;
        let mut ids = Vec::new();
        for page in pages {
            let page = page.map_err(StoreError::from_sdk)?;
            for item in page.items.unwrap_or_default() {
                if let Some(AttributeValue::S(id)) = item.get("id") {
                    ids.push(id.clone());
                }
            }
        }
        ids.truncate(limit);
        Ok(ids)
    }

    /// Claims rows for `owner` until `lease_until` (epoch ms): PENDING rows
    /// past their backoff and IN_FLIGHT rows whose lease expired. Each claim
    /// counts an attempt. Rows someone else claimed first are skipped.
    pub async fn claim(
        &self,
        ids: &[String],
        owner: &str,
        now: OffsetDateTime,
        lease_until: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let now = epoch_ms(now);
        let claims = ids.iter().cloned().map(|id| async move {
                let result = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("id", s(id))
                    .condition_expression(
                        "(#status = :pending AND due_at <= :now) OR (#status = :in_flight AND lease_until < :now)",
                    )
                    .update_expression(
                        "SET #status = :in_flight, lease_owner = :owner, lease_until = :until, due_at = :until \
                         ADD attempts :one",
                    )
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":pending", s(Status::Pending.as_str()))
                    .expression_attribute_values(":in_flight", s(Status::InFlight.as_str()))
                    .expression_attribute_values(":now", n(now))
                    .expression_attribute_values(":owner", s(owner))
                    .expression_attribute_values(":until", n(lease_until))
                    .expression_attribute_values(":one", n(1))
                    .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
                    .send()
                    .await;
                match result {
                    Ok(out) => out.attributes.map(parse_row).transpose(),
                    Err(e) if is_condition_failure(&e) => Ok(None),
                    Err(e) => Err(StoreError::from_sdk(e)),
                }
            })
            .collect::<Vec<_>>();
        let claimed: Vec<Option<OutboxRow>> = stream::iter(claims)
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(claimed.into_iter().flatten().collect())
    }

    /// IN_FLIGHT → DELIVERED with the broker's answer, if `owner` still holds
    /// the lease. The row leaves the due index.
    pub async fn mark_delivered(
        &self,
        id: &str,
        owner: &str,
        delivery: &Delivery,
        now: OffsetDateTime,
    ) -> Result<Written, StoreError> {
        let result = self
            .owned_update(id, owner)
            .update_expression(
                "SET #status = :delivered, kafka_topic = :topic, kafka_partition = :partition, \
                 kafka_offset = :offset, kafka_timestamp = :timestamp, delivered_at = :now \
                 REMOVE due_shard, due_at, lease_owner, lease_until",
            )
            .expression_attribute_values(":delivered", s(Status::Delivered.as_str()))
            .expression_attribute_values(":topic", s(&delivery.topic))
            .expression_attribute_values(":partition", n(delivery.partition))
            .expression_attribute_values(":offset", n(delivery.offset))
            .expression_attribute_values(":timestamp", n(delivery.timestamp))
            .expression_attribute_values(":now", s(rfc3339(now)))
            .send()
            .await;
        written(result)
    }

    /// IN_FLIGHT → PENDING, due again at `due_at` (epoch ms), keeping the error.
    pub async fn mark_retry(
        &self,
        id: &str,
        owner: &str,
        error: &str,
        due_at: i64,
    ) -> Result<Written, StoreError> {
        let result = self
            .owned_update(id, owner)
            .update_expression(
                "SET #status = :pending, last_error = :error, due_at = :due REMOVE lease_owner, lease_until",
            )
            .expression_attribute_values(":pending", s(Status::Pending.as_str()))
            .expression_attribute_values(":error", s(error))
            .expression_attribute_values(":due", n(due_at))
            .send()
            .await;
        written(result)
    }

    /// IN_FLIGHT → FAILED with the last error; the row leaves the due index
    /// until an operator redrives it.
    pub async fn mark_failed(
        &self,
        id: &str,
        owner: &str,
        error: &str,
    ) -> Result<Written, StoreError> {
        let result = self
            .owned_update(id, owner)
            .update_expression(
                "SET #status = :failed, last_error = :error REMOVE due_shard, due_at, lease_owner, lease_until",
            )
            .expression_attribute_values(":failed", s(Status::Failed.as_str()))
            .expression_attribute_values(":error", s(error))
            .send()
            .await;
        written(result)
    }

    /// An update that holds only while `owner` has the row IN_FLIGHT.
    fn owned_update(
        &self,
        id: &str,
        owner: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id))
            .condition_expression("#status = :in_flight_now AND lease_owner = :me")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_flight_now", s(Status::InFlight.as_str()))
            .expression_attribute_values(":me", s(owner))
    }

    /// Every row (tests and the demo's report; tables of millions use audit).
    pub async fn scan_all(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let pages: Vec<_> = self
            .client
            .scan()
            .table_name(&self.table)
            .select(Select::AllAttributes)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(StoreError::from_sdk)?;
        pages
            .into_iter()
            .flat_map(|p| p.items.unwrap_or_default())
            .map(parse_row)
            .collect()
    }
}

fn written<T, E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    result: Result<T, SdkError<E, R>>,
) -> Result<Written, StoreError> {
    match result {
        Ok(_) => Ok(Written::Yes),
        Err(e) if is_condition_failure(&e) => Ok(Written::ConditionFailed),
        Err(e) => Err(StoreError::from_sdk(e)),
    }
}

fn parse_row(item: HashMap<String, AttributeValue>) -> Result<OutboxRow, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}
