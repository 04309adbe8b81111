//! The README's main command, run as a user runs it: `raffle-outbox demo`.

mod common;

use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn demo_delivers_every_participant_and_reports_where() {
    let env = common::env().await;
    let c = &env.config;
    let output = Command::new(env!("CARGO_BIN_EXE_raffle-outbox"))
        .args(["demo", "--participants", "40"])
        .env("PARTICIPANTS_TABLE", &c.participants_table)
        .env("OUTBOX_TABLE", &c.outbox_table)
        .env("KAFKA_TOPIC", &c.kafka_topic)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("40 of 40 DELIVERED"), "{stdout}");
    assert!(stdout.contains("DELIVERED  40"), "{stdout}");
    assert_eq!(stdout.matches(" → partition ").count(), 5, "{stdout}");

    // Every send response is logged as one JSON line, without personal fields.
    let responses: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "kafka send response")
        .collect();
    assert_eq!(responses.len(), 40);
    for r in &responses {
        let f = &r["fields"];
        assert_eq!(f["topic"], c.kafka_topic.as_str());
        assert!(f["partition"].is_i64() && f["offset"].is_i64() && f["timestamp"].is_i64());
        assert!(f["outbox_id"].is_string());
    }
    assert!(
        !stderr.contains("@example.com") && !stderr.contains("Participant 0"),
        "no personal fields in logs"
    );

    let records = env.read_topic(40);
    assert_eq!(records.len(), 40);
}
