//! Retention: how long DELIVERED rows are kept.
//!
//! Compliance expects the outbox to be kept, so the default is forever. With
//! `RETENTION_DAYS` set, a DELIVERED row carries `expires_at` (epoch seconds:
//! `delivered_at` + N days) and DynamoDB's TTL deletes it some time after
//! (TTL on `expires_at` is switched on by migration 0005; a row without the
//! attribute never expires). PENDING, IN_FLIGHT, FAILED and REJECTED rows
//! never carry it: what was not delivered is never forgotten. The retention
//! is at least [`MIN_DAYS`] (2): less would let TTL delete a row while its
//! participants-stream record can still be replayed.
//!
//! The expiry rule is the row's ([`crate::outbox::expires_at`]). [`apply`]
//! brings existing DELIVERED rows in line with the policy (sets, changes or
//! removes `expires_at` with the expiry transition,
//! [`OutboxStore::set_expiry`]), for when the policy is introduced or
//! changed; rows delivered afterwards get it from the relay.

use futures::{stream, StreamExt, TryStreamExt};

use crate::audit::{AuditQuery, TimeRange};
pub use crate::outbox::expires_at;
pub use crate::outbox::schema::EXPIRES_AT;
use crate::outbox::{OutboxStore, Status};

/// Conditional updates in flight at once.
const CONCURRENCY: usize = 16;

/// The shortest retention allowed, in days. DynamoDB Streams keeps a
/// participant's record for 24 h, and the stream handler may replay it
/// until then (it is retried until it succeeds); a DELIVERED row deleted
/// before that replay would be written again and its participant sent twice.
/// Two days keep every row past its record's end, whatever TTL's timing.
pub const MIN_DAYS: u32 = 2;

/// Parses a retention in days (`RETENTION_DAYS`, `retention --days`): a whole
/// number of at least [`MIN_DAYS`]; the error says why a smaller one is refused.
pub fn parse_days(text: &str) -> Result<u32, String> {
    let days: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of days"))?;
    check_days(days)?;
    Ok(days)
}

/// Refuses a retention under [`MIN_DAYS`], with the reason.
pub fn check_days(days: u32) -> Result<(), String> {
    if days < MIN_DAYS {
        return Err(format!(
            "retention must be at least {MIN_DAYS} days, not {days}: a DELIVERED row must \
             outlive its participant's stream record, which can be replayed for 24 h, \
             or the replay writes the row again and the participant is sent twice"
        ));
    }
    Ok(())
}

/// What [`apply`] did (or, dry, would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Rows whose `expires_at` was set or moved to match `days`.
    pub set: u64,
    /// Rows whose `expires_at` was removed (`days` is `None`: keep forever).
    pub removed: u64,
    /// DELIVERED rows already right: a second count after the pass, less
    /// the rows changed, so only as exact as the table was still.
    pub unchanged: u64,
}

/// Makes every DELIVERED row's `expires_at` match `days` (`None`: keep
/// forever, so the attribute is removed): reads them through `query`'s
/// `by_status` index, writes through `outbox`. Each write is conditional on
/// the row still being DELIVERED. Refuses `days` under [`MIN_DAYS`] before
/// reading anything.
///
/// Costs the `by_status` Query pages of every DELIVERED row, one
/// conditional UpdateItem per row to change (none when `dry_run`), 16 in
/// flight, none retried, and a `Select=COUNT` pass over DELIVERED at the
/// end. Stops at the first DynamoDB error; rows already written stay
/// written, and running it again finishes the job.
pub async fn apply(
    query: &AuditQuery,
    outbox: &OutboxStore,
    days: Option<u32>,
    dry_run: bool,
    progress: &dyn Fn(u64),
) -> anyhow::Result<Report> {
    if let Some(days) = days {
        check_days(days).map_err(anyhow::Error::msg)?;
    }
    let mut report = Report::default();
    let mut pages = query
        .by_status(Status::Delivered, TimeRange::default(), None)
        .prefetched();
    while let Some(page) = pages.recv().await {
        let changes: Vec<(String, Option<i64>)> = page?
            .into_iter()
            .filter_map(|row| {
                let wanted = row.expiry(days);
                (row.expires_at != wanted).then_some((row.id, wanted))
            })
            .collect();
        report.set += changes.iter().filter(|(_, w)| w.is_some()).count() as u64;
        report.removed += changes.iter().filter(|(_, w)| w.is_none()).count() as u64;
        if !dry_run {
            stream::iter(&changes)
                .map(|(id, wanted)| write(outbox, id, *wanted))
                .buffer_unordered(CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await?;
        }
        progress(report.set + report.removed);
    }
    report.unchanged = query
        .count(Status::Delivered)
        .await?
        .saturating_sub(report.set + report.removed);
    Ok(report)
}

/// The expiry transition; a row no longer DELIVERED (deleted by TTL
/// meanwhile) has nothing to keep.
async fn write(outbox: &OutboxStore, id: &str, expires: Option<i64>) -> anyhow::Result<()> {
    outbox
        .set_expiry(id, expires)
        .await
        .map_err(|e| anyhow::anyhow!(e).context(format!("retention of {id}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_shorter_than_the_streams_replay_window_is_refused() {
        for text in ["0", "1"] {
            let reason = parse_days(text).unwrap_err();
            assert!(
                reason.contains("at least 2 days") && reason.contains("24 h"),
                "{text}: {reason}"
            );
        }
        assert!(parse_days("x").is_err());
        assert_eq!(parse_days("2"), Ok(2));
        assert_eq!(parse_days("3650"), Ok(3650));
    }
}
