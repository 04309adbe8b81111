//! Relay passes that meet a row they cannot read, a write DynamoDB refuses,
//! batches smaller than the due index's shard count, or a deadline, on the
//! real local stack: nothing stalls, nothing is lost, and no row the broker
//! acknowledged is left unmarked because of another row.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use raffle_outbox::kafka::partitioner::partition_for;
use raffle_outbox::kafka::Producer;
use raffle_outbox::local;
use raffle_outbox::outbox::row::{due_shard, DUE_SHARDS};
use raffle_outbox::outbox::{Holder, OutboxRow, Status, StoreError, Stored, Written};
use raffle_outbox::relay::{Relay, OUTBOX_ID_HEADER};
use time::OffsetDateTime;

use common::rows::pending_due as row;

/// The first `count` rows numbered from `from` on that `wanted` accepts.
fn rows_where(
    from: usize,
    count: usize,
    due: OffsetDateTime,
    wanted: impl FnMut(&OutboxRow) -> bool,
) -> Vec<OutboxRow> {
    (from..)
        .map(|n| row(n, due))
        .filter(wanted)
        .take(count)
        .collect()
}

/// The partition of a three-partition topic a row's message goes to.
fn partition_of(row: &OutboxRow) -> i32 {
    partition_for(
        row.participant_id.as_deref().unwrap().as_bytes(),
        common::PARTITIONS,
    )
}

async fn insert(env: &common::TestEnv, rows: &[OutboxRow]) {
    for written in env.outbox.insert_all(rows).await {
        assert_eq!(written.unwrap(), Written::Yes);
    }
}

/// A relay on the test's outbox with the test's configuration.
async fn relay(env: &common::TestEnv) -> Relay {
    let config = env.config.clone();
    let producer = Producer::connect(&config.kafka_bootstrap_servers, &config.kafka_topic)
        .await
        .unwrap();
    Relay::new(env.outbox.clone(), Arc::new(producer), config)
}

async fn stored(env: &common::TestEnv, row: &OutboxRow) -> OutboxRow {
    env.outbox.get(&row.id).await.unwrap().unwrap()
}

/// Messages per participant (the message key) on the topic.
fn sends(records: &[common::Record]) -> HashMap<String, usize> {
    let mut sends = HashMap::new();
    for record in records {
        *sends.entry(record.key.clone().unwrap()).or_default() += 1;
    }
    sends
}

/// Asserts that each of `rows` is DELIVERED where its message is, and that
/// the topic holds each of them exactly once and nothing else.
async fn assert_delivered_once(
    env: &common::TestEnv,
    rows: &[OutboxRow],
    records: &[common::Record],
) {
    let stored: HashMap<String, OutboxRow> = env
        .rows()
        .await
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let at: HashMap<(i32, i64), &common::Record> = records
        .iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
    for row in rows {
        let stored = &stored[&row.id];
        assert_eq!(stored.status, Status::Delivered, "row {}", row.id);
        let record = at[&(
            stored.kafka_partition.unwrap(),
            stored.kafka_offset.unwrap(),
        )];
        assert_eq!(record.key, row.participant_id);
        assert_eq!(record.headers[OUTBOX_ID_HEADER], row.id);
    }
    let sends = sends(records);
    assert_eq!(sends.len(), rows.len(), "only these participants were sent");
    assert!(
        sends.values().all(|&n| n == 1),
        "each participant once: {sends:?}"
    );
}

