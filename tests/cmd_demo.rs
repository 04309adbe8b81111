//! The README's main command, run as a user runs it: `raffle-outbox demo`,
//! on tables and a topic of its own, deleted after unless `--keep`.

mod common;

use common::cli::{assert_status, bin};

async fn table_exists(env: &common::TestEnv, table: &str) -> bool {
    env.dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .is_ok()
}

/// The word after `prefix` in `text` (a table or topic name the demo printed).
fn name_after<'a>(text: &'a str, prefix: &str) -> &'a str {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix} in {text}"))
        + prefix.len();
    text[at..].split_whitespace().next().unwrap()
}

/// `demo --keep`: every participant delivered to the demo's topic and
/// reported, each send response logged as one JSON line without personal
/// fields, the summary timed from the first save; the topic holds them.
#[tokio::test(flavor = "multi_thread")]
async fn demo_delivers_every_participant_and_reports_where() {
    let env = common::env().await;
    let output = bin()
        .args(["demo", "--participants", "40", "--keep"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_status(&output, 0);
    assert!(stdout.contains("40 of 40 DELIVERED"), "{stdout}");
    assert!(
        stdout.contains("(first save to last DELIVERED mark)"),
        "{stdout}"
    );
    assert!(stdout.contains("DELIVERED  40"), "{stdout}");
    assert_eq!(stdout.matches(" → partition ").count(), 5, "{stdout}");
    let topic = name_after(&stdout, "KAFKA_TOPIC=");
    let outbox = name_after(&stdout, "OUTBOX_TABLE=");
    let participants = name_after(&stdout, "PARTICIPANTS_TABLE=");
    assert!(topic.starts_with("demo-"), "{topic}");

    // Every send response is logged as one JSON line, without personal fields.
    let responses: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "kafka send response")
        .collect();
    assert_eq!(responses.len(), 40);
    for r in &responses {
        let f = &r["fields"];
        assert_eq!(f["topic"], topic);
        assert!(f["partition"].is_i64() && f["offset"].is_i64() && f["timestamp"].is_i64());
        assert!(f["outbox_id"].is_string());
    }
    assert!(
        !stderr.contains("@example.com") && !stderr.contains("Participant 0"),
        "no personal fields in logs"
    );

    let records = common::read_topic(&env.stack.kafka_bootstrap(), topic, 40);
    assert_eq!(records.len(), 40);

    raffle_outbox::local::delete_topic(&env.stack, topic)
        .await
        .unwrap();
    assert!(!common::topics::list(&env.stack).iter().any(|t| t == topic));
    for table in [outbox, participants] {
        env.dynamodb
            .delete_table()
            .table_name(table)
            .send()
            .await
            .unwrap();
    }
}

/// Without `--keep`, the demo's topic and tables are gone when it ends, and
/// only they (tansu's own `topic delete` took every topic with it).
#[tokio::test(flavor = "multi_thread")]
async fn demo_deletes_its_tables_and_topic() {
    let env = common::env().await;
    let output = bin()
        .args(["demo", "--participants", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_status(&output, 0);
    assert!(stdout.contains("3 of 3 DELIVERED"), "{stdout}");
    let topic = name_after(&stdout, "participant → ");
    let participants = name_after(&stdout, "participants into ");
    assert!(topic.starts_with("demo-"), "{topic}");
    let after = common::topics::list(&env.stack);
    assert!(!after.iter().any(|t| t == topic), "{topic} deleted");
    assert!(after.contains(&env.config.kafka_topic), "the others kept");
    assert!(
        !table_exists(&env, participants).await,
        "{participants} deleted"
    );
    let outbox = participants.replace("demo_participants_", "demo_outbox_");
    assert!(!table_exists(&env, &outbox).await, "{outbox} deleted");
}
