//! `audit export`: the rows of some states in a time range, as CSV or JSON
//! lines, for the compliance team.
//!
//! Streamed: one Query page (≤ 1 MB) is written out before the next is
//! kept, and one more is fetched meanwhile, so memory stays flat whether the
//! export holds a thousand rows or millions. Columns: [`COLUMNS`].

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

use super::record::COLUMNS;
use super::{AuditQuery, AuditRecord, TimeRange};
use crate::outbox::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// RFC 4180: a header line, fields quoted where they need it.
    Csv,
    /// One JSON object per line, every column present (null when absent).
    Jsonl,
}

/// Writes every row of `statuses` (in that order, each oldest first) created
/// in `range`, and returns how many. `progress` is told the running count
/// after each page.
pub async fn export(
    query: &AuditQuery,
    statuses: &[Status],
    range: TimeRange,
    format: Format,
    out: &mut dyn Write,
    progress: &dyn Fn(u64),
) -> anyhow::Result<u64> {
    if format == Format::Csv {
        write_csv_line(out, COLUMNS.iter().copied())?;
    }
    let mut written = 0;
    for &status in statuses {
        let mut pages = query.by_status(status, range, None).prefetched();
        while let Some(page) = pages.recv().await {
            for row in page? {
                write_row(out, &row, format)?;
                written += 1;
            }
            progress(written);
        }
    }
    out.flush()?;
    Ok(written)
}

fn write_row(out: &mut dyn Write, row: &AuditRecord, format: Format) -> std::io::Result<()> {
    match format {
        Format::Csv => write_csv_line(out, row.values().iter().map(String::as_str)),
        Format::Jsonl => {
            serde_json::to_writer(&mut *out, row)?;
            out.write_all(b"\n")
        }
    }
}

fn write_csv_line<'a>(
    out: &mut dyn Write,
    fields: impl Iterator<Item = &'a str>,
) -> std::io::Result<()> {
    for (n, field) in fields.enumerate() {
        if n > 0 {
            out.write_all(b",")?;
        }
        if field.contains([',', '"', '\n', '\r']) {
            write!(out, "\"{}\"", field.replace('"', "\"\""))?;
        } else {
            out.write_all(field.as_bytes())?;
        }
    }
    out.write_all(b"\r\n")
}

/// A spinner with the running count of `what` and the rate on stderr, when
/// stderr is a terminal (never in a pipe or a log file).
pub fn progress_bar(what: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {{human_pos}} {what} ({{per_sec}}, {{elapsed}})"
        ))
        .expect("a valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut out = Vec::new();
        write_csv_line(
            &mut out,
            ["plain", "a,b", "say \"hi\"", "two\nlines", ""].into_iter(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n"
        );
    }
}
