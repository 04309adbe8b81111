//! `raffle-outbox local up|down|status|reset`: the local stack (DynamoDB
//! Local and the tansu broker, see [`crate::local`]).

use clap::{Args, Subcommand};

use super::{Context, Outcome};
use crate::local::{self, ServiceStatus};
use crate::migrate;

/// `local`'s arguments: what to do with the stack.
#[derive(Args, Debug)]
pub struct LocalArgs {
    /// What to do with the stack.
    #[command(subcommand)]
    pub action: LocalAction,
}

/// The `local` subcommands.
#[derive(Subcommand, Debug)]
pub enum LocalAction {
    /// Install on first use, start, create the topic and apply migrations.
    Up {
        /// The services as a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop what `up` started.
    Down,
    /// Say what runs where.
    Status {
        /// The services as a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop what `up` started and delete the stack's stored data: the
    /// broker's topics and records, DynamoDB Local's tables. Installs are
    /// kept; the next `up` starts empty.
    Reset {
        /// What was deleted as one JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
}

impl LocalArgs {
    /// Runs the action and prints its result (`up`, `status`: one line per
    /// service, or a JSON array with `--json`; `reset`: what it deleted).
    /// Fails (exit 2) when a service cannot be installed, started or
    /// stopped, and `reset` when a service it did not start still answers
    /// (it deletes nothing then).
    pub async fn run(self, ctx: &Context) -> anyhow::Result<Outcome> {
        match self.action {
            LocalAction::Up { json } => {
                up(ctx).await?;
                print_status(&local::status(&ctx.stack).await?, json)?;
            }
            LocalAction::Down => local::down(&ctx.stack).await?,
            LocalAction::Status { json } => print_status(&local::status(&ctx.stack).await?, json)?,
            LocalAction::Reset { json } => {
                let report = local::reset(&ctx.stack).await?;
                if json {
                    super::print_json(&report)?;
                } else {
                    println!("{report}");
                }
            }
        }
        Ok(Outcome::Done)
    }
}

/// `local up` and the first half of the demo: servers, the configured topic
/// (3 partitions), tables migrated.
async fn up(ctx: &Context) -> anyhow::Result<()> {
    local::up(&ctx.stack).await?;
    local::ensure_topic(&ctx.stack, &ctx.config.kafka_topic, 3).await?;
    migrate::migrate(&ctx.dynamodb().await, &ctx.config).await?;
    Ok(())
}

fn print_status(services: &[ServiceStatus], json: bool) -> anyhow::Result<()> {
    if json {
        return super::print_json(&services);
    }
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
    Ok(())
}
