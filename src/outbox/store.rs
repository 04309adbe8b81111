//! The outbox table: every state change is a conditional write on the row's
//! current state, so a retried batch, a second relay or a late redrive can
//! never move a row the wrong way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConsumedCapacity, Put, ReturnConsumedCapacity, Select, TransactWriteItem,
    Update,
};
use aws_sdk_dynamodb::Client;
use futures::{stream, StreamExt, TryStreamExt};
use time::OffsetDateTime;

use super::row::{epoch_ms, rfc3339, OutboxRow, Status, DUE_SHARDS};
use crate::kafka::Delivery;

/// The sparse index of rows that have work to do: `due_shard` / `due_at`.
pub const DUE_INDEX: &str = "due";

/// How many conditional writes one relay keeps in flight.
const WRITE_CONCURRENCY: usize = 32;

/// Tries of a state change that failed transiently (0.2 s, 0.4 s … 3.2 s apart).
const TRANSIENT_RETRIES: u32 = 5;

/// Rows marked DELIVERED per TransactWriteItems request (the service allows
/// 100). A transaction is all-or-nothing, so one row whose lease was lost
/// sends the batch down the one-by-one path; 25 keeps that cost small.
pub const MARK_BATCH: usize = 25;

/// Batched requests (insert and mark transactions, `still_new` reads) one
/// store keeps in flight at once.
const BATCH_CONCURRENCY: usize = 4;

/// New rows per TransactWriteItems request: the service's limits are 100
/// items and 4 MB, and a row can hold a 256 KB payload.
const INSERT_BATCH: usize = 100;
const INSERT_BATCH_BYTES: usize = 3 * 1024 * 1024;

/// What a claim came to, row by row: one row's trouble never fails the
/// others' claims.
#[derive(Debug, Default)]
pub struct Claimed {
    /// Rows now held under the caller's lease.
    pub rows: Vec<OutboxRow>,
    /// Rows now held under the caller's lease whose stored item is not a
    /// readable outbox row: their ids and why. The caller makes them FAILED
    /// (a row that cannot be read cannot be sent, and would be claimed
    /// again at every lease's end).
    pub unreadable: Vec<(String, String)>,
    /// Claims DynamoDB refused or did not answer; those rows are due again
    /// later (at their lease's end if the claim was written after all).
    pub errors: Vec<StoreError>,
}

/// Who may move an IN_FLIGHT-or-new row on: the condition every state change
/// of the relay is written under.
#[derive(Debug, Clone, Copy)]
pub enum Holder<'a> {
    /// The relay that claimed the row (the sweep path) and holds its lease.
    Lease(&'a str),
    /// The relay the outbox stream handed the new row to: it owns the row
    /// while it is PENDING and untouched (`attempts = 0` and no `waits`);
    /// the sweep leaves such rows alone until `SWEEP_DELAY_SECONDS` have
    /// passed. A fresh row whose send failed is no longer untouched (an
    /// attempt, or a wait, is written with the failure), so a redelivered
    /// stream batch cannot send it beside the sweep.
    Fresh,
}

/// Writes this store made, for the benchmark's writes-per-participant.
#[derive(Debug, Default)]
pub struct WriteStats {
    /// Items written (a transaction of 25 items counts 25).
    pub items: AtomicU64,
    /// Write capacity units DynamoDB reports as consumed, in tenths.
    pub capacity_tenths: AtomicU64,
}

impl WriteStats {
    fn record(&self, items: usize, capacity: &[ConsumedCapacity]) {
        self.items.fetch_add(items as u64, Ordering::Relaxed);
        let units: f64 = capacity.iter().filter_map(|c| c.capacity_units).sum();
        self.capacity_tenths
            .fetch_add((units * 10.0).round() as u64, Ordering::Relaxed);
    }

    pub fn items(&self) -> u64 {
        self.items.load(Ordering::Relaxed)
    }

