//! Fault injection: the Kafka broker goes away for 30 s while participants
//! keep arriving, then comes back. Nothing lost, nothing doubled.
//!
//! The broker is one of the test's own (`common::broker`): the shared one is
//! never stopped, since other tests use it meanwhile.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::broker::Broker;
use raffle_outbox::kafka::partitioner::partition_for;
use raffle_outbox::outbox::{OutboxRow, Status};
use raffle_outbox::pipeline::Pipeline;
use raffle_outbox::relay::OUTBOX_ID_HEADER;

/// Participants saved while the broker is up, before the outage.
const BEFORE: usize = 20;
/// Participants saved at each wave during the outage.
const WAVE: usize = 20;
const WAVE_EVERY: Duration = Duration::from_secs(5);
const OUTAGE: Duration = Duration::from_secs(30);
/// How long the relay gets, after the broker is back, to deliver everything.
/// Its backoff is exponential: a row that failed five times during the
/// outage may wait up to 32 s (plus jitter) for its next attempt.
const RECOVERY: Duration = Duration::from_secs(180);

/// Saves `count` sample participants, numbered from `first`; returns their ids.
async fn save_wave(env: &common::TestEnv, first: usize, count: usize) -> Vec<String> {
    let table = &env.config.participants_table;
    common::save_participants(&env.dynamodb, table, first..first + count).await
}

