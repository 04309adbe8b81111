//! The `stream-handler` Lambda: participants table stream → outbox rows.
//! Partial batch responses (`ReportBatchItemFailures`) must be enabled on the
//! event source mapping; see `template.yaml`. The handler answers before the
//! invocation's deadline, with the records it did not store among the
//! failures (`raffle_outbox::deadline`). Each invocation writes one line of
//! CloudWatch metrics (EMF: `Captured`, `Rejected`, `RetriedRecords`).

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use raffle_outbox::config::aws_clients;
use raffle_outbox::outbox::OutboxStore;
use raffle_outbox::stream::StreamHandler;
use raffle_outbox::{deadline, metrics, telemetry, Config};
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let (dynamodb, _) = aws_clients().await;
    let handler = StreamHandler::new(OutboxStore::new(dynamodb, &config.outbox_table), &config);
    let (handler, table) = (&handler, config.outbox_table.as_str());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        let deadline = deadline::from_epoch_ms(event.context.deadline);
        let (response, counts) = handler.handle_before(&event.payload, deadline).await;
        metrics::stream_batch(table, &counts, OffsetDateTime::now_utc()).emit();
        Ok::<DynamoDbEventResponse, Error>(response)
    }))
    .await
}
