//! The stream handler's contract with the event source mapping, on a real
//! outbox table: Lambda-shaped batches are handed in directly, because the
//! participants table (key `id`, a string) cannot itself produce a record
//! without an id or with a numeric one.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::dynamodb::Event;
use raffle_outbox::kafka::Producer;
use raffle_outbox::outbox::Status;
use raffle_outbox::relay::Relay;
use raffle_outbox::stream::StreamHandler;
use serde_json::json;

fn record(
    event_id: &str,
    seq: &str,
    name: &str,
    new_image: serde_json::Value,
) -> serde_json::Value {
    json!({
        "eventID": event_id,
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/participants/stream/2026-11-28T00:00:00.000",
        "dynamodb": {
            "ApproximateCreationDateTime": 1795867200.0,
            "Keys": {"id": {"S": "k"}},
            "NewImage": new_image,
            "SequenceNumber": seq,
            "SizeBytes": 100,
            "StreamViewType": "NEW_IMAGE"
        }
    })
}

fn batch(records: Vec<serde_json::Value>) -> Event {
    serde_json::from_value(json!({ "Records": records })).expect("a valid DynamoDB stream event")
}

/// A malformed record (no `id`, `id` not a string, an empty image, no image
/// at all as from a KEYS_ONLY stream) becomes a REJECTED row with the raw
/// image and the reason, while the rest of its batch is delivered; the same
/// record twice in a batch, or a retried batch, makes no second row; MODIFY
/// and REMOVE make none at all.
#[tokio::test(flavor = "multi_thread")]
async fn bad_records_are_rejected_and_the_rest_is_delivered_once() {
    let mut env = common::env().await;
    env.config.sweep_delay_seconds = 0; // the sweep sends the good row right away
    let good = json!({"id": {"S": "good-1"}, "name": {"S": "Ada"}, "tickets": {"N": "3"}});
    let mut keys_only = record("ev-keys-only", "106", "INSERT", json!(null));
    keys_only["dynamodb"]
        .as_object_mut()
        .unwrap()
        .remove("NewImage");
    keys_only["dynamodb"]["StreamViewType"] = json!("KEYS_ONLY");
    let event = batch(vec![
        record("ev-good", "100", "INSERT", good.clone()),
        record("ev-good", "100", "INSERT", good),
        record(
            "ev-no-id",
            "101",
            "INSERT",
            json!({"name": {"S": "Nobody"}}),
        ),
        record(
            "ev-num-id",
            "102",
            "INSERT",
            json!({"id": {"N": "42"}, "name": {"S": "Num"}}),
        ),
        record("ev-empty", "103", "INSERT", json!({})),
        record(
            "ev-modify",
            "104",
            "MODIFY",
            json!({"id": {"S": "good-1"}, "tickets": {"N": "4"}}),
        ),
        record("ev-remove", "105", "REMOVE", json!(null)),
        keys_only,
    ]);
    let handler = StreamHandler::new(env.outbox.clone(), &env.config);

    let first = handler.handle(&event).await;
    let retried = handler.handle(&event).await;
    assert!(first.batch_item_failures.is_empty());
    assert!(retried.batch_item_failures.is_empty());

    let mut rows = env.rows().await;
    rows.sort_by(|a, b| a.source_sequence_number.cmp(&b.source_sequence_number));
    let summary: Vec<(Option<&str>, Status)> = rows
        .iter()
        .map(|r| (r.source_sequence_number.as_deref(), r.status))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some("100"), Status::Pending),
            (Some("101"), Status::Rejected),
            (Some("102"), Status::Rejected),
            (Some("103"), Status::Rejected),
            (Some("106"), Status::Rejected),
        ],
        "one row per INSERT, none for MODIFY/REMOVE, none twice (in a batch or across)"
    );
    assert_eq!(
        rows[1].reject_reason.as_deref(),
        Some("the image has no `id` attribute")
    );
    assert_eq!(
        rows[1].raw_image.as_deref(),
        Some(r#"{"name":{"S":"Nobody"}}"#)
    );
    assert!(rows[2].reject_reason.as_deref().unwrap().contains("type N"));
    assert!(rows[3]
        .reject_reason
        .as_deref()
        .unwrap()
        .contains("NewImage"));

    let producer = Producer::connect(&env.config.kafka_bootstrap_servers, &env.config.kafka_topic)
        .await
        .unwrap();
    let relay = Relay::new(env.outbox.clone(), Arc::new(producer), env.config.clone());
    let report = relay.sweep().await.unwrap();
    assert_eq!(report.delivered, 1);

    let records = env.read_topic(1);
    assert_eq!(records.len(), 1, "only the good participant is sent");
    assert_eq!(records[0].key.as_deref(), Some("good-1"));
    assert_eq!(
        records[0].value.as_deref(),
        Some(r#"{"id":"good-1","name":"Ada","tickets":3}"#)
    );
    let delivered = env.outbox.get(&rows[0].id).await.unwrap().unwrap();
    assert_eq!(delivered.status, Status::Delivered);
    assert_eq!(
        (delivered.kafka_partition, delivered.kafka_offset),
        (Some(records[0].partition), Some(records[0].offset))
    );
    for rejected in &rows[1..] {
        let row = env.outbox.get(&rejected.id).await.unwrap().unwrap();
        assert_eq!(row.status, Status::Rejected, "REJECTED is terminal");
    }
}

/// When the outbox cannot be written (here its table is gone: a deployment
/// problem, not a bad record, so nothing may be REJECTED for it), each record is reported in batchItemFailures by its
/// sequence number, not as an error for the whole batch.
#[tokio::test(flavor = "multi_thread")]
async fn unwritable_records_are_reported_per_record() {
    let env = common::env().await;
    env.dynamodb
        .delete_table()
        .table_name(&env.config.outbox_table)
        .send()
        .await
        .unwrap();
    let handler = StreamHandler::new(env.outbox.clone(), &env.config);
    let event = batch(vec![
        record("ev-a", "200", "INSERT", json!({"id": {"S": "a"}})),
        record("ev-b", "201", "INSERT", json!({"id": {"S": "b"}})),
        record("ev-m", "202", "MODIFY", json!({"id": {"S": "a"}})),
    ]);
    let response = handler.handle(&event).await;
    let failed: Vec<Option<String>> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    assert_eq!(
        failed,
        vec![Some("200".to_string()), Some("201".to_string())]
    );
}

/// Inside a Lambda invocation the handler answers before its deadline, with
/// every record it has not stored among the failures: a record is stored or
/// reported, never dropped, and delivering the reported records again (as
/// the event source mapping does) stores each record once.
#[tokio::test(flavor = "multi_thread")]
async fn the_handler_answers_before_its_deadline_with_what_it_did_not_store() {
    const RECORDS: usize = 1_000;
    let mut env = common::env().await;
    env.config.deadline_margin_ms = 300;
    let records: Vec<serde_json::Value> = (0..RECORDS)
        .map(|i| {
            let image = json!({"id": {"S": format!("p-{i}")}, "tickets": {"N": "1"}});
            record(&format!("ev-{i}"), &format!("{i:021}"), "INSERT", image)
        })
        .collect();
    let handler = StreamHandler::new(env.outbox.clone(), &env.config);

    let deadline = Instant::now() + Duration::from_millis(600);
    // What the Lambda runtime does at the deadline: the invocation is gone.
    let (response, counts) = tokio::time::timeout_at(
        deadline.into(),
        handler.handle_before(&batch(records.clone()), deadline),
    )
    .await
    .expect("the handler answered before its deadline");
    assert_eq!(
        counts.retry,
        response.batch_item_failures.len(),
        "the metrics line counts what was reported back"
    );
    let reported: HashSet<String> = response
        .batch_item_failures
        .into_iter()
        .filter_map(|f| f.item_identifier)
        .collect();
    let stored: HashSet<String> = env
        .rows()
        .await
        .into_iter()
        .filter_map(|r| r.source_sequence_number)
        .collect();
    eprintln!(
        "stored before the deadline: {}; reported: {}",
        stored.len(),
        reported.len()
    );
    let sequence_number = |r: &serde_json::Value| {
        r["dynamodb"]["SequenceNumber"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for record in &records {
        let seq = sequence_number(record);
        assert!(
            stored.contains(&seq) || reported.contains(&seq),
            "record {seq} neither stored nor reported"
        );
    }

    // As the event source mapping does: the reported records again, until
    // none is reported (DynamoDB Local may refuse some on a busy machine).
    let mut reported = reported;
    for _ in 0..10 {
        if reported.is_empty() {
            break;
        }
        let again: Vec<serde_json::Value> = records
            .iter()
            .filter(|r| reported.contains(&sequence_number(r)))
            .cloned()
            .collect();
        let response = handler.handle(&batch(again)).await;
        reported = response
            .batch_item_failures
            .into_iter()
            .filter_map(|f| f.item_identifier)
            .collect();
    }
    assert!(
        reported.is_empty(),
        "stored at last: {} left",
        reported.len()
    );
    assert_eq!(env.rows().await.len(), RECORDS, "one row per record");
}

/// The event contract at capture: a participant that breaks
/// `schemas/participant-registered/v1.json` (here written straight into the
/// table by another writer: too many tickets, a name that is a number)
/// becomes a REJECTED row whose reason names the failing path and the rule,
/// never the value; it is never sent, and the conforming record of the same
/// batch is.
#[tokio::test(flavor = "multi_thread")]
async fn a_participant_off_the_contract_is_rejected_naming_the_path() {
    let mut env = common::env().await;
    env.config.sweep_delay_seconds = 0;
    let event = batch(vec![
        record(
            "ev-tickets",
            "200",
            "INSERT",
            json!({"id": {"S": "too-many"}, "tickets": {"N": "1000"}}),
        ),
        record(
            "ev-name",
            "201",
            "INSERT",
            json!({"id": {"S": "numeric-name"}, "name": {"N": "31337"}}),
        ),
        record(
            "ev-fine",
            "202",
            "INSERT",
            json!({"id": {"S": "fine"}, "tickets": {"N": "100"}, "extra": {"BOOL": true}}),
        ),
    ]);
    let handler = StreamHandler::new(env.outbox.clone(), &env.config);
    assert!(handler.handle(&event).await.batch_item_failures.is_empty());

    let mut rows = env.rows().await;
    rows.sort_by(|a, b| a.source_sequence_number.cmp(&b.source_sequence_number));
    let statuses: Vec<Status> = rows.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![Status::Rejected, Status::Rejected, Status::Pending]
    );
    let reasons: Vec<String> = rows[..2]
        .iter()
        .map(|r| r.reject_reason.clone().unwrap())
        .collect();
    assert!(reasons[0].contains("`/tickets`"), "{}", reasons[0]);
    assert!(reasons[0].contains("maximum"), "{}", reasons[0]);
    assert!(reasons[1].contains("`/name`"), "{}", reasons[1]);
    assert!(reasons[1].contains("type"), "{}", reasons[1]);
    for (row, reason) in rows.iter().zip(&reasons) {
        assert!(
            reason.contains("participant-registered/v1.json"),
            "names the schema: {reason}"
        );
        assert!(
            !reason.contains("1000") && !reason.contains("31337"),
            "the reason repeats no data: {reason}"
        );
        assert!(row.raw_image.is_some(), "the image is kept");
    }

    let report = common::rows::relay_with(&env, env.config.clone()).await;
    assert_eq!(report.delivered, 1);
    let records = env.read_topic(1);
    assert_eq!(records.len(), 1, "nothing off the contract is sent");
    assert_eq!(records[0].key.as_deref(), Some("fine"));
}
