//! `audit export`: the rows of some states in a time range, as CSV or JSON
//! lines, for the compliance team.
//!
//! Streamed: one Query page (≤ 1 MB) is written out before the next is
//! kept, and one more is fetched meanwhile, so memory stays flat whether the
//! export holds a thousand rows or millions. Columns: [`COLUMNS`].

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

use super::record::{Record, COLUMNS};
use super::{AuditQuery, TimeRange};
use crate::outbox::{OutboxRow, Status};

/// How [`export`] writes rows (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// RFC 4180: a header line, fields quoted where they need it; a field
    /// a spreadsheet would run as a formula starts with `'` (OWASP).
    Csv,
    /// One JSON object per line, every column present (null when absent),
    /// values exactly as stored.
    Jsonl,
}

/// Writes every row of `statuses` (in that order, each oldest first) created
/// in `range`, and returns how many. `progress` is told the running count
/// after each page.
///
/// Costs the `by_status` Query pages of each state in the window (paid in
/// whole seconds at its edges), one page fetched ahead; memory holds two
/// pages at most. Fails on the first DynamoDB error, unreadable row or
/// write error, after the rows already written: a failed export is a
/// truncated file, not a complete one.
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

fn write_row(out: &mut dyn Write, row: &OutboxRow, format: Format) -> std::io::Result<()> {
    let row = Record::of(row);
    match format {
        Format::Csv => write_csv_line(out, row.values().iter().map(String::as_str)),
        Format::Jsonl => {
            serde_json::to_writer(&mut *out, &row)?;
            out.write_all(b"\n")
        }
    }
}

/// Characters that make a spreadsheet read a cell that starts with them as a
/// formula (OWASP, "CSV Injection").
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One CSV record: RFC 4180 quoting where a field needs it (`,`, `"`, a line
/// break, or `;`, the separator some locales read), and OWASP's rule against
/// CSV injection: a field starting with one of [`FORMULA_START`] gets a
/// leading `'` (so a spreadsheet shows it as text) and is quoted.
fn write_csv_line<'a>(
    out: &mut dyn Write,
    fields: impl Iterator<Item = &'a str>,
) -> std::io::Result<()> {
    for (n, field) in fields.enumerate() {
        if n > 0 {
            out.write_all(b",")?;
        }
        let formula = field.starts_with(FORMULA_START);
        if formula || field.contains([',', '"', '\n', '\r', ';']) {
            let quote = if formula { "'" } else { "" };
            write!(out, "\"{quote}{}\"", field.replace('"', "\"\""))?;
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

    /// OWASP's rule against CSV injection: a cell that starts with `=`, `+`,
    /// `-`, `@`, a tab or a carriage return is opened by a spreadsheet as a
    /// formula, so it gets a leading `'` (read as text) and is quoted; a `;`
    /// (the separator in some locales) is quoted so it cannot start a cell.
    #[test]
    fn cells_a_spreadsheet_would_run_are_escaped() {
        let line = |cell: &str| {
            let mut out = Vec::new();
            write_csv_line(&mut out, [cell].into_iter()).unwrap();
            String::from_utf8(out).unwrap()
        };
        for (cell, written) in [
            ("=1+2", "\"'=1+2\""),
            ("+1", "\"'+1\""),
            ("-2+3", "\"'-2+3\""),
            ("@SUM(A1:A9)", "\"'@SUM(A1:A9)\""),
            ("\tx", "\"'\tx\""),
            ("\r=x", "\"'\r=x\""),
            (
                "=HYPERLINK(\"https://example.com/\",\"win\")",
                "\"'=HYPERLINK(\"\"https://example.com/\"\",\"\"win\"\")\"",
            ),
            ("a;=1+2", "\"a;=1+2\""),
            ("a=b", "a=b"),
            ("x-1", "x-1"),
            ("'=1", "'=1"),
            ("", ""),
        ] {
            assert_eq!(line(cell), format!("{written}\r\n"), "{cell:?}");
        }
    }
}
