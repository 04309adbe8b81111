//! The CLI's contract, run as a user runs the binary: every command's
//! `--help` states the exit statuses and lists the (global) configuration
//! flags; exit status 0 done, 1 a check found a difference, 2 could not run;
//! `--json` stdout is JSON only; logs on a pipe are JSON lines, quieted by
//! `-q`. Each command's own behaviour is in `tests/cmd_*.rs`.

mod common;

use common::cli::{assert_status, bin, cli, cli_on, json};
use common::rows::{delivered, failed, pending, seed};
use raffle_outbox::cmd::Cli;
use time::OffsetDateTime;

const EXIT_STATUS: &str = "Exit status: 0 done; 1 the check found a difference";

/// Every command path (`audit list`, `local reset`, …) of the command line.
fn command_paths() -> Vec<Vec<String>> {
    fn walk(command: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut path = prefix.clone();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            walk(sub, path, out);
        }
    }
    let mut paths = Vec::new();
    walk(&Cli::command_line(), Vec::new(), &mut paths);
    paths
}

/// `--help` of the program and of every command exits 0 and shows the exit
/// statuses and the configuration flags (global: accepted there too).
#[test]
fn every_help_states_the_exit_statuses_and_the_configuration_flags() {
    let mut paths = command_paths();
    assert!(paths.len() > 15, "{paths:?}");
    paths.push(Vec::new());
    for path in paths {
        let output = bin().args(&path).arg("--help").output().unwrap();
        assert_status(&output, 0);
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains(EXIT_STATUS), "{path:?}:\n{help}");
        assert!(help.contains("--outbox-table"), "{path:?}:\n{help}");
        assert!(help.contains("-q, --quiet"), "{path:?}:\n{help}");
    }
}

/// Usage errors exit 2 and say what is wrong on stderr, nothing on stdout.
#[test]
fn usage_errors_exit_2() {
    for args in [
        &["audit", "summary", "--no-such-flag"][..],
        &["redrive", "--id", "x", "--since", "2026-01-01"],
        &["retention", "--days", "1"],
        &["verify", "-v", "-q"],
        &[],
    ] {
        let output = bin()
            .args(args)
            .env_remove("RETENTION_DAYS")
            .output()
            .unwrap();
        assert_status(&output, 2);
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
}

/// A configuration flag after the subcommand is accepted and wins over its
/// environment variable: the environment names a table that is not there,
/// the flag the test's.
#[tokio::test(flavor = "multi_thread")]
async fn configuration_flags_are_global_and_win_over_the_environment() {
    let env = common::env().await;
    let now = OffsetDateTime::now_utc();
    seed(&env, &[pending(0, now), pending(1, now)]).await;
    let mut elsewhere = env.config.clone();
    elsewhere.outbox_table = format!("no_such_table_{}", env.suffix);
    let table = env.config.outbox_table.as_str();
    let output = cli_on(
        &elsewhere,
        &["audit", "summary", "--json", "--outbox-table", table],
        "",
    );
    assert_status(&output, 0);
    assert_eq!(json(&output)["counts"]["PENDING"], 2);
    // Before the subcommand too, as before.
    let output = cli_on(
        &elsewhere,
        &["--outbox-table", table, "audit", "summary", "--json"],
        "",
    );
    assert_eq!(json(&output)["total"], 2);
    // The environment's table is used without the flag: it is not there.
    assert_status(&cli_on(&elsewhere, &["audit", "summary"], ""), 2);
}

/// `verify`: 0 and a clean JSON report on a table that matches the topic;
/// 1 and the problem in the JSON when a row points past the end of its
/// partition; 2 when the broker cannot be reached.
#[tokio::test(flavor = "multi_thread")]
async fn verify_exits_0_clean_1_on_a_difference_2_when_it_cannot_run() {
    let env = common::env().await;
    let clean = cli(&env, &["verify", "--json"]);
    assert_status(&clean, 0);
    let report = json(&clean);
    assert_eq!(
        (report["checked"].as_u64(), report["clean"].as_bool()),
        (Some(0), Some(true))
    );

    let topic = env.config.kafka_topic.clone();
    let lost = delivered(pending(0, OffsetDateTime::now_utc()), &topic, 0, 1_000_000);
    seed(&env, std::slice::from_ref(&lost)).await;
    let differs = cli(&env, &["verify", "--json"]);
    assert_status(&differs, 1);
    let report = json(&differs);
    assert_eq!(report["missing"], 1);
    assert_eq!(report["clean"], false);
    assert_eq!(report["problems"][0]["id"], lost.id.as_str());
    assert_eq!(report["problems"][0]["finding"], "missing");
    assert_status(&cli(&env, &["verify"]), 1);

    let mut no_broker = env.config.clone();
    no_broker.kafka_bootstrap_servers =
        format!("127.0.0.1:{}", raffle_outbox::local::free_port().unwrap());
    let unreachable = cli_on(&no_broker, &["verify", "--json"], "");
    assert_status(&unreachable, 2);
    assert!(
        unreachable.stdout.is_empty(),
        "no report when it could not run"
    );
}

/// `--json` on the commands that report: stdout is one JSON object (or
/// array) and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn json_reports_parse_as_json() {
    let env = common::env().await;
    let now = OffsetDateTime::now_utc();
    let topic = env.config.kafka_topic.clone();
    let rows = [
        delivered(pending(0, now), &topic, 0, 0),
        failed(pending(1, now), "boom"),
    ];
    seed(&env, &rows).await;

    let retention = json(&cli(
        &env,
        &["retention", "--days", "30", "--dry-run", "--json"],
    ));
    assert_eq!(
        (&retention["days"], &retention["set"], &retention["dry_run"]),
        (&30.into(), &1.into(), &true.into())
    );

    let redrive = cli(&env, &["redrive", "--dry-run", "--json"]);
    assert_status(&redrive, 0);
    let redrive = json(&redrive);
    assert_eq!(redrive["candidates"][0]["id"], rows[1].id.as_str());
    assert_eq!(redrive["redriven"].as_array().map(Vec::len), Some(0));
    let refused = cli(&env, &["redrive", "--id", &rows[0].id, "--json"]);
    assert_status(&refused, 2);
    assert_eq!(json(&refused)["refused"][0]["id"], rows[0].id.as_str());
    let redriven = cli(&env, &["redrive", "--yes", "--json"]);
    assert_status(&redriven, 0);
    assert_eq!(json(&redriven)["redriven"][0], rows[1].id.as_str());

    let migrate = json(&cli(&env, &["migrate", "--json"]));
    assert_eq!(
        migrate["applied"].as_array().map(Vec::len),
        Some(0),
        "migrated already"
    );

    let status = json(&cli(&env, &["local", "status", "--json"]));
    let names: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dynamodb-local", "tansu"]);
    assert_eq!(status[1]["running"], true);
}

