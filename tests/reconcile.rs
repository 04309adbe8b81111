//! `reconcile` on the real stack: every participant in the participants table
//! is classified by its outbox rows; a missing one is repaired, delivered by
//! the relay and then verified on the topic (read back with librdkafka).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use raffle_outbox::kafka::Producer;
use raffle_outbox::outbox::row::{reconcile_row_id, rfc3339};
use raffle_outbox::outbox::{OutboxRow, Status};
use raffle_outbox::reconcile::{self, Class};
use raffle_outbox::relay::Relay;
use raffle_outbox::{demo, Config};
use time::OffsetDateTime;

/// Runs `raffle-outbox reconcile ARGS` against the test's tables and topic.
fn reconcile_cli(c: &Config, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_raffle-outbox"))
        .arg("reconcile")
        .args(args)
        .env("OUTBOX_TABLE", &c.outbox_table)
        .env("PARTICIPANTS_TABLE", &c.participants_table)
        .env("KAFKA_TOPIC", &c.kafka_topic)
        .env("KAFKA_BOOTSTRAP_SERVERS", &c.kafka_bootstrap_servers)
        .env("SWEEP_DELAY_SECONDS", c.sweep_delay_seconds.to_string())
        .output()
        .expect("raffle-outbox runs")
}

/// The CLI's one JSON object, and its exit code.
fn reconcile_json(c: &Config, args: &[&str]) -> (serde_json::Value, Option<i32>) {
    let output = reconcile_cli(c, &[&["--json"], args].concat());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(
        !stdout.contains("@example.com"),
        "no personal field in the report"
    );
    (report, output.status.code())
}

/// A sample participant registered `seconds_ago`, or without `registered_at`.
fn participant(n: usize, seconds_ago: Option<i64>) -> (String, serde_json::Value) {
    let (id, mut item) = demo::sample_participant(n);
    match seconds_ago {
        Some(s) => {
            item["registered_at"] =
                rfc3339(OffsetDateTime::now_utc() - time::Duration::seconds(s)).into()
        }
        None => {
            item.as_object_mut().unwrap().remove("registered_at");
        }
    }
    (id, item)
}

/// Sets a row's status as a fault would leave it (test-side injection).
async fn set_status(env: &common::TestEnv, row: &OutboxRow, status: Status) {
    env.dynamodb
        .update_item()
        .table_name(&env.config.outbox_table)
        .key("id", AttributeValue::S(row.id.clone()))
        .update_expression("SET #s = :s")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":s", AttributeValue::S(status.to_string()))
        .send()
        .await
        .unwrap();
}

/// The row `--repair` wrote for a participant.
async fn repaired_row(env: &common::TestEnv, participant_id: &str) -> OutboxRow {
    let id = reconcile_row_id(participant_id);
    env.outbox.get(&id).await.unwrap().expect("the repair row")
}

