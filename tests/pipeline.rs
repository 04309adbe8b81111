//! The pipeline end to end on the real local stack: participants saved in
//! DynamoDB Local arrive on the broker, checked by an independent reader.

mod common;

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;
use raffle_outbox::demo;
use raffle_outbox::kafka::envelope::{DATA_SCHEMA, TRACEPARENT_HEADER};
use raffle_outbox::kafka::partitioner::partition_for;
use raffle_outbox::outbox::Status;
use raffle_outbox::relay::{EVENT_TYPE, OUTBOX_ID_HEADER};
use raffle_outbox::trace::TraceContext;

/// Every inserted participant is on the topic at the partition and offset
/// its outbox row names, with the right key, value and headers, exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn every_participant_reaches_the_topic_where_its_row_says() {
    let env = common::env().await;
    let (ids, items): (Vec<String>, Vec<serde_json::Value>) =
        (0..60).map(demo::sample_participant).unzip();
    let saved: HashMap<String, serde_json::Value> =
        ids.iter().cloned().zip(items.iter().cloned()).collect();
    demo::save_all(&env.dynamodb, &env.config.participants_table, items)
        .await
        .unwrap();

    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../schemas/participant-registered/v1.json")).unwrap();
    let schema = jsonschema::validator_for(&schema).unwrap();
    let report = env.run_pipeline().await;
    assert_eq!(report.stream_records, 60);
    assert_eq!(report.relay.delivered, 60);

    let rows = env.rows().await;
    assert_eq!(rows.len(), 60, "one outbox row per participant");
    let records = env.read_topic(60);
    assert_eq!(
        records.len(),
        60,
        "each participant on the topic exactly once"
    );
    let at: HashMap<(i32, i64), &common::Record> = records
        .iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();

    for row in &rows {
        assert_eq!(row.status, Status::Delivered, "row {}", row.id);
        let participant_id = row.participant_id.clone().unwrap();
        let (partition, offset) = (row.kafka_partition.unwrap(), row.kafka_offset.unwrap());
        assert_eq!(
            row.kafka_topic.as_deref(),
            Some(env.config.kafka_topic.as_str())
        );
        assert_eq!(
            partition,
            partition_for(participant_id.as_bytes(), common::PARTITIONS)
        );
        assert!(row.delivered_at.is_some() && row.kafka_timestamp.is_some());
        assert_eq!(row.attempts, 1);

        let record = at
            .get(&(partition, offset))
            .unwrap_or_else(|| panic!("nothing at {partition}/{offset}"));
        assert_eq!(record.key.as_deref(), Some(participant_id.as_str()));
        let value: serde_json::Value =
            serde_json::from_str(record.value.as_deref().unwrap()).unwrap();
        assert_eq!(
            value, saved[&participant_id],
            "the value is the participant as JSON"
        );
        assert_eq!(record.timestamp, row.kafka_timestamp);
        let h = &record.headers;
        assert_eq!(h[OUTBOX_ID_HEADER], row.id);
        assert_eq!(h["ce_id"], row.id);
        assert_eq!(h["ce_specversion"], "1.0");
        assert_eq!(h["ce_type"], EVENT_TYPE);
        assert_eq!(h["ce_source"], env.config.event_source);
        assert_eq!(h["ce_time"], row.created_at);
        assert_eq!(h["content-type"], "application/json");
        // The contract: the value conforms to the schema the header names
        // (checked with jsonschema, not the project's code).
        assert_eq!(h["ce_dataschema"], DATA_SCHEMA);
        assert!(schema.is_valid(&value), "{value} is a v1 document");
        // The trace the stream handler started (the participant was
        // written straight into the table), a new span of it on the message.
        let started = TraceContext::from_traceparent(row.traceparent.as_deref().unwrap()).unwrap();
        let sent = TraceContext::from_traceparent(&h[TRACEPARENT_HEADER]).unwrap();
        assert_eq!(sent.trace_id, started.trace_id);
        assert_ne!(sent.span_id, started.span_id);
    }
}

/// MODIFY and REMOVE on the participants table make no outbox row and no
/// message: a registration is the INSERT.
#[tokio::test(flavor = "multi_thread")]
async fn modify_and_remove_make_no_message() {
    let env = common::env().await;
    let table = &env.config.participants_table;
    let (id, participant) = demo::sample_participant(1);
    demo::save_all(&env.dynamodb, table, vec![participant])
        .await
        .unwrap();
    env.dynamodb
        .update_item()
        .table_name(table)
        .key("id", AttributeValue::S(id.clone()))
        .update_expression("SET tickets = :t")
        .expression_attribute_values(":t", AttributeValue::N("9".into()))
        .send()
        .await
        .unwrap();
    env.dynamodb
        .delete_item()
        .table_name(table)
        .key("id", AttributeValue::S(id.clone()))
        .send()
        .await
        .unwrap();

    let report = env.run_pipeline().await;
    assert_eq!(
        report.stream_records, 3,
        "INSERT, MODIFY and REMOVE were read"
    );

    let rows = env.rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].participant_id.as_deref(), Some(id.as_str()));
    let records = env.read_topic(1);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key.as_deref(), Some(id.as_str()));
    let value: serde_json::Value =
        serde_json::from_str(records[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(
        value["tickets"], 2,
        "the registration as inserted, not the later change"
    );
}

/// Running the pipeline again over the same stream (a replay from
/// TRIM_HORIZON, as after a restart) makes no second row and no second send.
#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_stream_makes_no_second_row_or_message() {
    let env = common::env().await;
    let ids = common::save_participants(&env.dynamodb, &env.config.participants_table, 0..10).await;

    env.run_pipeline().await;
    let again = env.run_pipeline().await;
    assert_eq!(again.stream_records, 10, "the whole stream was read again");
    assert_eq!(again.relay.claimed, 0, "nothing was due the second time");

    let rows = env.rows().await;
    assert_eq!(rows.len(), 10);
    let participants: HashSet<_> = rows
        .iter()
        .filter_map(|r| r.participant_id.clone())
        .collect();
    assert_eq!(participants, ids.into_iter().collect());
    assert_eq!(env.read_topic(10).len(), 10);
}
