//! The `relay` Lambda: invoked by the outbox table's stream with new rows,
//! and by a schedule for the sweep of rows due again (retries, expired
//! leases, rows a failed stream batch left behind).

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use raffle_outbox::config::aws_clients;
use raffle_outbox::kafka::Producer;
use raffle_outbox::outbox::OutboxStore;
use raffle_outbox::relay::{Relay, RelayReport};
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
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        Box::pin(invoke(relay, event.payload))
    }))
    .await
}

async fn invoke(relay: &Relay, payload: serde_json::Value) -> Result<(), Error> {
    let report: RelayReport = if payload.get("Records").is_some() {
        let batch: Event = serde_json::from_value(payload)?;
        relay.relay_new(Relay::new_rows(&batch)).await?
    } else {
        relay.sweep().await?
    };
    tracing::info!(?report, "relay invocation done");
    Ok(())
}
