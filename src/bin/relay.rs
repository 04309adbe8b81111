//! The `relay` Lambda: invoked by the outbox table's stream (new PENDING rows)
//! and by a schedule (the sweep of rows due for a retry or with an expired
//! lease). Either way it relays what is due to Kafka.

use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use raffle_outbox::config::aws_clients;
use raffle_outbox::kafka::Producer;
use raffle_outbox::outbox::OutboxStore;
use raffle_outbox::relay::Relay;
use raffle_outbox::{telemetry, Config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let (dynamodb, _) = aws_clients().await;
    let producer = Producer::connect(&config.kafka_bootstrap_servers, &config.kafka_topic).await?;
    let relay = Relay::new(
        OutboxStore::new(dynamodb, &config.outbox_table),
        Arc::new(producer),
        config,
    );
    let relay = &relay;
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            // Whatever woke us (a stream batch of new rows, or the schedule), the
            // due index names every row that needs sending, retries included.
            let report = relay.sweep().await?;
            tracing::info!(?report, "relay invocation done");
            Ok::<(), Error>(())
        },
    ))
    .await
}
