//! The schedule's adapter: EventBridge Scheduler invokes the relay (the
//! sweep, every minute) and the reconcile (when `ReconcileSchedule` is set)
//! with a constant input (template.yaml). This file tells a scheduled
//! invocation from a stream batch, and holds the reconcile Lambda, which
//! only the schedule invokes.

use std::time::Duration;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use time::OffsetDateTime;

use crate::metrics;
use crate::reconcile::{self, Options, Report, Tables};

/// The relay schedule's input (template.yaml): `{"sweep": "schedule"}`.
pub const SWEEP_INPUT: &str = r#"{"sweep": "schedule"}"#;

/// How long a participant without a row is young in the scheduled
/// reconcile (the CLI's default).
pub const RECONCILE_GRACE: Duration = Duration::from_secs(300);

/// What invoked the relay: the outbox stream with a batch of records, or
/// the schedule (any payload without `Records` is taken as a sweep, so an
/// unexpected input does the safe thing: rows due are sent).
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// A batch of the outbox table's stream (`Records` present), not yet
    /// read as one.
    Stream(serde_json::Value),
    /// A sweep of the rows due.
    Sweep,
}

impl Trigger {
    /// Reads an invocation's payload. Never fails: a payload that is not a
    /// stream batch is a sweep.
    pub fn of(payload: serde_json::Value) -> Trigger {
        match payload.get("Records") {
            Some(_) => Trigger::Stream(payload),
            None => Trigger::Sweep,
        }
    }
}

/// Whether a payload is the schedule's own input ([`SWEEP_INPUT`]): only
/// then does the relay measure the backlog.
pub fn is_schedule(event: &serde_json::Value) -> bool {
    event.get("sweep").and_then(|s| s.as_str()) == Some("schedule")
}

/// The `reconcile` Lambda: on each scheduled invocation, every participant
/// classified by its outbox rows, as `raffle-outbox reconcile` does,
/// without repair or verify. Missing ids are logged (ids only); one EMF
/// line carries the count per class (`MissingParticipantsAlarm` fires when
/// `MissingParticipants` > 0). Costs a parallel Scan of the participants
/// table and one Query of the outbox's `by_participant` index per
/// participant (see [`crate::reconcile`]); an invocation whose reads fail
/// returns the error and writes no metrics line.
pub async fn run_reconcile() -> Result<(), Error> {
    let (config, dynamodb) = super::start().await?;
    let tables = Tables::new(dynamodb, &config);
    let (tables, table) = (&tables, config.outbox_table.as_str());
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| async move {
        let options = Options {
            grace: RECONCILE_GRACE,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedules_input_is_a_measured_sweep_and_a_batch_is_not() {
        let input: serde_json::Value = serde_json::from_str(SWEEP_INPUT).unwrap();
        assert!(is_schedule(&input));
        assert_eq!(Trigger::of(input), Trigger::Sweep);
        let other = serde_json::json!({"anything": 1});
        assert!(!is_schedule(&other));
        assert_eq!(Trigger::of(other), Trigger::Sweep);
        let batch = serde_json::json!({"Records": []});
        assert_eq!(Trigger::of(batch.clone()), Trigger::Stream(batch));
    }
}
