//! `raffle-outbox reconcile`: every participant accounted for by its outbox
//! rows ([`crate::reconcile`]).

use std::time::Duration;

use clap::Args;
use time::OffsetDateTime;

use super::progress::Progress;
use super::{Context, Outcome};
use crate::audit::time_range::parse_time;
use crate::audit::TimeRange;
use crate::kafka::auth::KafkaAuth;
use crate::reconcile::{self, Class};
use crate::verify;

/// `reconcile`'s arguments.
#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// Participants registered at or after this time (`registered_at`;
    /// RFC 3339 or a UTC date). With --since/--until, participants without
    /// `registered_at` are left out.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<OffsetDateTime>,
    /// Participants registered before this time.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<OffsetDateTime>,
    /// A participant without a row counts as young, not missing, this long
    /// after `registered_at` (its stream record may still be on its way).
    #[arg(long, default_value_t = 300)]
    pub grace_seconds: u64,
    /// Write a PENDING outbox row for each missing participant, built from
    /// its current item as the stream handler would (a dry run unless --yes).
    #[arg(long)]
    pub repair: bool,
    /// With --repair: write the rows (without it, only say what would be written).
    #[arg(long, requires = "repair")]
    pub yes: bool,
    /// Also check every DELIVERED row found against the topic, as `verify` does.
    #[arg(long)]
    pub verify: bool,
    /// One JSON object on stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
}

impl ReconcileArgs {
    /// Scans the participants table (parallel segments), classifies each
    /// participant by its outbox rows, prints each missing id as found (a
    /// bar over the table's item count on a terminal) and the summary, or
    /// one JSON object with `--json`. With `--repair --yes` writes a PENDING
    /// row for each missing participant. Exit status 1 when a participant
    /// is missing (and was not repaired) or `--verify` found a message not
    /// where its row says; 2 when it could not run.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<Outcome> {
        let config = &ctx.config;
        let tables = reconcile::Tables::new(ctx.dynamodb().await, config);
        let options = reconcile::Options {
            range: TimeRange::new(self.since, self.until),
            grace: Duration::from_secs(self.grace_seconds),
            repair: self.repair && self.yes,
            verify: self.verify,
        };
        let json = self.json;
        let progress = match json {
            true => Progress::hidden(),
            false => Progress::bar(0, "participants"),
        };
        let mut problems = Vec::new();
        let mut on_problem = |p: &verify::Problem| problems.push(p.to_string());
        let mut verifier = match self.verify {
            true => Some(verify::Verifier::new(
                &config.kafka_bootstrap_servers,
                KafkaAuth::from_config(config).await?,
                &mut on_problem,
            )),
            false => None,
        };
        let repair_word = match (self.repair, self.yes) {
            (false, _) => "",
            (true, true) => " (repairing)",
            (true, false) => " (would repair: dry run, add --yes)",
        };
        let mut on_missing = |id: &str| {
            if !json {
                progress.println(format!("missing {id}{repair_word}"));
            }
        };
        let report = reconcile::reconcile(
            &tables,
            &options,
            verifier.as_mut(),
            &mut on_missing,
            &|n, total| {
                progress.set_total(total.max(n));
                progress.set(n);
            },
        )
        .await?;
        drop(verifier);
        progress.finish();
        if json {
            super::print_json(&report)?;
        } else {
            for problem in &problems {
                println!("{problem}");
            }
            print!("{}", report.render());
            let missing = report.count(Class::Missing);
            if self.repair && !self.yes && missing > 0 {
                println!(
                    "dry run: {missing} row(s) would be written; run again with --repair --yes"
                );
            }
        }
        Ok(match report.is_clean() {
            true => Outcome::Done,
            false => Outcome::Difference,
        })
    }
}