/// Polls the outbox until `expected` rows exist and all are DELIVERED (or one
/// is FAILED, which can only get worse).
async fn wait_all_delivered(
    env: &common::TestEnv,
    expected: usize,
    timeout: Duration,
) -> Vec<OutboxRow> {
    let deadline = Instant::now() + timeout;
    let mut last_report = Instant::now();
    loop {
        let rows = env.rows().await;
        let delivered = rows
            .iter()
            .filter(|r| r.status == Status::Delivered)
            .count();
        if rows.len() == expected && delivered == expected {
            return rows;
        }
        if rows.iter().any(|r| r.status == Status::Failed) || Instant::now() > deadline {
            return rows;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  outbox: {:?}", common::counts(&rows));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The scenario, while the pipeline runs: the first participants delivered, the
/// broker stopped, participants saved in waves, the broker started again.
/// Returns the saved participant ids, the outbox rows once all are delivered
/// (or at the timeout), and how long that took after the broker returned.
async fn outage(
    env: &common::TestEnv,
    broker: &mut Broker,
    started: Instant,
    mut saved: Vec<String>,
) -> (Vec<String>, Vec<OutboxRow>, Duration) {
    // The normal path first: these are delivered over a live connection,
    // which the outage then breaks under the producer.
    let rows = wait_all_delivered(env, BEFORE, Duration::from_secs(60)).await;
    assert_eq!(
        common::counts(&rows).get("DELIVERED"),
        Some(&BEFORE),
        "before the outage: {:?}",
        common::counts(&rows)
    );

    broker.stop().await;
    let outage_began = Instant::now();
    eprintln!(
        "broker stopped at {:.1} s; saving {WAVE} participants every {WAVE_EVERY:?}",
        started.elapsed().as_secs_f64()
    );
    let mut wave = 0;
    while outage_began.elapsed() < OUTAGE {
        let due = outage_began + WAVE_EVERY * wave;
        tokio::time::sleep_until(due.into()).await;
        if outage_began.elapsed() >= OUTAGE {
            break;
        }
        saved.extend(save_wave(env, saved.len(), WAVE).await);
        wave += 1;
    }
    tokio::time::sleep_until((outage_began + OUTAGE).into()).await;
    let during = env.rows().await;
    assert!(
        during.iter().all(|r| r.status != Status::Delivered
            || saved[..BEFORE].contains(r.participant_id.as_ref().unwrap())),
        "nothing can be delivered while the broker is down"
    );
    eprintln!(
        "  outbox at the end of the outage: {:?}",
        common::counts(&during)
    );

    broker.start().await;
    let back = Instant::now();
    eprintln!(
        "broker back at {:.1} s ({} participants saved)",
        started.elapsed().as_secs_f64(),
        saved.len()
    );
    let rows = wait_all_delivered(env, saved.len(), RECOVERY).await;
    (saved, rows, back.elapsed())
}

/// The relay keeps failing while the broker is down (rows go back to PENDING
/// with backoff and wait, spending no attempt, none reaches FAILED), the
/// producer dials the broker again when it returns, and then every
/// participant is on the topic exactly once, at the partition and offset its
/// row names.
#[tokio::test(flavor = "multi_thread")]
async fn broker_outage_of_30s_loses_and_doubles_nothing() {
    let started = Instant::now();
    let mut env = common::env().await;
    assert_eq!(env.config.max_attempts, 10, "the default attempt limit");
    let mut broker = Broker::new(&env.stack);
    broker.start().await;
    broker
        .create_topic(&env.config.kafka_topic, common::PARTITIONS as u32)
        .await;
    env.config.kafka_bootstrap_servers = broker.bootstrap();

    // The pipeline runs beside the scenario, in this task, and is dropped
    // (stopped) when the scenario ends; it never ends by itself.
    //
    // The first participants are saved before the pipeline starts, as in
    // tests/pipeline.rs: a stream poller that opens an empty shard of
    // DynamoDB Local gets an iterator that fails with
    // TrimmedDataAccessException once another stream's records have taken
    // sequence numbers (DynamoDB Local numbers all streams with one counter).
    let first = save_wave(&env, 0, BEFORE).await;
    let mut pipeline = Pipeline::connect(&env.config).await.expect("pipeline");
    let (saved, rows, recovered_in) = tokio::select! {
        ended = pipeline.run(None) => panic!("the pipeline stopped running: {ended:?}"),
        outcome = outage(&env, &mut broker, started, first) => outcome,
    };
    let n = saved.len();
    let by_status = common::counts(&rows);
    eprintln!(
        "all delivered {:.1} s after the broker returned: {by_status:?}",
        recovered_in.as_secs_f64()
    );

    // Nothing FAILED, nothing lost: one DELIVERED row per saved participant.
    assert_eq!(
        by_status.get("FAILED"),
        None,
        "no row FAILED: {by_status:?}"
    );
    assert_eq!(rows.len(), n, "one outbox row per participant");
    assert_eq!(
        by_status.get("DELIVERED"),
        Some(&n),
        "every row DELIVERED within {RECOVERY:?} of the broker's return: {by_status:?}"
    );
    let participants: HashSet<&str> = rows
        .iter()
        .map(|r| r.participant_id.as_deref().unwrap())
        .collect();
    assert_eq!(
        participants,
        saved.iter().map(String::as_str).collect(),
        "every saved participant has its row"
    );

    // The outage really happened under the relay: rows were sent, failed and
    // sent again, and kept the error they failed with; waiting for the
    // broker spent none of their attempts.
    let retried: Vec<&OutboxRow> = rows.iter().filter(|r| r.waits > 0).collect();
    let mut waits: BTreeMap<u32, usize> = BTreeMap::new();
    for row in &rows {
        *waits.entry(row.waits).or_default() += 1;
    }
    eprintln!("rows by waits: {waits:?}");
    let mut last_errors: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &retried {
        *last_errors
            .entry(row.last_error.as_deref().unwrap_or("(none)"))
            .or_default() += 1;
    }
    eprintln!("last errors of the retried rows: {last_errors:#?}");
    assert!(
        !retried.is_empty(),
        "some rows were retried during the outage"
    );
    assert!(
        retried.iter().all(|r| r.last_error.is_some()),
        "a retried row keeps its last error"
    );
    assert!(
        rows.iter().all(|r| r.attempts == 1),
        "every row delivered on its first attempt: the outage spent none"
    );
    assert!(
        rows.iter()
            .filter(|r| saved[..BEFORE].contains(r.participant_id.as_ref().unwrap()))
            .all(|r| r.waits == 0),
        "rows delivered before the outage were sent once"
    );

    // Nothing doubled: the independent reader sees exactly one message per
    // row, where the row says, with its key and outbox id.
    let records = common::read_topic(&broker.bootstrap(), &env.config.kafka_topic, n);
    assert_eq!(records.len(), n, "exactly one message per participant");
    let at: HashMap<(i32, i64), &common::Record> = records
        .iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
    assert_eq!(at.len(), n, "no two messages at one partition/offset");
    for row in &rows {
        let participant_id = row.participant_id.as_deref().unwrap();
        let (partition, offset) = (row.kafka_partition.unwrap(), row.kafka_offset.unwrap());
        assert_eq!(
            partition,
            partition_for(participant_id.as_bytes(), common::PARTITIONS)
        );
        let record = at
            .get(&(partition, offset))
            .unwrap_or_else(|| panic!("row {}: nothing at {partition}/{offset}", row.id));
        assert_eq!(record.key.as_deref(), Some(participant_id));
        assert_eq!(record.headers[OUTBOX_ID_HEADER], row.id);
        assert_eq!(record.timestamp, row.kafka_timestamp);
    }
    eprintln!("test took {:.1} s", started.elapsed().as_secs_f64());
}