/// A new row is the outbox stream's until the sweep delay has passed: a
/// sweep before then leaves it alone; a sweep after it (its stream record
/// lost) sends it, from `by_status` since new rows are not in the due
/// index. A row backing off after a failed first send is not taken early
/// with it.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_row_whose_stream_record_was_lost_is_swept_after_the_sweep_delay() {
    let mut env = common::env().await;
    env.config.sweep_delay_seconds = 3;
    let now = OffsetDateTime::now_utc();
    let (pid, participant) = raffle_outbox::demo::sample_participant(0);
    let source = |n: u32| raffle_outbox::outbox::Source {
        event_id: format!("lost-{n}-{}", env.suffix),
        sequence_number: Some(n.to_string()),
    };
    let lost = OutboxRow::pending(&source(0), pid, participant.to_string(), now);
    let (pid, participant) = raffle_outbox::demo::sample_participant(1);
    let waiting = OutboxRow::pending(&source(1), pid, participant.to_string(), now);
    insert(&env, &[lost.clone(), waiting.clone()]).await;
    let in_an_hour = raffle_outbox::outbox::row::epoch_ms(now) + 3_600_000;
    let written = env
        .outbox
        .mark_wait(&waiting.id, Holder::Fresh, "broker down", in_an_hour)
        .await;
    assert_eq!(written.unwrap(), Written::Yes);

    let relay = relay(&env).await;
    let early = relay.sweep().await.unwrap();
    assert_eq!(
        early.claimed, 0,
        "both rows are the stream's for 3 s: {early:?}"
    );
    assert_eq!(stored(&env, &lost).await.status, Status::Pending);

    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let late = relay.sweep().await.unwrap();
    assert_eq!((late.claimed, late.delivered), (1, 1), "{late:?}");
    let records = env.read_topic(1);
    assert_delivered_once(&env, std::slice::from_ref(&lost), &records).await;
    let waiting = stored(&env, &waiting).await;
    assert_eq!(
        (waiting.status, waiting.attempts, waiting.waits),
        (Status::Pending, 0, 1),
        "the row backing off waits for its due time"
    );
}

/// Writes `row` with a `padding` attribute as long as DynamoDB's 400 KB item
/// limit allows, less `spare` bytes: a row that an update adding more than
/// `spare` bytes no longer fits. The limit is found by bisection, so it is
/// whatever DynamoDB Local counts, on a table of the test's own without a
/// stream (DynamoDB Local slows down with every stream record it holds).
async fn put_near_the_item_limit(env: &common::TestEnv, row: &OutboxRow, spare: usize) {
    let probe = format!("probe_{}", env.suffix);
    env.dynamodb
        .create_table()
        .table_name(&probe)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let put = |table: &str, padding: usize| {
        let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(row).unwrap();
        item.insert("padding".into(), AttributeValue::S("p".repeat(padding)));
        env.dynamodb
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
    };
    let (mut fits, mut too_large) = (0, 400 * 1024);
    while too_large - fits > 1 {
        let padding = (fits + too_large) / 2;
        match put(&probe, padding).await {
            Ok(_) => fits = padding,
            Err(e) if e.code() == Some("ValidationException") => too_large = padding,
            Err(e) => panic!("{e:?}"),
        }
    }
    put(&env.config.outbox_table, fits - spare).await.unwrap();
}

/// A row whose payload cannot be decoded (a corrupt `payload_gzip`, no
/// payload at all) is FAILED at once with the reason, the rest of its batch
/// is sent, and nothing is left due.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_row_is_failed_and_the_rest_of_its_batch_is_sent() {
    let env = common::env().await;
    let now = OffsetDateTime::now_utc();
    let good: Vec<OutboxRow> = (0..5).map(|n| row(n, now)).collect();
    let mut garbled = row(5, now);
    (garbled.payload, garbled.payload_gzip) = (None, Some(b"not gzip at all".to_vec()));
    let mut empty = row(6, now);
    empty.payload = None;
    insert(
        &env,
        &[&good[..], &[garbled.clone(), empty.clone()]].concat(),
    )
    .await;

    let relay = relay(&env).await;
    let report = relay.sweep().await.unwrap();
    assert_eq!(
        (report.claimed, report.delivered, report.failed),
        (7, 5, 2),
        "one batch: {report:?}"
    );
    for bad in [&garbled, &empty] {
        let bad = stored(&env, bad).await;
        assert_eq!(bad.status, Status::Failed);
        let reason = bad.last_error.unwrap_or_default();
        assert!(reason.starts_with("corrupt payload: "), "{reason}");
        assert_eq!(bad.due_at, None, "out of the due index");
    }
    assert_delivered_once(&env, &good, &env.read_topic(good.len())).await;
    assert_eq!(relay.sweep().await.unwrap().claimed, 0, "nothing is due");
}

