//! `raffle-outbox demo`: the local stack up, sample participants saved into
//! tables of the demo's own, followed to a topic of its own and reported
//! ([`crate::demo`]). The tables and topic are deleted after (unless
//! `--keep`), so the shared stack does not grow with every demo.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{Context, Outcome};
use crate::local;
use crate::outbox::OutboxStore;
use crate::pipeline::Pipeline;
use crate::{demo, migrate};

/// `demo`'s arguments.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Sample participants to save.
    #[arg(long, default_value_t = 100)]
    pub participants: usize,
    /// Keep the demo's tables and topic afterwards (printed, to inspect with
    /// `audit` and `verify`); by default they are deleted.
    #[arg(long)]
    pub keep: bool,
}

impl DemoArgs {
    /// Brings the stack up (installing on first use), creates the demo's
    /// tables (`demo_participants_<id>`, `demo_outbox_<id>`) and topic
    /// (`demo-<id>`, 3 partitions), saves N sample participants, runs the
    /// pipeline until idle (3 s), and prints the rows by status, where the
    /// first five went, and `D of N DELIVERED; … sends in T s`, T timed from
    /// the first save to the last DELIVERED mark (the stack's start and the
    /// install are not counted). Then deletes the tables and topic unless
    /// `--keep`. Exit status 2 unless every participant was DELIVERED.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<Outcome> {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let mut config = ctx.config.clone();
        config.participants_table = format!("demo_participants_{id}");
        config.outbox_table = format!("demo_outbox_{id}");
        config.kafka_topic = format!("demo-{id}");
        let ctx = Context {
            config,
            stack: ctx.stack.clone(),
        };
        let outcome = self.show(&ctx).await;
        if self.keep {
            let c = &ctx.config;
            println!(
                "\nkept: PARTICIPANTS_TABLE={} OUTBOX_TABLE={} KAFKA_TOPIC={} (e.g. `raffle-outbox verify --outbox-table {} --kafka-topic {}`)",
                c.participants_table, c.outbox_table, c.kafka_topic, c.outbox_table, c.kafka_topic
            );
        } else if let Err(error) = clean_up(&ctx).await {
            eprintln!("the demo's tables and topic could not all be deleted: {error:#}");
        }
        outcome
    }

    async fn show(&self, ctx: &Context) -> anyhow::Result<Outcome> {
        let (config, n) = (&ctx.config, self.participants);
        local::up(&ctx.stack).await?;
        local::ensure_topic(&ctx.stack, &config.kafka_topic, 3).await?;
        let dynamodb = ctx.dynamodb().await;
        migrate::migrate(&dynamodb, config).await?;

        let (ids, items): (Vec<String>, Vec<serde_json::Value>) =
            (0..n).map(demo::sample_participant).unzip();
        let ids: HashSet<String> = ids.into_iter().collect();
        let mut pipeline = Pipeline::connect(config).await?;
        let started = OffsetDateTime::now_utc();
        demo::save_all(&dynamodb, &config.participants_table, items).await?;
        println!("saved {n} participants into {}", config.participants_table);
        let report = pipeline.run(Some(Duration::from_secs(3))).await?;
        let rows = OutboxStore::new(dynamodb, &config.outbox_table)
            .scan_all()
            .await?;
        let last_mark = rows
            .iter()
            .filter_map(|r| r.delivered_at.as_deref())
            .filter_map(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
            .max()
            .unwrap_or(started);
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
            "\n{} of {n} DELIVERED; {} stream records read, {} sends in {:.1} s (first save to last DELIVERED mark)",
            summary.delivered(),
            report.stream_records,
            report.relay.delivered,
            (last_mark - started).as_seconds_f64().max(0.0)
        );
        Ok(match summary.delivered() == n {
            true => Outcome::Done,
            false => Outcome::NotDone,
        })
    }
}

/// Deletes the demo's topic and its two tables (what exists of them).
async fn clean_up(ctx: &Context) -> anyhow::Result<()> {
    let config = &ctx.config;
    let topic = local::delete_topic(&ctx.stack, &config.kafka_topic).await;
    let dynamodb = ctx.dynamodb().await;
    for table in [&config.participants_table, &config.outbox_table] {
        match dynamodb.delete_table().table_name(table).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(e) => anyhow::bail!(
                "deleting table {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            ),
        }
    }
    topic.with_context(|| format!("deleting topic {}", config.kafka_topic))
}
