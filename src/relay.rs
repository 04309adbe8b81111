//! The relay: due outbox rows out, Kafka messages in, every send response
//! logged and written back to the row.
//!
//! A relay claims rows with a lease before sending (so concurrent relays do
//! not send the same row), produces them in one batch with acks=all, then
//! marks each row DELIVERED with its partition, offset and timestamp. A
//! failed send goes back to PENDING with backoff, or to FAILED when retrying
//! cannot help. Crashing between the broker's ack and the DELIVERED mark
//! leaves the row IN_FLIGHT; once its lease expires another sweep sends it
//! again, with the same key and outbox id header: that is the one place a
//! duplicate can come from (at-least-once).

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
use bytes::Bytes;
use futures::{stream, StreamExt};
use time::OffsetDateTime;

use crate::config::Config;
use crate::failpoint::failpoint;
use crate::kafka::{Delivery, KafkaError, Message, Producer};
use crate::outbox::row::{after_failure, epoch_ms, AfterFailure};
use crate::outbox::store::Holder;
use crate::outbox::{OutboxRow, OutboxStore, Status, StoreError, Written};

/// Batches one relay works on at once: while one batch waits for the
/// broker, another's marks are written. Bounded, so a large stream batch
/// never means unbounded requests (4 × 100 rows, as many produce requests
/// as the producer lets in flight per broker).
pub const BATCHES_IN_FLIGHT: usize = 4;

/// The CloudEvents type of every message.
pub const EVENT_TYPE: &str = "com.raffle.participant.registered";
/// The header a consumer deduplicates on.
pub const OUTBOX_ID_HEADER: &str = "outbox_id";

/// What one relay pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelayReport {
    pub claimed: usize,
    pub delivered: usize,
    pub retrying: usize,
    pub failed: usize,
    /// Rows whose lease was lost before the mark (another relay took them).
    pub lost_lease: usize,
}

impl std::ops::AddAssign for RelayReport {
    fn add_assign(&mut self, other: RelayReport) {
        self.claimed += other.claimed;
        self.delivered += other.delivered;
        self.retrying += other.retrying;
        self.failed += other.failed;
        self.lost_lease += other.lost_lease;
    }
}

pub struct Relay {
    outbox: OutboxStore,
    producer: Arc<Producer>,
    config: Config,
    /// This relay's lease owner id: unique per process.
    owner: String,
}

impl Relay {
    pub fn new(outbox: OutboxStore, producer: Arc<Producer>, config: Config) -> Relay {
        let owner = format!("relay-{}", uuid::Uuid::new_v4());
        Relay {
            outbox,
            producer,
            config,
            owner,
        }
    }

    pub fn outbox(&self) -> &OutboxStore {
        &self.outbox
    }

