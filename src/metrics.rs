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
//! | `Failed` | Count | rows this invocation made FAILED (the alarm fires on any) |
//! | `PendingRows` | Count | rows waiting (PENDING or IN_FLIGHT) seen in the due index, at most [`BACKLOG_SAMPLE`] per shard (scheduled sweeps only) |
//! | `OldestPendingAgeSeconds` | Seconds | age (since `created_at`) of the oldest of those rows; 0 when none waits (scheduled sweeps only) |
//!
//! The backlog gauges are measured on the scheduled sweep (once a minute), not
//! on every stream-triggered invocation: 16 small queries, and a BatchGetItem
//! for the rows found, which in a healthy system are none.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::Client;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::outbox::row::{epoch_ms, DUE_SHARDS};
use crate::outbox::store::DUE_INDEX;
use crate::relay::RelayReport;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "RaffleOutbox";
/// The dimension every metric carries: which outbox (one per stack).
pub const DIMENSION: &str = "OutboxTable";
/// Due-index rows looked at per shard for the backlog gauges.
pub const BACKLOG_SAMPLE: i32 = 100;

/// One EMF record: metrics sharing a timestamp, namespace and dimensions.
#[derive(Debug, Clone)]
pub struct Emf {
    timestamp_ms: i64,
    dimensions: Vec<(String, String)>,
    metrics: Vec<(String, &'static str, f64)>,
}

impl Emf {
    pub fn new(at: OffsetDateTime) -> Emf {
        Emf {
            timestamp_ms: epoch_ms(at),
            dimensions: Vec::new(),
            metrics: Vec::new(),
        }
    }

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

/// What the due index says is waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub rows: usize,
    pub oldest_age_seconds: i64,
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
        .metric("LostLease", "Count", count(report.lost_lease));
    match backlog {
        None => emf,
        Some(b) => emf.metric("PendingRows", "Count", count(b.rows)).metric(
            "OldestPendingAgeSeconds",
            "Seconds",
            b.oldest_age_seconds as f64,
        ),
    }
}

/// Samples the due index: up to [`BACKLOG_SAMPLE`] rows per shard, those due
/// soonest, and the age of the oldest PENDING or IN_FLIGHT row among them.
/// Exact while fewer than 16 × [`BACKLOG_SAMPLE`] rows wait; beyond that a
/// lower bound (and then the FAILED alarm is the louder signal anyway).
pub async fn backlog(
    client: &Client,
    table: &str,
    now: OffsetDateTime,
) -> Result<Backlog, aws_sdk_dynamodb::Error> {
    let mut ids = Vec::new();
    for shard in 0..DUE_SHARDS {
        let page = client
            .query()
            .table_name(table)
            .index_name(DUE_INDEX)
            .key_condition_expression("due_shard = :s")
            .expression_attribute_values(":s", AttributeValue::S(shard.to_string()))
            .limit(BACKLOG_SAMPLE)
            .send()
            .await?;
        ids.extend(
            page.items()
                .iter()
                .filter_map(|item| item.get("id").cloned()),
        );
    }
    let mut backlog = Backlog::default();
    for chunk in ids.chunks(100) {
        let mut keys: Vec<HashMap<String, AttributeValue>> = chunk
            .iter()
            .map(|id| HashMap::from([("id".to_string(), id.clone())]))
            .collect();
        while !keys.is_empty() {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .projection_expression("created_at, #s")
                .expression_attribute_names("#s", "status")
                .build()?;
            let out = client
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await?;
            for item in out
                .responses()
                .and_then(|r| r.get(table))
                .into_iter()
                .flatten()
            {
                let status = item.get("status").and_then(|s| s.as_s().ok());
                if !matches!(status.map(String::as_str), Some("PENDING" | "IN_FLIGHT")) {
                    continue;
                }
                backlog.rows += 1;
                let created = item
                    .get("created_at")
                    .and_then(|c| c.as_s().ok())
                    .and_then(|c| {
                        OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339)
                            .ok()
                    });
                if let Some(created) = created {
                    let age = (now - created).whole_seconds().max(0);
                    backlog.oldest_age_seconds = backlog.oldest_age_seconds.max(age);
                }
            }
            keys = out
                .unprocessed_keys()
                .and_then(|u| u.get(table))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
        }
    }
    Ok(backlog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_relay_record_is_emf() {
        let report = RelayReport {
            claimed: 5,
            delivered: 3,
            retrying: 1,
            failed: 1,
            lost_lease: 0,
        };
        let backlog = Backlog {
            rows: 2,
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
                            {"Name": "PendingRows", "Unit": "Count"},
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
                "PendingRows": 2.0,
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
        assert_eq!(metrics.len(), 5, "no backlog gauges without a backlog");
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
