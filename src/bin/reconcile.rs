//! The `reconcile` Lambda: on its schedule (created only when the stack's
//! `ReconcileSchedule` parameter is set), every participant classified by its
//! outbox rows, as `raffle-outbox reconcile` does, without repair or verify.
//! Missing ids are logged (ids only); one EMF line carries the count per
//! class, and `MissingParticipantsAlarm` fires when `MissingParticipants` > 0.

use std::time::Duration;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use raffle_outbox::config::aws_clients;
use raffle_outbox::metrics;
use raffle_outbox::reconcile::{self, Options, Report, Tables};
use raffle_outbox::{telemetry, Config};
use time::OffsetDateTime;

/// How long a participant without a row is young (the CLI's default).
const GRACE: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let (dynamodb, _) = aws_clients().await;
    let tables = Tables::new(dynamodb, &config);
    let (tables, table) = (&tables, config.outbox_table.as_str());
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| async move {
        let options = Options {
            grace: GRACE,
            ..Options::default()
        };
        let report: Report = reconcile::reconcile(
            tables,
            &options,
            None,
            &mut |id| tracing::warn!(participant_id = id, "participant without an outbox row"),
            &|_, _| {},
        )
        .await?;
        tracing::info!(participants = report.participants, classes = ?report.classes, "reconcile done");
        metrics::reconcile_run(table, &report, OffsetDateTime::now_utc()).emit();
        Ok::<Report, Error>(report)
    }))
    .await
}