    pub fn capacity_units(&self) -> f64 {
        self.capacity_tenths.load(Ordering::Relaxed) as f64 / 10.0
    }
}

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
            Some("ValidationException" | "SerializationException")
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
    stats: Arc<WriteStats>,
    /// The due-index shard the next [`due_ids`](Self::due_ids) serves first.
    next_shard: Arc<AtomicUsize>,
}

impl OutboxStore {
    pub fn new(client: Client, table: impl Into<String>) -> OutboxStore {
        OutboxStore {
            client,
            table: table.into(),
            stats: Arc::default(),
            next_shard: Arc::default(),
        }
    }

    pub fn stats(&self) -> &WriteStats {
        &self.stats
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes a new row unless a row with its id exists (a redelivered
    /// stream record): the outbox never gets a second row for one record.
    pub async fn insert(&self, row: &OutboxRow) -> Result<Written, StoreError> {
        let item = to_item(row)?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(id)")
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        if let Ok(out) = &result {
            self.stats.record(1, out.consumed_capacity.as_slice());
        }
        written(result)
    }

    /// [`insert`](Self::insert) for many rows, in transactions of conditional
    /// puts: one request per hundred rows instead of one per row,
    /// [`BATCH_CONCURRENCY`] in flight. When a transaction is cancelled
    /// (some row exists already, or one is refused), its rows are written
    /// one by one, so each gets its own answer.
    pub async fn insert_all(&self, rows: &[OutboxRow]) -> Vec<Result<Written, StoreError>> {
        self.insert_all_before(rows, None).await
    }

    /// [`insert_all`](Self::insert_all), answered by `deadline` when there
    /// is one: rows whose answer has not come by then (their transaction
    /// may or may not have been written) get a [`StoreError::Transient`],
    /// so the caller tries them again, and a retried insert finds its row
    /// there (`ConditionFailed`).
    pub async fn insert_all_before(
        &self,
        rows: &[OutboxRow],
        deadline: Option<std::time::Instant>,
    ) -> Vec<Result<Written, StoreError>> {
        let chunks: Vec<_> = insert_chunks(rows)
            .into_iter()
            .map(|chunk| self.insert_chunk(chunk))
            .collect();
        let deadline_passed = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        let mut answers: Vec<_> = stream::iter(chunks)
            .buffered(BATCH_CONCURRENCY)
            .flat_map(stream::iter)
            .take_until(deadline_passed)
            .collect()
            .await;
        answers.resize_with(rows.len(), || {
            Err(StoreError::Transient(
                "no answer before the invocation's deadline".into(),
            ))
        });
        answers
    }

    /// One transaction of new rows, or each row alone if it is cancelled.
    async fn insert_chunk(&self, chunk: &[OutboxRow]) -> Vec<Result<Written, StoreError>> {
        let puts = chunk
            .iter()
            .map(|row| {
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(to_item(row)?))
                    .condition_expression("attribute_not_exists(id)")
                    .build()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(TransactWriteItem::builder().put(put).build())
            })
            .collect();
        let each = chunk.iter().map(|row| self.insert(row)).collect();
        self.transact_or_each(puts, each).await
    }

    /// Writes `items` in one transaction; when it is cancelled (some row's
    /// condition failed, or one is refused) or cannot be built, runs `each`
    /// (the same writes, one by one), so every row gets its own answer.
    async fn transact_or_each<F>(
        &self,
        items: Result<Vec<TransactWriteItem>, StoreError>,
        each: Vec<F>,
    ) -> Vec<Result<Written, StoreError>>
    where
        F: std::future::Future<Output = Result<Written, StoreError>>,
    {
        if let Ok(items) = items {
            if self.transact(items).await.is_ok() {
                return each.iter().map(|_| Ok(Written::Yes)).collect();
            }
        }
        stream::iter(each)
            .buffered(WRITE_CONCURRENCY)
            .collect()
            .await
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), StoreError> {
        let count = items.len();
        let out = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e: SdkError<TransactWriteItemsError, _>| StoreError::from_sdk(e))?;
        self.stats
            .record(count, out.consumed_capacity.as_deref().unwrap_or_default());
        Ok(())
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

    /// Which of these rows are still new (PENDING, never attempted, never
    /// waited), read consistently. The relay checks this before sending
    /// rows from the outbox stream, whose images may be old: a redelivered
    /// stream batch must not send again what was delivered (or what failed
    /// and is the sweep's now). Reads, not writes: 100 rows
    /// per request.
    pub async fn still_new(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let reads: Vec<_> = ids.chunks(100).map(|c| self.still_new_of(c)).collect();
        let chunks: Vec<_> = stream::iter(reads)
            .buffer_unordered(BATCH_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(chunks.into_iter().flatten().collect())
    }

    /// [`still_new`](Self::still_new) for at most 100 ids: one BatchGetItem
    /// (and more for keys DynamoDB left unprocessed).
    async fn still_new_of(&self, ids: &[&str]) -> Result<Vec<String>, StoreError> {
        let keys: Vec<HashMap<String, AttributeValue>> = ids
            .iter()
            .map(|id| HashMap::from([("id".to_string(), s(*id))]))
            .collect();
        let mut request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .projection_expression("id, #status, attempts, waits")
            .expression_attribute_names("#status", "status")
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut new = Vec::new();
        loop {
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for item in out
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default()
            {
                let status = item.get("status").and_then(|v| v.as_s().ok());
                let attempts = item.get("attempts").and_then(|v| v.as_n().ok());
                let waits = item.get("waits").and_then(|v| v.as_n().ok());
                if status.map(String::as_str) == Some(Status::Pending.as_str())
                    && attempts.map(String::as_str) == Some("0")
                    && waits.is_none_or(|w| w == "0")
                {
                    if let Some(AttributeValue::S(id)) = item.get("id") {
                        new.push(id.clone());
                    }
                }
            }
            match out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                Some(rest) if !rest.keys.is_empty() => request = rest,
                _ => return Ok(new),
            }
        }
    }

    /// Ids of rows due at `now` (PENDING past their backoff, or IN_FLIGHT
    /// with an expired lease), at most `limit`, oldest first per shard and
    /// shared fairly between the shards ([`pick_due`]): the shard served
    /// first moves round with each call, so every shard with work is served
    /// within ⌈`DUE_SHARDS` / `limit`⌉ calls however small `limit` is.
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
        let mut pages = Vec::new();
        for page in futures::future::join_all(queries).await {
            let page = page.map_err(StoreError::from_sdk)?;
            let ids = page.items.unwrap_or_default().into_iter();
            pages.push(
                ids.filter_map(|mut item| match item.remove("id") {
                    Some(AttributeValue::S(id)) => Some(id),
                    _ => None,
                })
                .collect(),
            );
        }
        let start = self.next_shard.load(Ordering::Relaxed);
        let (ids, next) = pick_due(&pages, start, limit);
        self.next_shard.store(next, Ordering::Relaxed);
        Ok(ids)
    }

