//! The operator commands on the real local stack, run as an operator runs
//! them (the `raffle-outbox` binary): audit, export, redrive, verify and
//! retention. Rows reach FAILED through the real relay and broker.

mod common;

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_dynamodb::types::AttributeValue;
use raffle_outbox::audit::AuditQuery;
use raffle_outbox::kafka::Producer;
use raffle_outbox::outbox::row::rfc3339;
use raffle_outbox::outbox::{OutboxRow, Status};
use raffle_outbox::redrive::{self, Selection};
use raffle_outbox::relay::Relay;
use raffle_outbox::{demo, retention};
use time::{Duration, OffsetDateTime};

/// Runs `raffle-outbox ARGS` against the test's tables and topic.
fn cli(env: &common::TestEnv, args: &[&str]) -> Output {
    cli_on(&env.config, args, "")
}

fn cli_with_stdin(env: &common::TestEnv, args: &[&str], stdin: &str) -> Output {
    cli_on(&env.config, args, stdin)
}

/// Runs `raffle-outbox ARGS` against the tables and topic of `c`.
fn cli_on(c: &raffle_outbox::Config, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_raffle-outbox"))
        .args(args)
        .env("OUTBOX_TABLE", &c.outbox_table)
        .env("PARTICIPANTS_TABLE", &c.participants_table)
        .env("KAFKA_TOPIC", &c.kafka_topic)
        .env("KAFKA_BOOTSTRAP_SERVERS", &c.kafka_bootstrap_servers)
        .env_remove("RETENTION_DAYS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    if std::env::var_os("OPERATORS_SHOW_OUTPUT").is_some() {
        // The README's example output comes from here.
        eprintln!(
            "$ raffle-outbox {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "failed:\n{}\n{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

/// A PENDING row for a new participant, created (and due) at `at`, as the
/// stream handler writes it. Built from the stored form (the README's
/// attribute table), not from the handler's constructor, so these tests stay
/// about the operator commands.
fn pending(n: usize, at: OffsetDateTime) -> OutboxRow {
    let (participant_id, participant) = demo::sample_participant(n);
    let event_id = format!("event-{}", uuid::Uuid::new_v4());
    let id = raffle_outbox::outbox::row::row_id(&event_id);
    serde_json::from_value(serde_json::json!({
        "id": id,
        "participant_id": participant_id,
        "status": "PENDING",
        "created_at": rfc3339(at),
        "attempts": 0,
        "payload": participant.to_string(),
        "source_event_id": event_id,
        "source_sequence_number": n.to_string(),
        "due_shard": raffle_outbox::outbox::row::due_shard(&id),
        "due_at": raffle_outbox::outbox::row::epoch_ms(at),
    }))
    .unwrap()
}

/// A REJECTED row (a stream record without an `id`).
fn rejected(at: OffsetDateTime) -> OutboxRow {
    let event_id = format!("bad-event-{}", uuid::Uuid::new_v4());
    serde_json::from_value(serde_json::json!({
        "id": raffle_outbox::outbox::row::row_id(&event_id),
        "status": "REJECTED",
        "created_at": rfc3339(at),
        "raw_image": "{}",
        "reject_reason": "the image has no `id`",
        "source_event_id": event_id,
    }))
    .unwrap()
}

/// The row as the relay leaves it once the broker stored it.
fn delivered(mut row: OutboxRow, topic: &str, partition: i32, offset: i64) -> OutboxRow {
    row.status = Status::Delivered;
    row.attempts = 1;
    row.due_shard = None;
    row.due_at = None;
    row.kafka_topic = Some(topic.to_string());
    row.kafka_partition = Some(partition);
    row.kafka_offset = Some(offset);
    row.kafka_timestamp = Some(1_795_867_200_000 + offset);
    row.delivered_at = Some(row.created_at.clone());
    row
}

fn failed(mut row: OutboxRow, error: &str) -> OutboxRow {
    row.status = Status::Failed;
    row.attempts = 10;
    row.due_shard = None;
    row.due_at = None;
    row.last_error = Some(error.to_string());
    row
}

/// Writes rows straight into the test's outbox (BatchWriteItem), as fast as
/// DynamoDB Local takes them.
async fn seed(env: &common::TestEnv, rows: &[OutboxRow]) {
    seed_into(&env.dynamodb, &env.config.outbox_table, rows).await;
}

async fn seed_into(dynamodb: &aws_sdk_dynamodb::Client, table: &str, rows: &[OutboxRow]) {
    let items = rows
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    demo::save_all(dynamodb, table, items).await.unwrap();
}

async fn relay(env: &common::TestEnv, max_attempts: u32) -> raffle_outbox::relay::RelayReport {
    let mut config = env.config.clone();
    config.max_attempts = max_attempts;
    relay_with(env, config).await
}

/// A sweep of the test's outbox by a relay with `config`.
async fn relay_with(
    env: &common::TestEnv,
    config: raffle_outbox::Config,
) -> raffle_outbox::relay::RelayReport {
    let producer = Producer::connect(&config.kafka_bootstrap_servers, &config.kafka_topic)
        .await
        .unwrap();
    Relay::new(env.outbox.clone(), Arc::new(producer), config)
        .sweep()
        .await
        .unwrap()
}

/// `expires_at` of a stored row, and what RETENTION_DAYS = `days` makes of
/// its `delivered_at` (none for a row never delivered).
async fn expiry(
    env: &common::TestEnv,
    id: &str,
    days: u32,
) -> (Option<AttributeValue>, Option<AttributeValue>) {
    let item = audit(env).item(id).await.unwrap().unwrap();
    let expected = item.get("delivered_at").map(|d| {
        let at = OffsetDateTime::parse(
            d.as_s().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        AttributeValue::N(retention::expires_at(at, days).to_string())
    });
    (item.get(retention::EXPIRES_AT).cloned(), expected)
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("operators-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn audit(env: &common::TestEnv) -> AuditQuery {
    AuditQuery::new(env.dynamodb.clone(), &env.config.outbox_table)
}

/// summary, list, show and participant answer from the indexes, and agree
/// with the table.
#[tokio::test(flavor = "multi_thread")]
async fn audit_commands_answer_who_when_where_and_why() {
    let env = common::env().await;
    let topic = env.config.kafka_topic.clone();
    let t0 = OffsetDateTime::now_utc() - Duration::hours(3);
    let mut rows = Vec::new();
    for n in 0..6 {
        rows.push(delivered(
            pending(n, t0 + Duration::minutes(n as i64)),
            &topic,
            0,
            n as i64,
        ));
    }
    for n in 6..9 {
        rows.push(failed(
            pending(n, t0 + Duration::minutes(n as i64)),
            "partition 1: broker error MessageSizeTooLarge",
        ));
    }
    rows.push(pending(9, t0 + Duration::minutes(30)));
    rows.push(rejected(t0 + Duration::minutes(40)));
    seed(&env, &rows).await;

    let summary: serde_json::Value =
        serde_json::from_str(&ok(cli(&env, &["audit", "summary", "--json"]))).unwrap();
    assert_eq!(summary["counts"]["DELIVERED"], 6);
    assert_eq!(summary["counts"]["FAILED"], 3);
    assert_eq!(summary["counts"]["PENDING"], 1);
    assert_eq!(summary["counts"]["REJECTED"], 1);
    assert_eq!(summary["counts"]["IN_FLIGHT"], 0);
    assert_eq!(summary["total"], 11);
    assert_eq!(summary["failed"], 3);
    assert_eq!(summary["oldest_pending"]["id"], rows[9].id.as_str());
    assert!(summary["oldest_pending"]["age_seconds"].as_i64().unwrap() >= 150 * 60 - 5);
    let table = ok(cli(&env, &["audit", "summary"]));
    assert!(table.contains("DELIVERED           6"), "{table}");
    assert!(table.contains("FAILED: 3"), "{table}");

    // list: a state in a time window, oldest first, limited.
    let since = rfc3339(t0 + Duration::minutes(2));
    let until = rfc3339(t0 + Duration::minutes(5));
    let listed = ok(cli(
        &env,
        &[
            "audit",
            "list",
            "--status",
            "delivered",
            "--since",
            &since,
            "--until",
            &until,
            "--json",
        ],
    ));
    let ids: Vec<String> = listed
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        ids,
        [rows[2].id.clone(), rows[3].id.clone(), rows[4].id.clone()],
        "since inclusive, until exclusive"
    );
    let listed = cli(
        &env,
        &["audit", "list", "--status", "FAILED", "--limit", "2"],
    );
    let hint = String::from_utf8_lossy(&listed.stderr).into_owned();
    let failed_list = ok(listed);
    assert!(failed_list.contains("MessageSizeTooLarge"), "{failed_list}");
    assert!(hint.contains("more rows"), "the hint is on stderr: {hint}");
    // With --json, stdout is JSON lines only: the hint goes to stderr.
    let json_list = ok(cli(
        &env,
        &[
            "audit", "list", "--status", "FAILED", "--limit", "1", "--json",
        ],
    ));
    for line in json_list.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
    }

    // show: the whole row with its send response.
    let shown = ok(cli(&env, &["audit", "show", &rows[1].id]));
    assert!(
        shown.contains(&format!("kafka_topic            {topic}")),
        "{shown}"
    );
    assert!(shown.contains("kafka_offset           1"), "{shown}");
    assert!(
        shown.contains("redrive_history        0 entries"),
        "{shown}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(cli(&env, &["audit", "show", &rows[1].id, "--json"]))).unwrap();
    assert_eq!(json["kafka_partition"], 0);
    assert_eq!(json["payload"], rows[1].payload.as_deref().unwrap());
    let missing = cli(&env, &["audit", "show", "no-such-row"]);
    assert!(!missing.status.success());

    // participant: every row of one participant.
    let pid = rows[7].participant_id.clone().unwrap();
    let theirs = ok(cli(&env, &["audit", "participant", &pid]));
    assert!(
        theirs.contains(&rows[7].id) && theirs.contains("FAILED"),
        "{theirs}"
    );
    assert!(theirs.contains("1 row(s)"), "{theirs}");
}

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
    let schemas = broker.dir.join("schemas");
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
    broker
        .start_with(&advertised, &["--schema-registry", "file://./schemas"])
        .await;
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

/// Retention: `expires_at` = delivered_at + RETENTION_DAYS on DELIVERED rows
/// only; without the setting, rows are kept forever (the attribute goes).
#[tokio::test(flavor = "multi_thread")]
async fn retention_sets_and_clears_expiry_on_delivered_rows_only() {
    let env = common::env().await;
    let topic = env.config.kafka_topic.clone();
    let now = OffsetDateTime::now_utc();
    let rows = vec![
        delivered(pending(0, now), &topic, 0, 0),
        delivered(pending(1, now), &topic, 0, 1),
        failed(pending(2, now), "boom"),
    ];
    seed(&env, &rows).await;
    let dry = ok(cli(&env, &["retention", "--days", "30", "--dry-run"]));
    assert!(dry.contains("2 would be given expires_at"), "{dry}");
    let set = ok(cli(&env, &["retention", "--days", "30"]));
    assert!(set.contains("2 were given expires_at"), "{set}");
    for row in &rows {
        let (stored, expected) = expiry(&env, &row.id, 30).await;
        assert_eq!(stored, expected, "{:?}", row.status);
    }
    let again = ok(cli(&env, &["retention", "--days", "30"]));
    assert!(again.contains("2 already right"), "{again}");
    let forever = ok(cli(&env, &["retention"]));
    assert!(
        forever.contains("keep forever") && forever.contains("2 were cleared"),
        "{forever}"
    );
    for row in &rows {
        let item = audit(&env).item(&row.id).await.unwrap().unwrap();
        assert!(!item.contains_key(retention::EXPIRES_AT));
    }
}

/// Retention under 2 days is refused, from `retention --days` and from
/// RETENTION_DAYS (which the relay reads too), with the reason: a DELIVERED
/// row deleted while its participants-stream record can still be replayed
/// (24 h) would be written and sent again. Nothing is touched: the command
/// stops before it reads a table.
#[test]
fn retention_under_two_days_is_refused_with_the_reason() {
    let run = |args: &[&str], retention_days: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_raffle-outbox"));
        command.args(args).env_remove("RETENTION_DAYS");
        if let Some(days) = retention_days {
            command.env("RETENTION_DAYS", days);
        }
        command.output().unwrap()
    };
    for output in [
        run(&["retention", "--days", "1", "--dry-run"], None),
        run(&["retention", "--days", "0", "--dry-run"], None),
        run(&["retention", "--dry-run"], Some("1")),
        run(&["audit", "summary"], Some("0")),
    ] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains("at least 2 days") && stderr.contains("24 h"),
            "{stderr}"
        );
        assert!(output.stdout.is_empty(), "nothing done");
    }
}

/// With RETENTION_DAYS set, the relay writes `expires_at` (delivered_at +
/// N days) in the same write that marks a row DELIVERED. Without the
/// setting, delivered rows get none.
#[tokio::test(flavor = "multi_thread")]
async fn the_relay_gives_delivered_rows_their_expiry_when_retention_is_set() {
    let env = common::env().await;
    let now = OffsetDateTime::now_utc();
    let kept = [pending(0, now), pending(1, now)];
    seed(&env, &kept).await;
    assert_eq!(relay(&env, 10).await.delivered, 2);

    let expiring = [pending(2, now), pending(3, now)];
    seed(&env, &expiring).await;
    let mut config = env.config.clone();
    config.retention_days = Some(30);
    assert_eq!(relay_with(&env, config).await.delivered, 2);

    for row in &kept {
        let (stored, _) = expiry(&env, &row.id, 30).await;
        assert_eq!(
            stored, None,
            "delivered before retention was set: kept forever"
        );
    }
    for row in &expiring {
        let (stored, expected) = expiry(&env, &row.id, 30).await;
        assert!(expected.is_some(), "delivered");
        assert_eq!(stored, expected);
    }
}

/// How many rows the export test writes: 100,000 by default
/// (`EXPORT_TEST_ROWS` changes it, for a quick run while working).
fn export_rows() -> usize {
    std::env::var("EXPORT_TEST_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// A participant id a spreadsheet would run as a formula (row 1 of the
/// export fixture carries it).
const FORMULA: &str = "=HYPERLINK(\"https://example.com/\",\"win\")";

/// `n` rows 7 ms apart from `t0`, 98 % DELIVERED (3
/// partitions), 1 % FAILED with an error that needs CSV quoting, 1 % PENDING
/// (row 1 with the participant id [`FORMULA`]).
fn export_fixture(n: usize, t0: OffsetDateTime, topic: &str) -> Vec<OutboxRow> {
    (0..n)
        .map(|i| {
            let mut row = pending(i, t0 + Duration::milliseconds(i as i64 * 7));
            match i % 100 {
                0 => failed(row, "broker said, \"no\", twice\nthen gave up"),
                1 if i == 1 => {
                    row.participant_id = Some(FORMULA.to_string());
                    row
                }
                1 => row,
                _ => delivered(row, topic, (i % 3) as i32, i as i64),
            }
        })
        .collect()
}

/// An export of 100,000 rows: every row once, grouped by state and oldest
/// first, each line equal to the table's row; CSV and JSON lines agree; a
/// window exports exactly its rows.
///
/// The rows go into an outbox of version 0002 with its stream turned off
/// (DynamoDB Local slows down with every stream record it holds; see
/// `local::disable_stream`), and the audit indexes are then added by
/// migration, which backfills them, as a production upgrade would.
#[tokio::test(flavor = "multi_thread")]
async fn an_export_matches_the_table_row_for_row() {
    let env = common::env().await;
    let n = export_rows();
    let topic = env.config.kafka_topic.clone();
    let mut config = env.config.clone();
    config.outbox_table = format!("{}_export", env.config.outbox_table);
    raffle_outbox::migrate::migrate_to(&env.dynamodb, &config, 2)
        .await
        .unwrap();
    raffle_outbox::local::disable_stream(&env.dynamodb, &config.outbox_table)
        .await
        .unwrap();
    let t0 = (OffsetDateTime::now_utc() - Duration::days(1))
        .replace_nanosecond(0)
        .unwrap();
    let rows = export_fixture(n, t0, &topic);
    let started = Instant::now();
    seed_into(&env.dynamodb, &config.outbox_table, &rows).await;
    eprintln!(
        "seeded {n} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    raffle_outbox::migrate::migrate(&env.dynamodb, &config)
        .await
        .unwrap();
    eprintln!(
        "audit indexes added and backfilled in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let export = |args: &[&str]| ok(cli_on(&config, args, ""));

    let dir = tempdir();
    let csv_path = dir.join("export.csv");
    let jsonl_path = dir.join("export.jsonl");
    let started = Instant::now();
    export(&[
        "audit",
        "export",
        "--format",
        "csv",
        "--output",
        csv_path.to_str().unwrap(),
    ]);
    eprintln!(
        "exported {n} rows as CSV in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    export(&[
        "audit",
        "export",
        "--format",
        "jsonl",
        "--output",
        jsonl_path.to_str().unwrap(),
    ]);

    let table: HashMap<String, &OutboxRow> = rows.iter().map(|r| (r.id.clone(), r)).collect();
    let jsonl = std::fs::read_to_string(&jsonl_path).unwrap();
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), n, "one line per row");
    let mut seen = std::collections::HashSet::new();
    for line in &lines {
        let row = table[line["id"].as_str().unwrap()];
        assert!(seen.insert(row.id.clone()), "each row once");
        assert_eq!(
            line["participant_id"],
            row.participant_id.as_deref().unwrap()
        );
        assert_eq!(line["status"], row.status.as_str());
        assert_eq!(line["created_at"], row.created_at.as_str());
        assert_eq!(line["attempts"], row.attempts);
        assert_eq!(
            line["kafka_partition"],
            serde_json::json!(row.kafka_partition)
        );
        assert_eq!(line["kafka_offset"], serde_json::json!(row.kafka_offset));
        assert_eq!(
            line["kafka_timestamp"],
            serde_json::json!(row.kafka_timestamp)
        );
        assert_eq!(line["last_error"], serde_json::json!(row.last_error));
        assert_eq!(line["source_event_id"], row.source_event_id.as_str());
        assert!(
            line.get("payload").is_none(),
            "no personal fields in the export"
        );
    }
    // Grouped by state (Status::ALL order), each oldest first.
    let order: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    for pair in lines.windows(2) {
        let rank = |l: &serde_json::Value| order.iter().position(|s| *s == l["status"]).unwrap();
        let key = |l: &serde_json::Value| {
            OffsetDateTime::parse(
                l["created_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        };
        assert!(
            rank(&pair[0]) < rank(&pair[1])
                || (rank(&pair[0]) == rank(&pair[1]) && key(&pair[0]) <= key(&pair[1])),
            "{pair:?}"
        );
    }

    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let header = csv.lines().next().unwrap();
    assert_eq!(header, raffle_outbox::audit::record::COLUMNS.join(","));
    // Records end with CRLF; a quoted field may hold a bare LF.
    assert_eq!(
        csv.matches("\r\n").count(),
        n + 1,
        "header + one record per row"
    );
    let quoted = ",\"broker said, \"\"no\"\", twice\nthen gave up\",";
    assert_eq!(
        csv.matches(quoted).count(),
        n.div_ceil(100),
        "quoted per RFC 4180"
    );

    // A cell a spreadsheet would run is escaped in CSV (OWASP: a leading
    // `'`, quoted); JSON lines keep the value exactly.
    assert!(
        csv.contains(",\"'=HYPERLINK(\"\"https://example.com/\"\",\"\"win\"\")\",PENDING,"),
        "the formula is escaped in CSV"
    );
    assert!(
        !csv.contains(",=HYPERLINK(") && !csv.contains(",\"=HYPERLINK("),
        "no cell starts with the formula"
    );
    let formula_line = lines
        .iter()
        .find(|l| l["id"] == rows[1].id.as_str())
        .unwrap();
    assert_eq!(
        formula_line["participant_id"], FORMULA,
        "exact in JSON lines"
    );

    // A window exports exactly its rows.
    let since = t0 + Duration::milliseconds(7 * 1000);
    let until = t0 + Duration::milliseconds(7 * 3000);
    let window = export(&[
        "audit",
        "export",
        "--format",
        "jsonl",
        "--status",
        "delivered",
        "--since",
        &rfc3339(since),
        "--until",
        &rfc3339(until),
    ]);
    let expected = rows
        .iter()
        .enumerate()
        .filter(|(i, r)| r.status == Status::Delivered && (1000..3000).contains(i))
        .count();
    assert_eq!(window.lines().count(), expected);
}

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
