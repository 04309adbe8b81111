//! `raffle-outbox audit`: read the outbox — counts, rows by state, one row,
//! one participant, exports ([`crate::audit`]). Reads only.

use std::time::Instant;

use clap::{Args, Subcommand};
use time::OffsetDateTime;

use super::progress::Progress;
use super::{Context, Outcome, Window};
use crate::audit::export::{self, Format};
use crate::audit::record::Record;
use crate::audit::show::{list_line, render_row, row_json, LIST_HEADER};
use crate::audit::summary::Summary;
use crate::audit::{parse_status, AuditQuery, Pages};
use crate::outbox::Status;

/// `audit`'s arguments: which reading.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Which reading.
    #[command(subcommand)]
    pub action: AuditAction,
}

/// The `audit` subcommands.
#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Rows per state, the oldest PENDING row's age, the FAILED count.
    Summary {
        /// One JSON object instead of the text.
        #[arg(long)]
        json: bool,
    },
    /// Rows in one state, oldest first.
    List {
        /// The state (any case).
        #[arg(long, value_parser = parse_status)]
        status: Status,
        /// The rows' creation window.
        #[command(flatten)]
        window: Window,
        /// At most this many rows (a hint on stderr says when there are more).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One row, whole: send response, errors, redrive history, payload.
    Show {
        /// The row's id.
        id: String,
        /// One JSON object instead of the text.
        #[arg(long)]
        json: bool,
    },
    /// Every outbox row of one participant.
    Participant {
        /// The participant's id.
        participant_id: String,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rows as CSV or JSON lines, streamed (columns: see docs/operating.md).
    Export {
        /// csv or jsonl.
        #[arg(long, value_enum)]
        format: Format,
        /// States to export (repeat the flag); default every state.
        #[arg(long, value_parser = parse_status)]
        status: Vec<Status>,
        /// The rows' creation window.
        #[command(flatten)]
        window: Window,
        /// Write here instead of stdout.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

impl AuditArgs {
    /// Reads and prints: `summary` (text or one JSON object), `list` and
    /// `participant` (a table, or one JSON object per line; with `--json`
    /// stdout holds JSON only, the "more rows" hint goes to stderr), `show`
    /// (text or one JSON object; exit 2 when there is no such row), `export`
    /// (CSV or JSON lines to stdout or `--output`; its count and rate on
    /// stderr, with a counter on a terminal). Writes nothing to the table.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<Outcome> {
        let query = ctx.audit_query().await;
        match self.action {
            AuditAction::Summary { json } => {
                let summary = Summary::read(&query, OffsetDateTime::now_utc()).await?;
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
                let pages = query.by_status(status, window.range(), None);
                print_rows(pages, Some(limit), json).await?
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
            } => export(&query, format, status, window, output).await?,
        }
        Ok(Outcome::Done)
    }
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

async fn export(
    query: &AuditQuery,
    format: Format,
    status: Vec<Status>,
    window: Window,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let statuses = match status.is_empty() {
        true => Status::ALL.to_vec(),
        false => status,
    };
    let mut out: Box<dyn std::io::Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let progress = Progress::counter("rows exported");
    let started = Instant::now();
    let rows = export::export(query, &statuses, window.range(), format, &mut out, &|n| {
        progress.set(n)
    })
    .await?;
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{rows} rows exported in {seconds:.1} s ({:.0} rows/s)",
        rows as f64 / seconds.max(0.001)
    );
    Ok(())
}
