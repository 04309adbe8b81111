//! What the audit indexes hold of a row: everything an audit asks except the
//! participant's own fields (the payload stays in the table).

use serde::{Deserialize, Serialize};

use crate::outbox::Status;

/// One outbox row as the audit indexes project it. The field order is the
/// column order of an export (README, "Operating").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: String,
    pub participant_id: Option<String>,
    pub status: Status,
    pub created_at: String,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub redrive_count: u32,
    pub kafka_topic: Option<String>,
    pub kafka_partition: Option<i32>,
    pub kafka_offset: Option<i64>,
    pub kafka_timestamp: Option<i64>,
    pub delivered_at: Option<String>,
    pub last_error: Option<String>,
    pub reject_reason: Option<String>,
    pub source_event_id: Option<String>,
    pub source_sequence_number: Option<String>,
    /// Retention: epoch seconds after which DynamoDB's TTL deletes the row.
    pub expires_at: Option<i64>,
}

/// The export's columns, in order.
pub const COLUMNS: [&str; 16] = [
    "id",
    "participant_id",
    "status",
    "created_at",
    "attempts",
    "redrive_count",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp",
    "delivered_at",
    "last_error",
    "reject_reason",
    "source_event_id",
    "source_sequence_number",
    "expires_at",
];

impl AuditRecord {
    /// The values in [`COLUMNS`] order, absent ones empty.
    pub fn values(&self) -> [String; 16] {
        fn text<T: ToString>(v: &Option<T>) -> String {
            v.as_ref().map(T::to_string).unwrap_or_default()
        }
        [
            self.id.clone(),
            text(&self.participant_id),
            self.status.to_string(),
            self.created_at.clone(),
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

    /// Where the broker stored it, as `topic/partition@offset`.
    pub fn coordinates(&self) -> Option<String> {
        Some(format!(
            "{}/{}@{}",
            self.kafka_topic.as_deref()?,
            self.kafka_partition?,
            self.kafka_offset?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_name_the_serialized_fields_in_order() {
        let record = AuditRecord {
            id: "r".into(),
            participant_id: None,
            status: Status::Failed,
            created_at: "t".into(),
            attempts: 3,
            redrive_count: 1,
            kafka_topic: None,
            kafka_partition: None,
            kafka_offset: None,
            kafka_timestamp: None,
            delivered_at: None,
            last_error: Some("boom".into()),
            reject_reason: None,
            source_event_id: None,
            source_sequence_number: None,
            expires_at: None,
        };
        let json = serde_json::to_value(&record).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted = COLUMNS.to_vec();
        sorted.sort();
        assert_eq!(keys, sorted, "serde_json sorts keys; same set");
        assert_eq!(record.values()[2], "FAILED");
        assert_eq!(record.values()[11], "boom");
    }
}
