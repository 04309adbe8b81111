//! `raffle-outbox redrive`: FAILED rows back to PENDING, so the relay sends
//! them again ([`crate::redrive`]).

use clap::Args;
use serde_json::json;
use time::OffsetDateTime;

use super::progress::Progress;
use super::{Context, Outcome, Window};
use crate::redrive::{self, Candidate, Plan, Selection};

/// `redrive`'s arguments: the rows, by id or by filter.
#[derive(Args, Debug)]
pub struct RedriveArgs {
    /// The row to redrive (repeat for several).
    #[arg(long, conflicts_with_all = ["since", "until", "error_contains"])]
    pub id: Vec<String>,
    /// The rows' creation window.
    #[command(flatten)]
    pub window: Window,
    /// Only rows whose last error contains this text.
    #[arg(long)]
    pub error_contains: Option<String>,
    /// At most this many rows.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Show what would be redriven; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before a bulk redrive.
    #[arg(long)]
    pub yes: bool,
    /// One JSON object on stdout (candidates, refused, redriven, changed)
    /// instead of lines; the question of a bulk redrive stays on stderr.
    #[arg(long)]
    pub json: bool,
}

impl RedriveArgs {
    /// Plans (the rows by id, or every FAILED row matching the filters,
    /// oldest first), prints the plan, asks before a bulk redrive unless
    /// `--yes` (on stderr; anything but yes redrives nothing), then moves
    /// each candidate FAILED → PENDING with one conditional update (a bar on
    /// a terminal), and prints what it did. Exit status 2 when a row asked
    /// for by id cannot be redriven (said why), when the question was
    /// declined, or when a row changed between reading and writing.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<Outcome> {
        let query = ctx.audit_query().await;
        let selection = Selection {
            ids: self.id.clone(),
            range: self.window.range(),
            error_contains: self.error_contains.clone(),
            limit: self.limit,
        };
        let plan = redrive::plan(&query, &selection).await?;
        if !self.json {
            self.print_plan(&plan);
        }
        let n = plan.candidates.len();
        let planned = match plan.refused.is_empty() {
            true => Outcome::Done,
            false => Outcome::NotDone,
        };
        if self.dry_run || n == 0 {
            match self.json {
                true => self.print_json(&plan, None, false)?,
                false => println!(
                    "{n} FAILED row(s) {}redriven",
                    if self.dry_run { "would be " } else { "" }
                ),
            }
            return Ok(planned);
        }
        if selection.is_bulk() && !self.yes {
            let question = format!("Redrive these {n} FAILED row(s) to PENDING?");
            let yes = redrive::confirm(
                &question,
                &mut std::io::stdin().lock(),
                &mut std::io::stderr(),
            )?;
            if !yes {
                match self.json {
                    true => self.print_json(&plan, None, true)?,
                    false => println!("nothing redriven"),
                }
                return Ok(Outcome::NotDone);
            }
        }
        let progress = match self.json {
            true => Progress::hidden(),
            false => Progress::bar(n as u64, "rows redriven"),
        };
        let outbox = query.outbox();
        let outcome = redrive::redrive(
            &outbox,
            &plan.candidates,
            OffsetDateTime::now_utc(),
            &|done| progress.set(done),
        )
        .await?;
        progress.finish();
        if self.json {
            self.print_json(&plan, Some(&outcome), false)?;
        } else {
            for id in &outcome.changed {
                println!(
                    "not redriven {id}: the row changed since it was read (see `audit show {id}`)"
                );
            }
            println!(
                "{} row(s) redriven FAILED → PENDING; the relay sends them on its next sweep",
                outcome.redriven.len()
            );
        }
        Ok(match outcome.changed.is_empty() {
            true => planned,
            false => Outcome::NotDone,
        })
    }

    fn print_plan(&self, plan: &Plan) {
        for refusal in &plan.refused {
            println!("cannot redrive {}: {}", refusal.id, refusal.reason);
        }
        let verb = match self.dry_run {
            true => "would redrive",
            false => "redrive",
        };
        for c in &plan.candidates {
            println!(
                "{verb} {} participant {} created {} attempts {}: {}",
                c.id,
                c.participant_id.as_deref().unwrap_or("-"),
                c.created_at,
                c.attempts,
                c.last_error.as_deref().unwrap_or("-")
            );
        }
    }

    /// The `--json` report: the plan, and what was done (none: dry run,
    /// nothing to do, or declined).
    fn print_json(
        &self,
        plan: &Plan,
        outcome: Option<&redrive::Outcome>,
        declined: bool,
    ) -> anyhow::Result<()> {
        let candidate = |c: &Candidate| {
            json!({
                "id": c.id,
                "participant_id": c.participant_id,
                "created_at": c.created_at,
                "attempts": c.attempts,
                "last_error": c.last_error,
            })
        };
        let (redriven, changed) = match outcome {
            Some(o) => (o.redriven.clone(), o.changed.clone()),
            None => (Vec::new(), Vec::new()),
        };
        super::print_json(&json!({
            "dry_run": self.dry_run,
            "declined": declined,
            "candidates": plan.candidates.iter().map(candidate).collect::<Vec<_>>(),
            "refused": plan.refused.iter().map(|r| json!({"id": r.id, "reason": r.reason})).collect::<Vec<_>>(),
            "redriven": redriven,
            "changed": changed,
        }))
    }
}
