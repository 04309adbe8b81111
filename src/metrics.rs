//! The relay's CloudWatch metrics, in Embedded Metric Format (EMF).
//!
//! EMF is a JSON log line with an `_aws` block naming the metrics; Lambda
//! sends stdout to CloudWatch Logs, and CloudWatch turns such lines into
//! metrics: no agent, no PutMetricData call, no extra permission. The relay
//! writes one line per invocation to stdout (its tracing logs go to stderr).
//!
//! Metrics, namespace [`NAMESPACE`], dimension `OutboxTable`:
//!
//! | name | unit | meaning |
//! |---|---|---|
//! | `Claimed`, `Delivered`, `Retrying`, `LostLease` | Count | rows this invocation claimed, sent, put back for a retry, lost to another relay |
//! | `Failed` | Count | rows this invocation made FAILED |
//! | `Errors` | Count | errors the invocation carried on past (a claim or mark DynamoDB refused or did not answer); the invocation then ends in an error |
//! | `LeftDue` | Count | rows left due because the invocation's deadline came first (the next invocation takes them) |
//! | `FailedRows` | Count | rows in FAILED now, until redriven (scheduled sweeps only; the FAILED alarm) |
//! | `OldestPendingAgeSeconds` | Seconds | age (since `created_at`) of the oldest PENDING or IN_FLIGHT row; 0 when none waits (scheduled sweeps only; the age alarm) |
//! | `Captured`, `Rejected`, `RetriedRecords` | Count | the stream handler's batch: new PENDING rows, REJECTED rows written, records reported back to be delivered again ([`stream_batch`]) |
//! | `MissingParticipants`, `DeliveredParticipants`, `PendingParticipants`, `FailedParticipants`, `RejectedParticipants`, `YoungParticipants` | Count | the scheduled `reconcile` Lambda's classes ([`reconcile_run`]; `MissingParticipants` is the missing-participants alarm's) |
//!
//! The two gauges are measured on the scheduled sweep (once a minute), not on
//! every stream-triggered invocation: three small Queries on the audit's
//! `by_status` index ([`Backlog::read`]).

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::audit::AuditQuery;
use crate::outbox::row::epoch_ms;
use crate::outbox::Status;
use crate::relay::RelayReport;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "RaffleOutbox";
/// The dimension every metric carries: which outbox (one per stack).
pub const DIMENSION: &str = "OutboxTable";

/// One EMF record: metrics sharing a timestamp, namespace and dimensions.
#[derive(Debug, Clone)]
pub struct Emf {
    timestamp_ms: i64,
    dimensions: Vec<(String, String)>,
    metrics: Vec<(String, &'static str, f64)>,
}

impl Emf {
    /// An empty record stamped `at`, in [`NAMESPACE`].
    pub fn new(at: OffsetDateTime) -> Emf {
        Emf {
            timestamp_ms: epoch_ms(at),
            dimensions: Vec::new(),
            metrics: Vec::new(),
        }
    }

    /// Adds a dimension (CloudWatch keeps one time series per distinct set
    /// of dimension values: keep them few).
    pub fn dimension(mut self, name: &str, value: &str) -> Emf {
        self.dimensions.push((name.to_string(), value.to_string()));
        self
    }

    /// `unit` is a CloudWatch unit name (`Count`, `Seconds`, …).
    pub fn metric(mut self, name: &str, unit: &'static str, value: f64) -> Emf {
        self.metrics.push((name.to_string(), unit, value));
        self
    }

    /// The record as EMF's JSON object.
    pub fn to_json(&self) -> Value {
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": self.timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [self.dimensions.iter().map(|(name, _)| name).collect::<Vec<_>>()],
                    "Metrics": self.metrics.iter()
                        .map(|(name, unit, _)| json!({"Name": name, "Unit": unit}))
                        .collect::<Vec<_>>(),
                }],
            }),
        );
        for (name, value) in &self.dimensions {
            root.insert(name.clone(), json!(value));
        }
        for (name, _, value) in &self.metrics {
            root.insert(name.clone(), json!(value));
        }
        Value::Object(root)
    }

    /// Writes the record as one line on stdout, where Lambda's log capture
    /// hands it to CloudWatch.
    pub fn emit(&self) {
        println!("{}", self.to_json());
    }
}

/// The outbox's standing state, from the `by_status` index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Rows in FAILED now (they stay until redriven).
    pub failed_rows: u64,
    /// Age of the oldest PENDING or IN_FLIGHT row; 0 when none waits.
    pub oldest_age_seconds: i64,
}

impl Backlog {
    /// Three small Queries on `by_status` (the audit's own, see
    /// [`AuditQuery`]): the FAILED count and the oldest PENDING and IN_FLIGHT
    /// rows. Exact, whatever the table's size.
    pub async fn read(query: &AuditQuery, now: OffsetDateTime) -> anyhow::Result<Backlog> {
        let (failed_rows, pending, in_flight) = futures::try_join!(
            query.count(Status::Failed),
            query.oldest(Status::Pending),
            query.oldest(Status::InFlight),
        )?;
        let oldest_age_seconds = [pending, in_flight]
            .into_iter()
            .flatten()
            .filter_map(|row| OffsetDateTime::parse(&row.created_at, &Rfc3339).ok())
            .map(|created| (now - created).whole_seconds().max(0))
            .max()
            .unwrap_or(0);
        Ok(Backlog {
            failed_rows,
            oldest_age_seconds,
        })
    }
}

