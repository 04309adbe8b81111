//! The names in [`super`] against the migrations and the row's stored form.

use std::collections::BTreeSet;

use super::*;
use crate::migrate::final_table;
use crate::outbox::{OutboxRow, RedriveEntry, Source, Status};

#[test]
fn the_migrations_create_the_named_indexes_and_ttl() {
    let (table, ttl) = final_table(TABLE).unwrap();
    let keys = |name: &str| -> Vec<String> {
        let index = table
            .global_secondary_indexes
            .iter()
            .find(|i| i.index_name == name)
            .unwrap_or_else(|| panic!("index {name}"));
        index
            .key_schema
            .iter()
            .map(|k| k.attribute_name.clone())
            .collect()
    };
    assert_eq!(keys(DUE_INDEX), [DUE_SHARD, DUE_AT]);
    assert_eq!(keys(BY_STATUS_INDEX), [STATUS, CREATED_AT]);
    assert_eq!(keys(BY_PARTICIPANT_INDEX), [PARTICIPANT_ID, CREATED_AT]);
    assert_eq!(table.key_schema[0].attribute_name, ID);
    assert_eq!(ttl.unwrap().attribute_name, EXPIRES_AT);
    for name in [BY_STATUS_INDEX, BY_PARTICIPANT_INDEX] {
        let index = table
            .global_secondary_indexes
            .iter()
            .find(|i| i.index_name == name)
            .unwrap();
        let mut projected: BTreeSet<&str> = index
            .projection
            .non_key_attributes
            .iter()
            .map(String::as_str)
            .collect();
        projected.extend(index.key_schema.iter().map(|k| k.attribute_name.as_str()));
        projected.insert(ID);
        assert_eq!(
            projected,
            AUDIT_ATTRIBUTES.into_iter().collect(),
            "{name} projects the audit's attributes"
        );
    }
}

#[test]
fn a_row_is_stored_with_the_named_attributes_only() {
    let now = time::macros::datetime!(2026-11-28 12:00:00 UTC);
    let source = Source {
        event_id: "e".into(),
        sequence_number: Some("1".into()),
    };
    let mut row = OutboxRow::pending(&source, "p".into(), "{}".into(), now).due(now);
    // Every optional attribute present.
    row.waits = 1;
    row.payload_gzip = Some(vec![1]);
    row.raw_image = Some("{}".into());
    row.reject_reason = Some("r".into());
    row.last_error = Some("e".into());
    row.kafka_topic = Some("t".into());
    (row.kafka_partition, row.kafka_offset, row.kafka_timestamp) = (Some(0), Some(0), Some(0));
    row.delivered_at = Some("d".into());
    (row.lease_owner, row.lease_until) = (Some("o".into()), Some(0));
    row.redrive_count = 1;
    row.redrive_history = vec![RedriveEntry {
        at: "a".into(),
        attempts_before: 1,
        last_error: None,
    }];
    row.expires_at = Some(0);
    row.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    assert_eq!(row.status, Status::Pending);
    let item: serde_dynamo::Item = serde_dynamo::to_item(&row).unwrap();
    let stored: BTreeSet<&str> = item.keys().map(String::as_str).collect();
    assert_eq!(stored, ATTRIBUTES.into_iter().collect());
}
