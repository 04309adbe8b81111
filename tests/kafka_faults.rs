//! What the broker, the network and the relay's own crashes do to rows, on
//! the real stack: which failures spend a row's attempts and which make it
//! wait, claims without an outcome, idle connections after a broker restart,
//! and partitions added to a topic. Tests that stop, restart or configure a
//! broker run a tansu of their own (`common::broker`); the shared one is
//! never stopped.

mod common;

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::broker::Broker;
use raffle_outbox::kafka::partitioner::partition_for;
use raffle_outbox::kafka::{Message, Producer, ProducerSettings};
use raffle_outbox::outbox::{OutboxRow, Status, Written};
use raffle_outbox::relay::{Relay, OUTBOX_ID_HEADER};
use raffle_outbox::Config;
use time::OffsetDateTime;

/// PENDING rows for sample participants `numbers`, due now (as the sweep
/// finds rows the outbox stream did not deliver), in the test's outbox.
/// `edit` may change a participant before its row is made.
async fn pending_rows(
    env: &common::TestEnv,
    numbers: Range<usize>,
    edit: impl Fn(usize, &mut serde_json::Value),
) -> Vec<OutboxRow> {
    let now = OffsetDateTime::now_utc();
    let rows: Vec<OutboxRow> = numbers
        .map(|n| common::rows::pending_with(n, now, |participant| edit(n, participant)))
        .collect();
    for written in env.outbox.insert_all(&rows).await {
        assert_eq!(written.expect("row inserted"), Written::Yes);
    }
    rows
}

/// A relay over the test's outbox, sending to `config`'s broker and topic.
async fn relay(env: &common::TestEnv, config: Config) -> Relay {
    let producer = Producer::connect(&config.kafka_bootstrap_servers, &config.kafka_topic)
        .await
        .expect("producer");
    Relay::new(env.outbox.clone(), Arc::new(producer), config)
}

/// The test's config, sending to `broker` instead of the shared broker.
fn config_for(env: &common::TestEnv, broker: &Broker) -> Config {
    let mut config = env.config.clone();
    config.kafka_bootstrap_servers = broker.bootstrap();
    config
}

async fn row(env: &common::TestEnv, id: &str) -> OutboxRow {
    env.outbox.get(id).await.unwrap().expect("row exists")
}

/// Sweeps every 200 ms until `done` holds for the outbox's rows (checking
/// `invariant` after each sweep); panics after a generous minute.
async fn sweep_until(
    env: &common::TestEnv,
    relay: &Relay,
    invariant: impl Fn(&[OutboxRow]),
    done: impl Fn(&[OutboxRow]) -> bool,
) -> Vec<OutboxRow> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        relay.sweep().await.expect("sweep");
        let rows = env.rows().await;
        invariant(&rows);
        if done(&rows) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "not done within a minute: {:?}",
            common::counts(&rows)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each row's participant is on the topic once, with its outbox id.
fn assert_on_topic_once(records: &[common::Record], rows: &[OutboxRow]) {
    assert_eq!(records.len(), rows.len(), "one message per row");
    let keys: HashSet<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r.key.as_deref().unwrap(),
                r.headers[OUTBOX_ID_HEADER].as_str(),
            )
        })
        .collect();
    for row in rows {
        assert!(
            keys.contains(&(row.participant_id.as_deref().unwrap(), row.id.as_str())),
            "row {} is on the topic",
            row.id
        );
    }
}

