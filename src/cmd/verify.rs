//! `raffle-outbox verify`: every DELIVERED row checked against the topic
//! ([`crate::verify`]).

use clap::Args;
use serde_json::json;

use super::progress::Progress;
use super::{Context, Outcome, Window};
use crate::kafka::auth::KafkaAuth;
use crate::verify::{self, Finding, Problem};

/// `verify`'s arguments.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The rows' creation window.
    #[command(flatten)]
    pub window: Window,
    /// One JSON object on stdout (the counts, `clean`, and every problem)
    /// instead of lines.
    #[arg(long)]
    pub json: bool,
}

impl VerifyArgs {
    /// Reads every DELIVERED row created in the window (the `by_status`
    /// index) and the topic at each row's partition and offset; prints each
    /// problem (MISSING or DIFFERENT) as it is found and the counts, or one
    /// JSON object with `--json`. Exit status 1 when a row's message is
    /// missing or different, 2 when the table or the broker cannot be read.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<Outcome> {
        let query = ctx.audit_query().await;
        let progress = match self.json {
            true => Progress::hidden(),
            false => Progress::counter("DELIVERED rows verified"),
        };
        let mut problems = Vec::new();
        let json = self.json;
        let report = verify::verify(
            &query,
            &ctx.config.kafka_bootstrap_servers,
            KafkaAuth::from_config(&ctx.config).await?,
            self.window.range(),
            &mut |problem| match json {
                true => problems.push(problem_json(problem)),
                false => progress.println(problem.to_string()),
            },
            &|n| progress.set(n),
        )
        .await?;
        progress.finish();
        if self.json {
            super::print_json(&json!({
                "checked": report.checked,
                "missing": report.missing,
                "different": report.different,
                "clean": report.is_clean(),
                "problems": problems,
            }))?;
        } else {
            println!("{report}");
        }
        Ok(match report.is_clean() {
            true => Outcome::Done,
            false => Outcome::Difference,
        })
    }
}

/// One problem as JSON: the row, where it says its message is, and what is
/// wrong (`missing` with the reason, or `different` with what differs).
fn problem_json(problem: &Problem) -> serde_json::Value {
    let (kind, detail) = match &problem.finding {
        Finding::NoCoordinates => ("missing", json!("the row has no partition/offset")),
        Finding::Missing(reason) => ("missing", json!(reason)),
        Finding::Different(what) => ("different", json!(what)),
    };
    json!({
        "id": problem.row.id,
        "participant_id": problem.row.participant_id,
        "topic": problem.row.kafka_topic,
        "partition": problem.row.kafka_partition,
        "offset": problem.row.kafka_offset,
        "finding": kind,
        "detail": detail,
    })
}
