//! `redrive`: FAILED rows back to PENDING, so the relay sends them again once
//! the cause (a deleted topic, a broker limit, an ACL) has been fixed.
//!
//! One redrive transition per row ([`OutboxStore::redrive`]: a conditional
//! UpdateItem on `status = FAILED` and on the attempts the operator was
//! shown): a concurrent relay (which never touches a
//! FAILED row) or a second redrive (which would have changed the row) makes
//! the condition fail, and the row is reported as changed, never written
//! twice. The update resets `attempts` to 0, counts `redrive_count`, appends
//! `{at, attempts_before, last_error}` to `redrive_history` and puts the row
//! back in the relay's `due` index (`due_shard`, `due_at` = now). `last_error`
//! stays, as it does after any later success.
//!
//! REJECTED rows are refused: they hold a stream record that could not be
//! turned into a message, so there is nothing to send again.

use std::io::{BufRead, Write};

use futures::{stream, StreamExt, TryStreamExt};
use time::OffsetDateTime;

use crate::audit::{AuditQuery, TimeRange};
use crate::outbox::{OutboxRow, OutboxStore, Status, Written};

/// Conditional updates in flight at once.
const CONCURRENCY: usize = 16;

/// Which rows to redrive: the given ids, or the FAILED rows that match the
/// filters (oldest first, at most `limit`).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Outbox row ids to redrive, each read by id; when not empty, the
    /// filters below are ignored.
    pub ids: Vec<String>,
    /// FAILED rows created in this window (ids empty only).
    pub range: TimeRange,
    /// Only FAILED rows whose `last_error` contains this text (ids empty
    /// only; a server-side filter, so the window's whole read is paid).
    pub error_contains: Option<String>,
    /// At most this many candidates (ids empty only); `None` for all.
    pub limit: Option<usize>,
}

impl Selection {
    /// A filter may match many rows: the operator confirms first.
    pub fn is_bulk(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A row that can be redriven, as it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The outbox row's id.
    pub id: String,
    /// The participant the row carries, if the row has one.
    pub participant_id: Option<String>,
    /// When the row was created (RFC 3339).
    pub created_at: String,
    /// The attempts as read: the redrive writes only if the row still has
    /// this many.
    pub attempts: u32,
    /// The error the row failed with, as read; copied into its
    /// `redrive_history`.
    pub last_error: Option<String>,
}

/// A row that was asked for and cannot be redriven, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The id asked for.
    pub id: String,
    /// For the operator: the row does not exist, or its state (REJECTED,
    /// DELIVERED, or still with the relay) and what to do instead.
    pub reason: String,
}

/// What [`plan`] found: the rows a [`redrive`] would move, and the ids asked
/// for that it would not.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// FAILED rows, oldest first for a filter, in the order asked for ids.
    pub candidates: Vec<Candidate>,
    /// Ids asked for that are missing or not FAILED (always empty for a
    /// filter, which reads only FAILED rows).
    pub refused: Vec<Refusal>,
}

/// What the redrive did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Rows moved from FAILED to PENDING, in completion order.
    pub redriven: Vec<String>,
    /// Rows that changed between reading and writing (left as they were).
    pub changed: Vec<String>,
}

/// Reads what `selection` would redrive; writes nothing (this is `--dry-run`).
///
/// Costs one consistent GetItem per id, or for a filter the `by_status`
/// Query pages of FAILED rows in the window (stopping once `limit`
/// candidates are found). Fails on the first DynamoDB error or unreadable
/// row.
pub async fn plan(query: &AuditQuery, selection: &Selection) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    if !selection.ids.is_empty() {
        for id in &selection.ids {
            let item = query.item(id).await?;
            let row: Option<OutboxRow> = item.map(serde_dynamo::from_item).transpose()?;
            match row {
                None => plan.refused.push(Refusal {
                    id: id.clone(),
                    reason: "no such row".into(),
                }),
                Some(row) => match refusal(&row) {
                    Some(reason) => plan.refused.push(Refusal {
                        id: id.clone(),
                        reason,
                    }),
                    None => plan.candidates.push(candidate(row)),
                },
            }
        }
        return Ok(plan);
    }
    let limit = selection.limit.unwrap_or(usize::MAX);
    let mut pages = query.by_status(
        Status::Failed,
        selection.range,
        selection.error_contains.as_deref(),
    );
    while let Some(page) = pages.next().await? {
        for row in page {
            if plan.candidates.len() == limit {
                return Ok(plan);
            }
            plan.candidates.push(candidate(row));
        }
    }
    Ok(plan)
}

