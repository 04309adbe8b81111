//! The `raffle-outbox` binary run as an operator runs it, on a test's tables
//! and topic: its output, and what its exit status and stdout promise.

use std::process::{Command, Output, Stdio};

use super::TestEnv;

/// The binary under test (`target/…/raffle-outbox`).
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_raffle-outbox"))
}

/// Runs `raffle-outbox ARGS` against the test's tables and topic.
pub fn cli(env: &TestEnv, args: &[&str]) -> Output {
    cli_on(&env.config, args, "")
}

/// [`cli`] with `stdin` as its standard input (answers to its questions).
pub fn cli_with_stdin(env: &TestEnv, args: &[&str], stdin: &str) -> Output {
    cli_on(&env.config, args, stdin)
}

/// Runs `raffle-outbox ARGS` against the tables and topic of `c` (through
/// the environment, as a deployment configures it), with `stdin` as its
/// input. Stdout and stderr are pipes: logs are JSON lines, no progress.
pub fn cli_on(c: &raffle_outbox::Config, args: &[&str], stdin: &str) -> Output {
    let mut child = bin()
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
        // The docs' example output comes from here.
        eprintln!(
            "$ raffle-outbox {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    output
}

/// The command's stdout, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The command's stdout; fails the test (showing both streams) unless it
/// exited 0.
pub fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "failed:\n{}\n{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

/// Asserts the documented exit status (0 done, 1 a difference, 2 could not
/// run), showing both streams if it is another.
pub fn assert_status(output: &Output, expected: i32) {
    assert_eq!(
        output.status.code(),
        Some(expected),
        "exit status; stdout:\n{}\nstderr:\n{}",
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Stdout parsed as the one JSON object `--json` promises (nothing else on
/// stdout); fails the test otherwise.
pub fn json(output: &Output) -> serde_json::Value {
    let text = stdout(output);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON value ({e}):\n{text}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}