/// Logs on a pipe are JSON lines (info by default); `-q` keeps only
/// warnings and errors; `register` of a participant the rules refuse exits 2.
#[tokio::test(flavor = "multi_thread")]
async fn logs_are_json_lines_on_a_pipe_and_q_quiets_them() {
    let env = common::env().await;
    let migrate_new_outbox = |name: &str, extra: &[&str]| {
        let mut config = env.config.clone();
        config.outbox_table = format!("{}_{name}", env.config.outbox_table);
        cli_on(&config, &[&["migrate", "--json"], extra].concat(), "")
    };
    let loud = migrate_new_outbox("loud", &[]);
    assert_status(&loud, 0);
    let stderr = String::from_utf8_lossy(&loud.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "migration applied"),
        "{stderr}"
    );
    assert!(!json(&loud)["applied"].as_array().unwrap().is_empty());

    let quiet = migrate_new_outbox("quiet", &["-q"]);
    assert_status(&quiet, 0);
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    assert!(!json(&quiet)["applied"].as_array().unwrap().is_empty());

    let refused = cli(&env, &["register", r#"{"name": "x"}"#]);
    assert_status(&refused, 2);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("error: "));
}

/// On a terminal (a pseudo-terminal from util-linux's `script`), log lines
/// are human-readable, not JSON. Skipped where `script` is missing.
#[tokio::test(flavor = "multi_thread")]
async fn logs_are_human_readable_on_a_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no `script` to give the command a terminal");
        return;
    }
    let env = common::env().await;
    let c = &env.config;
    let command = format!(
        "{} migrate --participants-table {}_tty --outbox-table {}_tty",
        env!("CARGO_BIN_EXE_raffle-outbox"),
        c.participants_table,
        c.outbox_table
    );
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .unwrap();
    assert_status(&output, 0);
    let terminal = String::from_utf8_lossy(&output.stdout);
    assert!(terminal.contains("migration applied"), "{terminal}");
    assert!(terminal.contains("INFO"), "{terminal}");
    assert!(!terminal.contains("{\"timestamp\""), "{terminal}");
}