    /// How many rows are due at `now`: a Count query on each shard of the
    /// due index, all pages, so exact whatever the backlog (the index holds
    /// keys only: a page counts thousands of rows).
    pub async fn count_due(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        let now = epoch_ms(now);
        let counts = (0..DUE_SHARDS).map(|shard| async move {
            let pages: Vec<_> = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DUE_INDEX)
                .key_condition_expression("due_shard = :shard AND due_at <= :now")
                .expression_attribute_values(":shard", s(shard.to_string()))
                .expression_attribute_values(":now", n(now))
                .select(Select::Count)
                .into_paginator()
                .send()
                .try_collect()
                .await
                .map_err(StoreError::from_sdk)?;
            Ok::<usize, StoreError>(pages.iter().map(|p| p.count as usize).sum())
        });
        let counts = futures::future::try_join_all(counts).await?;
        Ok(counts.into_iter().sum())
    }

    /// Claims rows for `owner` until `lease_until` (epoch ms): PENDING rows
    /// past their backoff and IN_FLIGHT rows whose lease expired. Each claim
    /// counts an attempt in advance (a send that fails for a cause other
    /// than the message gives it back: [`OutboxStore::mark_wait`]), so the
    /// returned rows' `attempts` include this claim, and a row whose claims
    /// keep ending without an outcome (a relay that crashes on it) runs out
    /// of attempts: the relay then calls [`OutboxStore::mark_no_outcome`]
    /// instead of sending it. Rows someone else claimed first are skipped.
    pub async fn claim(
        &self,
        ids: &[String],
        owner: &str,
        now: OffsetDateTime,
        lease_until: i64,
    ) -> Claimed {
        let now = epoch_ms(now);
        let claims = ids.iter().cloned().map(|id| async move {
                let result = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("id", s(&id))
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
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await;
                let outcome = match result {
                    Ok(out) => {
                        self.stats.record(1, out.consumed_capacity.as_slice());
                        match out.attributes.map(parse_row).transpose() {
                            Ok(row) => Ok(row),
                            // Ours now (the claim was written), but unreadable.
                            Err(error) => Err(Err(error.to_string())),
                        }
                    }
                    Err(e) if is_condition_failure(&e) => Ok(None),
                    Err(e) => Err(Ok(StoreError::from_sdk(e))),
                };
                (id, outcome)
            })
            .collect::<Vec<_>>();
        let outcomes: Vec<_> = stream::iter(claims)
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        let mut claimed = Claimed::default();
        for (id, outcome) in outcomes {
            match outcome {
                Ok(Some(row)) => claimed.rows.push(row),
                Ok(None) => {}
                Err(Err(why)) => claimed.unreadable.push((id, why)),
                Err(Ok(error)) => claimed.errors.push(error),
            }
        }
        claimed
    }

    /// Marks rows DELIVERED with the broker's answers, if `holder` still
    /// holds them: in transactions of [`MARK_BATCH`], [`BATCH_CONCURRENCY`]
    /// in flight, one by one when a transaction is cancelled. The rows leave
    /// the due index. Answers come back in order. `after_first_batch` runs once
    /// the first transaction is written (the crash tests' `during_mark`
    /// failpoint).
    pub async fn mark_delivered_all<F: std::future::Future<Output = ()>>(
        &self,
        marks: &[(&str, &Delivery)],
        holder: Holder<'_>,
        now: OffsetDateTime,
        expires_at: Option<i64>,
        after_first_batch: impl FnOnce() -> F,
    ) -> Vec<Result<Written, StoreError>> {
        let mut after_first_batch = Some(after_first_batch);
        let mut results = Vec::with_capacity(marks.len());
        // Futures collected first, then streamed: a closure inside the
        // stream would make the relay's future not `Send` (a known
        // higher-ranked lifetime limitation of the compiler).
        let batches: Vec<_> = marks
            .chunks(MARK_BATCH)
            .map(|chunk| {
                self.apply_all(
                    chunk
                        .iter()
                        .map(|(id, d)| Transition::delivered(id, holder, d, now, expires_at))
                        .collect(),
                )
            })
            .collect();
        let mut batches = stream::iter(batches).buffered(BATCH_CONCURRENCY);
        while let Some(batch) = batches.next().await {
            results.extend(batch);
            if let Some(hook) = after_first_batch.take() {
                hook().await;
            }
        }
        results
    }

    /// Writes the transitions in one transaction, or one by one when the
    /// transaction is cancelled (a row changed hands).
    async fn apply_all(&self, transitions: Vec<Transition>) -> Vec<Result<Written, StoreError>> {
        let items = transitions
            .iter()
            .map(|t| t.transact_item(&self.table))
            .collect();
        let each = transitions.iter().map(|t| self.apply(t)).collect();
        self.transact_or_each(items, each).await
    }

    /// Back to PENDING after a fault of the message, due again at `due_at`
    /// (epoch ms), keeping the error; the attempt stays spent.
    pub async fn mark_retry(
        &self,
        id: &str,
        holder: Holder<'_>,
        error: &str,
        due_at: i64,
    ) -> Result<Written, StoreError> {
        self.apply(&Transition::retry(
            id,
            holder,
            error,
            due_at,
            Spent::Attempt,
        ))
        .await
    }

    /// Back to PENDING after a failure that is not the message's fault, due
    /// again at `due_at` (epoch ms), keeping the error: the claim's attempt
    /// is given back and `waits` counts one more. A fresh row keeps
    /// `attempts = 0` and, with its first wait, stops being fresh.
    pub async fn mark_wait(
        &self,
        id: &str,
        holder: Holder<'_>,
        error: &str,
        due_at: i64,
    ) -> Result<Written, StoreError> {
        self.apply(&Transition::retry(id, holder, error, due_at, Spent::Wait))
            .await
    }

    /// FAILED with `error`, unsent, for a row just claimed by `owner` that
    /// must not be sent (out of attempts without an outcome, or unreadable):
    /// this claim's attempt is given back, as nothing was sent.
    pub async fn mark_failed_unsent(
        &self,
        id: &str,
        owner: &str,
        error: &str,
    ) -> Result<Written, StoreError> {
        self.apply(&Transition::failed(
            id,
            Holder::Lease(owner),
            error,
            Spent::Nothing,
        ))
        .await
    }

    /// FAILED with the last error; the row leaves the due index until an
    /// operator redrives it.
    pub async fn mark_failed(
        &self,
        id: &str,
        holder: Holder<'_>,
        error: &str,
    ) -> Result<Written, StoreError> {
        self.apply(&Transition::failed(id, holder, error, Spent::Attempt))
            .await
    }

    /// Writes one transition, retrying transient failures for a few seconds:
    /// a mark lost to a short DynamoDB hiccup would otherwise send the row
    /// again after its lease.
    async fn apply(&self, t: &Transition) -> Result<Written, StoreError> {
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("id", s(&t.id))
                .update_expression(&t.update)
                .condition_expression(&t.condition)
                .set_expression_attribute_names(Some(t.names.clone()))
                .set_expression_attribute_values(Some(t.values.clone()))
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            if let Ok(out) = &result {
                self.stats.record(1, out.consumed_capacity.as_slice());
            }
            match written(result) {
                Err(StoreError::Transient(error)) if attempt < TRANSIENT_RETRIES => {
                    tracing::warn!(outbox_id = %t.id, %error, attempt, "outbox update failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
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

/// The ids a due query returns, from each shard's oldest-first page
/// (`pages[shard]`): at most `limit`, taken round-robin from shard `start`
/// (each shard's oldest in turn, then each one's second, …), so no shard
/// waits behind another's backlog. Also returns the shard the next call
/// starts with: the one after the last taken, so that successive calls go
/// round the shards even when `limit` is smaller than their number.
pub(crate) fn pick_due(pages: &[Vec<String>], start: usize, limit: usize) -> (Vec<String>, usize) {
    let shards = pages.len().max(1);
    let deepest = pages.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::new();
    let mut next = start % shards;
    for depth in 0..deepest {
        for shard in (0..shards).map(|k| (start + k) % shards) {
            if ids.len() == limit {
                return (ids, next);
            }
            if let Some(id) = pages[shard].get(depth) {
                ids.push(id.clone());
                next = (shard + 1) % shards;
            }
        }
    }
    (ids, next)
}

/// A conditional write's outcome: written, condition failed, or an error.
pub(crate) fn written<
    T,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
>(
    result: Result<T, SdkError<E, R>>,
) -> Result<Written, StoreError> {
    match result {
        Ok(_) => Ok(Written::Yes),
        Err(e) if is_condition_failure(&e) => Ok(Written::ConditionFailed),
        Err(e) => Err(StoreError::from_sdk(e)),
    }
}

fn to_item(row: &OutboxRow) -> Result<HashMap<String, AttributeValue>, StoreError> {
    serde_dynamo::to_item(row).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Consecutive rows, at most [`INSERT_BATCH`] and about [`INSERT_BATCH_BYTES`] a chunk.
fn insert_chunks(rows: &[OutboxRow]) -> Vec<&[OutboxRow]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        let size = row.payload.as_ref().map_or(0, String::len)
            + row.payload_gzip.as_ref().map_or(0, Vec::len)
            + row.raw_image.as_ref().map_or(0, String::len)
            + 512;
        if i > start && (i - start == INSERT_BATCH || bytes + size > INSERT_BATCH_BYTES) {
            chunks.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < rows.len() {
        chunks.push(&rows[start..]);
    }
    chunks
}

/// One conditional state change of a row, written alone (UpdateItem) or in
/// a transaction (TransactWriteItems) from the same expressions.
struct Transition {
    id: String,
    update: String,
    condition: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

/// What a transition records the send as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spent {
    /// One attempt: a claimed row keeps the one its claim counted, a fresh
    /// row gets `attempts = 1`.
    Attempt,
    /// A wait, not an attempt: a claimed row gets its claim's attempt back,
    /// and `waits` counts one more.
    Wait,
    /// Nothing was sent: a claimed row gets its claim's attempt back.
    Nothing,
}

impl Transition {
    /// The condition and the bookkeeping every transition of `holder`
    /// carries, with `spent` written as that enum says.
    fn new(id: &str, holder: Holder<'_>, set: &str, remove: &[&str], spent: Spent) -> Transition {
        let mut values = HashMap::new();
        let mut set = set.to_string();
        let mut remove = remove.to_vec();
        let mut add = Vec::new();
        let condition = match holder {
            Holder::Lease(owner) => {
                values.insert(":held_status".to_string(), s(Status::InFlight.as_str()));
                values.insert(":me".to_string(), s(owner));
                remove.extend(["lease_owner", "lease_until"]);
                if spent != Spent::Attempt {
                    values.insert(":minus_one".to_string(), n(-1));
                    add.push("attempts :minus_one");
                }
                "#status = :held_status AND lease_owner = :me"
            }
            Holder::Fresh => {
                values.insert(":held_status".to_string(), s(Status::Pending.as_str()));
                values.insert(":zero".to_string(), n(0));
                if spent == Spent::Attempt {
                    values.insert(":one".to_string(), n(1));
                    set.push_str(", attempts = :one");
                }
                "#status = :held_status AND attempts = :zero \
                 AND (attribute_not_exists(waits) OR waits = :zero)"
            }
        };
        if spent == Spent::Wait {
            values.insert(":one_wait".to_string(), n(1));
            add.push("waits :one_wait");
        }
        let mut update = format!("SET {set}");
        if !remove.is_empty() {
            update.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        if !add.is_empty() {
            update.push_str(&format!(" ADD {}", add.join(", ")));
        }
        Transition {
            id: id.to_string(),
            update,
            condition: condition.to_string(),
            names: HashMap::from([("#status".to_string(), "status".to_string())]),
            values,
        }
    }

    /// DELIVERED with the broker's answer; with `expires_at` (retention,
    /// epoch seconds) the row also gets its TTL.
    fn delivered(
        id: &str,
        holder: Holder<'_>,
        delivery: &Delivery,
        now: OffsetDateTime,
        expires_at: Option<i64>,
    ) -> Transition {
        let mut set = "#status = :delivered, kafka_topic = :topic, kafka_partition = :partition, \
             kafka_offset = :offset, kafka_timestamp = :timestamp, delivered_at = :now"
            .to_string();
        if expires_at.is_some() {
            set.push_str(", expires_at = :expires_at");
        }
        let mut t = Transition::new(id, holder, &set, &["due_shard", "due_at"], Spent::Attempt);
        t.values
            .extend(expires_at.map(|e| (":expires_at".to_string(), n(e))));
        t.values.extend([
            (":delivered".to_string(), s(Status::Delivered.as_str())),
            (":topic".to_string(), s(&delivery.topic)),
            (":partition".to_string(), n(delivery.partition)),
            (":offset".to_string(), n(delivery.offset)),
            (":timestamp".to_string(), n(delivery.timestamp)),
            (":now".to_string(), s(rfc3339(now))),
        ]);
        t
    }

    /// Back to PENDING, due at `due_at`: after a fault of the message
    /// (`Spent::Attempt`) or while the cluster is at fault (`Spent::Wait`).
    fn retry(id: &str, holder: Holder<'_>, error: &str, due_at: i64, spent: Spent) -> Transition {
        let mut t = Transition::new(
            id,
            holder,
            "#status = :pending, last_error = :error, due_at = :due",
            &[],
            spent,
        );
        t.values.extend([
            (":pending".to_string(), s(Status::Pending.as_str())),
            (":error".to_string(), s(error)),
            (":due".to_string(), n(due_at)),
        ]);
        t
    }

    /// FAILED with `error`, out of the due index.
    fn failed(id: &str, holder: Holder<'_>, error: &str, spent: Spent) -> Transition {
        let mut t = Transition::new(
            id,
            holder,
            "#status = :failed, last_error = :error",
            &["due_shard", "due_at"],
            spent,
        );
        t.values.extend([
            (":failed".to_string(), s(Status::Failed.as_str())),
            (":error".to_string(), s(error)),
        ]);
        t
    }

    fn transact_item(&self, table: &str) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(table)
            .key("id", s(&self.id))
            .update_expression(&self.update)
            .condition_expression(&self.condition)
            .set_expression_attribute_names(Some(self.names.clone()))
            .set_expression_attribute_values(Some(self.values.clone()))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

fn parse_row(item: HashMap<String, AttributeValue>) -> Result<OutboxRow, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `counts[s]` due ids in shard `s`, named `s.n`.
    fn pages(counts: &[usize]) -> Vec<Vec<String>> {
        counts
            .iter()
            .enumerate()
            .map(|(s, &n)| (0..n).map(|i| format!("{s}.{i}")).collect())
            .collect()
    }

    /// Shards that have ids in `ids`.
    fn shards(ids: &[String]) -> Vec<usize> {
        let mut shards: Vec<usize> = ids
            .iter()
            .map(|id| id.split('.').next().unwrap().parse().unwrap())
            .collect();
        shards.dedup();
        shards
    }

    #[test]
    fn every_shard_with_work_is_served_when_the_batch_is_smaller_than_the_shard_count() {
        // A backlog in all 16 shards, batches of 2: successive calls go round
        // the shards instead of serving the first ones until they are empty.
        let due = pages(&[1; DUE_SHARDS as usize]);
        let mut start = 0;
        let mut served = Vec::new();
        for _ in 0..DUE_SHARDS / 2 {
            let (ids, next) = pick_due(&due, start, 2);
            assert_eq!(ids.len(), 2);
            served.extend(shards(&ids));
            start = next;
        }
        served.sort();
        assert_eq!(served, (0..DUE_SHARDS as usize).collect::<Vec<_>>());
    }

    #[test]
    fn a_batch_takes_from_each_shard_in_turn_from_the_start_shard() {
        let due = pages(&[3, 0, 2, 1]);
        let (ids, next) = pick_due(&due, 2, 5);
        assert_eq!(ids, ["2.0", "3.0", "0.0", "2.1", "0.1"]);
        assert_eq!(next, 1, "the shard after the last one taken");
        let (ids, next) = pick_due(&due, next, 100);
        assert_eq!(ids, ["2.0", "3.0", "0.0", "2.1", "0.1", "0.2"]);
        assert_eq!(next, 1);
        let (ids, next) = pick_due(&pages(&[0, 0]), 1, 5);
        assert!(ids.is_empty());
        assert_eq!(next, 1, "nothing taken: the same start next time");
    }
}
