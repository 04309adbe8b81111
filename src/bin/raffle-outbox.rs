//! The operator's command line: the local stack, migrations, the local
//! pipeline and the demo; the audit, redrive, verify and retention.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use raffle_outbox::audit::export::{self, Format};
use raffle_outbox::audit::record::Record;
use raffle_outbox::audit::show::{list_line, render_row, row_json, LIST_HEADER};
use raffle_outbox::audit::summary::Summary;
use raffle_outbox::audit::time_range::parse_time;
use raffle_outbox::audit::{parse_status, AuditQuery, Pages, TimeRange};
use raffle_outbox::config::{aws_clients, default_to_local_stack};
use raffle_outbox::kafka::auth::KafkaAuth;
use raffle_outbox::local::{self, StackConfig};
use raffle_outbox::outbox::OutboxStore;
use raffle_outbox::outbox::Status;
use raffle_outbox::register::Registrar;
use raffle_outbox::{demo, migrate, pipeline::Pipeline, telemetry, Config};
use raffle_outbox::{reconcile, redrive, retention, verify};
use time::OffsetDateTime;

/// Every raffle participant saved in DynamoDB reaches the Kafka topic, and
/// the outbox table proves it.
///
/// By default the commands talk to the local stack (DynamoDB Local on
/// 127.0.0.1:$DYNAMODB_LOCAL_PORT); set RAFFLE_OUTBOX_TARGET=aws to use the
/// AWS SDK's own configuration (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_*).
#[derive(Parser)]
#[command(name = "raffle-outbox", version)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The local stack: DynamoDB Local and the Kafka broker (tansu).
    Local {
        #[command(subcommand)]
        action: LocalAction,
    },
    /// Create the tables that are not there yet (records what it applied).
    Migrate,
    /// Poll the participants stream, write the outbox and relay it to Kafka.
    Run {
        /// Exit once nothing happened for --idle-seconds.
        #[arg(long)]
        until_idle: bool,
        #[arg(long, default_value_t = 3)]
        idle_seconds: u64,
    },
    /// Register one participant as `POST /participants` does (same rules):
    /// JSON as the argument, or `-` to read it from stdin. Prints the id.
    Register {
        /// The participant: {"name", "email", "raffle", optional "tickets", optional "id" (a UUID)}.
        json: String,
    },
    /// Local stack up, N sample participants saved, followed to Kafka, reported.
    Demo {
        #[arg(long, default_value_t = 100)]
        participants: usize,
    },
    /// Measure the performance figures on the local stack (see README).
    Bench {
        #[arg(long, default_value_t = 20_000)]
        participants: usize,
        /// Also measure `audit export` of this many seeded outbox rows
        /// (0: skip; the README's figure is for 100,000).
        #[arg(long, default_value_t = 0)]
        export_rows: usize,
        /// Also measure `reconcile` over this many seeded participants
        /// (0: skip; the README's figure is for 100,000).
        #[arg(long, default_value_t = 0)]
        reconcile_participants: usize,
        /// Also register this many participants through the register
        /// handler, with Idempotency-Key retries (0: skip).
        #[arg(long, default_value_t = 0)]
        register_participants: usize,
        /// Clients registering at once (--register-participants).
        #[arg(long, default_value_t = 32)]
        register_clients: usize,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read the outbox: counts, rows by state, one row, one participant, exports.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// FAILED rows back to PENDING, so the relay sends them again.
    ///
    /// By --id, or every FAILED row matching the filters (asks first unless
    /// --yes). REJECTED rows cannot be redriven.
    Redrive(RedriveArgs),
    /// Check every DELIVERED row against the topic: a message at its
    /// partition and offset with its key, outbox id and timestamp. Exits 1
    /// if anything is missing or different.
    Verify {
        #[command(flatten)]
        window: Window,
    },
    /// Every participant accounted for: each participant in the participants
    /// table (parallel Scan) classified by its outbox rows as delivered,
    /// pending, failed, rejected, young (no row yet, saved within the grace
    /// window) or missing (no row). Prints the missing ids and a summary.
    ///
    /// Exit status: 0 nothing missing (or every missing participant
    /// repaired) and --verify clean; 1 something missing or a message not
    /// where its row says; 2 it could not run.
    Reconcile(ReconcileArgs),
    /// Bring the DELIVERED rows' `expires_at` in line with RETENTION_DAYS
    /// (unset: keep forever, so `expires_at` is removed).
    Retention {
        /// Days a DELIVERED row is kept after delivery (default: RETENTION_DAYS;
        /// neither set: kept forever). At least 2: a row must outlive its
        /// stream record, which can be replayed for 24 h.
        #[arg(long, value_parser = retention::parse_days)]
        days: Option<u32>,
        /// Count what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `--since` / `--until` on a row's `created_at`: RFC 3339 or a UTC date.
#[derive(Args)]
struct Window {
    /// Rows created at or after this time.
    #[arg(long, value_parser = parse_time)]
    since: Option<OffsetDateTime>,
    /// Rows created before this time.
    #[arg(long, value_parser = parse_time)]
    until: Option<OffsetDateTime>,
}

impl Window {
    fn range(&self) -> TimeRange {
        TimeRange::new(self.since, self.until)
    }
}

#[derive(Subcommand)]
enum AuditAction {
    /// Rows per state, the oldest PENDING row's age, the FAILED count.
    Summary {
        #[arg(long)]
        json: bool,
    },
    /// Rows in one state, oldest first.
    List {
        #[arg(long, value_parser = parse_status)]
        status: Status,
        #[command(flatten)]
        window: Window,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One row, whole: send response, errors, redrive history, payload.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Every outbox row of one participant.
    Participant {
        participant_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Rows as CSV or JSON lines, streamed (columns: see README "Operating").
    Export {
        #[arg(long, value_enum)]
        format: Format,
        /// States to export (repeat the flag); default every state.
        #[arg(long, value_parser = parse_status)]
        status: Vec<Status>,
        #[command(flatten)]
        window: Window,
        /// Write here instead of stdout.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Args)]
struct RedriveArgs {
    /// The row to redrive (repeat for several).
    #[arg(long, conflicts_with_all = ["since", "until", "error_contains"])]
    id: Vec<String>,
    #[command(flatten)]
    window: Window,
    /// Only rows whose last error contains this text.
    #[arg(long)]
    error_contains: Option<String>,
    /// At most this many rows.
    #[arg(long)]
    limit: Option<usize>,
    /// Show what would be redriven; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask before a bulk redrive.
    #[arg(long)]
    yes: bool,
}

#[derive(Args)]
struct ReconcileArgs {
    /// Participants registered at or after this time (`registered_at`;
    /// RFC 3339 or a UTC date). With --since/--until, participants without
    /// `registered_at` are left out.
    #[arg(long, value_parser = parse_time)]
    since: Option<OffsetDateTime>,
    /// Participants registered before this time.
    #[arg(long, value_parser = parse_time)]
    until: Option<OffsetDateTime>,
    /// A participant without a row counts as young, not missing, this long
    /// after `registered_at` (its stream record may still be on its way).
    #[arg(long, default_value_t = 300)]
    grace_seconds: u64,
    /// Write a PENDING outbox row for each missing participant, built from
    /// its current item as the stream handler would (a dry run unless --yes).
    #[arg(long)]
    repair: bool,
    /// With --repair: write the rows (without it, only say what would be written).
    #[arg(long, requires = "repair")]
    yes: bool,
    /// Also check every DELIVERED row found against the topic, as `verify` does.
    #[arg(long)]
    verify: bool,
    /// One JSON object on stdout instead of the text report.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum LocalAction {
    /// Install on first use, start, create the topic and apply migrations.
    Up,
    /// Stop what `up` started.
    Down,
    /// Say what runs where.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stack = StackConfig::from_env();
    if std::env::var("RAFFLE_OUTBOX_TARGET").as_deref() != Ok("aws") {
        default_to_local_stack(&stack.dynamodb_endpoint());
    }
    telemetry::init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(execute(cli, stack)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn execute(cli: Cli, stack: StackConfig) -> anyhow::Result<ExitCode> {
    let config = cli.config;
    match cli.command {
        Command::Local {
            action: LocalAction::Up,
        } => {
            local_up(&stack, &config).await?;
            print_status(&local::status(&stack).await?);
        }
        Command::Local {
            action: LocalAction::Down,
        } => local::down(&stack).await?,
        Command::Local {
            action: LocalAction::Status,
        } => print_status(&local::status(&stack).await?),
        Command::Migrate => {
            let (dynamodb, _) = aws_clients().await;
            let applied = migrate::migrate(&dynamodb, &config).await?;
            println!(
                "{} migration(s) applied: {}",
                applied.len(),
                applied.join(", ")
            );
        }
        Command::Run {
            until_idle,
            idle_seconds,
        } => {
            let idle = until_idle.then(|| Duration::from_secs(idle_seconds));
            let report = Pipeline::connect(&config).await?.run(idle).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Register { json } => {
            let json = if json == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                json
            };
            let (dynamodb, _) = aws_clients().await;
            let registrar = Registrar::new(
                dynamodb,
                &config.participants_table,
                config.max_message_bytes,
            );
            match registrar.register(&json, None).await {
                Ok(registration) => println!("{}", registration.id),
                Err(error) => {
                    eprintln!("error: {error}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Demo { participants } => return demo(&stack, &config, participants).await,
        Command::Bench {
            participants,
            export_rows,
            reconcile_participants,
            register_participants,
            register_clients,
            json,
        } => {
            let figures = raffle_outbox::bench::run(
                &config,
                &stack,
                participants,
                export_rows,
                reconcile_participants,
                Some((register_participants, register_clients)),
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string(&figures)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&figures)?);
            }
        }
        Command::Audit { action } => audit(&audit_query(&config).await, action).await?,
        Command::Redrive(args) => return redrive(&audit_query(&config).await, args).await,
        Command::Verify { window } => {
            let query = audit_query(&config).await;
            let bar = export::progress_bar("DELIVERED rows verified");
            let report = verify::verify(
                &query,
                &config.kafka_bootstrap_servers,
                KafkaAuth::from_config(&config).await?,
                window.range(),
                &mut |problem| println!("{problem}"),
                &|n| progress(&bar, n),
            )
            .await?;
            println!("{report}");
            if !report.is_clean() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Reconcile(args) => return reconcile(&config, args).await,
        Command::Retention { days, dry_run } => {
            let days = days.or(config.retention_days);
            let query = audit_query(&config).await;
            let outbox =
                raffle_outbox::outbox::OutboxStore::new(query.client().clone(), query.table());
            let report = retention::apply(&query, &outbox, days, dry_run, &|_| {}).await?;
            let policy = days.map_or("keep forever".to_string(), |d| {
                format!("{d} days after delivery")
            });
            let verb = if dry_run { "would be" } else { "were" };
            println!(
                "retention: {policy}; DELIVERED rows: {} {verb} given expires_at, {} {verb} cleared of it, {} already right",
                report.set, report.removed, report.unchanged
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit_query(config: &Config) -> AuditQuery {
    let (dynamodb, _) = aws_clients().await;
    AuditQuery::new(dynamodb, &config.outbox_table)
}

fn progress(bar: &Option<indicatif::ProgressBar>, n: u64) {
    if let Some(bar) = bar {
        bar.set_position(n);
    }
}

async fn audit(query: &AuditQuery, action: AuditAction) -> anyhow::Result<()> {
    match action {
        AuditAction::Summary { json } => {
            let summary = Summary::read(query, OffsetDateTime::now_utc()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", summary.render());
            }
        }
        AuditAction::List {
            status,
            window,
            limit,
            json,
        } => {
            print_rows(
                query.by_status(status, window.range(), None),
                Some(limit),
                json,
            )
            .await?
        }
        AuditAction::Participant {
            participant_id,
            json,
        } => print_rows(query.by_participant(&participant_id), None, json).await?,
        AuditAction::Show { id, json } => {
            let item = query
                .item(&id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no outbox row {id} in {}", query.table()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&row_json(&item)?)?);
            } else {
                print!("{}", render_row(&item)?);
            }
        }
        AuditAction::Export {
            format,
            status,
            window,
            output,
        } => {
            let statuses = if status.is_empty() {
                Status::ALL.to_vec()
            } else {
                status
            };
            let mut out: Box<dyn std::io::Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let bar = export::progress_bar("rows exported");
            let started = Instant::now();
            let rows = export::export(query, &statuses, window.range(), format, &mut out, &|n| {
                progress(&bar, n)
            })
            .await?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "{rows} rows exported in {seconds:.1} s ({:.0} rows/s)",
                rows as f64 / seconds.max(0.001)
            );
        }
    }
    Ok(())
}

/// Prints the pages' rows as a table (or JSON lines), at most `limit`.
async fn print_rows(mut pages: Pages, limit: Option<usize>, json: bool) -> anyhow::Result<()> {
    let limit = limit.unwrap_or(usize::MAX);
    let mut printed = 0;
    if !json {
        println!("{LIST_HEADER}");
    }
    while let Some(page) = pages.next().await? {
        for row in page {
            if printed == limit {
                // A hint, not a row: stderr, so `--json` keeps stdout JSON only.
                eprintln!("… more rows: raise --limit, or use `audit export`");
                return Ok(());
            }
            if json {
                println!("{}", serde_json::to_string(&Record::of(&row))?);
            } else {
                println!("{}", list_line(&row));
            }
            printed += 1;
        }
    }
    if !json {
        println!("{printed} row(s)");
    }
    Ok(())
}

async fn redrive(query: &AuditQuery, args: RedriveArgs) -> anyhow::Result<ExitCode> {
    let selection = redrive::Selection {
        ids: args.id,
        range: args.window.range(),
        error_contains: args.error_contains,
        limit: args.limit,
    };
    let plan = redrive::plan(query, &selection).await?;
    for refusal in &plan.refused {
        println!("cannot redrive {}: {}", refusal.id, refusal.reason);
    }
    for c in &plan.candidates {
        println!(
            "{} {} participant {} created {} attempts {}: {}",
            if args.dry_run {
                "would redrive"
            } else {
                "redrive"
            },
            c.id,
            c.participant_id.as_deref().unwrap_or("-"),
            c.created_at,
            c.attempts,
            c.last_error.as_deref().unwrap_or("-")
        );
    }
    let n = plan.candidates.len();
    if args.dry_run || n == 0 {
        println!(
            "{n} FAILED row(s) {}redriven",
            if args.dry_run { "would be " } else { "" }
        );
        return Ok(refused_code(&plan));
    }
    if selection.is_bulk() && !args.yes {
        let question = format!("Redrive these {n} FAILED row(s) to PENDING?");
        if !redrive::confirm(
            &question,
            &mut std::io::stdin().lock(),
            &mut std::io::stderr(),
        )? {
            println!("nothing redriven");
            return Ok(ExitCode::FAILURE);
        }
    }
    let outbox = raffle_outbox::outbox::OutboxStore::new(query.client().clone(), query.table());
    let outcome = redrive::redrive(
        &outbox,
        &plan.candidates,
        OffsetDateTime::now_utc(),
        &|_| {},
    )
    .await?;
    for id in &outcome.changed {
        println!("not redriven {id}: the row changed since it was read (see `audit show {id}`)");
    }
    println!(
        "{} row(s) redriven FAILED → PENDING; the relay sends them on its next sweep",
        outcome.redriven.len()
    );
    Ok(if outcome.changed.is_empty() {
        refused_code(&plan)
    } else {
        ExitCode::FAILURE
    })
}

async fn reconcile(config: &Config, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let (dynamodb, _) = aws_clients().await;
    let tables = reconcile::Tables::new(dynamodb.clone(), config);
    let options = reconcile::Options {
        range: TimeRange::new(args.since, args.until),
        grace: Duration::from_secs(args.grace_seconds),
        repair: args.repair && args.yes,
        verify: args.verify,
    };
    let json = args.json;
    let bar = reconcile_bar(json);
    let mut problems = Vec::new();
    let mut on_problem = |p: &verify::Problem| problems.push(p.to_string());
    let mut verifier = if args.verify {
        Some(verify::Verifier::new(
            &config.kafka_bootstrap_servers,
            KafkaAuth::from_config(config).await?,
            &mut on_problem,
        ))
    } else {
        None
    };
    let repair_word = if !args.repair {
        ""
    } else if args.yes {
        " (repairing)"
    } else {
        " (would repair: dry run, add --yes)"
    };
    let mut on_missing = |id: &str| {
        if !json {
            let line = format!("missing {id}{repair_word}");
            match &bar {
                Some(bar) => bar.println(line),
                None => println!("{line}"),
            }
        }
    };
    let report = reconcile::reconcile(
        &tables,
        &options,
        verifier.as_mut(),
        &mut on_missing,
        &|n, total| {
            if let Some(bar) = &bar {
                bar.set_length(total.max(n));
            }
            progress(&bar, n)
        },
    )
    .await?;
    drop(verifier);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for problem in &problems {
            println!("{problem}");
        }
        print!("{}", report.render());
        if args.repair && !args.yes && report.count(reconcile::Class::Missing) > 0 {
            println!(
                "dry run: {} row(s) would be written; run again with --repair --yes",
                report.count(reconcile::Class::Missing)
            );
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A progress bar over the participants table's item count (set as
/// reconcile reads it), on a terminal and without `--json`.
fn reconcile_bar(json: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal as _;
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {human_pos}/{human_len} participants ({per_sec}, ETA {eta})",
        )
        .expect("a valid template"),
    );
    Some(bar)
}

/// Non-zero when a row asked for by id could not be redriven.
fn refused_code(plan: &redrive::Plan) -> ExitCode {
    if plan.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `local up` and the first half of the demo: servers, topic, tables.
async fn local_up(stack: &StackConfig, config: &Config) -> anyhow::Result<()> {
    local::up(stack).await?;
    local::ensure_topic(stack, &config.kafka_topic, 3).await?;
    let (dynamodb, _) = aws_clients().await;
    migrate::migrate(&dynamodb, config).await?;
    Ok(())
}

fn print_status(services: &[local::ServiceStatus]) {
    for s in services {
        let state = if s.running { "running" } else { "stopped" };
        let pid = s.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
        let ours = if s.running && !s.started_by_us {
            " (not started by us)"
        } else {
            ""
        };
        println!("{:<15} {:<22} {state}{pid}{ours}", s.name, s.address);
    }
}

async fn demo(stack: &StackConfig, config: &Config, n: usize) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    local_up(stack, config).await?;
    let (dynamodb, _) = aws_clients().await;

    let (ids, items): (Vec<String>, Vec<serde_json::Value>) =
        (0..n).map(demo::sample_participant).unzip();
    let ids: HashSet<String> = ids.into_iter().collect();
    demo::save_all(&dynamodb, &config.participants_table, items).await?;
    println!("saved {n} participants into {}", config.participants_table);

    let report = Pipeline::connect(config)
        .await?
        .run(Some(Duration::from_secs(3)))
        .await?;
    let rows = OutboxStore::new(dynamodb, &config.outbox_table)
        .scan_all()
        .await?;
    let summary = demo::Summary::of(rows, &ids);

    println!("\noutbox rows of this demo's {n} participants, by status:");
    for (status, count) in &summary.counts {
        println!("  {status:<10} {count}");
    }
    println!(
        "\nparticipant → {} partition/offset (first 5):",
        config.kafka_topic
    );
    for row in summary
        .rows
        .iter()
        .filter(|r| r.kafka_offset.is_some())
        .take(5)
    {
        println!(
            "  {} → partition {} offset {}",
            row.participant_id.as_deref().unwrap_or("?"),
            row.kafka_partition.unwrap_or(-1),
            row.kafka_offset.unwrap_or(-1)
        );
    }
    println!(
        "\n{} of {n} DELIVERED; {} stream records read, {} sends in {:.1} s",
        summary.delivered(),
        report.stream_records,
        report.relay.delivered,
        started.elapsed().as_secs_f64()
    );
    Ok(if summary.delivered() == n {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