/// Issue 10, item 5: a row whose every claim ended without an outcome (the
/// relay crashed, timed out or was killed mid-send each time) is FAILED at
/// its next claim instead of being sent again, and says why; a row one
/// claim below the limit is still sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_claimed_max_attempts_times_without_an_outcome_is_failed_not_sent() {
    let env = common::env().await;
    let mut config = env.config.clone();
    config.max_attempts = 3;
    let rows = pending_rows(&env, 0..2, |_, _| {}).await;
    common::rows::crashed_claims(&env.outbox, &rows[0], 3).await;
    common::rows::crashed_claims(&env.outbox, &rows[1], 2).await;

    let report = relay(&env, config).await.sweep().await.expect("sweep");

    let exhausted = row(&env, &rows[0].id).await;
    assert_eq!(
        (
            exhausted.status,
            exhausted.last_error.as_deref(),
            exhausted.attempts
        ),
        (Status::Failed, Some("no outcome after 3 claims"), 3),
        "{exhausted:?}"
    );
    assert!(
        exhausted.due_at.is_none() && exhausted.lease_owner.is_none(),
        "out of the due index, no lease"
    );
    let sent = row(&env, &rows[1].id).await;
    assert_eq!((sent.status, sent.attempts), (Status::Delivered, 3));
    assert_eq!((report.delivered, report.failed), (1, 1), "{report:?}");
    assert_on_topic_once(&env.read_topic(1), &rows[1..]);
}

/// Issue 10, item 9: a broker outage outlasting MAX_ATTEMPTS backoffs
/// leaves every row PENDING with its attempts unspent (the cause is the
/// cluster, not the message); once the broker is back every row is
/// delivered, on its first attempt, once.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_outage_longer_than_the_attempts_allow_leaves_rows_waiting_then_delivers_them() {
    let env = common::env().await;
    let mut broker = Broker::new(&env.stack);
    broker.start().await;
    broker.create_topic(&env.config.kafka_topic, 3).await;
    let mut config = config_for(&env, &broker);
    config.max_attempts = 2;
    let relay = relay(&env, config).await;
    let rows = pending_rows(&env, 0..5, |_, _| {}).await;

    broker.stop().await;
    let never_failed = |rows: &[OutboxRow]| {
        let failed: Vec<_> = rows.iter().filter(|r| r.status == Status::Failed).collect();
        assert!(
            failed.is_empty(),
            "a row FAILED while the broker was down: {failed:?}"
        );
    };
    // Twice the attempt limit of failed sends per row, backoffs included.
    let waited = sweep_until(&env, &relay, never_failed, |rows| {
        rows.iter().all(|r| r.waits >= 4)
    })
    .await;
    for r in &waited {
        assert_eq!((r.status, r.attempts), (Status::Pending, 0), "{r:?}");
        let error = r.last_error.as_deref().unwrap_or_default();
        assert!(error.contains("connect"), "the outage is the reason: {r:?}");
    }

    broker.start().await;
    let delivered = sweep_until(&env, &relay, never_failed, |rows| {
        rows.iter().all(|r| r.status == Status::Delivered)
    })
    .await;
    assert!(
        delivered.iter().all(|r| r.attempts == 1),
        "delivered on the first attempt: {delivered:?}"
    );
    assert_on_topic_once(
        &common::read_topic(&broker.bootstrap(), &env.config.kafka_topic, rows.len()),
        &rows,
    );
}

/// Issue 10, item 9: a record the topic refuses (INVALID_RECORD from the
/// broker's schema validation) is the message's fault: its row is FAILED
/// with the broker's answer, and only it: the rows that shared its record
/// batch are sent again on their own and delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_the_topic_refuses_fails_alone_and_the_rest_of_its_batch_is_delivered() {
    let env = common::env().await;
    let topic = env.config.kafka_topic.clone();
    let mut broker = Broker::new(&env.stack);
    // tansu validates every record of a topic against `<topic>.json`.
    let schemas = broker.schemas();
    std::fs::create_dir_all(&schemas).unwrap();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "value": {
                "type": "object",
                "properties": { "tickets": { "type": "integer", "maximum": 5 } },
                "required": ["tickets"]
            }
        }
    });
    std::fs::write(schemas.join(format!("{topic}.json")), schema.to_string()).unwrap();
    let advertised = format!("tcp://{}", broker.bootstrap());
    broker.start_with(&advertised, &[]).await;
    // One partition: every row in one record batch.
    broker.create_topic(&topic, 1).await;
    let rows = pending_rows(&env, 0..5, |n, participant| {
        if n == 2 {
            participant["tickets"] = serde_json::json!(99);
        }
    })
    .await;

    let report = relay(&env, config_for(&env, &broker))
        .await
        .sweep()
        .await
        .expect("sweep");

    assert_eq!((report.delivered, report.failed), (4, 1), "{report:?}");
    let refused = row(&env, &rows[2].id).await;
    assert_eq!((refused.status, refused.attempts), (Status::Failed, 1));
    let error = refused.last_error.unwrap_or_default();
    assert!(error.contains("INVALID_RECORD"), "{error}");
    let good: Vec<OutboxRow> = [0, 1, 3, 4].map(|i| rows[i].clone()).to_vec();
    for r in &good {
        let stored = row(&env, &r.id).await;
        assert_eq!((stored.status, stored.attempts), (Status::Delivered, 1));
    }
    let records = common::read_partitions(&broker.bootstrap(), &topic, 1, 4);
    assert_on_topic_once(&records, &good);
}

