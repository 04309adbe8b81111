//! One batch's send and the marks that follow it: a relay's second half.

use bytes::Bytes;
use time::OffsetDateTime;

use super::pass::Pass;
use super::{Relay, RelayReport};
use crate::deadline::Budget;
use crate::failpoint::failpoint;
use crate::kafka::envelope::Envelope;
use crate::kafka::{Delivery, KafkaError, Message};
use crate::outbox::backoff::{after_failure, AfterFailure};
use crate::outbox::row::epoch_ms;
use crate::outbox::{Holder, OutboxRow, StoreError, Stored, Written};
use crate::trace::TraceContext;

impl Relay {
    /// Produces the rows in one batch and writes each outcome back, with
    /// nothing between the send and the marks that can stop them: a row
    /// whose payload cannot be read becomes FAILED first (sending it again
    /// cannot help) and the others are sent; then the DELIVERED marks are
    /// written, then the failed sends' retry or FAILED marks. Errors are
    /// counted in the pass, never returned early. Under a deadline the send
    /// is given up after `RELAY_SEND_TIMEOUT_MS`, or when `budget` has only
    /// its margin left.
    pub(super) async fn deliver(
        &self,
        rows: &[OutboxRow],
        holder: Holder<'_>,
        budget: Budget,
    ) -> Pass {
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
    pub(super) async fn fail_corrupt(
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
    pub(super) async fn mark_delivered(
        &self,
        acked: &[(&OutboxRow, &Delivery)],
        holder: Holder<'_>,
        pass: &mut Pass,
    ) {
        for (row, delivery) in acked {
            self.log_send_response(row, delivery);
        }
        pass.report.delivered += acked.len();
        let marks: Vec<(&OutboxRow, Stored)> = acked
            .iter()
            .map(|(row, delivery)| (*row, stored(delivery)))
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

    pub(super) fn message(&self, row: &OutboxRow) -> std::io::Result<Message> {
        // Each send is a new span of the participant's trace; a row written
        // before traces were kept gets a trace of its own here.
        let trace = row_trace(row).map_or_else(TraceContext::new_root, |t| t.child());
        let traceparent = trace.to_string();
        let envelope = Envelope {
            outbox_id: &row.id,
            source: &self.config.event_source,
            time: &row.created_at,
            traceparent: &traceparent,
        };
        Ok(envelope.message(
            row.participant_id.clone().unwrap_or_default(),
            Bytes::from(row.payload_bytes()?),
        ))
    }

    /// The send response, one structured line per message: ids and
    /// coordinates only, never the participant's fields.
    pub(super) fn log_send_response(&self, row: &OutboxRow, delivery: &Delivery) {
        tracing::info!(
            topic = %delivery.topic,
            partition = delivery.partition,
            offset = delivery.offset,
            timestamp = delivery.timestamp,
            outbox_id = %row.id,
            participant_id = row.participant_id.as_deref().unwrap_or_default(),
            trace_id = row_trace(row).map(|t| t.trace_id_hex()).unwrap_or_default(),
            "kafka send response"
        );
    }

    /// Writes a failed send back to its row, as [`after_failure`] decides:
    /// a fault of the message spends the attempt (retry, or FAILED when out
    /// of attempts or refused for good); any other failure gives the attempt
    /// back and makes the row wait.
    pub(super) async fn after_send_failure(
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

/// The trace context a row carries, if it carries a readable one.
fn row_trace(row: &OutboxRow) -> Option<TraceContext> {
    TraceContext::from_traceparent(row.traceparent.as_deref()?).ok()
}
