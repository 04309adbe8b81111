//! The capacity meter on DynamoDB Local: every request the code makes through
//! a metered client reports its units, by table and index.

mod common;

use aws_lambda_events::event::dynamodb::Event;
use raffle_outbox::capacity::{write_units, CapacityMeter, Place};
use raffle_outbox::outbox::schema::{ID, INDEXES};
use raffle_outbox::outbox::{Holder, OutboxRow, OutboxStore, Stored, Written};
use raffle_outbox::stream::StreamHandler;
use serde_json::json;

#[tokio::test]
async fn the_meter_counts_each_write_by_table_and_index() {
    let env = common::env().await;
    let meter = CapacityMeter::new();
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dynamodb = meter.client(&shared);

    // A participant under 1 KB, as `register` saves it: one PutItem, 1 write unit.
    dynamodb
        .put_item()
        .table_name(&env.config.participants_table)
        .item(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S("p-1".into()),
        )
        .send()
        .await
        .unwrap();
    let consumed = meter.consumed();
    let participants = Place {
        table: env.config.participants_table.clone(),
        index: None,
    };
    assert_eq!(consumed.by_place[&participants].write, 1.0);
    assert_eq!(consumed.requests, 1);

    // Its outbox row, written by the stream handler through the metered client.
    meter.reset();
    let outbox = OutboxStore::new(dynamodb.clone(), &env.config.outbox_table);
    let event: Event = serde_json::from_value(json!({"Records": [{
        "eventID": "ev-1", "eventName": "INSERT", "awsRegion": "us-east-1",
        "dynamodb": {"NewImage": {"id": {"S": "p-1"}}, "SequenceNumber": "1", "SizeBytes": 10}
    }]}))
    .unwrap();
    let handler = StreamHandler::new(outbox.clone(), &env.config);
    assert!(handler.handle(&event).await.batch_item_failures.is_empty());
    let consumed = meter.consumed();
    let outbox_table = consumed
        .by_place
        .iter()
        .filter(|(place, _)| place.table == env.config.outbox_table)
        .collect::<Vec<_>>();
    // One conditional PutItem, not a transaction (which bills twice): 1 WRU
    // for the row (under 1 KB) and 1 for its entry in each index.
    let units: Vec<(Option<&str>, f64)> = outbox_table
        .iter()
        .map(|(place, units)| (place.index.as_deref(), units.write))
        .collect();
    assert_eq!(
        units,
        [
            (None, 1.0),
            (Some("by_participant"), 1.0),
            (Some("by_status"), 1.0),
        ],
        "the outbox row's write and its entries in the audit indexes (a new row is not due)"
    );
    assert_eq!(
        consumed.total().write,
        outbox_table.iter().map(|(_, u)| u.write).sum::<f64>(),
        "nothing but the outbox was written"
    );
    eprintln!("one participant's outbox insert: {outbox_table:?}");

    // The size rules give what DynamoDB Local reported for the insert…
    let row = outbox.get(&outbox_id(&env).await).await.unwrap().unwrap();
    let item = serde_dynamo::to_item(&row).unwrap();
    assert_eq!(
        sorted(write_units(&[ID], None, Some(&item), &INDEXES)),
        units,
        "the size rules, for the insert"
    );

    // …and for an UpdateItem that moves the row in `by_status` (the
    // failed transition: the status, a key, changes; `by_participant`'s
    // projected attributes change; the row is in no `due` entry).
    meter.reset();
    let written = outbox
        .mark_failed(&row.id, Holder::Fresh, "refused")
        .await
        .unwrap();
    assert_eq!(written, Written::Yes);
    let reported: Vec<(Option<String>, f64)> = meter
        .consumed()
        .by_place
        .into_iter()
        .map(|(place, units)| (place.index, units.write))
        .collect();
    let failed = serde_dynamo::to_item(row.clone().into_failed("refused")).unwrap();
    let computed = sorted(write_units(&[ID], Some(&item), Some(&failed), &INDEXES));
    assert_eq!(
        computed,
        [
            (None, 1.0),
            (Some("by_participant"), 1.0),
            (Some("by_status"), 2.0),
        ]
    );
    assert_eq!(
        reported,
        computed
            .iter()
            .map(|(i, u)| (i.map(str::to_string), *u))
            .collect::<Vec<_>>(),
        "the size rules, for an update DynamoDB Local reports"
    );
}

/// The DELIVERED marks are PartiQL statements, whose units DynamoDB Local
/// does not report: the store computes them by the size rules when asked,
/// as many as the failed transition's (the same index moves).
#[tokio::test]
async fn the_marks_units_are_computed_by_the_size_rules() {
    let env = common::env().await;
    let row = common::rows::pending(1, time::OffsetDateTime::now_utc());
    let row = OutboxRow {
        due_at: None,
        ..row
    };
    assert_eq!(env.outbox.insert(&row).await.unwrap(), Written::Yes);
    env.outbox.stats().compute_statement_units();
    let stored = Stored {
        topic: env.config.kafka_topic.clone(),
        partition: 0,
        offset: 7,
        timestamp: 1_795_867_200_000,
    };
    let now = time::OffsetDateTime::now_utc();
    let marked = env
        .outbox
        .mark_delivered_all(
            &[(&row, stored.clone())],
            Holder::Fresh,
            now,
            None,
            || async {},
        )
        .await;
    assert_eq!(marked[0].as_ref().unwrap(), &Written::Yes);
    assert_eq!(
        env.outbox.get(&row.id).await.unwrap().unwrap(),
        row.clone().into_delivered(&stored, now, None),
        "the statement wrote what the transition's twin says"
    );
    let computed: Vec<(Option<String>, f64)> = env
        .outbox
        .stats()
        .computed_units()
        .by_place
        .into_iter()
        .map(|(place, units)| (place.index, units.write))
        .collect();
    assert_eq!(
        computed,
        [
            (None, 1.0),
            (Some("by_participant".to_string()), 1.0),
            (Some("by_status".to_string()), 2.0),
        ],
        "1 + 3 write units for the mark"
    );
}

fn sorted(mut units: Vec<(Option<&str>, f64)>) -> Vec<(Option<&str>, f64)> {
    units.sort_by(|a, b| a.0.cmp(&b.0));
    units
}

/// The id of the one row in the test's outbox.
async fn outbox_id(env: &common::TestEnv) -> String {
    let rows = env.rows().await;
    assert_eq!(rows.len(), 1);
    rows[0].id.clone()
}
