//! `migrate` on the real local stack: an outbox of an earlier version
//! upgraded in place.

mod common;

use common::rows::{delivered, failed, pending, seed_into};
use raffle_outbox::audit::AuditQuery;
use raffle_outbox::outbox::Status;
use raffle_outbox::retention;
use time::OffsetDateTime;

/// An outbox made before the audit indexes existed (migrations 0001–0002,
/// as in production) is upgraded in place: `migrate` adds the indexes, they
/// are backfilled with the rows already there, and the audit sees them.
/// (DynamoDB Local takes about 70 s per added index.)
#[tokio::test(flavor = "multi_thread")]
async fn an_existing_outbox_gets_the_audit_indexes_and_retention_by_migration() {
    let env = common::env().await;
    let mut config = env.config.clone();
    config.outbox_table = format!("{}_v2", env.config.outbox_table);
    let applied = raffle_outbox::migrate::migrate_to(&env.dynamodb, &config, 2)
        .await
        .unwrap();
    assert_eq!(
        applied,
        [format!("0002_outbox.create-table@{}", config.outbox_table)]
    );
    let described = env
        .dynamodb
        .describe_table()
        .table_name(&config.outbox_table)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described
            .table
            .unwrap()
            .global_secondary_indexes
            .unwrap()
            .len(),
        1,
        "only `due`"
    );

    let topic = env.config.kafka_topic.clone();
    let now = OffsetDateTime::now_utc();
    let rows = [
        delivered(pending(0, now), &topic, 0, 0),
        failed(pending(1, now), "boom"),
        pending(2, now),
    ];
    seed_into(&env.dynamodb, &config.outbox_table, &rows).await;

    let applied = raffle_outbox::migrate::migrate(&env.dynamodb, &config)
        .await
        .unwrap();
    let ids: Vec<&str> = applied
        .iter()
        .map(|k| k.split('@').next().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "0003_outbox_by_status.update-table",
            "0004_outbox_by_participant.update-table",
            "0005_outbox_retention.update-time-to-live"
        ]
    );
    let query = AuditQuery::new(env.dynamodb.clone(), &config.outbox_table);
    for (status, count) in [
        (Status::Delivered, 1),
        (Status::Failed, 1),
        (Status::Pending, 1),
        (Status::Rejected, 0),
    ] {
        assert_eq!(query.count(status).await.unwrap(), count, "{status}");
    }
    let mut theirs = query.by_participant(rows[1].participant_id.as_deref().unwrap());
    let page = theirs.next().await.unwrap().unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].last_error.as_deref(), Some("boom"));
    let ttl = env
        .dynamodb
        .describe_time_to_live()
        .table_name(&config.outbox_table)
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(ttl.attribute_name.as_deref(), Some(retention::EXPIRES_AT));
    assert!(raffle_outbox::migrate::migrate(&env.dynamodb, &config)
        .await
        .unwrap()
        .is_empty());
}
