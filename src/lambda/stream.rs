//! The DynamoDB stream's adapter: a batch of stream records as the event
//! source mapping delivers it (`aws_lambda_events`' dynamodb `Event`) in,
//! domain values out, and the partial batch response
//! (`batchItemFailures`) back. Two streams come this way: the participants
//! table's (to the [`StreamHandler`]) and the outbox table's (to the
//! relay, [`outbox_rows`]). The local pipeline's poller hands out the same
//! events, so it goes through here too.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::time::Instant;
use time::OffsetDateTime;

use crate::outbox::{OutboxRow, OutboxStore, Source};
use crate::stream::handler::BatchCounts;
use crate::stream::{Batch, Handled, Insert, StreamHandler};
use crate::{deadline, metrics};

/// The `stream-handler` Lambda: reads the configuration, then stores each
/// participants stream batch before its deadline and writes its metrics
/// line (EMF: `Captured`, `Rejected`, `RetriedRecords`). Partial batch
/// responses (`ReportBatchItemFailures`) must be enabled on the event
/// source mapping (template.yaml). Fails only at start; a record's
/// failure is in the response.
pub async fn run_stream_handler() -> Result<(), Error> {
    let (config, dynamodb) = super::start().await?;
    let handler = StreamHandler::new(OutboxStore::new(dynamodb, &config.outbox_table), &config);
    let (handler, table) = (&handler, config.outbox_table.as_str());
    // Boxed (one allocation an invocation), as the relay's: the future is
    // deep, and its layout would otherwise overflow the compiler's query
    // depth in the binary.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| {
        Box::pin(async move {
            let deadline = deadline::from_epoch_ms(event.context.deadline);
            let (response, counts) = handler.handle_before(&event.payload, deadline).await;
            metrics::stream_batch(table, &counts, OffsetDateTime::now_utc()).emit();
            Ok::<DynamoDbEventResponse, Error>(response)
        })
    }))
    .await
}

/// The batch as the [`StreamHandler`] takes it: the INSERT records (a
/// registration is the INSERT; MODIFY and REMOVE make no row, and are only
/// counted), borrowing their images from `event`. Copies nothing else.
pub fn participants_batch(event: &Event) -> Batch<'_> {
    let inserts: Vec<Insert<'_>> = event
        .records
        .iter()
        .filter(|r| r.event_name == "INSERT")
        .map(insert)
        .collect();
    Batch {
        ignored: event.records.len() - inserts.len(),
        inserts,
    }
}

fn insert(record: &EventRecord) -> Insert<'_> {
    Insert {
        source: Source {
            event_id: record.event_id.clone(),
            sequence_number: record.change.sequence_number.clone(),
        },
        image: &record.change.new_image,
    }
}

/// The partial batch response: one `batchItemFailures` entry per record to
/// deliver again, named by its sequence number; empty when all is stored.
pub fn batch_response(handled: &Handled) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    for source in &handled.retry {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = source.sequence_number.clone();
        response.batch_item_failures.push(failure);
    }
    response
}

impl StreamHandler {
    /// Writes the batch's outbox rows; the answer names the records to
    /// deliver again ([`StreamHandler::handle_batch`] on the
    /// [`participants_batch`], answered as a [`batch_response`]).
    pub async fn handle(&self, event: &Event) -> DynamoDbEventResponse {
        batch_response(&self.handle_batch(&participants_batch(event)).await)
    }

    /// [`handle`](Self::handle) inside an invocation that ends at
    /// `deadline`: it answers when `DEADLINE_MARGIN_MS` is left at the
    /// latest, with every record not yet stored in `batchItemFailures`, and
    /// what became of the records.
    pub async fn handle_before(
        &self,
        event: &Event,
        deadline: Instant,
    ) -> (DynamoDbEventResponse, BatchCounts) {
        let handled = self
            .handle_batch_before(&participants_batch(event), deadline)
            .await;
        (batch_response(&handled), handled.counts)
    }
}

/// The new rows in a batch of the outbox table's stream (its INSERT
/// images). A row that cannot be read is logged and left to the sweep,
/// which finds it on `by_status` once it is older than the sweep delay.
/// Sends no request; takes the event, so the images are moved, not copied.
pub fn outbox_rows(event: Event) -> Vec<OutboxRow> {
    event
        .records
        .into_iter()
        .filter(|r| r.event_name == "INSERT")
        .filter_map(|r| match serde_dynamo::from_item(r.change.new_image) {
            Ok(row) => Some(row),
            Err(error) => {
                tracing::warn!(event_id = %r.event_id, %error, "outbox stream image unreadable; the sweep will take the row");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, event_id: &str, sequence_number: &str) -> EventRecord {
        let mut record = EventRecord::default();
        record.event_name = name.to_string();
        record.event_id = event_id.to_string();
        record.change.sequence_number = Some(sequence_number.to_string());
        record
    }

    /// INSERTs become the batch, in order, with their source; MODIFY and
    /// REMOVE are only counted; the records to retry come back by sequence
    /// number, as the event source mapping reads `batchItemFailures`.
    #[test]
    fn a_batch_is_its_inserts_and_its_failures_are_named_by_sequence_number() {
        let mut event = Event::default();
        event.records = vec![
            record("INSERT", "e1", "100"),
            record("MODIFY", "e2", "200"),
            record("INSERT", "e3", "300"),
            record("REMOVE", "e4", "400"),
        ];
        let batch = participants_batch(&event);
        assert_eq!(batch.ignored, 2);
        let ids: Vec<&str> = batch
            .inserts
            .iter()
            .map(|i| i.source.event_id.as_str())
            .collect();
        assert_eq!(ids, ["e1", "e3"]);

        let handled = Handled {
            retry: vec![batch.inserts[1].source.clone()],
            counts: BatchCounts::default(),
        };
        let failures: Vec<Option<String>> = batch_response(&handled)
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        assert_eq!(failures, [Some("300".to_string())]);
        assert!(batch_response(&Handled::default())
            .batch_item_failures
            .is_empty());
    }
}
