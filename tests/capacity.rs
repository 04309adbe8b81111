//! The capacity meter on DynamoDB Local: every request the code makes through
//! a metered client reports its units, by table and index.

mod common;

use aws_lambda_events::event::dynamodb::Event;
use raffle_outbox::capacity::{CapacityMeter, Place};
use raffle_outbox::outbox::OutboxStore;
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
    let handler = StreamHandler::new(outbox, &env.config);
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
            (Some("due"), 1.0)
        ],
        "the outbox row's write and its index entries"
    );
    assert_eq!(
        consumed.total().write,
        outbox_table.iter().map(|(_, u)| u.write).sum::<f64>(),
        "nothing but the outbox was written"
    );
    eprintln!("one participant's outbox insert: {outbox_table:?}");
}
