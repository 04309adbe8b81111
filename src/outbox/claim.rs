//! Claims: due rows taken under a relay's lease before they are sent.

use std::time::Duration;

use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, ReturnValue};
use futures::{stream, StreamExt};
use time::OffsetDateTime;

use super::error::is_condition_failure;
use super::row::{epoch_ms, rfc3339};
use super::store::{parse_row, WRITE_CONCURRENCY};
use super::transition::Transition;
use super::{OutboxRow, OutboxStore, StoreError};

/// What a claim came to, row by row: one row's trouble never fails the
/// others' claims.
#[derive(Debug, Default)]
pub struct Claimed {
    /// Rows now held under the caller's lease.
    pub rows: Vec<OutboxRow>,
    /// Rows now held under the caller's lease whose stored item is not a
    /// readable outbox row: their ids and why. The caller makes them FAILED
    /// (a row that cannot be read cannot be sent, and would be claimed
    /// again at every lease's end).
    pub unreadable: Vec<(String, String)>,
    /// Claims DynamoDB refused or did not answer; those rows are due again
    /// later (at their lease's end if the claim was written after all).
    pub errors: Vec<StoreError>,
}

impl OutboxStore {
    /// Claims rows for `owner` until `lease_until` (epoch ms): PENDING rows
    /// past their backoff, new rows older than `sweep_delay` (the outbox
    /// stream's until then) and IN_FLIGHT rows whose lease expired. Each claim
    /// counts an attempt in advance (a send that fails for a cause other
    /// than the message gives it back: [`OutboxStore::mark_wait`]), so the
    /// returned rows' `attempts` include this claim, and a row whose claims
    /// keep ending without an outcome (a relay that crashes on it) runs out
    /// of attempts: the relay then calls [`OutboxStore::mark_failed_unsent`]
    /// instead of sending it. Rows someone else claimed first are skipped.
    ///
    /// The claim transition ([`super::transition`]), one conditional
    /// UpdateItem per id returning the new row, `WRITE_CONCURRENCY` (32) in
    /// flight: a write unit per KB of each row.
    pub async fn claim(
        &self,
        ids: &[String],
        owner: &str,
        now: OffsetDateTime,
        sweep_delay: Duration,
        lease_until: i64,
    ) -> Claimed {
        let stale_before = &rfc3339(now - sweep_delay);
        let now = epoch_ms(now);
        let claims = ids
            .iter()
            .cloned()
            .map(|id| async move {
                let result = Transition::claim(&id, owner, now, stale_before, lease_until)
                    .update_item(&self.client, &self.table)
                    .return_values(ReturnValue::AllNew)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await;
                let outcome = match result {
                    Ok(out) => {
                        self.stats.record(1, out.consumed_capacity.as_slice());
                        match out.attributes.map(parse_row).transpose() {
                            Ok(row) => Ok(row),
                            // Ours now (the claim was written), but unreadable.
                            Err(error) => Err(Err(error.to_string())),
                        }
                    }
                    Err(e) if is_condition_failure(&e) => Ok(None),
                    Err(e) => Err(Ok(StoreError::from_sdk(e))),
                };
                (id, outcome)
            })
            .collect::<Vec<_>>();
        let outcomes: Vec<_> = stream::iter(claims)
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        let mut claimed = Claimed::default();
        for (id, outcome) in outcomes {
            match outcome {
                Ok(Some(row)) => claimed.rows.push(row),
                Ok(None) => {}
                Err(Err(why)) => claimed.unreadable.push((id, why)),
                Err(Ok(error)) => claimed.errors.push(error),
            }
        }
        claimed
    }
}
