//! The outbox table's writes: the insert and the relay's and operators'
//! transitions ([`super::transition`] names them and holds their
//! conditions). Claims are in [`super::claim`].

use aws_sdk_dynamodb::types::{
    AttributeValue, BatchStatementError, BatchStatementErrorCodeEnum, BatchStatementRequest,
    ReturnConsumedCapacity,
};
use futures::{stream, StreamExt};
use time::OffsetDateTime;

use super::error::written;
use super::row::{OutboxRow, Stored};
use super::store::{to_item, BATCH_CONCURRENCY, WRITE_CONCURRENCY};
use super::transition::{Holder, Spent, Transition, INSERT_CONDITION};
use super::{OutboxStore, StoreError, Written};

/// Tries of a state change that failed transiently (0.2 s, 0.4 s … 3.2 s apart).
const TRANSIENT_RETRIES: u32 = 5;

/// Statements a BatchExecuteStatement carries at most (DynamoDB's limit).
const STATEMENTS_PER_BATCH: usize = 25;

/// What one statement of a BatchExecuteStatement came to: written, its
/// condition failed, or an error sorted as [`StoreError::from_sdk`] sorts
/// a request's (a missing table or permission is transient: fixed by
/// deploying).
fn statement_written(error: Option<&BatchStatementError>) -> Result<Written, StoreError> {
    let Some(error) = error else {
        return Ok(Written::Yes);
    };
    let text = format!(
        "{}: {}",
        error.code().map_or("unknown", |c| c.as_str()),
        error.message().unwrap_or_default()
    );
    match error.code() {
        Some(BatchStatementErrorCodeEnum::ConditionalCheckFailed) => Ok(Written::ConditionFailed),
        Some(
            BatchStatementErrorCodeEnum::ValidationError
            | BatchStatementErrorCodeEnum::ItemCollectionSizeLimitExceeded
            | BatchStatementErrorCodeEnum::DuplicateItem,
        ) => Err(StoreError::Permanent(text)),
        _ => Err(StoreError::Transient(text)),
    }
}

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

    /// [`insert`](Self::insert) for many rows: one conditional PutItem
    /// each, `WRITE_CONCURRENCY` (32) in flight, answers in the rows' order.
    /// Not in transactions: TransactWriteItems bills every item twice (two
    /// write units per KB, on the table and on each index), and batching
    /// saved requests, not units; each row keeps its own condition and its
    /// own answer.
    pub async fn insert_all(&self, rows: &[OutboxRow]) -> Vec<Result<Written, StoreError>> {
        self.insert_all_before(rows, None).await
    }

    /// [`insert_all`](Self::insert_all), answered by `deadline` when there
    /// is one: rows whose answer has not come by then (their put may or may
    /// not have been written) get a [`StoreError::Transient`], so the caller
    /// tries them again, and a retried insert finds its row there
    /// (`ConditionFailed`).
    pub async fn insert_all_before(
        &self,
        rows: &[OutboxRow],
        deadline: Option<std::time::Instant>,
    ) -> Vec<Result<Written, StoreError>> {
        let deadline_passed = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        // Futures collected first, then streamed: a closure inside the
        // stream would make the caller's future not `Send` (a known
        // higher-ranked lifetime limitation of the compiler).
        let puts: Vec<_> = rows.iter().map(|row| self.insert(row)).collect();
        let mut answers: Vec<_> = stream::iter(puts)
            .buffered(WRITE_CONCURRENCY)
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

    /// The delivered transition: marks rows DELIVERED where the broker
    /// stored them (with `expires_at`, epoch seconds, under a retention
    /// policy: [`super::expires_at`]), if `holder` still holds them: one
    /// conditional write each, as PartiQL statements
    /// ([`Transition::statement_shape`]) [`STATEMENTS_PER_BATCH`] (25) to a
    /// BatchExecuteStatement, [`BATCH_CONCURRENCY`] requests in flight.
    /// Each statement keeps its own condition and answer and is billed as
    /// its UpdateItem would be; a request per 25 rows instead of one per
    /// row is most of the relay's CPU time saved (not in transactions,
    /// which bill twice; see [`insert_all`](Self::insert_all)). Statements
    /// that fail transiently are tried again, as [`apply`](Self::apply)
    /// does. The rows leave the due index. Answers come back in order.
    /// `after_first_mark` runs once the first request is answered (the
    /// crash tests' `during_mark` failpoint). A row `holder` no longer holds
    /// is [`Written::ConditionFailed`] and left as it is.
    pub async fn mark_delivered_all<F: std::future::Future<Output = ()>>(
        &self,
        marks: &[(&OutboxRow, Stored)],
        holder: Holder<'_>,
        now: OffsetDateTime,
        expires_at: Option<i64>,
        after_first_mark: impl FnOnce() -> F,
    ) -> Vec<Result<Written, StoreError>> {
        let mut after_first_mark = Some(after_first_mark);
        let transitions: Vec<Transition> = marks
            .iter()
            .map(|(row, stored)| Transition::delivered(&row.id, holder, stored, now, expires_at))
            .collect();
        // One text for all: the marks differ only in their values.
        let Some(first) = transitions.first() else {
            return Vec::new();
        };
        let shape = first
            .statement_shape(&self.table)
            .expect("the delivered transition is a plain SET/REMOVE update");
        let parameters: Vec<Vec<AttributeValue>> = transitions
            .into_iter()
            .map(|t| t.into_parameters(&shape).expect("marks of one shape"))
            .collect();
        // Collected first, as in `insert_all_before`.
        let batches: Vec<_> = parameters
            .chunks(STATEMENTS_PER_BATCH)
            .map(|batch| self.execute_all(&shape.text, batch))
            .collect();
        let mut answers = stream::iter(batches).buffered(BATCH_CONCURRENCY);
        let mut results = Vec::with_capacity(marks.len());
        while let Some(answer) = answers.next().await {
            results.extend(answer);
            if let Some(hook) = after_first_mark.take() {
                hook().await;
            }
        }
        #[cfg(feature = "dev")]
        for ((row, stored), result) in marks.iter().zip(&results) {
            if matches!(result, Ok(Written::Yes)) {
                let after = || (*row).clone().into_delivered(stored, now, expires_at);
                self.stats.compute(&self.table, row, after);
            }
        }
        results
    }

    /// Writes the statement `text` once for each of up to 25 parameter
    /// lists in one BatchExecuteStatement, trying the ones that failed
    /// transiently again (0.2 s, 0.4 s … apart, as [`apply`](Self::apply));
    /// answers in the parameter lists' order.
    async fn execute_all(
        &self,
        text: &str,
        parameters: &[Vec<AttributeValue>],
    ) -> Vec<Result<Written, StoreError>> {
        let mut answers: Vec<Option<Result<Written, StoreError>>> =
            parameters.iter().map(|_| None).collect();
        let mut attempt = 0;
        loop {
            let pending: Vec<usize> = (0..parameters.len())
                .filter(|&i| matches!(answers[i], None | Some(Err(StoreError::Transient(_)))))
                .collect();
            let requests = pending
                .iter()
                .map(|&i| {
                    BatchStatementRequest::builder()
                        .statement(text)
                        .set_parameters(Some(parameters[i].clone()))
                        .build()
                        .expect("a statement is set")
                })
                .collect();
            let result = self
                .client
                .batch_execute_statement()
                .set_statements(Some(requests))
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            match result {
                Ok(out) => {
                    let responses = out.responses.unwrap_or_default();
                    let written = responses.iter().filter(|r| r.error.is_none()).count();
                    self.stats.record(
                        written,
                        out.consumed_capacity.unwrap_or_default().as_slice(),
                    );
                    for (&i, response) in pending.iter().zip(&responses) {
                        answers[i] = Some(statement_written(response.error.as_ref()));
                    }
                }
                Err(e) => {
                    let error = StoreError::from_sdk(e);
                    for &i in &pending {
                        answers[i] = Some(Err(error.clone()));
                    }
                }
            }
            let transient = answers
                .iter()
                .any(|a| matches!(a, None | Some(Err(StoreError::Transient(_)))));
            if !transient || attempt == TRANSIENT_RETRIES {
                break;
            }
            tracing::warn!(attempt, "outbox marks failed transiently; retrying");
            tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            attempt += 1;
        }
        answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| Err(StoreError::Transient("no answer to the statement".into())))
            })
            .collect()
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
