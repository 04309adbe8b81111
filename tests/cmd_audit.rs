//! `raffle-outbox audit` on the real local stack, run as an operator runs
//! it: summary, list, show, participant and export agree with the table.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use common::cli::{cli, cli_on, ok};
use common::rows::{delivered, failed, pending, rejected, seed, seed_into, tempdir};
use raffle_outbox::outbox::row::rfc3339;
use raffle_outbox::outbox::{OutboxRow, Status};
use time::{Duration, OffsetDateTime};

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