fn candidate(row: OutboxRow) -> Candidate {
    Candidate {
        id: row.id,
        participant_id: row.participant_id,
        created_at: row.created_at,
        attempts: row.attempts,
        last_error: row.last_error,
    }
}

/// Why a row asked for by id cannot be redriven, if it cannot.
fn refusal(row: &OutboxRow) -> Option<String> {
    match row.status {
        Status::Failed => None,
        Status::Rejected => Some(format!(
            "REJECTED rows cannot be redriven: the stream record could not be made into a \
             message ({}), so there is nothing to send; save the participant again in a form \
             that can be sent",
            row.reject_reason.as_deref().unwrap_or("no reason recorded")
        )),
        Status::Delivered => Some(format!(
            "the row is DELIVERED ({}); only FAILED rows are redriven",
            row.coordinates().unwrap_or_default()
        )),
        status => Some(format!(
            "the row is {status}: the relay is still working on it; only FAILED rows are redriven"
        )),
    }
}

/// Moves the candidates from FAILED to PENDING, each with one redrive
/// transition; `progress` gets the running count.
///
/// One conditional UpdateItem per candidate, 16 in flight, none retried. A
/// row no longer FAILED with the attempts read lands in
/// [`Outcome::changed`], untouched. Stops at the first DynamoDB error:
/// rows already redriven stay redriven, and running the same plan again
/// only reports them as changed.
pub async fn redrive(
    outbox: &OutboxStore,
    candidates: &[Candidate],
    now: OffsetDateTime,
    progress: &dyn Fn(u64),
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut results = stream::iter(candidates)
        .map(|c| async move { redrive_one(outbox, c, now).await.map(|done| (c, done)) })
        .buffer_unordered(CONCURRENCY);
    while let Some((candidate, done)) = results.try_next().await? {
        if done {
            tracing::info!(outbox_id = %candidate.id, attempts_before = candidate.attempts, "row redriven: FAILED → PENDING");
            outcome.redriven.push(candidate.id.clone());
        } else {
            tracing::warn!(outbox_id = %candidate.id, "row changed since it was read; not redriven");
            outcome.changed.push(candidate.id.clone());
        }
        progress((outcome.redriven.len() + outcome.changed.len()) as u64);
    }
    Ok(outcome)
}

/// FAILED → PENDING, if the row is still FAILED with the attempts we read.
async fn redrive_one(
    outbox: &OutboxStore,
    row: &Candidate,
    now: OffsetDateTime,
) -> anyhow::Result<bool> {
    let written = outbox
        .redrive(&row.id, row.attempts, row.last_error.as_deref(), now)
        .await
        .map_err(|e| anyhow::anyhow!(e).context(format!("redriving {}", row.id)))?;
    Ok(written == Written::Yes)
}

/// Asks `question` and reads a yes. Anything else, or no answer, is no.
pub fn confirm(
    question: &str,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> std::io::Result<bool> {
    write!(output, "{question} [y/N] ")?;
    output.flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_confirms() {
        for (typed, yes) in [
            ("y\n", true),
            ("yes\n", true),
            ("n\n", false),
            ("", false),
            ("\n", false),
        ] {
            let mut shown = Vec::new();
            assert_eq!(
                confirm("Go?", &mut typed.as_bytes(), &mut shown).unwrap(),
                yes,
                "{typed:?}"
            );
            assert_eq!(shown, b"Go? [y/N] ");
        }
    }
}
