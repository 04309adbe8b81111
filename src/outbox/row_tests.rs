//! The row's pure rules: ids, shape, payload, expiry.

use super::*;
use time::macros::datetime;

fn source(event_id: &str) -> Source {
    Source {
        event_id: event_id.into(),
        sequence_number: Some("100".into()),
    }
}

#[test]
fn rfc3339_is_utc_with_three_fractional_digits_so_strings_sort_as_times() {
    assert_eq!(
        rfc3339(datetime!(2026-11-28 10:00:05 UTC)),
        "2026-11-28T10:00:05.000Z"
    );
    assert_eq!(
        rfc3339(datetime!(2026-11-28 10:00:05.1 UTC)),
        "2026-11-28T10:00:05.100Z"
    );
    assert_eq!(
        rfc3339(datetime!(2026-11-28 12:00:05.123456 +02:00)),
        "2026-11-28T10:00:05.123Z"
    );
    let times = [
        datetime!(2026-11-28 10:00:05.05 UTC),
        datetime!(2026-11-28 10:00:05.1 UTC),
        datetime!(2026-11-28 10:00:05 UTC),
    ];
    let mut by_string = times.map(rfc3339);
    by_string.sort();
    let mut by_time = times;
    by_time.sort();
    assert_eq!(by_string, by_time.map(rfc3339));
}

#[test]
fn row_id_is_a_deterministic_uuid_v5_of_the_event_id() {
    let a = row_id("c81e728d9d4c2f636f067f89cc14862c");
    assert_eq!(a, row_id("c81e728d9d4c2f636f067f89cc14862c"));
    assert_ne!(a, row_id("eccbc87e4b5ce2fe28308fd9f2a7baf3"));
    let parsed = Uuid::parse_str(&a).unwrap();
    assert_eq!(parsed.get_version_num(), 5);
    // Pinned: a change here would make redelivered records into new rows.
    assert_eq!(
        row_id("event-1"),
        Uuid::new_v5(&ROW_ID_NAMESPACE, b"event-1").to_string()
    );
    assert_eq!(
        ROW_ID_NAMESPACE.to_string(),
        "6f1c2a57-9d3e-4b8a-a0f4-52c1e7d93b06"
    );
}

#[test]
fn reconcile_ids_are_one_per_participant_and_apart_from_stream_ids() {
    let a = reconcile_row_id("0b9d6c2e-1f4a-4c8e-9a57-3d2f6e8b1c40");
    assert_eq!(a, reconcile_row_id("0b9d6c2e-1f4a-4c8e-9a57-3d2f6e8b1c40"));
    assert_ne!(a, reconcile_row_id("another"));
    assert_ne!(a, row_id("0b9d6c2e-1f4a-4c8e-9a57-3d2f6e8b1c40"));
    assert_eq!(Uuid::parse_str(&a).unwrap().get_version_num(), 5);
    let now = datetime!(2026-11-28 12:00:00 UTC);
    let row = OutboxRow::pending(&source("e1"), "p".into(), "{}".into(), now).with_id(a.clone());
    assert_eq!(row.id, a);
    assert_eq!(row.due_shard, Some(due_shard(&a)));
}

#[test]
fn new_rows_are_outside_the_due_index_and_rejected_rows_never_in_it() {
    let now = datetime!(2026-11-28 12:00:00.123456 UTC);
    let p = OutboxRow::pending(&source("e1"), "p-1".into(), "{}".into(), now);
    assert_eq!(p.status, Status::Pending);
    assert_eq!(
        p.due_at, None,
        "new rows are the stream's, not the due index's"
    );
    assert_eq!(p.created_at, "2026-11-28T12:00:00.123Z");
    assert!(p.due_shard.as_deref().unwrap().parse::<u32>().unwrap() < DUE_SHARDS);
    let due = p.due(now);
    assert_eq!(due.due_at, Some(1_795_867_200_123));
    let r = OutboxRow::rejected(&source("e2"), None, Some("{}".into()), "no id".into(), now);
    assert_eq!(
        (r.status, r.due_shard, r.due_at),
        (Status::Rejected, None, None)
    );
}

#[test]
fn rows_round_trip_through_dynamodb_items_without_nulls() {
    let now = datetime!(2026-11-28 12:00:00 UTC);
    let row =
        OutboxRow::pending(&source("e1"), "p-1".into(), r#"{"id":"p-1"}"#.into(), now).due(now);
    let item: serde_dynamo::Item = serde_dynamo::to_item(&row).unwrap();
    assert!(!item.contains_key("kafka_offset"), "absent, not NULL");
    assert_eq!(
        item.get("status"),
        Some(&serde_dynamo::AttributeValue::S("PENDING".into()))
    );
    let back: OutboxRow = serde_dynamo::from_item(item).unwrap();
    assert_eq!(back, row);
}

#[test]
fn large_payloads_are_stored_compressed_and_read_back_exactly() {
    let now = datetime!(2026-11-28 12:00:00 UTC);
    let big = format!(r#"{{"id":"p","bio":"{}"}}"#, "Zoë ".repeat(100_000));
    let row = OutboxRow::pending(&source("e1"), "p".into(), big.clone(), now);
    assert!(row.payload.is_none());
    assert!(row.payload_gzip.as_ref().unwrap().len() < INLINE_PAYLOAD_LIMIT);
    let item: serde_dynamo::Item = serde_dynamo::to_item(&row).unwrap();
    assert!(matches!(
        item.get("payload_gzip"),
        Some(serde_dynamo::AttributeValue::B(_))
    ));
    let back: OutboxRow = serde_dynamo::from_item(item).unwrap();
    assert_eq!(back.payload_bytes().unwrap(), big.as_bytes());
    let small = OutboxRow::pending(&source("e2"), "p".into(), "{}".into(), now);
    assert_eq!(small.payload_bytes().unwrap(), b"{}");
}

#[test]
fn expiry_is_delivery_plus_the_days_in_epoch_seconds() {
    let delivered = datetime!(2026-11-28 12:00:00.5 UTC);
    assert_eq!(
        expires_at(delivered, 30),
        datetime!(2026-12-28 12:00:00 UTC).unix_timestamp()
    );
}
