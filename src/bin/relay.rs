//! The `relay` Lambda: invoked by the outbox table's stream with new rows,
//! and by a schedule for the sweep of rows due again (retries, expired
//! leases, rows a failed stream batch left behind). Each invocation writes one
//! line of CloudWatch metrics (EMF, see `raffle_outbox::metrics`), errors or
//! not, before its deadline (`raffle_outbox::deadline`); the scheduled sweep
//! also measures the backlog that the age alarm watches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use raffle_outbox::audit::AuditQuery;
use raffle_outbox::config::aws_clients;
use raffle_outbox::kafka::{auth::KafkaAuth, Producer};
use raffle_outbox::metrics::{self, Backlog};
use raffle_outbox::outbox::OutboxStore;
use raffle_outbox::relay::{Relay, RelayError, RelayReport};
use raffle_outbox::{deadline, telemetry, Config};
use time::OffsetDateTime;

/// A pass still running this close to the deadline (a DynamoDB call that
/// does not answer) is dropped, as the deadline would, so that the metrics
/// line is still written. The pass itself ends `DEADLINE_MARGIN_MS` before
/// the deadline: this is the backstop.
const LAST_WRITES: Duration = Duration::from_millis(500);

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
        let deadline = deadline::from_epoch_ms(event.context.deadline);
        Box::pin(invoke(relay, dynamodb, table, event.payload, deadline))
    }))
    .await
}

/// One invocation: the stream's new rows or a sweep, inside the deadline.
/// The metrics line is written whatever happened; errors are returned
/// after it (the invocation fails, so a stream batch is delivered again).
async fn invoke(
    relay: &Relay,
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    payload: serde_json::Value,
    deadline: Instant,
) -> Result<(), Error> {
    let scheduled = is_schedule(&payload);
    let cut_off = deadline.checked_sub(LAST_WRITES).unwrap_or(deadline);
    let (report, error) = tokio::time::timeout_at(cut_off.into(), pass(relay, payload, deadline))
        .await
        .unwrap_or_else(|_| {
            tracing::error!("relay pass cut short at its deadline; its rows are due again when their lease ends");
            let report = RelayReport {
                errors: 1,
                ..RelayReport::default()
            };
            (report, Some("relay pass cut short at its deadline".into()))
        });
    tracing::info!(?report, "relay invocation done");
    let now = OffsetDateTime::now_utc();
    let backlog = match scheduled {
        true => read_backlog(dynamodb, table, now, deadline).await,
        false => None,
    };
    metrics::relay_invocation(table, &report, backlog, now).emit();
    error.map_or(Ok(()), Err)
}

/// The stream's new rows or a sweep: what it did, errors or not, and its
/// error.
async fn pass(
    relay: &Relay,
    payload: serde_json::Value,
    deadline: Instant,
) -> (RelayReport, Option<Error>) {
    if payload.get("Records").is_none() {
        return split(relay.sweep_before(deadline).await);
    }
    match serde_json::from_value::<Event>(payload) {
        Ok(batch) => split(
            relay
                .relay_new_before(Relay::new_rows(&batch), deadline)
                .await,
        ),
        Err(error) => {
            let report = RelayReport {
                errors: 1,
                ..RelayReport::default()
            };
            (report, Some(error.into()))
        }
    }
}

/// A pass's report, whether or not it met errors, and its error.
fn split(outcome: Result<RelayReport, RelayError>) -> (RelayReport, Option<Error>) {
    match outcome {
        Ok(report) => (report, None),
        Err(error) => (error.report, Some(error.into())),
    }
}

/// The backlog gauges, given up (and left out of the line) when they are
/// not read within half the time left before the deadline.
async fn read_backlog(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    now: OffsetDateTime,
    deadline: Instant,
) -> Option<Backlog> {
    let query = AuditQuery::new(dynamodb.clone(), table);
    let time = deadline.saturating_duration_since(Instant::now()) / 2;
    match tokio::time::timeout(time, Backlog::read(&query, now)).await {
        Ok(Ok(backlog)) => Some(backlog),
        Ok(Err(error)) => {
            tracing::warn!(error = %format!("{error:#}"), "backlog not measured");
            None
        }
        Err(_) => {
            tracing::warn!("backlog not measured before the deadline");
            None
        }
    }
}