fn classes(report: &serde_json::Value) -> HashMap<String, u64> {
    serde_json::from_value(report["classes"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_participant_is_classified_and_a_missing_one_is_repaired_delivered_and_verified() {
    let mut env = common::env().await;
    env.config.sweep_delay_seconds = 0;
    let table = env.config.participants_table.clone();

    // Five participants registered an hour ago go through the pipeline.
    let (ids, items): (Vec<String>, Vec<_>) = (0..5).map(|n| participant(n, Some(3600))).unzip();
    demo::save_all(&env.dynamodb, &table, items).await.unwrap();
    env.run_pipeline().await;
    let rows = env.rows().await;
    assert_eq!(common::counts(&rows).get("DELIVERED"), Some(&5), "{rows:?}");
    let row_of = |id: &str| {
        rows.iter()
            .find(|r| r.participant_id.as_deref() == Some(id))
            .unwrap()
            .clone()
    };
    // Then faults: one row lost, one FAILED, one back in flight, one REJECTED.
    env.dynamodb
        .delete_item()
        .table_name(&env.config.outbox_table)
        .key("id", AttributeValue::S(row_of(&ids[0]).id))
        .send()
        .await
        .unwrap();
    set_status(&env, &row_of(&ids[1]), Status::Failed).await;
    set_status(&env, &row_of(&ids[2]), Status::InFlight).await;
    set_status(&env, &row_of(&ids[3]), Status::Rejected).await;
    // And three participants whose stream records never became rows: one saved
    // a moment ago (young), one an hour ago and one without registered_at (missing).
    let (young, young_item) = participant(5, Some(1));
    let (lost, lost_item) = participant(6, Some(3600));
    let (undated, undated_item) = participant(7, None);
    demo::save_all(
        &env.dynamodb,
        &table,
        vec![young_item, lost_item, undated_item],
    )
    .await
    .unwrap();
    let missing: BTreeSet<String> = [ids[0].clone(), lost.clone(), undated.clone()].into();

    // The library's answer.
    let tables = reconcile::Tables::new(env.dynamodb.clone(), &env.config);
    let options = reconcile::Options {
        grace: Duration::from_secs(300),
        ..reconcile::Options::default()
    };
    let mut reported = BTreeSet::new();
    let report = reconcile::reconcile(
        &tables,
        &options,
        None,
        &mut |id| {
            reported.insert(id.to_string());
        },
        &|_, _| {},
    )
    .await
    .unwrap();
    let expected = [
        (Class::Delivered, 1),
        (Class::Pending, 1),
        (Class::Failed, 1),
        (Class::Rejected, 1),
        (Class::Young, 1),
        (Class::Missing, 3),
    ];
    for (class, count) in expected {
        assert_eq!(report.count(class), count, "{class:?}: {report:?}");
    }
    assert_eq!(report.participants, 8);
    assert_eq!(reported, missing);
    assert!(
        !reported.contains(&young),
        "saved a moment ago: young, not missing"
    );

    // The CLI: one JSON object, exit 1 while something is missing.
    let (json, code) = reconcile_json(&env.config, &[]);
    assert_eq!(code, Some(1), "{json}");
    let counted = classes(&json);
    for (class, count) in expected {
        assert_eq!(counted[class.as_str()], count, "{json}");
    }
    let listed: BTreeSet<String> = serde_json::from_value(json["missing_ids"].clone()).unwrap();
    assert_eq!(listed, missing);
    // --since/--until select by registered_at: only the young one is recent.
    let since = rfc3339(OffsetDateTime::now_utc() - time::Duration::minutes(10));
    let (recent, code) = reconcile_json(&env.config, &["--since", &since]);
    assert_eq!((recent["participants"].as_u64(), code), (Some(1), Some(0)));
    assert_eq!(classes(&recent)["young"], 1);

    // --repair without --yes is a dry run: nothing written.
    let before = env.rows().await.len();
    let (dry, code) = reconcile_json(&env.config, &["--repair"]);
    assert_eq!((dry["repaired"].as_u64(), code), (Some(0), Some(1)));
    assert_eq!(env.rows().await.len(), before);

    // --repair --yes writes one PENDING row per missing participant, as the
    // stream handler would, under the participant's reconcile id.
    let (repaired, code) = reconcile_json(&env.config, &["--repair", "--yes"]);
    assert_eq!((repaired["repaired"].as_u64(), code), (Some(3), Some(0)));
    for id in &missing {
        let row = repaired_row(&env, id).await;
        assert_eq!(row.status, Status::Pending);
        assert_eq!(row.participant_id.as_deref(), Some(id.as_str()));
        assert_eq!(row.source_event_id, format!("reconcile:{id}"));
        let payload: serde_json::Value =
            serde_json::from_slice(&row.payload_bytes().unwrap()).unwrap();
        assert_eq!(payload["id"], id.as_str());
    }

    // The relay delivers them like any row; an independent reader sees them.
    let producer = Producer::connect(&env.config.kafka_bootstrap_servers, &env.config.kafka_topic)
        .await
        .unwrap();
    let relay = Relay::new(env.outbox.clone(), Arc::new(producer), env.config.clone());
    assert_eq!(relay.sweep().await.unwrap().delivered, 3);
    let records = env.read_topic(5 + 3);
    for id in &missing {
        let row = repaired_row(&env, id).await;
        let on_topic = records
            .iter()
            .find(|r| r.headers.get("outbox_id") == Some(&row.id))
            .unwrap_or_else(|| panic!("the repaired row of {id} is on the topic"));
        assert_eq!(on_topic.key.as_deref(), Some(id.as_str()));
        assert_eq!(
            (Some(on_topic.partition), Some(on_topic.offset)),
            (row.kafka_partition, row.kafka_offset)
        );
    }

    // A second repair makes nothing; --verify proves participant → row →
    // message for every DELIVERED row found.
    let rows_before = env.rows().await.len();
    let (again, code) = reconcile_json(&env.config, &["--repair", "--yes", "--verify"]);
    assert_eq!(code, Some(0), "{again}");
    assert_eq!(again["repaired"].as_u64(), Some(0));
    assert_eq!(classes(&again)["missing"], 0);
    assert_eq!(classes(&again)["delivered"], 4, "{again}");
    assert_eq!(again["verify"]["checked"].as_u64(), Some(4), "{again}");
    assert_eq!(again["verify"]["missing"].as_u64(), Some(0));
    assert_eq!(again["verify"]["different"].as_u64(), Some(0));
    assert_eq!(env.rows().await.len(), rows_before);

    // The text report: the summary table, every class named.
    let text = reconcile_cli(&env.config, &[]);
    let text = String::from_utf8_lossy(&text.stdout);
    for class in Class::ALL {
        assert!(text.contains(class.as_str()), "{text}");
    }
}
