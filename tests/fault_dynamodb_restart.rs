//! Fault injection: DynamoDB Local is restarted under a running pipeline.
//! Its tables are file-backed (`-dbPath`), as DynamoDB's are durable, so the
//! participants, the outbox and the stream outlive the restart. Nothing lost.
//!
//! The stack's DynamoDB Local runs `-inMemory` and is shared by other tests,
//! so this test starts one of its own (`local::start_dynamodb_file_backed`)
//! and points its own AWS clients at it; only the broker is the stack's. One
//! test in this binary: it restarts a server, and it keeps the process
//! environment (which tests of one binary share) out of the picture.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use raffle_outbox::kafka::partitioner::partition_for;
use raffle_outbox::local::{self, StackConfig};
use raffle_outbox::outbox::{OutboxRow, OutboxStore, Status};
use raffle_outbox::pipeline::Pipeline;
use raffle_outbox::relay::OUTBOX_ID_HEADER;
use raffle_outbox::{migrate, Config};

const FIRST: usize = 50;
const SECOND: usize = 50;
/// How long DynamoDB Local stays down between its stop and its start again.
const DOWN_FOR: Duration = Duration::from_secs(3);

/// Polls the outbox until `until` holds for its rows or `timeout` passes;
/// a scan that fails (DynamoDB restarting) is simply tried again.
async fn wait_for(
    outbox: &OutboxStore,
    timeout: Duration,
    until: impl Fn(&[OutboxRow]) -> bool,
) -> Vec<OutboxRow> {
    let deadline = Instant::now() + timeout;
    let mut last_report = Instant::now();
    let mut rows = Vec::new();
    loop {
        if let Ok(scanned) = outbox.scan_all().await {
            rows = scanned;
            if until(&rows) {
                return rows;
            }
        }
        if Instant::now() > deadline {
            return rows;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  outbox: {:?}", common::counts(&rows));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// DynamoDB Local stopped and started again (same port, same `-dbPath`)
/// while the pipeline runs: the stream, its shard iterators and the outbox
/// rows survive, the pipeline carries on with what it read before, and every
/// participant saved before and after the restart is delivered.
#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_restart_mid_run_loses_no_participant() {
    let started = Instant::now();
    let stack = StackConfig::from_env();
    // Only the stack's broker: DynamoDB is this test's own.
    local::start_broker(&stack).await.expect("broker");
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let db_dir = std::env::temp_dir().join(format!("raffle-outbox-ddb-restart-{suffix}"));
    let port = local::free_port().expect("a free port");
    let ddb = local::start_dynamodb_file_backed(&stack, port, &db_dir)
        .await
        .expect("file-backed DynamoDB Local");
    eprintln!(
        "DynamoDB Local (file-backed) on {} with {} after {:.1} s",
        ddb.endpoint(),
        db_dir.display(),
        started.elapsed().as_secs_f64()
    );
    let (dynamodb, streams) = ddb.clients().await;

    let mut config = Config::from_env().expect("config");
    config.participants_table = format!("participants_{suffix}");
    config.outbox_table = format!("outbox_{suffix}");
    config.kafka_topic = format!("test-topic-{suffix}");
    config.kafka_bootstrap_servers = stack.kafka_bootstrap();
    // Small relay batches, so the restart lands while the relay is at work;
    // a short lease and sweep delay, so a row the outage left unmarked (IN_FLIGHT
    // under a lease, or new and handed to the relay by the outbox stream) is
    // taken again by the sweep within this test's time.
    config.relay_batch_size = 5;
    config.lease_seconds = 10;
    config.sweep_delay_seconds = 10;
    local::ensure_topic(&stack, &config.kafka_topic, common::PARTITIONS as u32)
        .await
        .expect("topic");
    migrate::migrate(&dynamodb, &config).await.expect("migrate");
    let outbox = OutboxStore::new(dynamodb.clone(), &config.outbox_table);

    let mut saved =
        common::save_participants(&dynamodb, &config.participants_table, 0..FIRST).await;

    // The pipeline runs across the restart, beside the scenario in this
    // task, and is dropped (stopped) when the scenario ends. `run` ends with
    // an error when DynamoDB does not answer; like a supervisor, the loop runs
    // it again, but on the same pipeline: its stream pollers keep the shard
    // iterators they had before the restart.
    let mut pipeline = Pipeline::with_clients(&config, dynamodb.clone(), streams)
        .await
        .expect("pipeline");
    let mut errors: Vec<String> = Vec::new();
    let supervised = async {
        loop {
            if let Err(e) = pipeline.run(None).await {
                errors.push(format!("{e:#}"));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let scenario = async {
        // Some but not all delivered: then pull DynamoDB from under it.
        let before = wait_for(&outbox, Duration::from_secs(60), |rows| {
            rows.iter().any(|r| r.status == Status::Delivered)
        })
        .await;
        let stop_at = started.elapsed();
        ddb.stop().await.expect("stop DynamoDB Local");
        eprintln!(
            "DynamoDB Local stopped at {:.1} s; outbox then: {:?}",
            stop_at.as_secs_f64(),
            common::counts(&before)
        );
        tokio::time::sleep(DOWN_FOR).await;
        ddb.start_again().await.expect("start DynamoDB Local again");
        let back = Instant::now();
        eprintln!(
            "DynamoDB Local answering again at {:.1} s",
            started.elapsed().as_secs_f64()
        );

        // The data survived: every row written before the stop is there, and
        // no delivered row went back.
        let after_restart = outbox.scan_all().await.expect("outbox after the restart");
        eprintln!(
            "outbox after the restart: {:?}",
            common::counts(&after_restart)
        );
        let delivered = |rows: &[OutboxRow]| {
            rows.iter()
                .filter(|r| r.status == Status::Delivered)
                .count()
        };
        assert!(
            after_restart.len() >= before.len(),
            "the outbox survived the restart"
        );
        assert!(delivered(&after_restart) >= delivered(&before));
        saved.extend(
            common::save_participants(&dynamodb, &config.participants_table, FIRST..FIRST + SECOND)
                .await,
        );
        let n = saved.len();
        let rows = wait_for(&outbox, Duration::from_secs(90), |rows| {
            rows.len() == n && rows.iter().all(|r| r.status == Status::Delivered)
        })
        .await;
        (rows, back.elapsed())
    };
    let (rows, recovered_in) = tokio::select! {
        _ = supervised => unreachable!("the supervisor loop never ends"),
        outcome = scenario => outcome,
    };
    let n = saved.len();
    let by_status = common::counts(&rows);
    eprintln!(
        "{by_status:?} {:.1} s after DynamoDB Local returned; the pipeline's run ended {} time(s) with an error:",
        recovered_in.as_secs_f64(),
        errors.len()
    );
    for e in &errors {
        eprintln!("  {e}");
    }

    // No participant lost, no second row for one.
    assert_eq!(
        rows.len(),
        n,
        "one outbox row per participant: {by_status:?}"
    );
    assert_eq!(
        by_status.get("DELIVERED"),
        Some(&n),
        "all DELIVERED: {by_status:?}"
    );
    let participants: HashSet<&str> = rows
        .iter()
        .map(|r| r.participant_id.as_deref().unwrap())
        .collect();
    assert_eq!(participants, saved.iter().map(String::as_str).collect());

    // On the topic: every row where it says, with its key and outbox id.
    let records = common::read_topic(&stack.kafka_bootstrap(), &config.kafka_topic, n);
    let at: HashMap<(i32, i64), &common::Record> = records
        .iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
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
    }

    // Duplicates: at-least-once allows one only where the broker acked a
    // send and the row was not marked DELIVERED (here: the outage broke the
    // mark off), so the sweep took the row again once its lease or sweep
    // delay ran out. Every send is one claim (`attempts`), or the one send of a
    // new row the outbox stream handed to the relay, so such a row shows at
    // least one claim, and no more copies than claims plus one.
    let mut per_outbox_id: HashMap<&str, usize> = HashMap::new();
    for record in &records {
        *per_outbox_id
            .entry(record.headers[OUTBOX_ID_HEADER].as_str())
            .or_default() += 1;
    }
    let rows_by_id: HashMap<&str, &OutboxRow> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let duplicates: Vec<(&str, usize)> = per_outbox_id
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(id, count)| (*id, *count))
        .collect();
    eprintln!(
        "{} messages for {n} participants; {} duplicated outbox id(s): {duplicates:?}",
        records.len(),
        duplicates.len()
    );
    assert_eq!(
        per_outbox_id.len(),
        n,
        "every row's message, and only those"
    );
    for (id, copies) in &duplicates {
        let row = rows_by_id[id];
        assert!(
            row.attempts >= 1 && *copies <= row.attempts as usize + 1,
            "row {id}: {copies} messages but {} claim(s): not explained by a lease or sweep takeover",
            row.attempts
        );
    }
    assert_eq!(
        records.len(),
        n + duplicates.iter().map(|(_, c)| c - 1).sum::<usize>()
    );

    drop(ddb);
    let _ = std::fs::remove_dir_all(&db_dir);
    eprintln!("test took {:.1} s", started.elapsed().as_secs_f64());
}
