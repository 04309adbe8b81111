//! The `relay` Lambda: invoked by the outbox table's stream (new PENDING rows)
//! and by a schedule (the sweep of rows due for a retry or with an expired
//! lease). Either way it relays what is due to Kafka, then writes one line of
//! CloudWatch metrics (EMF, see `raffle_outbox::metrics`); the scheduled sweep
//! also measures the backlog that the age alarm watches.

use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use raffle_outbox::config::aws_clients;
use raffle_outbox::kafka::{auth::KafkaAuth, Producer};
use raffle_outbox::metrics;
use raffle_outbox::outbox::OutboxStore;
use raffle_outbox::relay::Relay;
use raffle_outbox::{telemetry, Config};
use time::OffsetDateTime;

/// The schedule's input (template.yaml): `{"sweep": "schedule"}`.
fn is_schedule(event: &serde_json::Value) -> bool {
    event.get("sweep").and_then(|s| s.as_str()) == Some("schedule")
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let (dynamodb, _) = aws_clients().await;
    let auth = KafkaAuth::from_config(&config).await?;
    let producer =
        Producer::connect_with_auth(&config.kafka_bootstrap_servers, &config.kafka_topic, auth)
            .await?;
    let table = config.outbox_table.clone();
    let relay = Relay::new(
        OutboxStore::new(dynamodb.clone(), &table),
        Arc::new(producer),
        config,
    );
    let (relay, table, dynamodb) = (&relay, &table, &dynamodb);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            // Whatever woke us (a stream batch of new rows, or the schedule), the
            // due index names every row that needs sending, retries included.
            let report = relay.sweep().await?;
            tracing::info!(?report, "relay invocation done");
            let now = OffsetDateTime::now_utc();
            let backlog = if is_schedule(&event.payload) {
                match metrics::backlog(dynamodb, table, now).await {
                    Ok(backlog) => Some(backlog),
                    Err(error) => {
                        tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&error), "backlog not measured");
                        None
                    }
                }
            } else {
                None
            };
            metrics::relay_invocation(table, &report, backlog, now).emit();
            Ok::<(), Error>(())
        },
    ))
    .await
}
