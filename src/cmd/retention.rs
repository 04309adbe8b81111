//! `raffle-outbox retention`: the DELIVERED rows' `expires_at` brought in
//! line with the retention setting ([`crate::retention`]).

use clap::Args;
use serde_json::json;

use super::progress::Progress;
use super::{Context, Outcome};
use crate::retention;

/// `retention`'s arguments.
#[derive(Args, Debug)]
pub struct RetentionArgs {
    /// Days a DELIVERED row is kept after delivery (default: RETENTION_DAYS;
    /// neither set: kept forever). At least 2: a row must outlive its
    /// stream record, which can be replayed for 24 h.
    #[arg(long, value_parser = retention::parse_days)]
    pub days: Option<u32>,
    /// Count what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// One JSON object on stdout (`days`, `dry_run`, `set`, `removed`,
    /// `unchanged`) instead of the text line.
    #[arg(long)]
    pub json: bool,
}

impl RetentionArgs {
    /// Reads every DELIVERED row (the `by_status` index) and sets, changes or
    /// removes its `expires_at` where it differs from `delivered_at` + days
    /// (removes it when no retention is set), one conditional update per
    /// row (none with `--dry-run`); a counter on a terminal. Prints the
    /// counts, or one JSON object with `--json`. Refuses fewer than 2 days
    /// before reading anything (exit 2).
    pub async fn run(self, ctx: &Context) -> anyhow::Result<Outcome> {
        let days = self.days.or(ctx.config.retention_days);
        let query = ctx.audit_query().await;
        let progress = match self.json {
            true => Progress::hidden(),
            false => Progress::counter(match self.dry_run {
                true => "DELIVERED rows to change",
                false => "DELIVERED rows changed",
            }),
        };
        let outbox = query.outbox();
        let report =
            retention::apply(&query, &outbox, days, self.dry_run, &|n| progress.set(n)).await?;
        progress.finish();
        if self.json {
            super::print_json(&json!({
                "days": days,
                "dry_run": self.dry_run,
                "set": report.set,
                "removed": report.removed,
                "unchanged": report.unchanged,
            }))?;
            return Ok(Outcome::Done);
        }
        let policy = days.map_or("keep forever".to_string(), |d| {
            format!("{d} days after delivery")
        });
        let verb = if self.dry_run { "would be" } else { "were" };
        println!(
            "retention: {policy}; DELIVERED rows: {} {verb} given expires_at, {} {verb} cleared of it, {} already right",
            report.set, report.removed, report.unchanged
        );
        Ok(Outcome::Done)
    }
}
