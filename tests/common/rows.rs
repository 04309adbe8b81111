//! Outbox rows for tests, built and moved on with the outbox's own
//! constructors and transitions (never by setting states by hand), so a
//! seeded row is the row the pipeline would have left; and ways to put them
//! in a table or through a relay.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use raffle_outbox::audit::AuditQuery;
use raffle_outbox::kafka::Producer;
use raffle_outbox::outbox::row::{epoch_ms, rfc3339};
use raffle_outbox::outbox::{OutboxRow, OutboxStore, Source, Stored};
use raffle_outbox::relay::{Relay, RelayReport};
use raffle_outbox::{demo, retention};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::TestEnv;

/// A PENDING row for a new participant (the demo's sample number `n`),
/// created at `at` as the stream handler writes it (its own constructor,
/// from a stream event of a random id), and in the due index, due at `at`,
/// so that a sweep takes it without waiting out the sweep delay.
pub fn pending(n: usize, at: OffsetDateTime) -> OutboxRow {
    pending_with(n, at, |_| {})
}

/// [`pending`], with `edit` applied to the participant before its row is made.
pub fn pending_with(
    n: usize,
    at: OffsetDateTime,
    edit: impl FnOnce(&mut serde_json::Value),
) -> OutboxRow {
    let (participant_id, mut participant) = demo::sample_participant(n);
    edit(&mut participant);
    let source = Source {
        event_id: format!("event-{}", uuid::Uuid::new_v4()),
        sequence_number: Some(n.to_string()),
    };
    OutboxRow::pending(&source, participant_id, participant.to_string(), at).due(at)
}

/// Outbox row number `n`: sample participant `n`, PENDING, created now and
/// in the due index, due at `due`, from stream event `ev-{n}` (so its id is
/// fixed by `n`).
pub fn pending_due(n: usize, due: OffsetDateTime) -> OutboxRow {
    let (id, participant) = demo::sample_participant(n);
    let source = Source {
        event_id: format!("ev-{n}"),
        sequence_number: Some(format!("{n:021}")),
    };
    OutboxRow::pending(
        &source,
        id,
        participant.to_string(),
        OffsetDateTime::now_utc(),
    )
    .due(due)
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

/// `row` as the delivered transition leaves it, stored at
/// `topic`/`partition`@`offset`, delivered when it was created.
pub fn delivered(row: OutboxRow, topic: &str, partition: i32, offset: i64) -> OutboxRow {
    let at = OffsetDateTime::parse(&row.created_at, &Rfc3339).expect("created_at is RFC 3339");
    let stored = Stored {
        topic: topic.to_string(),
        partition,
        offset,
        timestamp: 1_795_867_200_000 + offset,
    };
    row.into_delivered(&stored, at, None)
}

/// `row` as the failed transition leaves it after its tenth and last send
/// failed with `error`.
pub fn failed(row: OutboxRow, error: &str) -> OutboxRow {
    OutboxRow {
        attempts: 10,
        ..row
    }
    .into_failed(error)
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

/// Puts a due row in the state a relay that crashed mid-send leaves it in,
/// `claims` times over: claimed by `relay-that-crashed` under a lease that
/// ended a second ago, each claim counting its attempt. The claim
/// transition itself, so the state is the one a real claim writes.
pub async fn crashed_claims(outbox: &OutboxStore, row: &OutboxRow, claims: u32) {
    let now = OffsetDateTime::now_utc();
    let ended = epoch_ms(now) - 1_000;
    for claim in 0..claims {
        let claimed = outbox
            .claim(
                std::slice::from_ref(&row.id),
                "relay-that-crashed",
                now,
                Duration::ZERO,
                ended,
            )
            .await;
        assert!(
            claimed.errors.is_empty() && claimed.rows.len() == 1,
            "claim {claim} of {}: {claimed:?}",
            row.id
        );
    }
}