/// A row whose stored item is not a readable outbox row (here: no
/// `created_at`, written by hand) is claimed like the others, then made
/// FAILED with the reason; the rows claimed with it are sent. Before, the
/// unreadable item failed the whole claim: its batch-mates sat IN_FLIGHT
/// until their lease ended, and the row was claimed again every time.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_row_is_failed_and_the_rows_claimed_with_it_are_sent() {
    let env = common::env().await;
    let now = OffsetDateTime::now_utc();
    let good: Vec<OutboxRow> = (0..4).map(|n| row(n, now)).collect();
    insert(&env, &good).await;
    let bad = row(4, now);
    let mut item: std::collections::HashMap<String, AttributeValue> =
        serde_dynamo::to_item(&bad).unwrap();
    item.remove("created_at");
    env.dynamodb
        .put_item()
        .table_name(&env.config.outbox_table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();

    let relay = relay(&env).await;
    let report = relay.sweep().await.expect("the sweep carries on");
    assert_eq!(
        (report.claimed, report.delivered, report.failed),
        (5, 4, 1),
        "{report:?}"
    );
    let stored = env
        .dynamodb
        .get_item()
        .table_name(&env.config.outbox_table)
        .key("id", AttributeValue::S(bad.id.clone()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(stored["status"], AttributeValue::S("FAILED".into()));
    let reason = stored["last_error"].as_s().unwrap();
    assert!(reason.starts_with("corrupt row: "), "{reason}");
    assert!(!stored.contains_key("due_at"), "out of the due index");
    assert_eq!(relay.sweep().await.unwrap().claimed, 0, "nothing is due");
    // Out of the way of the helper, which reads every row of the table.
    env.dynamodb
        .delete_item()
        .table_name(&env.config.outbox_table)
        .key("id", AttributeValue::S(bad.id.clone()))
        .send()
        .await
        .unwrap();
    assert_delivered_once(&env, &good, &env.read_topic(good.len())).await;
}

/// A failed send whose retry mark DynamoDB refuses does not keep the rows
/// the broker acknowledged in the same batch from being marked DELIVERED
/// (left unmarked, they would be sent again: duplicates).
///
/// The failed send: on a broker of the test's own, the topic is recreated
/// with one partition after the producer learnt it had three, so partition 0
/// takes its messages and partition 1 answers UnknownTopicOrPartition. The
/// refused mark: that row sits so near DynamoDB's 400 KB item limit that its
/// retry mark, which adds `last_error`, does not fit.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_retry_mark_leaves_no_acknowledged_row_unmarked() {
    let mut env = common::env().await;
    let mut broker = common::broker::Broker::new(&env.stack);
    broker.start().await;
    let topic = env.config.kafka_topic.clone();
    broker.create_topic(&topic, common::PARTITIONS as u32).await;
    env.config.kafka_bootstrap_servers = broker.bootstrap();
    let relay = relay(&env).await;
    broker.delete_topic(&topic).await;
    broker.create_topic(&topic, 1).await;

    let now = OffsetDateTime::now_utc();
    let acknowledged = rows_where(0, 4, now, |r| partition_of(r) == 0);
    let refused = rows_where(100, 1, now, |r| partition_of(r) == 1).remove(0);
    insert(&env, &acknowledged).await;
    put_near_the_item_limit(&env, &refused, 10).await;

    // As the outbox stream hands new rows to the relay.
    let new_rows = [&acknowledged[..], std::slice::from_ref(&refused)].concat();
    let error = relay
        .relay_new(new_rows)
        .await
        .expect_err("the refused mark is reported");
    assert_eq!(
        (
            error.report.delivered,
            error.report.retrying,
            error.report.errors
        ),
        (4, 1, 1),
        "{error}"
    );
    assert!(matches!(error.first, StoreError::Permanent(_)), "{error}");

    let records = common::read_partitions(&broker.bootstrap(), &topic, 1, acknowledged.len());
    assert_delivered_once(&env, &acknowledged, &records).await;
    let refused = stored(&env, &refused).await;
    assert_eq!(
        (refused.status, refused.attempts),
        (Status::Pending, 0),
        "still new: the sweep takes it"
    );
}

/// A batch that meets an error does not end the sweep: the batches after it
/// are sent, and the error is reported at the end.
///
/// The error: the first batch's oldest row sits so near DynamoDB's 400 KB
/// item limit that its DELIVERED mark, which adds the topic's name (a long
/// one here), does not fit.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_batch_does_not_stop_the_sweep() {
    let mut env = common::env().await;
    env.config.kafka_topic = format!("{}-{}", env.config.kafka_topic, "t".repeat(200));
    env.config.relay_batch_size = 4;
    local::ensure_topic(
        &env.stack,
        &env.config.kafka_topic,
        common::PARTITIONS as u32,
    )
    .await
    .unwrap();
    let now = OffsetDateTime::now_utc();
    let oldest = time::Duration::minutes(1);
    let refused = rows_where(0, 1, now - oldest, |r| r.due_shard.as_deref() == Some("0")).remove(0);
    let rest: Vec<OutboxRow> = (1000..1012).map(|n| row(n, now)).collect();
    insert(&env, &rest).await;
    // Room for the claim's lease fields, not for the topic's name as well.
    put_near_the_item_limit(&env, &refused, 134).await;

    let error = relay(&env)
        .await
        .sweep()
        .await
        .expect_err("the refused mark is reported");
    assert_eq!(
        (
            error.report.claimed,
            error.report.delivered,
            error.report.errors
        ),
        (13, 13, 1),
        "{error}"
    );
    assert!(matches!(error.first, StoreError::Permanent(_)), "{error}");

    let records = env.read_topic(rest.len() + 1);
    let refused_sends = sends(&records).remove(refused.participant_id.as_deref().unwrap());
    assert_eq!(
        refused_sends,
        Some(1),
        "sent once; again when its lease ends"
    );
    let records: Vec<_> = records
        .into_iter()
        .filter(|r| r.headers[OUTBOX_ID_HEADER] != refused.id)
        .collect();
    assert_delivered_once(&env, &rest, &records).await;
    assert_eq!(stored(&env, &refused).await.status, Status::InFlight);
}

