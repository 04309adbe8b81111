//! The operator's command line: the local stack, migrations, the local
//! pipeline and the demo.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use raffle_outbox::config::{aws_clients, default_to_local_stack};
use raffle_outbox::local::{self, StackConfig};
use raffle_outbox::outbox::OutboxStore;
use raffle_outbox::register::Registrar;
use raffle_outbox::{demo, migrate, pipeline::Pipeline, telemetry, Config};

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
        /// The participant: {"name", "email", "raffle", optional "tickets", "id"}.
        json: String,
    },
    /// Local stack up, N sample participants saved, followed to Kafka, reported.
    Demo {
        #[arg(long, default_value_t = 100)]
        participants: usize,
    },
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
            ExitCode::FAILURE
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
            println!("{report:?}");
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
            match registrar.register(&json).await {
                Ok(registration) => println!("{}", registration.id),
                Err(error) => {
                    eprintln!("error: {error}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Demo { participants } => return demo(&stack, &config, participants).await,
    }
    Ok(ExitCode::SUCCESS)
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
