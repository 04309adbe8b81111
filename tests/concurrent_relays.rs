//! Four relays at once on 5,000 rows: each row is sent exactly once.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
use raffle_outbox::kafka::Producer;
use raffle_outbox::outbox::Status;
use raffle_outbox::relay::{Relay, OUTBOX_ID_HEADER};
use raffle_outbox::stream::StreamHandler;
use serde_json::json;

const ROWS: usize = 5_000;
const RELAYS: usize = 4;

#[tokio::test(flavor = "multi_thread")]
async fn four_relays_send_each_row_exactly_once() {
    let mut env = common::env().await;
    // This test is about the sweep path: new rows are due for it at once.
    env.config.sweep_delay_seconds = 0;
    let records: Vec<serde_json::Value> = (0..ROWS)
        .map(|i| {
            json!({
                "eventID": format!("ev-{i}"),
                "eventName": "INSERT",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "NewImage": {"id": {"S": format!("p-{i}")}, "tickets": {"N": (i % 7 + 1).to_string()}},
                    "SequenceNumber": format!("{:021}", i),
                    "SizeBytes": 40
                }
            })
        })
        .collect();
    let event: Event = serde_json::from_value(json!({ "Records": records })).unwrap();
    let handler = StreamHandler::new(env.outbox.clone(), &env.config);
    assert!(handler.handle(&event).await.batch_item_failures.is_empty());

    let mut relays = Vec::new();
    for _ in 0..RELAYS {
        let producer =
            Producer::connect(&env.config.kafka_bootstrap_servers, &env.config.kafka_topic)
                .await
                .unwrap();
        let relay = Relay::new(env.outbox.clone(), Arc::new(producer), env.config.clone());
        relays.push(tokio::spawn(async move { relay.sweep().await.unwrap() }));
    }
    let mut delivered_by = Vec::new();
    for relay in relays {
        delivered_by.push(relay.await.unwrap().delivered);
    }
    assert_eq!(
        delivered_by.iter().sum::<usize>(),
        ROWS,
        "sends per relay: {delivered_by:?}"
    );
    assert!(
        delivered_by.iter().filter(|&&n| n > 0).count() >= 2,
        "the relays shared the work: {delivered_by:?}"
    );

    let rows = env.rows().await;
    assert_eq!(rows.len(), ROWS);
    assert!(rows
        .iter()
        .all(|r| r.status == Status::Delivered && r.attempts == 1));
    let records = env.read_topic(ROWS);
    assert_eq!(records.len(), ROWS, "no row sent twice");
    let outbox_ids: HashSet<&String> = records
        .iter()
        .map(|r| &r.headers[OUTBOX_ID_HEADER])
        .collect();
    assert_eq!(outbox_ids.len(), ROWS);
    let offsets: HashSet<(i32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
    for row in &rows {
        assert!(offsets.contains(&(row.kafka_partition.unwrap(), row.kafka_offset.unwrap())));
    }
}

/// tansu 0.6.0 looks each fetched record's headers up with this query (its
/// `header_fetch.sql`); without an index on `header` every record read scanned
/// every header the broker ever stored, and reading the 5,000 rows above took
/// longer than the reader waits (seen failing in CI: 0 of 5,000 read in 60 s).
#[tokio::test]
async fn the_broker_finds_a_records_headers_by_index() {
    let env = common::env().await;
    let db = env.stack.run_dir().join("tansu").join("tansu.db");
    let connection = rusqlite::Connection::open(&db).unwrap();
    let plan: Vec<String> = connection
        .prepare(
            "explain query plan select h.k, h.v from header h \
             join record r on h.topition = r.topition and h.offset_id = r.offset_id \
             join topition tp on tp.id = r.topition join topic t on tp.topic = t.id \
             join cluster c on t.cluster = c.id \
             where c.name = ?1 and t.name = ?2 and tp.partition = ?3 and r.offset_id = ?4",
        )
        .unwrap()
        .query_map(("tansu", &env.config.kafka_topic, 0, 0), |row| {
            row.get::<_, String>(3)
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter()
            .any(|step| step.starts_with("SEARCH h USING INDEX")),
        "header lookup plan: {plan:?}"
    );
}
