//! The operator's command line, `raffle-outbox`: one file per command, each
//! with its clap arguments and a `run()` that does the work and prints it
//! (the layout of tokio-rs/mini-redis's `src/cmd/`). This module holds the
//! top-level [`Cli`] and [`Command`], the options every command takes
//! ([`Config`] and [`Verbosity`], all `global`), the exit status contract
//! ([`Outcome`]) and what the commands share ([`Context`], [`Window`]).
//!
//! The contract, for every command:
//! - exit status 0: done; 1: the check ran and found a difference (`verify`,
//!   `reconcile`); 2: could not run (bad usage, an error, or not all of what
//!   was asked was done) — see [`EXIT_STATUS`];
//! - with `--json` (on every command that reports), stdout is JSON only;
//!   hints, questions and progress go to stderr;
//! - progress bars only when stderr is a terminal;
//! - logs on stderr, human-readable on a terminal, JSON lines otherwise
//!   ([`crate::telemetry`]), level from `-v`/`-q` or `RUST_LOG`.

#![warn(missing_docs)]

pub mod audit;
pub mod bench;
pub mod demo;
pub mod local;
pub mod migrate;
pub mod progress;
pub mod reconcile;
pub mod redrive;
pub mod register;
pub mod retention;
pub mod run;
pub mod verify;

use std::process::ExitCode;

use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use time::OffsetDateTime;

use crate::audit::time_range::parse_time;
use crate::audit::{AuditQuery, TimeRange};
use crate::config::aws_clients;
use crate::local::StackConfig;
use crate::Config;

/// The exit status contract, shown at the end of every command's `--help`.
pub const EXIT_STATUS: &str = "Exit status: 0 done; 1 the check found a difference (verify, \
reconcile); 2 could not run (bad usage, an error, or not all of what was asked was done).";

/// Every raffle participant saved in DynamoDB reaches the Kafka topic, and
/// the outbox table proves it.
///
/// By default the commands talk to the local stack (DynamoDB Local on
/// 127.0.0.1:$DYNAMODB_LOCAL_PORT); set RAFFLE_OUTBOX_TARGET=aws to use the
/// AWS SDK's own configuration (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_*).
#[derive(Parser)]
#[command(name = "raffle-outbox", version)]
pub struct Cli {
    /// Tables, topic, Kafka and relay settings (global: accepted after any
    /// subcommand; each also read from its environment variable).
    #[command(flatten)]
    pub config: Config,
    /// `-v` / `-q`.
    #[command(flatten)]
    pub verbosity: Verbosity,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands; each variant's arguments and `run()` live in the module of
/// the same name.
#[derive(Subcommand)]
pub enum Command {
    /// The local stack: DynamoDB Local and the Kafka broker (tansu).
    Local(local::LocalArgs),
    /// Create the tables that are not there yet (records what it applied).
    Migrate(migrate::MigrateArgs),
    /// Poll the participants stream, write the outbox and relay it to Kafka.
    Run(run::RunArgs),
    /// Register one participant as `POST /participants` does (same rules):
    /// JSON as the argument, or `-` to read it from stdin. Prints the id.
    Register(register::RegisterArgs),
    /// Local stack up, N sample participants saved, followed to Kafka, reported.
    Demo(demo::DemoArgs),
    /// Measure the performance figures on the local stack (see docs/performance.md).
    Bench(bench::BenchArgs),
    /// Read the outbox: counts, rows by state, one row, one participant, exports.
    Audit(audit::AuditArgs),
    /// FAILED rows back to PENDING, so the relay sends them again.
    ///
    /// By --id, or every FAILED row matching the filters (asks first unless
    /// --yes). REJECTED rows cannot be redriven.
    Redrive(redrive::RedriveArgs),
    /// Check every DELIVERED row against the topic: a message at its
    /// partition and offset with its key, outbox id and timestamp. Exits 1
    /// if anything is missing or different.
    Verify(verify::VerifyArgs),
    /// Every participant accounted for: each participant in the participants
    /// table (parallel Scan) classified by its outbox rows as delivered,
    /// pending, failed, rejected, young (no row yet, saved within the grace
    /// window) or missing (no row). Prints the missing ids and a summary.
    ///
    /// Exits 0 when nothing is missing (or every missing participant was
    /// repaired) and --verify is clean; 1 when something is missing or a
    /// message is not where its row says.
    Reconcile(reconcile::ReconcileArgs),
    /// Bring the DELIVERED rows' `expires_at` in line with RETENTION_DAYS
    /// (unset: keep forever, so `expires_at` is removed).
    Retention(retention::RetentionArgs),
}

impl Command {
    /// Whether the command runs as the Lambdas do, on a one-thread runtime
    /// (`current_thread`, as in `src/bin/relay.rs`): `run` (the two
    /// Lambdas' work in one loop) and the bench's relay Lambda child, whose
    /// CPU time stands for the relay Lambda's. On a fraction of a vCPU a
    /// multi-thread runtime spends about a tenth of the relay's CPU time
    /// waking its workers. The other commands get a multi-thread runtime.
    pub fn runs_as_a_lambda(&self) -> bool {
        match self {
            Command::Run(_) => true,
            Command::Bench(args) => args.relay_events.is_some(),
            _ => false,
        }
    }
}

/// How much the commands log on stderr. Without either flag, `RUST_LOG`
/// decides (default `info`); either flag overrides `RUST_LOG`.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct Verbosity {
    /// More log lines: -v debug, -vv trace.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Fewer log lines: -q warnings and errors only, -qq errors only.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
}

