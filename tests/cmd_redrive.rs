//! `raffle-outbox redrive` on the real local stack: rows reach FAILED
//! through the real relay and broker and are redriven once the cause is fixed.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use aws_sdk_dynamodb::types::AttributeValue;
use common::cli::{cli, cli_with_stdin, ok, stdout};
use common::rows::{audit, failed, pending, rejected, relay_with, seed};
use raffle_outbox::outbox::row::rfc3339;
use raffle_outbox::outbox::{OutboxRow, Status};
use raffle_outbox::redrive::{self, Selection};
use time::{Duration, OffsetDateTime};

/// Rows FAILED by a send the broker refused (the topic's schema refused the
/// participants: INVALID_RECORD, the message's fault), redriven once the
/// cause is fixed (the schema allows them), then DELIVERED; REJECTED rows
/// are refused. A broker of the test's own: it validates the topic's records
/// against a schema file (tansu's schema registry, read at every produce).
#[tokio::test(flavor = "multi_thread")]
async fn failed_rows_are_redriven_after_the_cause_is_fixed_and_delivered() {
    let started = Instant::now();
    let env = common::env().await;
    eprintln!("env in {:?}", started.elapsed());
    let topic = env.config.kafka_topic.clone();
    let mut broker = common::broker::Broker::new(&env.stack);
    let schemas = broker.schemas();
    std::fs::create_dir_all(&schemas).unwrap();
    let schema_file = schemas.join(format!("{topic}.json"));
    let no_tickets = serde_json::json!({
        "type": "object",
        "properties": {
            "value": { "type": "object", "properties": { "tickets": { "maximum": 0 } } }
        }
    });
    std::fs::write(&schema_file, no_tickets.to_string()).unwrap();
    let advertised = format!("tcp://{}", broker.bootstrap());
    broker.start_with(&advertised, &[]).await;
    broker.create_topic(&topic, common::PARTITIONS as u32).await;
    let mut config = env.config.clone();
    config.kafka_bootstrap_servers = broker.bootstrap();
    let now = OffsetDateTime::now_utc();
    let rows: Vec<OutboxRow> = (0..5)
        .map(|n| pending(n, now - Duration::seconds(10 - n as i64)))
        .collect();
    for row in &rows {
        env.outbox.insert(row).await.unwrap();
    }

    let report = relay_with(&env, config.clone()).await;
    assert_eq!(report.failed, 5, "{report:?}");
    eprintln!("relay failed the rows after {:?}", started.elapsed());
    let errors: HashMap<String, String> = env
        .rows()
        .await
        .into_iter()
        .map(|r| {
            assert_eq!(r.status, Status::Failed);
            (r.id, r.last_error.unwrap())
        })
        .collect();
    eprintln!("the broker's refusal: {errors:?}");

    // A REJECTED row cannot be redriven, and says why.
    let rejected = rejected(now);
    env.outbox.insert(&rejected).await.unwrap();
    let refused = cli(&env, &["redrive", "--id", &rejected.id]);
    assert!(!refused.status.success());
    assert!(
        stdout(&refused).contains("REJECTED rows cannot be redriven"),
        "{}",
        stdout(&refused)
    );

    // The cause is fixed: the topic takes the participants.
    std::fs::remove_file(&schema_file).unwrap();

    // Dry run: shows, changes nothing.
    let needle = "INVALID_RECORD";
    let dry = ok(cli(
        &env,
        &["redrive", "--error-contains", needle, "--dry-run"],
    ));
    assert!(dry.contains("5 FAILED row(s) would be redriven"), "{dry}");
    assert_eq!(audit(&env).count(Status::Failed).await.unwrap(), 5);

    // Bulk without --yes asks; no answer is no.
    let declined = cli_with_stdin(&env, &["redrive", "--error-contains", needle], "\n");
    assert!(!declined.status.success());
    assert!(String::from_utf8_lossy(&declined.stderr).contains("[y/N]"));
    assert_eq!(audit(&env).count(Status::Failed).await.unwrap(), 5);

    // One by id (no question), then the rest in bulk, confirmed.
    ok(cli(&env, &["redrive", "--id", &rows[0].id]));
    let bulk = ok(cli_with_stdin(
        &env,
        &["redrive", "--since", &rfc3339(now - Duration::minutes(1))],
        "y\n",
    ));
    assert!(bulk.contains("4 row(s) redriven"), "{bulk}");

    for row in env
        .rows()
        .await
        .iter()
        .filter(|r| r.status != Status::Rejected)
    {
        assert_eq!(row.status, Status::Pending, "{}", row.id);
        assert_eq!(row.attempts, 0);
        assert!(
            row.due_shard.is_some() && row.due_at.is_some(),
            "back in the due index"
        );
        let item = audit(&env).item(&row.id).await.unwrap().unwrap();
        assert_eq!(item["redrive_count"], AttributeValue::N("1".into()));
        let history = item["redrive_history"].as_l().unwrap();
        assert_eq!(history.len(), 1);
        let entry = history[0].as_m().unwrap();
        assert_eq!(entry["attempts_before"], AttributeValue::N("1".into()));
        assert_eq!(
            entry["last_error"],
            AttributeValue::S(errors[&row.id].clone())
        );
        assert!(entry.contains_key("at"));
    }

    // The relay delivers them now.
    let report = relay_with(&env, config).await;
    assert_eq!(report.delivered, 5, "{report:?}");
    let records = common::read_topic(&broker.bootstrap(), &topic, 5);
    assert_eq!(records.len(), 5);
    let shown = ok(cli(&env, &["audit", "show", &rows[0].id]));
    assert!(
        shown.contains("status                 DELIVERED"),
        "{shown}"
    );
    assert!(shown.contains("redrive_history        1 entry"), "{shown}");
    assert!(shown.contains("attempts before 1"), "{shown}");
}

/// Two redrives of the same rows: the second finds them changed and writes
/// nothing (the conditional update), so no row is redriven twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_redrive_of_the_same_rows_changes_nothing() {
    let env = common::env().await;
    let now = OffsetDateTime::now_utc();
    let rows: Vec<OutboxRow> = (0..3).map(|n| failed(pending(n, now), "boom")).collect();
    seed(&env, &rows).await;
    let plan = redrive::plan(&audit(&env), &Selection::default())
        .await
        .unwrap();
    assert_eq!(plan.candidates.len(), 3);
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let outcome = redrive::redrive(&env.outbox, &plan.candidates, now, &|_| {})
            .await
            .unwrap();
        outcomes.push((outcome.redriven.len(), outcome.changed.len()));
    }
    assert_eq!(
        outcomes,
        [(3, 0), (0, 3)],
        "first redrives, second finds them changed"
    );
    for row in rows {
        let item = audit(&env).item(&row.id).await.unwrap().unwrap();
        assert_eq!(item["redrive_history"].as_l().unwrap().len(), 1);
    }
}
