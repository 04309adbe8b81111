//! `audit summary`: how many rows are in each state, and how long the oldest
//! waiting row has waited (the number to alert on: a relay that stopped).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::AuditQuery;
use crate::outbox::Status;

/// The outbox's states at one moment, as `audit summary` prints it (and
/// `--json` serializes it).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Rows per state (every state, zero included).
    pub counts: BTreeMap<&'static str, u64>,
    /// The sum of `counts`. The counts are read in parallel, not as one
    /// snapshot, so a row that changed state meanwhile may count twice or
    /// not at all.
    pub total: u64,
    /// `counts["FAILED"]`: the rows waiting for an operator.
    pub failed: u64,
    /// The oldest PENDING row, or `None` when none is pending.
    pub oldest_pending: Option<Oldest>,
}

/// The row that has waited longest in a state.
#[derive(Debug, Clone, Serialize)]
pub struct Oldest {
    /// The outbox row's id.
    pub id: String,
    /// When it was created (RFC 3339, as stored).
    pub created_at: String,
    /// Seconds from `created_at` to the summary's `now`; 0 when
    /// `created_at` does not parse.
    pub age_seconds: i64,
}

impl Summary {
    /// Counts each state through the `by_status` index, all at once.
    ///
    /// Costs one `Select=COUNT` Query per state, page by page (the read
    /// units of every row's index entry), plus one Query of one item for the
    /// oldest PENDING row. Fails on the first DynamoDB error.
    pub async fn read(query: &AuditQuery, now: OffsetDateTime) -> anyhow::Result<Summary> {
        let counts = futures::future::try_join_all(Status::ALL.map(|s| query.count(s))).await?;
        let counts: BTreeMap<&'static str, u64> = Status::ALL
            .map(Status::as_str)
            .into_iter()
            .zip(counts)
            .collect();
        let oldest_pending = query.oldest(Status::Pending).await?.map(|row| Oldest {
            age_seconds: OffsetDateTime::parse(&row.created_at, &Rfc3339)
                .map(|t| (now - t).whole_seconds())
                .unwrap_or_default(),
            id: row.id,
            created_at: row.created_at,
        });
        Ok(Summary {
            total: counts.values().sum(),
            failed: counts[Status::Failed.as_str()],
            counts,
            oldest_pending,
        })
    }

    /// The table an operator reads.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (status, count) in &self.counts {
            let _ = writeln!(out, "{status:<10} {count:>10}");
        }
        let _ = writeln!(out, "{:<10} {:>10}", "total", self.total);
        match &self.oldest_pending {
            Some(o) => {
                let _ = writeln!(
                    out,
                    "oldest PENDING: {} created {} ({} ago)",
                    o.id,
                    o.created_at,
                    age(o.age_seconds)
                );
            }
            None => out.push_str("oldest PENDING: none\n"),
        }
        let _ = writeln!(out, "FAILED: {}", self.failed);
        out
    }
}

/// `93 s`, `12 min`, `5 h 3 min`, `2 d 4 h`.
fn age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h {} min", s / 3_600, s % 3_600 / 60),
        s => format!("{} d {} h", s / 86_400, s % 86_400 / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(5), "5 s");
        assert_eq!(age(600), "10 min");
        assert_eq!(age(3 * 3_600 + 120), "3 h 2 min");
        assert_eq!(age(3 * 86_400 + 7_200), "3 d 2 h");
    }
}