/// With batches smaller than the due index's shard count, a backlog in every
/// shard is served shard after shard, not the first shards until they are
/// empty.
#[tokio::test(flavor = "multi_thread")]
async fn with_small_batches_every_shard_is_served() {
    let mut env = common::env().await;
    env.config.relay_batch_size = 2;
    let now = OffsetDateTime::now_utc();
    let mut per_shard: HashMap<String, usize> = HashMap::new();
    let rows = rows_where(0, 3 * DUE_SHARDS as usize, now, |r| {
        let n = per_shard.entry(due_shard(&r.id)).or_default();
        *n += 1;
        *n <= 3
    });
    insert(&env, &rows).await;

    // A sweep's first batches, one after the other, as a sweep cut short
    // (by its deadline, or by the next rows arriving) would run them.
    let relay = relay(&env).await;
    for _ in 0..DUE_SHARDS / 2 {
        let ids = env
            .outbox
            .due_ids(OffsetDateTime::now_utc(), Duration::from_secs(60), 2)
            .await
            .unwrap();
        assert_eq!(relay.relay(&ids).await.unwrap().delivered, 2);
    }

    let delivered_ids: Vec<String> = env
        .rows()
        .await
        .into_iter()
        .filter(|r| r.status == Status::Delivered)
        .map(|r| r.id)
        .collect();
    let delivered: Vec<OutboxRow> = rows
        .into_iter()
        .filter(|r| delivered_ids.contains(&r.id))
        .collect();
    let served: BTreeSet<u32> = delivered
        .iter()
        .map(|r| due_shard(&r.id).parse().unwrap())
        .collect();
    assert_eq!(served, (0..DUE_SHARDS).collect(), "every shard served");
    assert_delivered_once(&env, &delivered, &env.read_topic(delivered.len())).await;
}

