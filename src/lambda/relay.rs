//! The `relay` Lambda: invoked by the outbox table's stream with new rows,
//! and by the schedule for the sweep of rows due again (retries, expired
//! leases, rows a failed stream batch left behind). Each invocation writes
//! one line of CloudWatch metrics (EMF, see [`crate::metrics`]), errors or
//! not, before its deadline ([`crate::deadline`]); the scheduled sweep also
//! measures the backlog that the age alarm watches.

use std::time::{Duration, Instant};

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use time::OffsetDateTime;

use super::schedule::{is_schedule, Trigger};
use super::stream::outbox_rows;
use crate::audit::AuditQuery;
use crate::deadline;
use crate::metrics::{self, Backlog};
use crate::relay::{Relay, RelayError, RelayReport};

/// A pass still running this close to the deadline (a DynamoDB call that
/// does not answer) is dropped, as the deadline would, so that the metrics
/// line is still written. The pass itself ends `DEADLINE_MARGIN_MS` before
/// the deadline: this is the backstop.
pub const LAST_WRITES: Duration = Duration::from_millis(500);

/// The `relay` Lambda: reads the configuration, connects to the cluster
/// (with the configured authentication: a Secrets Manager read for SCRAM),
/// then serves invocations with [`invoke`] until the runtime stops it.
/// Fails only at start (configuration, credentials, the first connection).
pub async fn run_relay() -> Result<(), Error> {
    let (config, dynamodb) = super::start().await?;
    let table = config.outbox_table.clone();
    let relay = Relay::connect(config, &dynamodb).await?;
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
/// A scheduled sweep also reads the backlog gauges (the FAILED count and
/// the oldest PENDING and IN_FLIGHT rows, Queries of the status index,
/// given up at half the time left).
pub async fn invoke(
    relay: &Relay,
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    payload: serde_json::Value,
    deadline: Instant,
) -> Result<(), Error> {
    let scheduled = is_schedule(&payload);
    let trigger = Trigger::of(payload);
    let cut_off = deadline.checked_sub(LAST_WRITES).unwrap_or(deadline);
    let (report, error) = tokio::time::timeout_at(cut_off.into(), pass(relay, trigger, deadline))
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
/// error. A stream payload that is not a dynamodb event is an error of its
/// own (the invocation fails; nothing is written).
async fn pass(relay: &Relay, trigger: Trigger, deadline: Instant) -> (RelayReport, Option<Error>) {
    let payload = match trigger {
        Trigger::Sweep => return split(relay.sweep_before(deadline).await),
        Trigger::Stream(payload) => payload,
    };
    match serde_json::from_value::<Event>(payload) {
        Ok(batch) => split(relay.relay_new_before(outbox_rows(batch), deadline).await),
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
