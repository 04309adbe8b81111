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
//!
//! A pass never stops at one row or one batch: a row whose payload cannot be
//! read becomes FAILED and the rest of its batch is sent; a write DynamoDB
//! refuses is logged and counted, and the pass goes on; the errors are
//! returned at its end ([`RelayError`], with everything the pass did). Inside
//! a Lambda invocation a batch is started only while it can end before the
//! invocation's deadline ([`crate::deadline`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{stream, StreamExt};
use time::OffsetDateTime;

use crate::config::Config;
use crate::deadline::Budget;
use crate::failpoint::failpoint;
use crate::kafka::envelope::Envelope;
use crate::kafka::{Delivery, KafkaError, Message, Producer};
use crate::outbox::backoff::{after_failure, AfterFailure};
use crate::outbox::row::epoch_ms;
use crate::outbox::{Holder, OutboxRow, OutboxStore, Status, StoreError, Stored, Written};

/// Batches one relay works on at once: while one batch waits for the
/// broker, another's marks are written. Bounded, so a large stream batch
/// never means unbounded requests (4 × 100 rows, as many produce requests
/// as the producer lets in flight per broker).
pub const BATCHES_IN_FLIGHT: usize = 4;

/// Batches in a row that met an error before a sweep gives up: DynamoDB
/// itself is failing, and the next sweep tries again.
pub const FAILED_BATCHES_BEFORE_GIVING_UP: usize = 3;

/// The message envelope's names, defined in [`crate::kafka::envelope`] and
/// re-exported here for the callers that know them as the relay's.
pub use crate::kafka::envelope::{EVENT_TYPE, OUTBOX_ID_HEADER};

/// What one relay pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelayReport {
    pub claimed: usize,
    pub delivered: usize,
    pub retrying: usize,
    pub failed: usize,
    /// Rows whose lease was lost before the mark (another relay took them).
    pub lost_lease: usize,
    /// Errors the pass carried on past (a claim, a mark or a read that
    /// DynamoDB refused or did not answer), each logged where it happened.
    /// Their rows are due again later: a row claimed, when its lease ends; a
    /// new row, for the sweep.
    #[serde(default)]
    pub errors: usize,
    /// Rows left due because the invocation's deadline came first: what a
    /// sweep counted on the due index when it stopped for the deadline, and
    /// the new rows of batches a stream invocation did not start (the sweep
    /// takes them). 0 when the pass ran to its end.
    #[serde(default)]
    pub left_due: usize,
}

impl std::ops::AddAssign for RelayReport {
    fn add_assign(&mut self, other: RelayReport) {
        self.claimed += other.claimed;
        self.delivered += other.delivered;
        self.retrying += other.retrying;
        self.failed += other.failed;
        self.lost_lease += other.lost_lease;
        self.errors += other.errors;
        self.left_due += other.left_due;
    }
}

/// A relay pass that met errors. It carried on past each one (each is
/// logged where it happened): `report` counts everything it did, errors
/// included, and `first` is the first of them.
#[derive(Debug, thiserror::Error)]
#[error("{} error(s) in a relay pass; the first: {first}", report.errors)]
pub struct RelayError {
    pub report: RelayReport,
    pub first: StoreError,
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
    /// share the work and each stops when nothing is left. A batch that met
    /// an error does not stop the sweep; [`FAILED_BATCHES_BEFORE_GIVING_UP`]
    /// in a row do.
    pub async fn sweep(&self) -> Result<RelayReport, RelayError> {
        self.sweep_within(Budget::UNLIMITED).await
    }

    /// [`sweep`](Self::sweep) inside an invocation that ends at `deadline`:
    /// a batch is claimed only while `RELAY_SEND_TIMEOUT_MS` plus
    /// `DEADLINE_MARGIN_MS` are left, its send is given up when only the
    /// margin is left, and the rows still due then are counted in
    /// `left_due`. Its rows are marked before it returns, inside the margin.
    pub async fn sweep_before(&self, deadline: Instant) -> Result<RelayReport, RelayError> {
        self.sweep_within(self.budget(deadline)).await
    }