/// A sweep given a deadline over a backlog it cannot finish returns before
/// the deadline (where Lambda would cut it off), with no row IN_FLIGHT and
/// the rows left due counted; later sweeps send the rest, each row once.
///
/// Batches of one row, so that the backlog takes the sweep well past the
/// deadline whatever the machine; a wide margin, so that the last batch's
/// marks fit in it on a loaded one.
#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_stops_before_its_deadline_with_nothing_in_flight() {
    const ROWS: usize = 400;
    let mut env = common::env().await;
    env.config.relay_batch_size = 1;
    env.config.deadline_margin_ms = 2_000;
    env.config.relay_send_timeout_ms = 1_500;
    let now = OffsetDateTime::now_utc();
    let rows: Vec<OutboxRow> = (0..ROWS).map(|n| row(n, now)).collect();
    insert(&env, &rows).await;
    let relay = relay(&env).await;

    let deadline = Instant::now() + Duration::from_secs(5);
    // What the Lambda runtime does at the deadline: the invocation is gone.
    let report = tokio::time::timeout_at(deadline.into(), relay.sweep_before(deadline))
        .await
        .expect("the sweep returned before its deadline")
        .unwrap();

    let counts = common::counts(&env.rows().await);
    eprintln!("the invocation: {report:?}; the outbox after it: {counts:?}");
    assert_eq!(counts.get("IN_FLIGHT"), None, "{counts:?}");
    let delivered = counts.get("DELIVERED").copied().unwrap_or_default();
    assert_eq!(report.delivered, delivered, "{report:?}");
    // Rows whose send was cut off wait for their backoff: not due yet.
    let left = ROWS - delivered;
    assert!(
        (left - report.retrying..=left).contains(&report.left_due),
        "{report:?}"
    );

    // Later invocations (with the usual batch size) send the rest.
    env.config.relay_batch_size = 100;
    let later = self::relay(&env).await;
    let give_up = Instant::now() + Duration::from_secs(60);
    while env
        .rows()
        .await
        .iter()
        .any(|r| r.status != Status::Delivered)
    {
        assert!(Instant::now() < give_up, "the rest is delivered");
        later.sweep().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sends = sends(&env.read_topic(ROWS));
    assert_eq!(sends.len(), ROWS, "every participant sent");
    for row in env.rows().await {
        // A send cut off by the deadline may have reached the broker before
        // it was given up: such a row (it has a last error) may be there
        // twice, every other row once.
        let most = if row.last_error.is_some() { 2 } else { 1 };
        let sent = sends[row.participant_id.as_deref().unwrap()];
        assert!((1..=most).contains(&sent), "{sent} sends of {}", row.id);
    }
}

/// The rows the benchmark and the tests seed (the transitions' in-memory
/// twins, `OutboxRow::into_delivered` / `into_failed`) are the rows the
/// table's own transitions leave: a claimed row marked DELIVERED, one
/// marked FAILED, and a redriven one, each read back and compared whole.
#[tokio::test(flavor = "multi_thread")]
async fn seeded_rows_are_the_rows_the_transitions_write() {
    let env = common::env().await;
    let now = OffsetDateTime::now_utc();
    let rows: Vec<OutboxRow> = (0..2).map(|n| row(n, now)).collect();
    insert(&env, &rows).await;
    let lease_until = raffle_outbox::outbox::row::epoch_ms(now) + 60_000;
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let claimed = env
        .outbox
        .claim(&ids, "me", now, Duration::from_secs(60), lease_until)
        .await;
    assert_eq!(claimed.rows.len(), 2, "{claimed:?}");

    let at = OffsetDateTime::now_utc();
    let where_stored = Stored {
        topic: "t".into(),
        partition: 1,
        offset: 42,
        timestamp: 1_795_867_200_000,
    };
    let marks = [(&rows[0], where_stored.clone())];
    let marked = env
        .outbox
        .mark_delivered_all(&marks, Holder::Lease("me"), at, Some(7), || async {})
        .await;
    assert_eq!(marked[0].as_ref().unwrap(), &Written::Yes);
    let expected = rows[0].clone().into_delivered(&where_stored, at, Some(7));
    assert_eq!(stored(&env, &rows[0]).await, expected);

    let written = env
        .outbox
        .mark_failed(&rows[1].id, Holder::Lease("me"), "too large")
        .await;
    assert_eq!(written.unwrap(), Written::Yes);
    let failed = rows[1].clone().into_failed("too large");
    assert_eq!(stored(&env, &rows[1]).await, failed);

    let redriven = env
        .outbox
        .redrive(
            &failed.id,
            failed.attempts,
            failed.last_error.as_deref(),
            at,
        )
        .await;
    assert_eq!(redriven.unwrap(), Written::Yes);
    let back = stored(&env, &failed).await;
    assert_eq!(
        (back.status, back.attempts, back.redrive_count),
        (Status::Pending, 0, 1)
    );
    assert_eq!(back.redrive_history[0].attempts_before, 1);
    assert_eq!(
        env.outbox
            .redrive(&failed.id, failed.attempts, None, at)
            .await
            .unwrap(),
        Written::ConditionFailed,
        "a second redrive of what was read changes nothing"
    );
}