/// The stream handler's line, one per batch: `Captured` (new PENDING
/// rows), `Rejected` (REJECTED rows written) and `RetriedRecords` (records
/// reported back in `batchItemFailures`).
pub fn stream_batch(
    outbox_table: &str,
    counts: &crate::stream::handler::BatchCounts,
    at: OffsetDateTime,
) -> Emf {
    Emf::new(at)
        .dimension(DIMENSION, outbox_table)
        .metric("Captured", "Count", counts.captured as f64)
        .metric("Rejected", "Count", counts.rejected as f64)
        .metric("RetriedRecords", "Count", counts.retry as f64)
}

/// The scheduled reconcile's line: `MissingParticipants` (the alarm's
/// metric) and the count of every other class (`DeliveredParticipants`, …).
pub fn reconcile_run(
    outbox_table: &str,
    report: &crate::reconcile::Report,
    at: OffsetDateTime,
) -> Emf {
    let mut emf = Emf::new(at).dimension(DIMENSION, outbox_table);
    for class in crate::reconcile::Class::ALL {
        let name = class.as_str();
        let name = format!("{}{}Participants", name[..1].to_uppercase(), &name[1..]);
        emf = emf.metric(&name, "Count", report.count(class) as f64);
    }
    emf
}

/// One relay invocation's record.
pub fn relay_invocation(
    outbox_table: &str,
    report: &RelayReport,
    backlog: Option<Backlog>,
    at: OffsetDateTime,
) -> Emf {
    let count = |n: usize| n as f64;
    let emf = Emf::new(at)
        .dimension(DIMENSION, outbox_table)
        .metric("Claimed", "Count", count(report.claimed))
        .metric("Delivered", "Count", count(report.delivered))
        .metric("Retrying", "Count", count(report.retrying))
        .metric("Failed", "Count", count(report.failed))
        .metric("LostLease", "Count", count(report.lost_lease))
        .metric("Errors", "Count", count(report.errors))
        .metric("LeftDue", "Count", count(report.left_due));
    match backlog {
        None => emf,
        Some(b) => emf
            .metric("FailedRows", "Count", b.failed_rows as f64)
            .metric(
                "OldestPendingAgeSeconds",
                "Seconds",
                b.oldest_age_seconds as f64,
            ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_stream_batch_record_counts_captured_rejected_and_retried() {
        let counts = crate::stream::handler::BatchCounts {
            captured: 3,
            rejected: 1,
            already_there: 2,
            retry: 1,
        };
        let json = stream_batch("outbox", &counts, datetime!(2026-12-02 12:00 UTC)).to_json();
        assert_eq!(
            (
                &json["Captured"],
                &json["Rejected"],
                &json["RetriedRecords"]
            ),
            (&3.0.into(), &1.0.into(), &1.0.into())
        );
    }

    #[test]
    fn a_reconcile_record_names_every_class() {
        let mut report = crate::reconcile::Report::default();
        report.classes.insert(crate::reconcile::Class::Missing, 2);
        let json = reconcile_run("outbox", &report, datetime!(2026-12-02 12:00 UTC)).to_json();
        assert_eq!(json["MissingParticipants"], 2.0);
        assert_eq!(json["DeliveredParticipants"], 0.0);
        assert_eq!(json["OutboxTable"], "outbox");
        let names: Vec<&str> = json["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 6, "{names:?}");
        assert!(names.contains(&"YoungParticipants"));
    }

    #[test]
    fn a_relay_record_is_emf() {
        let report = RelayReport {
            claimed: 5,
            delivered: 3,
            retrying: 1,
            failed: 1,
            lost_lease: 0,
            errors: 2,
            left_due: 40,
        };
        let backlog = Backlog {
            failed_rows: 2,
            oldest_age_seconds: 90,
        };
        let at = datetime!(2026-11-28 12:00:00.250 UTC);
        assert_eq!(
            relay_invocation("outbox-prod", &report, Some(backlog), at).to_json(),
            json!({
                "_aws": {
                    "Timestamp": 1_795_867_200_250i64,
                    "CloudWatchMetrics": [{
                        "Namespace": "RaffleOutbox",
                        "Dimensions": [["OutboxTable"]],
                        "Metrics": [
                            {"Name": "Claimed", "Unit": "Count"},
                            {"Name": "Delivered", "Unit": "Count"},
                            {"Name": "Retrying", "Unit": "Count"},
                            {"Name": "Failed", "Unit": "Count"},
                            {"Name": "LostLease", "Unit": "Count"},
                            {"Name": "Errors", "Unit": "Count"},
                            {"Name": "LeftDue", "Unit": "Count"},
                            {"Name": "FailedRows", "Unit": "Count"},
                            {"Name": "OldestPendingAgeSeconds", "Unit": "Seconds"},
                        ],
                    }],
                },
                "OutboxTable": "outbox-prod",
                "Claimed": 5.0,
                "Delivered": 3.0,
                "Retrying": 1.0,
                "Failed": 1.0,
                "LostLease": 0.0,
                "Errors": 2.0,
                "LeftDue": 40.0,
                "FailedRows": 2.0,
                "OldestPendingAgeSeconds": 90.0,
            })
        );
    }

    #[test]
    fn every_named_metric_has_a_value_and_the_line_is_one_line() {
        let emf = relay_invocation(
            "t",
            &RelayReport::default(),
            None,
            OffsetDateTime::now_utc(),
        );
        let value = emf.to_json();
        let metrics = value["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        assert_eq!(metrics.len(), 7, "no backlog gauges without a backlog");
        for m in metrics {
            let name = m["Name"].as_str().unwrap();
            assert!(value[name].is_number(), "{name} has a numeric value");
        }
        for dimension in value["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
            .as_array()
            .unwrap()
        {
            assert!(value[dimension.as_str().unwrap()].is_string());
        }
        assert!(!value.to_string().contains('\n'));
    }
}
