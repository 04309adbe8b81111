//! The stream handler: one DynamoDB stream batch of the participants table
//! in, one outbox row per INSERT out.
//!
//! The same code runs in the `stream-handler` Lambda and in the local
//! pipeline. It takes domain values ([`Batch`] of [`Insert`]s) and answers
//! with [`Handled`]; the Lambda event and its `batchItemFailures` response
//! are made in [`crate::lambda::stream`]. Its contract with the event source
//! mapping:
//! - a retried batch makes no second row (the row id is derived from the
//!   record, and the put is conditional);
//! - a record that cannot be understood becomes a REJECTED row with the raw
//!   image and the reason, so one bad record never blocks the shard;
//! - a transient failure is reported for that record alone
//!   ([`Handled::retry`]), never as an error for the whole batch;
//! - inside a Lambda invocation ([`StreamHandler::handle_batch_before`]), a
//!   record whose write has not been answered when only
//!   `DEADLINE_MARGIN_MS` is left is reported for retry too: the handler
//!   answers before the deadline, and the record is retried.

use std::time::{Duration, Instant};

use serde_dynamo::Item;
use time::OffsetDateTime;

use crate::config::Config;
use crate::deadline::Budget;
use crate::outbox::{OutboxRow, OutboxStore, Source, Status, StoreError, Written};
use crate::participant::{Participant, ID_ATTRIBUTE};
use crate::trace::TraceContext;

/// Turns the participants table's INSERT records into outbox rows, one
/// conditional put per row (batched by [`OutboxStore::insert_all_before`]),
/// plus one more put for a row DynamoDB refuses (kept as REJECTED).
pub struct StreamHandler {
    outbox: OutboxStore,
    max_message_bytes: usize,
    deadline_margin: Duration,
}

/// What became of one batch's INSERT records: new rows written (PENDING),
/// REJECTED rows written, rows that were there already, and records
/// reported back to be delivered again. The Lambda's metrics line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchCounts {
    /// New PENDING rows written.
    pub captured: usize,
    /// REJECTED rows written.
    pub rejected: usize,
    /// Rows that were there already (a batch delivered again).
    pub already_there: usize,
    /// Records reported back to be delivered again.
    pub retry: usize,
}

/// One INSERT record of the participants table's stream, as the handler
/// needs it: where it came from (the row id is derived from it) and the new
/// image, borrowed from the event.
#[derive(Debug, Clone)]
pub struct Insert<'a> {
    /// The record's event id and sequence number.
    pub source: Source,
    /// The participant as the table stored it.
    pub image: &'a Item,
}

/// One stream batch as the handler sees it: its INSERT records, in order,
/// and how many other records (MODIFY, REMOVE: a registration is the
/// INSERT, so they make no row) came with them, for the log line.
#[derive(Debug, Clone, Default)]
pub struct Batch<'a> {
    /// The INSERT records.
    pub inserts: Vec<Insert<'a>>,
    /// The records that are not INSERTs.
    pub ignored: usize,
}

/// What the handler did with a batch: the records to deliver again (in the
/// batch's order; the Lambda answers their sequence numbers in
/// `batchItemFailures`), and the counts of the metrics line.
#[derive(Debug, Clone, Default)]
pub struct Handled {
    /// The records not stored: transient failures, and under a deadline
    /// the records not answered in time.
    pub retry: Vec<Source>,
    /// What became of the batch's INSERT records.
    pub counts: BatchCounts,
}

/// What happened to one stream record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Written,
    AlreadyThere,
    Rejected,
    /// Transient: reported back so the record is delivered again.
    Retry,
}

impl StreamHandler {
    /// A handler writing into `outbox`, with the configuration's message
    /// size limit, sweep delay and deadline margin. Sends no request.
    pub fn new(outbox: OutboxStore, config: &Config) -> StreamHandler {
        StreamHandler {
            outbox,
            max_message_bytes: config.max_message_bytes,
            deadline_margin: config.deadline_margin(),
        }
    }

    /// Writes the batch's outbox rows (one conditional put each, none for
    /// a row already there); the answer names the records to deliver again.
    /// Never fails as a whole: a failure is the failed record's alone.
    pub async fn handle_batch(&self, batch: &Batch<'_>) -> Handled {
        self.handle_within(batch, Budget::UNLIMITED).await
    }

    /// [`handle_batch`](Self::handle_batch) inside an invocation that ends
    /// at `deadline`: it answers when `DEADLINE_MARGIN_MS` is left at the
    /// latest, with every record not yet stored in [`Handled::retry`].
    pub async fn handle_batch_before(&self, batch: &Batch<'_>, deadline: Instant) -> Handled {
        self.handle_within(batch, Budget::new(deadline, self.deadline_margin))
            .await
    }