impl Verbosity {
    /// The `tracing` directive the flags ask for, or `None` without flags
    /// (then `RUST_LOG` or the default applies).
    pub fn directive(&self) -> Option<&'static str> {
        match (self.verbose, self.quiet) {
            (0, 0) => None,
            (1, _) => Some("debug"),
            (v, _) if v >= 2 => Some("trace"),
            (_, 1) => Some("warn"),
            _ => Some("error"),
        }
    }
}

impl Cli {
    /// The command line as clap sees it: the derived one, with every
    /// [`Config`] option made `global` (accepted after any subcommand and
    /// listed in its `--help` under "Configuration") and [`EXIT_STATUS`] at
    /// the end of every command's `--help`.
    pub fn command_line() -> clap::Command {
        let config_ids: Vec<clap::Id> = Config::augment_args(clap::Command::new("config"))
            .get_arguments()
            .map(|arg| arg.get_id().clone())
            .collect();
        let command = Cli::command().mut_args(|arg| {
            if config_ids.contains(arg.get_id()) {
                arg.global(true).help_heading("Configuration")
            } else {
                arg
            }
        });
        with_exit_status(command)
    }

    /// Parses `args` (the program name first) against [`Cli::command_line`].
    /// Refuses what clap refuses: usage errors, and `--help`/`--version`
    /// (which the caller prints with [`clap::Error::exit`]).
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Cli::command_line().try_get_matches_from(args)?;
        Cli::from_arg_matches(&matches)
    }
}

/// [`EXIT_STATUS`] after the help of `command` and of all its subcommands.
fn with_exit_status(command: clap::Command) -> clap::Command {
    command
        .after_help(EXIT_STATUS)
        .mut_subcommands(with_exit_status)
}

/// How a command ended, as its exit status (see [`EXIT_STATUS`]). An `Err`
/// from a command's `run()` is exit status 2 too, printed as `error: …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0: done.
    Done,
    /// 1: the check ran to its end and found a difference (`verify`,
    /// `reconcile`).
    Difference,
    /// 2: not all of what was asked was done (a row asked for could not be
    /// redriven, a bulk redrive was declined, the demo did not deliver every
    /// participant); the command has printed why.
    NotDone,
}

impl Outcome {
    /// The process exit status for this outcome.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(self.status())
    }

    /// The number behind [`Outcome::exit_code`]: 0, 1 or 2.
    pub fn status(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::Difference => 1,
            Outcome::NotDone => COULD_NOT_RUN,
        }
    }
}

/// Exit status 2: the command could not run.
pub const COULD_NOT_RUN: u8 = 2;

/// What every command's `run()` is given: the configuration and where the
/// local stack is.
#[derive(Debug, Clone)]
pub struct Context {
    /// Tables, topic, Kafka and relay settings (flags and environment).
    pub config: Config,
    /// The local stack's home and ports (environment only).
    pub stack: StackConfig,
}

impl Context {
    /// A DynamoDB client from the AWS SDK's configuration (the local stack's
    /// endpoint unless `RAFFLE_OUTBOX_TARGET=aws`). No request is sent.
    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_clients().await.0
    }

    /// The audit's reader of the configured outbox table. No request is sent.
    pub async fn audit_query(&self) -> AuditQuery {
        AuditQuery::new(self.dynamodb().await, &self.config.outbox_table)
    }
}

/// `--since` / `--until` on a row's `created_at`: RFC 3339 or a UTC date.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct Window {
    /// Rows created at or after this time.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<OffsetDateTime>,
    /// Rows created before this time.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<OffsetDateTime>,
}

impl Window {
    /// The window as the audit's [`TimeRange`] (open ends where unset).
    pub fn range(&self) -> TimeRange {
        TimeRange::new(self.since, self.until)
    }
}

/// Prints `value` as one line of JSON on stdout (what `--json` promises).
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relay Lambda runs on one thread; so do `run` and the bench's
    /// child that stands for the relay Lambda, and only they.
    #[test]
    fn run_and_the_bench_relay_child_run_on_one_thread_as_the_lambdas_do() {
        let one_thread = |args: &[&str]| {
            let args = std::iter::once("raffle-outbox").chain(args.iter().copied());
            Cli::try_parse_args(args)
                .unwrap()
                .command
                .runs_as_a_lambda()
        };
        assert!(one_thread(&["run"]));
        assert!(one_thread(&["bench", "--relay-events", "events.json"]));
        assert!(!one_thread(&["bench"]));
        assert!(!one_thread(&["demo"]));
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command_line().debug_assert();
    }

    #[test]
    fn configuration_flags_are_accepted_after_any_subcommand() {
        let cli = Cli::try_parse_args([
            "raffle-outbox",
            "audit",
            "summary",
            "--outbox-table",
            "elsewhere",
        ])
        .unwrap();
        assert_eq!(cli.config.outbox_table, "elsewhere");
        let cli =
            Cli::try_parse_args(["raffle-outbox", "--kafka-topic", "t", "verify", "-q"]).unwrap();
        assert_eq!(cli.config.kafka_topic, "t");
        assert_eq!(cli.verbosity.directive(), Some("warn"));
    }

    #[test]
    fn verbosity_flags_map_to_levels() {
        let v = |verbose, quiet| Verbosity { verbose, quiet }.directive();
        assert_eq!(v(0, 0), None);
        assert_eq!(v(1, 0), Some("debug"));
        assert_eq!(v(3, 0), Some("trace"));
        assert_eq!(v(0, 1), Some("warn"));
        assert_eq!(v(0, 2), Some("error"));
    }

    #[test]
    fn outcomes_are_the_documented_exit_statuses() {
        assert_eq!(Outcome::Done.status(), 0);
        assert_eq!(Outcome::Difference.status(), 1);
        assert_eq!(Outcome::NotDone.status(), 2);
    }
}
