//! The outbox table's writes: the insert and the relay's and operators'
//! transitions ([`super::transition`] names them and holds their
//! conditions). Claims are in [`super::claim`].

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, TransactWriteItem};
use futures::{stream, StreamExt};
use time::OffsetDateTime;

use super::error::written;
use super::row::{OutboxRow, Stored};
use super::store::{to_item, BATCH_CONCURRENCY, WRITE_CONCURRENCY};
use super::transition::{insert_item, Holder, Spent, Transition, INSERT_CONDITION};
use super::{OutboxStore, StoreError, Written};

/// Tries of a state change that failed transiently (0.2 s, 0.4 s … 3.2 s apart).
const TRANSIENT_RETRIES: u32 = 5;

/// Rows marked DELIVERED per TransactWriteItems request (the service allows
/// 100). A transaction is all-or-nothing, so one row whose lease was lost
/// sends the batch down the one-by-one path; 25 keeps that cost small.
pub const MARK_BATCH: usize = 25;

/// New rows per TransactWriteItems request: the service's limits are 100
/// items and 4 MB, and a row can hold a 256 KB payload.
const INSERT_BATCH: usize = 100;
const INSERT_BATCH_BYTES: usize = 3 * 1024 * 1024;

impl OutboxStore {
    /// The insert transition: writes a new row unless a row with its id
    /// exists (a redelivered stream record), which is answered
    /// [`Written::ConditionFailed`] and left as it is: the outbox never gets
    /// a second row for one record. One conditional PutItem: a write unit
    /// per KB of the row.
    pub async fn insert(&self, row: &OutboxRow) -> Result<Written, StoreError> {
        let item = to_item(row)?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(INSERT_CONDITION)
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
    /// `BATCH_CONCURRENCY` (4) in flight. When a transaction is cancelled
    /// (some row exists already, or one is refused), its rows are written
    /// one by one, so each gets its own answer. Answers come back in the
    /// rows' order. Costs two write units per KB of each row in a
    /// transaction (one written alone).
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
            .map(|row| insert_item(&self.table, row))
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

    /// The delivered transition: marks rows DELIVERED where the broker
    /// stored them (with `expires_at`, epoch seconds, under a retention
    /// policy: [`super::expires_at`]), if `holder` still holds them: in
    /// transactions of [`MARK_BATCH`], `BATCH_CONCURRENCY` (4)
    /// in flight, one by one when a transaction is cancelled. The rows leave
    /// the due index. Answers come back in order. `after_first_batch` runs once
    /// the first transaction is written (the crash tests' `during_mark`
    /// failpoint). A row `holder` no longer holds is
    /// [`Written::ConditionFailed`] and left as it is. Costs one
    /// TransactWriteItems request per [`MARK_BATCH`] rows (two write units
    /// per KB of each), plus one UpdateItem per row of a cancelled one.
    pub async fn mark_delivered_all<F: std::future::Future<Output = ()>>(
        &self,
        marks: &[(&str, Stored)],
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
                        .map(|(id, stored)| {
                            Transition::delivered(id, holder, stored, now, expires_at)
                        })
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

    /// The retry transition after a fault of the message: back to PENDING,
    /// due again at `due_at` (epoch ms), keeping the error; the attempt
    /// stays spent. [`Written::ConditionFailed`] if `holder` no longer
    /// holds the row. One UpdateItem, retried on transient errors for a few
    /// seconds.
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

    /// The retry transition after a failure that is not the message's
    /// fault: back to PENDING, due again at `due_at` (epoch ms), keeping the
    /// error: the claim's attempt is given back and `waits` counts one
    /// more. A fresh row keeps `attempts = 0` and, with its first wait,
    /// stops being fresh. [`Written::ConditionFailed`] if `holder` no
    /// longer holds the row. One UpdateItem, retried on transient errors.
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

    /// The failed transition, unsent: FAILED with `error`, for a row just
    /// claimed by `owner` that must not be sent (out of attempts without an
    /// outcome, or unreadable): this claim's attempt is given back, as
    /// nothing was sent. [`Written::ConditionFailed`] if `owner`'s lease is
    /// gone. One UpdateItem, retried on transient errors.
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

    /// The failed transition after a send: FAILED with the last error; the
    /// row leaves the due index until an operator redrives it.
    /// [`Written::ConditionFailed`] if `holder` no longer holds the row.
    /// One UpdateItem, retried on transient errors.
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
            match self.apply_once(t).await {
                Err(StoreError::Transient(error)) if attempt < TRANSIENT_RETRIES => {
                    tracing::warn!(outbox_id = %t.id, %error, attempt, "outbox update failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// The redrive transition: FAILED → PENDING if the row is still FAILED
    /// with `attempts_before` attempts (what the operator was shown), so a
    /// second redrive, or a row changed meanwhile, is
    /// [`Written::ConditionFailed`] and left as it is. Resets `attempts`,
    /// counts `redrive_count`, appends `{at, attempts_before, last_error}`
    /// to `redrive_history`, puts the row back in the due index, due `now`.
    /// One conditional UpdateItem, not retried.
    pub async fn redrive(
        &self,
        id: &str,
        attempts_before: u32,
        last_error: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Written, StoreError> {
        self.apply_once(&Transition::redrive(id, attempts_before, last_error, now))
            .await
    }

    /// The expiry transition: a DELIVERED row's `expires_at` set to
    /// `expires` (epoch seconds; see [`super::expires_at`]) or removed
    /// (`None`: kept forever). A row no longer DELIVERED (deleted by TTL
    /// meanwhile) is [`Written::ConditionFailed`]. One conditional
    /// UpdateItem, not retried.
    pub async fn set_expiry(&self, id: &str, expires: Option<i64>) -> Result<Written, StoreError> {
        self.apply_once(&Transition::expiry(id, expires)).await
    }

    /// Writes one transition: one UpdateItem.
    async fn apply_once(&self, t: &Transition) -> Result<Written, StoreError> {
        let result = t
            .update_item(&self.client, &self.table)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        if let Ok(out) = &result {
            self.stats.record(1, out.consumed_capacity.as_slice());
        }
        written(result)
    }
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