/// Issue 10, item 10: the broker restarts while the relay is idle, so every
/// pooled connection is dead; the next send still succeeds the first time
/// (a dead pooled connection is not an attempt) and its rows are delivered
/// with attempts = 1.
#[tokio::test(flavor = "multi_thread")]
async fn a_send_after_the_broker_restarted_under_idle_connections_succeeds_first_time() {
    let env = common::env().await;
    let mut broker = Broker::new(&env.stack);
    broker.start().await;
    broker.create_topic(&env.config.kafka_topic, 3).await;
    let relay = relay(&env, config_for(&env, &broker)).await;
    let before = pending_rows(&env, 0..3, |_, _| {}).await;
    assert_eq!(relay.sweep().await.expect("sweep").delivered, 3);

    broker.stop().await;
    broker.start().await;
    let after = pending_rows(&env, 3..8, |_, _| {}).await;
    let report = relay.sweep().await.expect("sweep");

    assert_eq!(
        (report.delivered, report.retrying),
        (5, 0),
        "the first send after the restart: {report:?}"
    );
    for r in &after {
        let stored = row(&env, &r.id).await;
        assert_eq!((stored.status, stored.attempts), (Status::Delivered, 1));
    }
    let all: Vec<OutboxRow> = before.into_iter().chain(after).collect();
    assert_on_topic_once(
        &common::read_topic(&broker.bootstrap(), &env.config.kafka_topic, all.len()),
        &all,
    );
}

/// Issue 10, item 8: partitions added to the topic are used once the
/// producer's partition map is older than its metadata max age. tansu 0.6.0
/// cannot add partitions to a topic (no CreatePartitions), so the topic is
/// deleted and made again with more.
#[tokio::test(flavor = "multi_thread")]
async fn partitions_added_to_the_topic_are_used_after_the_metadata_max_age() {
    let env = common::env().await;
    let topic = env.config.kafka_topic.clone();
    let mut broker = Broker::new(&env.stack);
    broker.start().await;
    broker.create_topic(&topic, 1).await;
    let max_age = Duration::from_secs(1);
    let settings = ProducerSettings {
        metadata_max_age: max_age,
        ..ProducerSettings::default()
    };
    let producer =
        Producer::connect_with_settings(&broker.bootstrap(), &topic, Default::default(), settings)
            .await
            .expect("producer");
    let message = |key: String| Message {
        value: Bytes::from(format!("{{\"id\":\"{key}\"}}")),
        key,
        headers: vec![],
    };
    let first = producer.send(&[message("first".into())]).await;
    assert_eq!(first[0].as_ref().expect("sent").partition, 0);

    broker.delete_topic(&topic).await;
    broker.create_topic(&topic, 3).await;
    tokio::time::sleep(max_age + Duration::from_millis(500)).await;

    let keys: Vec<String> = (0..12).map(|n| format!("participant-{n}")).collect();
    let expected: Vec<i32> = keys
        .iter()
        .map(|k| partition_for(k.as_bytes(), 3))
        .collect();
    assert!(
        expected.iter().any(|&p| p != 0),
        "some keys belong to the new partitions"
    );
    let results = producer
        .send(&keys.iter().cloned().map(message).collect::<Vec<_>>())
        .await;
    let partitions: Vec<i32> = results
        .iter()
        .map(|r| r.as_ref().expect("sent").partition)
        .collect();
    assert_eq!(partitions, expected, "each key on its partition of three");
}
