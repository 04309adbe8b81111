//! `raffle-outbox verify` on the real local stack: the table checked
//! against the topic.

mod common;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use common::cli::{cli, ok, stdout};
use common::rows::{pending, relay};
use raffle_outbox::outbox::row::rfc3339;
use raffle_outbox::outbox::OutboxRow;
use time::{Duration, OffsetDateTime};

/// `verify` passes on what the relay delivered and catches a row whose
/// offset was tampered with (a different message there) or points past the
/// end of the partition.
#[tokio::test(flavor = "multi_thread")]
async fn verify_reconciles_the_table_with_the_topic_and_catches_tampering() {
    let env = common::env().await;
    let now = OffsetDateTime::now_utc();
    for n in 0..40 {
        env.outbox.insert(&pending(n, now)).await.unwrap();
    }
    assert_eq!(relay(&env, 10).await.delivered, 40);
    let clean = ok(cli(&env, &["verify"]));
    assert!(
        clean.contains("40 DELIVERED rows checked: 40 match, 0 missing, 0 different"),
        "{clean}"
    );

    let rows = env.rows().await;
    let mut by_partition: HashMap<i32, Vec<&OutboxRow>> = HashMap::new();
    for row in &rows {
        by_partition
            .entry(row.kafka_partition.unwrap())
            .or_default()
            .push(row);
    }
    let (_, same_partition) = by_partition.iter().find(|(_, r)| r.len() >= 2).unwrap();
    let (victim, other) = (same_partition[0], same_partition[1]);
    let beyond = rows.iter().find(|r| r.id != victim.id).unwrap();
    let set_offset = |id: String, offset: i64| {
        env.dynamodb
            .update_item()
            .table_name(&env.config.outbox_table)
            .key("id", AttributeValue::S(id))
            .update_expression("SET kafka_offset = :o")
            .expression_attribute_values(":o", AttributeValue::N(offset.to_string()))
            .send()
    };
    set_offset(victim.id.clone(), other.kafka_offset.unwrap())
        .await
        .unwrap();
    set_offset(beyond.id.clone(), 1_000_000).await.unwrap();

    let caught = cli(&env, &["verify"]);
    let out = stdout(&caught);
    assert!(!caught.status.success(), "verify must fail: {out}");
    assert!(
        out.contains("40 DELIVERED rows checked: 38 match, 1 missing, 1 different"),
        "{out}"
    );
    let different = out.lines().find(|l| l.starts_with("DIFFERENT")).unwrap();
    assert!(different.contains(&victim.id), "{different}");
    assert!(
        different.contains(&format!(
            "key is \"{}\"",
            other.participant_id.as_deref().unwrap()
        )),
        "{different}"
    );
    let missing = out.lines().find(|l| l.starts_with("MISSING")).unwrap();
    assert!(
        missing.contains(&beyond.id) && missing.contains("partition ends"),
        "{missing}"
    );

    // --since leaves older rows out.
    let later = ok(cli(
        &env,
        &["verify", "--since", &rfc3339(now + Duration::hours(1))],
    ));
    assert!(later.contains("0 DELIVERED rows checked"), "{later}");
}
