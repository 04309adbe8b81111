//! Outbox rows for the operator commands' tests, built from the stored form
//! (the attribute table in docs/outbox.md), not from the handler's
//! constructor, so those tests stay about the commands; and ways to put
//! them in a table or through a relay.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use raffle_outbox::audit::AuditQuery;
use raffle_outbox::kafka::Producer;
use raffle_outbox::outbox::row::rfc3339;
use raffle_outbox::outbox::{OutboxRow, Status};
use raffle_outbox::relay::{Relay, RelayReport};
use raffle_outbox::{demo, retention};
use time::OffsetDateTime;

use super::TestEnv;

/// A PENDING row for a new participant (the demo's sample number `n`),
/// created (and due) at `at`, as the stream handler writes it.
pub fn pending(n: usize, at: OffsetDateTime) -> OutboxRow {
    let (participant_id, participant) = demo::sample_participant(n);
    let event_id = format!("event-{}", uuid::Uuid::new_v4());
    let id = raffle_outbox::outbox::row::row_id(&event_id);
    serde_json::from_value(serde_json::json!({
        "id": id,
        "participant_id": participant_id,
        "status": "PENDING",
        "created_at": rfc3339(at),
        "attempts": 0,
        "payload": participant.to_string(),
        "source_event_id": event_id,
        "source_sequence_number": n.to_string(),
        "due_shard": raffle_outbox::outbox::row::due_shard(&id),
        "due_at": raffle_outbox::outbox::row::epoch_ms(at),
    }))
    .unwrap()
}

/// A REJECTED row (a stream record without an `id`).
pub fn rejected(at: OffsetDateTime) -> OutboxRow {
    let event_id = format!("bad-event-{}", uuid::Uuid::new_v4());
    serde_json::from_value(serde_json::json!({
        "id": raffle_outbox::outbox::row::row_id(&event_id),
        "status": "REJECTED",
        "created_at": rfc3339(at),
        "raw_image": "{}",
        "reject_reason": "the image has no `id`",
        "source_event_id": event_id,
    }))
    .unwrap()
}

/// The row as the relay leaves it once the broker stored it at `partition`
/// and `offset` of `topic`.
pub fn delivered(mut row: OutboxRow, topic: &str, partition: i32, offset: i64) -> OutboxRow {
    row.status = Status::Delivered;
    row.attempts = 1;
    row.due_shard = None;
    row.due_at = None;
    row.kafka_topic = Some(topic.to_string());
    row.kafka_partition = Some(partition);
    row.kafka_offset = Some(offset);
    row.kafka_timestamp = Some(1_795_867_200_000 + offset);
    row.delivered_at = Some(row.created_at.clone());
    row
}

/// The row as the relay leaves it after its last attempt failed with `error`.
pub fn failed(mut row: OutboxRow, error: &str) -> OutboxRow {
    row.status = Status::Failed;
    row.attempts = 10;
    row.due_shard = None;
    row.due_at = None;
    row.last_error = Some(error.to_string());
    row
}

/// Writes rows straight into the test's outbox (BatchWriteItem), as fast as
/// DynamoDB Local takes them.
pub async fn seed(env: &TestEnv, rows: &[OutboxRow]) {
    seed_into(&env.dynamodb, &env.config.outbox_table, rows).await;
}

/// [`seed`] into any table.
pub async fn seed_into(dynamodb: &aws_sdk_dynamodb::Client, table: &str, rows: &[OutboxRow]) {
    let items = rows
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    demo::save_all(dynamodb, table, items).await.unwrap();
}

/// A sweep of the test's outbox by a relay that gives up after
/// `max_attempts`.
pub async fn relay(env: &TestEnv, max_attempts: u32) -> RelayReport {
    let mut config = env.config.clone();
    config.max_attempts = max_attempts;
    relay_with(env, config).await
}

/// A sweep of the test's outbox by a relay with `config`.
pub async fn relay_with(env: &TestEnv, config: raffle_outbox::Config) -> RelayReport {
    let producer = Producer::connect(&config.kafka_bootstrap_servers, &config.kafka_topic)
        .await
        .unwrap();
    Relay::new(env.outbox.clone(), Arc::new(producer), config)
        .sweep()
        .await
        .unwrap()
}

/// The audit's reader of the test's outbox.
pub fn audit(env: &TestEnv) -> AuditQuery {
    AuditQuery::new(env.dynamodb.clone(), &env.config.outbox_table)
}

/// `expires_at` of a stored row, and what RETENTION_DAYS = `days` makes of
/// its `delivered_at` (none for a row never delivered).
pub async fn expiry(
    env: &TestEnv,
    id: &str,
    days: u32,
) -> (Option<AttributeValue>, Option<AttributeValue>) {
    let item = audit(env).item(id).await.unwrap().unwrap();
    let expected = item.get("delivered_at").map(|d| {
        let at = OffsetDateTime::parse(
            d.as_s().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        AttributeValue::N(retention::expires_at(at, days).to_string())
    });
    (item.get(retention::EXPIRES_AT).cloned(), expected)
}

/// A fresh directory under the system's temporary directory.
pub fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("operators-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
