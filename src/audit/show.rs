//! `audit show` and the row listings of `list` and `participant`.

use std::fmt::Write as _;

use time::OffsetDateTime;

use super::query::Item;
use crate::outbox::row::rfc3339;
use crate::outbox::schema::PAYLOAD_GZIP;
use crate::outbox::OutboxRow;

/// One row, whole: its state, the broker's send response, errors, the
/// redrive history and the payload (the participant: shown to the operator,
/// never logged). The item is read once, as an [`OutboxRow`].
pub fn render_row(item: &Item) -> anyhow::Result<String> {
    let row: OutboxRow = serde_dynamo::from_item(item.clone())?;
    let mut out = String::new();
    let mut line = |name: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "  {name:<22} {value}");
    };
    line("id", &row.id);
    line(
        "participant_id",
        &row.participant_id.as_deref().unwrap_or("-"),
    );
    line("status", &row.status);
    line("created_at", &row.created_at);
    line("attempts", &row.attempts);
    line("redrive_count", &row.redrive_count);
    line("source_event_id", &row.source_event_id);
    line(
        "source_sequence_number",
        &row.source_sequence_number.as_deref().unwrap_or("-"),
    );
    if let Some(topic) = &row.kafka_topic {
        line("kafka_topic", topic);
        line("kafka_partition", &opt(row.kafka_partition));
        line("kafka_offset", &opt(row.kafka_offset));
        let timestamp = row.kafka_timestamp.map(|ms| {
            let at = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
                .map(rfc3339)
                .unwrap_or_default();
            format!("{ms} ({at})")
        });
        line("kafka_timestamp", &timestamp.unwrap_or_else(|| "-".into()));
        line("delivered_at", &row.delivered_at.as_deref().unwrap_or("-"));
    }
    if let Some(error) = &row.last_error {
        line("last_error", error);
    }
    if let Some(reason) = &row.reject_reason {
        line("reject_reason", reason);
    }
    if let Some(at) = row.expires_at {
        line("expires_at", &at);
    }
    if let (Some(shard), Some(due)) = (&row.due_shard, row.due_at) {
        line("due", &format!("shard {shard} at {due}"));
    }
    if let Some(owner) = &row.lease_owner {
        line("lease", &format!("{owner} until {}", opt(row.lease_until)));
    }
    let history = redrive_history(&row);
    let _ = writeln!(
        out,
        "  redrive_history        {} entr{}",
        history.len(),
        if history.len() == 1 { "y" } else { "ies" }
    );
    for entry in history {
        let _ = writeln!(out, "    {entry}");
    }
    match row.payload_bytes() {
        Ok(payload) => {
            let _ = writeln!(
                out,
                "  payload                {}",
                String::from_utf8_lossy(&payload)
            );
        }
        Err(_) => {
            if let Some(raw) = &row.raw_image {
                let _ = writeln!(out, "  raw_image              {raw}");
            }
        }
    }
    Ok(out)
}

/// The row as one JSON object: every attribute, the payload as text.
pub fn row_json(item: &Item) -> anyhow::Result<serde_json::Value> {
    let row: OutboxRow = serde_dynamo::from_item(item.clone())?;
    let mut item = item.clone();
    item.remove(PAYLOAD_GZIP);
    let mut json: serde_json::Value = serde_dynamo::from_item(item)?;
    if let Ok(payload) = row.payload_bytes() {
        json["payload"] = String::from_utf8_lossy(&payload).into_owned().into();
    }
    Ok(json)
}

/// `2026-11-28T12:00:01Z  attempts before 10  last error: …`
fn redrive_history(row: &OutboxRow) -> Vec<String> {
    row.redrive_history
        .iter()
        .map(|e| {
            format!(
                "{}  attempts before {}  last error: {}",
                e.at,
                e.attempts_before,
                e.last_error.as_deref().unwrap_or("-")
            )
        })
        .collect()
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// The header of [`list_line`]s.
pub const LIST_HEADER: &str =
    "created_at                 status     id                                    participant_id                        attempts  where / why";

/// One row per line: when, state, ids, attempts, and where it went or why not.
pub fn list_line(row: &OutboxRow) -> String {
    let why = match (&row.coordinates(), &row.reject_reason, &row.last_error) {
        (Some(at), _, _) => at.clone(),
        (None, Some(reason), _) => reason.clone(),
        (None, None, Some(error)) => error.clone(),
        _ => String::new(),
    };
    let why: String = why.chars().take(100).collect();
    format!(
        "{:<26} {:<10} {:<37} {:<37} {:>8}  {why}",
        row.created_at,
        row.status.as_str(),
        row.id,
        row.participant_id.as_deref().unwrap_or("-"),
        row.attempts
    )
}
