//! A row as the audit shows it: the columns an export (and `audit list
//! --json`) writes, read from the outbox row's index projection. The row
//! itself is [`OutboxRow`]; this is a borrowed view of it, every column
//! present (absent values `null` in JSON, empty in CSV).

use serde::Serialize;

use crate::outbox::{OutboxRow, Status};

/// One outbox row's audit columns. The field order is the column order of
/// an export (README, "Operating"); every column is written, `null` when
/// the row has no value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record<'a> {
    id: &'a str,
    participant_id: Option<&'a str>,
    status: Status,
    created_at: &'a str,
    attempts: u32,
    redrive_count: u32,
    kafka_topic: Option<&'a str>,
    kafka_partition: Option<i32>,
    kafka_offset: Option<i64>,
    kafka_timestamp: Option<i64>,
    delivered_at: Option<&'a str>,
    last_error: Option<&'a str>,
    reject_reason: Option<&'a str>,
    source_event_id: Option<&'a str>,
    source_sequence_number: Option<&'a str>,
    expires_at: Option<i64>,
}

/// The export's columns, in order: the outbox's
/// [`AUDIT_ATTRIBUTES`](crate::outbox::schema::AUDIT_ATTRIBUTES).
pub const COLUMNS: [&str; 16] = crate::outbox::schema::AUDIT_ATTRIBUTES;

impl<'a> Record<'a> {
    /// The audit's columns of `row` (its payload, due and lease fields are
    /// not among them).
    pub fn of(row: &'a OutboxRow) -> Record<'a> {
        Record {
            id: &row.id,
            participant_id: row.participant_id.as_deref(),
            status: row.status,
            created_at: &row.created_at,
            attempts: row.attempts,
            redrive_count: row.redrive_count,
            kafka_topic: row.kafka_topic.as_deref(),
            kafka_partition: row.kafka_partition,
            kafka_offset: row.kafka_offset,
            kafka_timestamp: row.kafka_timestamp,
            delivered_at: row.delivered_at.as_deref(),
            last_error: row.last_error.as_deref(),
            reject_reason: row.reject_reason.as_deref(),
            source_event_id: Some(&row.source_event_id),
            source_sequence_number: row.source_sequence_number.as_deref(),
            expires_at: row.expires_at,
        }
    }

    /// The values in [`COLUMNS`] order, absent ones empty.
    pub fn values(&self) -> [String; 16] {
        fn text<T: ToString>(v: &Option<T>) -> String {
            v.as_ref().map(T::to_string).unwrap_or_default()
        }
        [
            self.id.to_string(),
            text(&self.participant_id),
            self.status.to_string(),
            self.created_at.to_string(),
            self.attempts.to_string(),
            self.redrive_count.to_string(),
            text(&self.kafka_topic),
            text(&self.kafka_partition),
            text(&self.kafka_offset),
            text(&self.kafka_timestamp),
            text(&self.delivered_at),
            text(&self.last_error),
            text(&self.reject_reason),
            text(&self.source_event_id),
            text(&self.source_sequence_number),
            text(&self.expires_at),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_name_the_serialized_fields_in_order() {
        let now = time::macros::datetime!(2026-11-28 12:00:00 UTC);
        let source = crate::outbox::Source {
            event_id: "e".into(),
            sequence_number: None,
        };
        let row = OutboxRow {
            attempts: 3,
            redrive_count: 1,
            ..OutboxRow::pending(&source, "p".into(), "{}".into(), now)
        }
        .into_failed("boom");
        let record = Record::of(&row);
        let json = serde_json::to_string(&record).unwrap();
        let keys: Vec<String> = serde_json::from_str::<serde_json::Map<_, _>>(&json)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut sorted = COLUMNS.map(String::from).to_vec();
        sorted.sort();
        assert_eq!(keys, sorted, "serde_json sorts keys; same set");
        assert!(json.starts_with(r#"{"id":"#), "in column order: {json}");
        assert!(json.contains(r#""kafka_topic":null"#), "absent is null");
        assert_eq!(record.values()[2], "FAILED");
        assert_eq!(record.values()[11], "boom");
    }
}