    /// Claims and sends due rows, one batch at a time, until none is due.
    ///
    /// Rows another relay claimed first drop out of the due set (their
    /// `due_at` moves to the end of that relay's lease), so concurrent relays
    /// share the work and each stops when nothing is left.
    pub async fn sweep(&self) -> Result<RelayReport, StoreError> {
        let mut total = RelayReport::default();
        loop {
            let ids = self
                .outbox
                .due_ids(OffsetDateTime::now_utc(), self.config.relay_batch_size)
                .await?;
            if ids.is_empty() {
                return Ok(total);
            }
            let report = self.relay(&ids).await?;
            total += report;
            if report.claimed == 0 {
                // Claimed by someone else between our query and our claim
                // (or an index not caught up yet): look again shortly.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }

    /// Claims the given rows (those still due) and sends them. A row whose
    /// `MAX_ATTEMPTS` earlier claims all ended without an outcome (every
    /// relay that took it crashed, timed out or was killed mid-send) is
    /// FAILED ("no outcome after N claims") instead of being sent again.
    pub async fn relay(&self, ids: &[String]) -> Result<RelayReport, StoreError> {
        let now = OffsetDateTime::now_utc();
        let lease_until = epoch_ms(now) + self.config.lease().as_millis() as i64;
        let claimed = self
            .outbox
            .claim(ids, &self.owner, now, lease_until)
            .await?;
        // A claim counts an attempt before the send: past the limit, the
        // earlier claims spent them all without an outcome.
        let (exhausted, rows): (Vec<OutboxRow>, Vec<OutboxRow>) = claimed
            .into_iter()
            .partition(|row| row.attempts > self.config.max_attempts);
        let mut report = RelayReport::default();
        let mut unwritten = None;
        for row in &exhausted {
            let claims = row.attempts - 1;
            tracing::error!(outbox_id = %row.id, claims, "no outcome after as many claims as MAX_ATTEMPTS; row is FAILED, not sent");
            report.claimed += 1;
            match self
                .outbox
                .mark_no_outcome(&row.id, &self.owner, claims)
                .await
            {
                Ok(Written::Yes) => report.failed += 1,
                Ok(Written::ConditionFailed) => report.lost_lease += 1,
                // The rest of the batch is sent all the same; the row is
                // claimed again once its lease ends.
                Err(error) => {
                    unwritten.get_or_insert(error);
                }
            }
        }
        report += self.deliver(&rows, Holder::Lease(&self.owner)).await?;
        match unwritten {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    /// Sends rows the outbox stream handed to this relay, without a claim:
    /// a stream shard is read by one relay at a time, so each new row comes
    /// to exactly one relay, and the sweep leaves new rows alone for
    /// `SWEEP_DELAY_SECONDS`. That saves one write per participant. Stream
    /// images can be old (a redelivered batch, a replayed shard), so the rows'
    /// current state is read first and only rows still new are sent.
    pub async fn relay_new(&self, rows: Vec<OutboxRow>) -> Result<RelayReport, StoreError> {
        let ids: Vec<&str> = rows
            .iter()
            .filter(|r| r.status == Status::Pending)
            .map(|r| r.id.as_str())
            .collect();
        let still_new = self.outbox.still_new(&ids).await?;
        let fresh: Vec<OutboxRow> = rows
            .into_iter()
            .filter(|r| still_new.contains(&r.id))
            .collect();
        let batches: Vec<_> = fresh
            .chunks(self.config.relay_batch_size.max(1))
            .map(|batch| self.deliver(batch, Holder::Fresh))
            .collect();
        // Every batch runs to its end before an error is returned: a batch
        // dropped between its send and its marks would only make duplicates.
        let outcomes: Vec<_> = stream::iter(batches)
            .buffer_unordered(BATCHES_IN_FLIGHT)
            .collect()
            .await;
        let mut report = RelayReport::default();
        for outcome in outcomes {
            report += outcome?;
        }
        Ok(report)
    }

    /// The new rows in a batch of the outbox table's stream (its INSERT
    /// images). A row that cannot be read is left to the sweep.
    pub fn new_rows(event: &Event) -> Vec<OutboxRow> {
        event
            .records
            .iter()
            .filter(|r| r.event_name == "INSERT")
            .filter_map(|r| match serde_dynamo::from_item(r.change.new_image.clone()) {
                Ok(row) => Some(row),
                Err(error) => {
                    tracing::warn!(event_id = %r.event_id, %error, "outbox stream image unreadable; the sweep will take the row");
                    None
                }
            })
            .collect()
    }

    /// Produces the rows in one batch and writes each outcome back.
    async fn deliver(
        &self,
        rows: &[OutboxRow],
        holder: Holder<'_>,
    ) -> Result<RelayReport, StoreError> {
        let mut report = RelayReport {
            claimed: rows.len(),
            ..RelayReport::default()
        };
        if rows.is_empty() {
            return Ok(report);
        }
        tracing::debug!(
            rows = rows.len(),
            fresh = matches!(holder, Holder::Fresh),
            "delivering a batch"
        );
        failpoint("after_claim").await;
        let messages: Vec<Message> = rows
            .iter()
            .map(|row| self.message(row))
            .collect::<Result<_, _>>()
            .map_err(|e| StoreError::Corrupt(format!("payload: {e}")))?;
        let results = self.producer.send(&messages).await;
        failpoint("after_ack").await;

        let mut marks = Vec::new();
        let mut written = Vec::new();
        for (row, result) in rows.iter().zip(&results) {
            match result {
                Ok(delivery) => {
                    self.log_send_response(row, delivery);
                    marks.push((row.id.as_str(), delivery));
                }
                Err(error) => written.push((
                    row,
                    self.after_send_failure(row, holder, error, &mut report)
                        .await?,
                )),
            }
        }
        report.delivered = marks.len();
        let now = OffsetDateTime::now_utc();
        let expires_at = self
            .config
            .retention_days
            .map(|days| crate::retention::expires_at(now, days));
        let marked = self
            .outbox
            .mark_delivered_all(&marks, holder, now, expires_at, || failpoint("during_mark"))
            .await;
        let delivered_rows = rows
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(row, _)| row);
        for (row, result) in delivered_rows.zip(marked) {
            written.push((row, result?));
        }
        for (row, _) in written
            .iter()
            .filter(|(_, w)| *w == Written::ConditionFailed)
        {
            tracing::warn!(outbox_id = %row.id, "row changed hands before it was marked; the other relay will send it");
            report.lost_lease += 1;
        }
        Ok(report)
    }

    fn message(&self, row: &OutboxRow) -> std::io::Result<Message> {
        let header = |name: &str, value: &str| (name.to_string(), Bytes::from(value.to_string()));
        Ok(Message {
            key: row.participant_id.clone().unwrap_or_default(),
            value: Bytes::from(row.payload_bytes()?),
            headers: vec![
                header(OUTBOX_ID_HEADER, &row.id),
                header("ce_specversion", "1.0"),
                header("ce_id", &row.id),
                header("ce_source", &self.config.event_source),
                header("ce_type", EVENT_TYPE),
                header("ce_time", &row.created_at),
                header("content-type", "application/json"),
            ],
        })
    }

    /// The send response, one structured line per message: ids and
    /// coordinates only, never the participant's fields.
    fn log_send_response(&self, row: &OutboxRow, delivery: &Delivery) {
        tracing::info!(
            topic = %delivery.topic,
            partition = delivery.partition,
            offset = delivery.offset,
            timestamp = delivery.timestamp,
            outbox_id = %row.id,
            participant_id = row.participant_id.as_deref().unwrap_or_default(),
            "kafka send response"
        );
    }

    /// Writes a failed send back to its row, as [`after_failure`] decides:
    /// a fault of the message spends the attempt (retry, or FAILED when out
    /// of attempts or refused for good); any other failure gives the attempt
    /// back and makes the row wait.
    async fn after_send_failure(
        &self,
        row: &OutboxRow,
        holder: Holder<'_>,
        error: &KafkaError,
        report: &mut RelayReport,
    ) -> Result<Written, StoreError> {
        let text = error.to_string();
        // A fresh row's send was its first attempt; a claimed row's claim counted it.
        let attempts = row.attempts.max(1);
        let blame = error.blame();
        match after_failure(
            attempts,
            row.waits,
            self.config.max_attempts,
            blame,
            fastrand::f64(),
        ) {
            AfterFailure::RetryIn(ms) => {
                tracing::warn!(outbox_id = %row.id, attempts, retry_in_ms = ms, error = %text, "kafka refused the message; will retry");
                report.retrying += 1;
                let due = epoch_ms(OffsetDateTime::now_utc()) + ms;
                self.outbox.mark_retry(&row.id, holder, &text, due).await
            }
            AfterFailure::WaitIn(ms) => {
                tracing::warn!(outbox_id = %row.id, waits = row.waits + 1, retry_in_ms = ms, error = %text, "kafka send failed, not for the message's fault; waiting without spending an attempt");
                report.retrying += 1;
                let due = epoch_ms(OffsetDateTime::now_utc()) + ms;
                self.outbox.mark_wait(&row.id, holder, &text, due).await
            }
            AfterFailure::GiveUp => {
                tracing::error!(outbox_id = %row.id, attempts, ?blame, error = %text, "kafka refused the message; row is FAILED");
                report.failed += 1;
                self.outbox.mark_failed(&row.id, holder, &text).await
            }
        }
    }
}