    async fn sweep_within(&self, budget: Budget) -> Result<RelayReport, RelayError> {
        let mut pass = Pass::default();
        let mut failed_in_a_row = 0;
        loop {
            if !budget.allows(self.config.relay_send_timeout()) {
                self.count_left(budget, &mut pass).await;
                break;
            }
            let now = OffsetDateTime::now_utc();
            let ids = match self.outbox.due_ids(now, self.config.relay_batch_size).await {
                Ok(ids) => ids,
                Err(error) => {
                    tracing::error!(%error, "due rows not read; the next sweep looks again");
                    pass.error(error);
                    break;
                }
            };
            if ids.is_empty() {
                break;
            }
            let batch = self.relay_within(&ids, budget).await;
            let (claimed, failed) = (batch.report.claimed, batch.report.errors > 0);
            pass += batch;
            failed_in_a_row = if failed { failed_in_a_row + 1 } else { 0 };
            if failed_in_a_row == FAILED_BATCHES_BEFORE_GIVING_UP {
                tracing::error!(
                    batches = failed_in_a_row,
                    "sweep stopped: every batch fails; the next sweep tries again"
                );
                break;
            }
            if claimed == 0 {
                // Claimed by someone else between our query and our claim
                // (or an index not caught up yet): look again shortly.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        pass.finish()
    }

    /// Counts the rows a sweep leaves due at its deadline, within half the
    /// time left (the rest is the metrics line's).
    async fn count_left(&self, budget: Budget, pass: &mut Pass) {
        let time = budget.left().unwrap_or_default() / 2;
        let count = self.outbox.count_due(OffsetDateTime::now_utc());
        let counted = match tokio::time::timeout(time, count).await {
            Ok(counted) => counted,
            Err(_) => Err(StoreError::Transient(
                "rows left due not counted before the deadline".into(),
            )),
        };
        match counted {
            Ok(left) => {
                tracing::info!(left_due = left, "deadline near: the sweep stops here");
                pass.report.left_due = left;
            }
            Err(error) => {
                tracing::error!(%error, "deadline near: the sweep stops here");
                pass.error(error);
            }
        }
    }

    /// Claims the given rows (those still due) and sends them. A row whose
    /// `MAX_ATTEMPTS` earlier claims all ended without an outcome (every
    /// relay that took it crashed, timed out or was killed mid-send) is
    /// FAILED ("no outcome after N claims") instead of being sent again.
    pub async fn relay(&self, ids: &[String]) -> Result<RelayReport, RelayError> {
        self.relay_within(ids, Budget::UNLIMITED).await.finish()
    }

    async fn relay_within(&self, ids: &[String], budget: Budget) -> Pass {
        let now = OffsetDateTime::now_utc();
        let lease_until = epoch_ms(now) + self.config.lease().as_millis() as i64;
        let claimed = self.outbox.claim(ids, &self.owner, now, lease_until).await;
        let mut pass = Pass::default();
        for error in claimed.errors {
            tracing::error!(%error, "claim failed; the row is due again later");
            pass.error(error);
        }
        for (id, why) in &claimed.unreadable {
            self.fail_unsent(&mut pass, id, &format!("corrupt row: {why}"))
                .await;
        }
        // A claim counts an attempt before the send: past the limit, the
        // earlier claims spent them all without an outcome.
        let (exhausted, rows): (Vec<OutboxRow>, Vec<OutboxRow>) = claimed
            .rows
            .into_iter()
            .partition(|row| row.attempts > self.config.max_attempts);
        for row in &exhausted {
            let claims = row.attempts - 1;
            self.fail_unsent(
                &mut pass,
                &row.id,
                &format!("no outcome after {claims} claims"),
            )
            .await;
        }
        pass += self
            .deliver(&rows, Holder::Lease(&self.owner), budget)
            .await;
        pass
    }

    /// Makes a row this relay just claimed FAILED with `reason`, unsent; an
    /// unwritten mark leaves it to be claimed again once its lease ends.
    async fn fail_unsent(&self, pass: &mut Pass, id: &str, reason: &str) {
        tracing::error!(outbox_id = %id, %reason, "claimed row is FAILED, not sent");
        pass.report.claimed += 1;
        let written = self
            .outbox
            .mark_failed_unsent(id, &self.owner, reason)
            .await;
        if matches!(written, Ok(Written::Yes)) {
            pass.report.failed += 1;
        }
        pass.outcome(id, written);
    }

    /// Sends rows the outbox stream handed to this relay, without a claim:
    /// a stream shard is read by one relay at a time, so each new row comes
    /// to exactly one relay, and the sweep leaves new rows alone for
    /// `SWEEP_DELAY_SECONDS`. That saves one write per participant. Stream
    /// images can be old (a redelivered batch, a replayed shard), so the rows'
    /// current state is read first and only rows still new are sent. Every
    /// batch runs to its end, errors or not.
    pub async fn relay_new(&self, rows: Vec<OutboxRow>) -> Result<RelayReport, RelayError> {
        self.relay_new_within(rows, Budget::UNLIMITED).await
    }

    /// [`relay_new`](Self::relay_new) inside an invocation that ends at
    /// `deadline`: a batch is started only while `RELAY_SEND_TIMEOUT_MS`
    /// plus `DEADLINE_MARGIN_MS` are left, and the rows of batches not
    /// started are counted in `left_due`. They stay new, for the sweep.
    pub async fn relay_new_before(
        &self,
        rows: Vec<OutboxRow>,
        deadline: Instant,
    ) -> Result<RelayReport, RelayError> {
        self.relay_new_within(rows, self.budget(deadline)).await
    }

    async fn relay_new_within(
        &self,
        rows: Vec<OutboxRow>,
        budget: Budget,
    ) -> Result<RelayReport, RelayError> {
        let ids: Vec<&str> = rows
            .iter()
            .filter(|r| r.status == Status::Pending)
            .map(|r| r.id.as_str())
            .collect();
        let still_new = match self.outbox.still_new(&ids).await {
            Ok(still_new) => still_new,
            Err(error) => {
                tracing::error!(rows = ids.len(), %error, "new rows' state not read; the sweep takes them");
                return Pass::failed(error).finish();
            }
        };
        let fresh: Vec<OutboxRow> = rows
            .into_iter()
            .filter(|r| still_new.contains(&r.id))
            .collect();
        let send_timeout = self.config.relay_send_timeout();
        let batches: Vec<_> = fresh
            .chunks(self.config.relay_batch_size.max(1))
            .map(|batch| async move {
                if budget.allows(send_timeout) {
                    self.deliver(batch, Holder::Fresh, budget).await
                } else {
                    Pass::left(batch.len())
                }
            })
            .collect();
        // Every batch runs to its end: a batch dropped between its send and
        // its marks would only make duplicates.
        let passes: Vec<Pass> = stream::iter(batches)
            .buffer_unordered(BATCHES_IN_FLIGHT)
            .collect()
            .await;
        let mut pass = Pass::default();
        for batch in passes {
            pass += batch;
        }
        pass.finish()
    }

    fn budget(&self, deadline: Instant) -> Budget {
        Budget::new(deadline, self.config.deadline_margin())
    }

    /// Produces the rows in one batch and writes each outcome back, with
    /// nothing between the send and the marks that can stop them: a row
    /// whose payload cannot be read becomes FAILED first (sending it again
    /// cannot help) and the others are sent; then the DELIVERED marks are
    /// written, then the failed sends' retry or FAILED marks. Errors are
    /// counted in the pass, never returned early. Under a deadline the send
    /// is given up after `RELAY_SEND_TIMEOUT_MS`, or when `budget` has only
    /// its margin left.
    async fn deliver(&self, rows: &[OutboxRow], holder: Holder<'_>, budget: Budget) -> Pass {
        let mut pass = Pass::default();
        pass.report.claimed = rows.len();
        if rows.is_empty() {
            return pass;
        }
        tracing::debug!(
            rows = rows.len(),
            fresh = matches!(holder, Holder::Fresh),
            "delivering a batch"
        );
        failpoint("after_claim").await;
        let mut sendable = Vec::with_capacity(rows.len());
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            match self.message(row) {
                Ok(message) => {
                    sendable.push(row);
                    messages.push(message);
                }
                Err(error) => self.fail_corrupt(row, holder, &error, &mut pass).await,
            }
        }
        if messages.is_empty() {
            return pass;
        }
        let send_by = budget.end_of(self.config.relay_send_timeout());
        let results = self.producer.send_before(&messages, send_by).await;
        failpoint("after_ack").await;

        let mut acked = Vec::new();
        let mut unsent = Vec::new();
        for (row, result) in sendable.into_iter().zip(&results) {
            match result {
                Ok(delivery) => acked.push((row, delivery)),
                Err(error) => unsent.push((row, error)),
            }
        }
        self.mark_delivered(&acked, holder, &mut pass).await;
        // The failed sends' marks, all at once: a batch whose send was cut
        // off by the deadline has to be put back inside the margin.
        let failures = unsent.into_iter().map(|(row, error)| async move {
            let mut report = RelayReport::default();
            let written = self
                .after_send_failure(row, holder, error, &mut report)
                .await;
            (row, report, written)
        });
        for (row, report, written) in futures::future::join_all(failures).await {
            pass.report += report;
            pass.outcome(&row.id, written);
        }
        pass
    }

    /// A row whose payload cannot be read becomes FAILED now, with the
    /// reason (`corrupt payload: …`): no send can fix it, and it must not
    /// hold up the rest of its batch.
    async fn fail_corrupt(
        &self,
        row: &OutboxRow,
        holder: Holder<'_>,
        error: &std::io::Error,
        pass: &mut Pass,
    ) {
        let reason = format!("corrupt payload: {error}");
        tracing::error!(outbox_id = %row.id, error = %reason, "outbox row unreadable; row is FAILED");
        pass.report.failed += 1;
        let written = self.outbox.mark_failed(&row.id, holder, &reason).await;
        pass.outcome(&row.id, written);
    }

    /// Logs each acknowledged row's send response and marks the rows
    /// DELIVERED with it.
    async fn mark_delivered(
        &self,
        acked: &[(&OutboxRow, &Delivery)],
        holder: Holder<'_>,
        pass: &mut Pass,
    ) {
        for (row, delivery) in acked {
            self.log_send_response(row, delivery);
        }
        pass.report.delivered += acked.len();
        let marks: Vec<(&str, Stored)> = acked
            .iter()
            .map(|(row, delivery)| (row.id.as_str(), stored(delivery)))
            .collect();
        let now = OffsetDateTime::now_utc();
        let expires_at = self
            .config
            .retention_days
            .map(|days| crate::outbox::expires_at(now, days));
        let marked = self
            .outbox
            .mark_delivered_all(&marks, holder, now, expires_at, || failpoint("during_mark"))
            .await;
        for ((row, _), written) in acked.iter().zip(marked) {
            pass.outcome(&row.id, written);
        }
    }

    fn message(&self, row: &OutboxRow) -> std::io::Result<Message> {
        let envelope = Envelope {
            outbox_id: &row.id,
            source: &self.config.event_source,
            time: &row.created_at,
        };
        Ok(envelope.message(
            row.participant_id.clone().unwrap_or_default(),
            Bytes::from(row.payload_bytes()?),
        ))
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

/// Where the broker stored a message, as the outbox records it.
fn stored(delivery: &Delivery) -> Stored {
    Stored {
        topic: delivery.topic.clone(),
        partition: delivery.partition,
        offset: delivery.offset,
        timestamp: delivery.timestamp,
    }
}

/// A relay pass in progress: its report, and the first error it carried on
/// past.
#[derive(Debug, Default)]
struct Pass {
    report: RelayReport,
    first_error: Option<StoreError>,
}

impl Pass {
    /// A batch not started for lack of time: its rows are left due.
    fn left(rows: usize) -> Pass {
        let mut pass = Pass::default();
        pass.report.left_due = rows;
        pass
    }

    /// A pass that did nothing but meet `error` (the caller logs it).
    fn failed(error: StoreError) -> Pass {
        let mut pass = Pass::default();
        pass.error(error);
        pass
    }

    /// Counts an error the pass goes on past (the caller logs it).
    fn error(&mut self, error: StoreError) {
        self.report.errors += 1;
        self.first_error.get_or_insert(error);
    }

    /// Counts what became of one row's state change: written, taken over
    /// by another relay, or an error.
    fn outcome(&mut self, id: &str, written: Result<Written, StoreError>) {
        match written {
            Ok(Written::Yes) => {}
            Ok(Written::ConditionFailed) => {
                tracing::warn!(outbox_id = %id, "row changed hands before it was marked; the other relay will send it");
                self.report.lost_lease += 1;
            }
            Err(error) => {
                tracing::error!(outbox_id = %id, %error, "outbox row not marked; it is due again later");
                self.error(error);
            }
        }
    }

    fn finish(self) -> Result<RelayReport, RelayError> {
        match self.first_error {
            None => Ok(self.report),
            Some(first) => Err(RelayError {
                report: self.report,
                first,
            }),
        }
    }
}

impl std::ops::AddAssign for Pass {
    fn add_assign(&mut self, other: Pass) {
        self.report += other.report;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}