    async fn handle_within(&self, batch: &Batch<'_>, budget: Budget) -> Handled {
        let inserts = &batch.inserts;
        let now = OffsetDateTime::now_utc();
        let rows: Vec<OutboxRow> = inserts
            .iter()
            .map(|record| self.row_for(record, now))
            .collect();
        let written = self
            .outbox
            .insert_all_before(&rows, budget.work_until())
            .await;

        let mut outcomes = Vec::with_capacity(rows.len());
        for ((record, row), result) in inserts.iter().zip(&rows).zip(written) {
            let outcome = match result {
                Ok(Written::Yes) if row.status == Status::Rejected => Outcome::Rejected,
                Ok(Written::Yes) => Outcome::Written,
                Ok(Written::ConditionFailed) => Outcome::AlreadyThere,
                Err(StoreError::Permanent(error)) if budget.allows(Duration::ZERO) => {
                    self.reject_unstorable(row, record, error, now).await
                }
                Err(error) => {
                    tracing::warn!(event_id = %record.source.event_id, %error, "outbox write failed; record will be retried");
                    Outcome::Retry
                }
            };
            outcomes.push((outcome, record));
        }

        let count = |o: Outcome| outcomes.iter().filter(|(x, _)| *x == o).count();
        let retry = outcomes
            .iter()
            .filter(|(o, _)| *o == Outcome::Retry)
            .map(|(_, record)| record.source.clone())
            .collect();
        let counts = BatchCounts {
            captured: count(Outcome::Written),
            rejected: count(Outcome::Rejected),
            already_there: count(Outcome::AlreadyThere),
            retry: count(Outcome::Retry),
        };
        tracing::info!(
            records = inserts.len() + batch.ignored,
            written = counts.captured,
            already_there = counts.already_there,
            rejected = counts.rejected,
            ignored = batch.ignored,
            retry = counts.retry,
            outbox_table = self.outbox.table(),
            "stream batch handled"
        );
        Handled { retry, counts }
    }

    /// The outbox row of an INSERT record: PENDING, or REJECTED with the reason.
    fn row_for(&self, record: &Insert<'_>, now: OffsetDateTime) -> OutboxRow {
        row_for_image(record.image, &record.source, self.max_message_bytes, now)
    }

    /// A row DynamoDB refuses (in practice: over the 400 KB item limit once
    /// the JSON is added) is kept as a REJECTED row without the image; the
    /// participant itself is still in the participants table.
    async fn reject_unstorable(
        &self,
        refused: &OutboxRow,
        record: &Insert<'_>,
        error: String,
        now: OffsetDateTime,
    ) -> Outcome {
        tracing::warn!(event_id = %record.source.event_id, %error, "outbox row refused; writing it as REJECTED");
        let source = Source {
            event_id: refused.source_event_id.clone(),
            sequence_number: refused.source_sequence_number.clone(),
        };
        let reason = format!("the outbox row could not be stored: {error}");
        let row = OutboxRow::rejected(&source, participant_id(record.image), None, reason, now);
        match self.outbox.insert(&row).await {
            Ok(Written::Yes) => Outcome::Rejected,
            Ok(Written::ConditionFailed) => Outcome::AlreadyThere,
            Err(_) => Outcome::Retry,
        }
    }
}

/// The outbox row of a participant's image, as an INSERT record carries it:
/// PENDING and new (the outbox stream's to send), or REJECTED with the reason and
/// the raw image. The stream handler and `reconcile --repair` build rows
/// with this one function, so a repaired row is the row the stream would
/// have made.
pub fn row_for_image(
    image: &Item,
    source: &Source,
    max_message_bytes: usize,
    now: OffsetDateTime,
) -> OutboxRow {
    match Participant::from_image(image, max_message_bytes) {
        Ok(p) => {
            // A participant written straight into the table starts its trace here.
            let trace = p.trace.unwrap_or_else(TraceContext::new_root);
            OutboxRow::pending(source, p.id, p.json, now).with_trace(&trace)
        }
        Err(reason) => {
            tracing::warn!(event_id = %source.event_id, %reason, "participant image rejected");
            OutboxRow::rejected(
                source,
                participant_id(image),
                raw_image(image),
                reason.to_string(),
                now,
            )
        }
    }
}

/// The participant id when the image has a usable one (for audit of REJECTED rows).
fn participant_id(image: &Item) -> Option<String> {
    match image.get(ID_ATTRIBUTE) {
        Some(serde_dynamo::AttributeValue::S(id)) if !id.is_empty() => Some(id.clone()),
        _ => None,
    }
}

/// The image as DynamoDB JSON, or `None` when the record has none.
fn raw_image(image: &Item) -> Option<String> {
    (!image.is_empty()).then(|| serde_json::to_string(image).unwrap_or_default())
}
