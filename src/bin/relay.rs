//! The `relay` Lambda: invoked by the outbox table's stream with new rows,
//! and by a schedule for the sweep of rows due again (retries, expired
//! leases, rows a failed stream batch left behind). Each invocation writes one
//! line of CloudWatch metrics (EMF, see `raffle_outbox::metrics`); the
//! scheduled sweep also measures the backlog that the age alarm watches.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use raffle_outbox::audit::AuditQuery;
use raffle_outbox::config::aws_clients;
use raffle_outbox::kafka::{auth::KafkaAuth, Producer};
use raffle_outbox::metrics::{self, Backlog};
use raffle_outbox::outbox::OutboxStore;
use raffle_outbox::relay::{Relay, RelayReport};
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
    let (relay, dynamodb, table) = (&relay, &dynamodb, table.as_str());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        Box::pin(invoke(relay, dynamodb, table, event.payload))
    }))
    .await
}

async fn invoke(
    relay: &Relay,
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    payload: serde_json::Value,
) -> Result<(), Error> {
    let scheduled = is_schedule(&payload);
    let report: RelayReport = if payload.get("Records").is_some() {
        let batch: Event = serde_json::from_value(payload)?;
        relay.relay_new(Relay::new_rows(&batch)).await?
    } else {
        relay.sweep().await?
    };
    tracing::info!(?report, "relay invocation done");
    let now = OffsetDateTime::now_utc();
    let backlog = if scheduled {
        let query = AuditQuery::new(dynamodb.clone(), table);
        Backlog::read(&query, now)
            .await
            .inspect_err(
                |error| tracing::warn!(error = %format!("{error:#}"), "backlog not measured"),
            )
            .ok()
    } else {
        None
    };
    metrics::relay_invocation(table, &report, backlog, now).emit();
    Ok(())
}
