//! `raffle-outbox migrate`: create the tables and indexes that are not there
//! yet ([`crate::migrate`]), recording what it applied.

use std::time::Duration;

use aws_sdk_dynamodb::types::IndexStatus;
use clap::Args;

use super::progress::Progress;
use super::{Context, Outcome};
use crate::migrate;

/// `migrate`'s arguments.
#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// One JSON object (`{"applied": [...]}`) instead of the text line.
    #[arg(long)]
    pub json: bool,
}

impl MigrateArgs {
    /// Applies the migrations not applied yet and prints which (`N
    /// migration(s) applied: …`, or the JSON object). Running it again
    /// applies nothing. On a terminal, a spinner names the indexes still
    /// being built while it waits (an added index backfills: ~70 s each on
    /// DynamoDB Local), read with one DescribeTable per table every 2 s.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<Outcome> {
        let dynamodb = ctx.dynamodb().await;
        let progress = match self.json {
            true => Progress::hidden(),
            false => Progress::spinner("applying migrations"),
        };
        let watch = watch_indexes(&dynamodb, ctx, &progress);
        let applied = tokio::select! {
            applied = migrate::migrate(&dynamodb, &ctx.config) => applied?,
            () = watch => unreachable!("the watch never ends"),
        };
        progress.finish();
        if self.json {
            super::print_json(&serde_json::json!({ "applied": applied }))?;
        } else {
            println!(
                "{} migration(s) applied: {}",
                applied.len(),
                applied.join(", ")
            );
        }
        Ok(Outcome::Done)
    }
}

/// Every 2 s, the indexes of the configured tables that are not ACTIVE yet,
/// as the spinner's message; never returns. Reads nothing when no spinner is
/// shown.
async fn watch_indexes(dynamodb: &aws_sdk_dynamodb::Client, ctx: &Context, progress: &Progress) {
    let tables = [&ctx.config.participants_table, &ctx.config.outbox_table];
    if !progress.is_shown() {
        return std::future::pending().await;
    }
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut building = Vec::new();
        for table in tables {
            let Ok(described) = dynamodb.describe_table().table_name(table).send().await else {
                continue;
            };
            for index in described
                .table
                .and_then(|t| t.global_secondary_indexes)
                .unwrap_or_default()
            {
                if index.index_status != Some(IndexStatus::Active) {
                    let status = index.index_status.map_or("?".into(), |s| s.to_string());
                    let backfilling = match index.backfilling {
                        Some(true) => ", backfilling",
                        _ => "",
                    };
                    building.push(format!(
                        "{table}.{} {status}{backfilling}",
                        index.index_name.unwrap_or_default()
                    ));
                }
            }
        }
        progress.message(match building.is_empty() {
            true => "applying migrations".into(),
            false => format!("building index {}", building.join(", ")),
        });
    }
}
