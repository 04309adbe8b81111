//! The audit: answers to "was participant X sent, when, where?", "what
//! failed and why?" and "everything sent last quarter, as a file", on tables
//! of millions of rows.
//!
//! Every answer comes from a Query on an index made for it, never a Scan:
//!
//! | question | index | key |
//! |---|---|---|
//! | rows in a state, oldest first, in a time range | `by_status` | `status` = S, `created_at` between |
//! | every row of one participant | `by_participant` | `participant_id` = P |
//! | one row, whole | the table | `id` |
//!
//! Both indexes project the audit attributes
//! ([`AUDIT_ATTRIBUTES`](crate::outbox::schema::AUDIT_ATTRIBUTES)) but not
//! the payload: a row's personal fields are read only by `show`, from the
//! table. Rows come back as [`OutboxRow`](crate::outbox::OutboxRow)s without
//! those fields; [`record::Record`] is their export columns. The index
//! names are the outbox's ([`crate::outbox::schema`]).

pub mod export;
pub mod query;
pub mod record;
pub mod show;
pub mod summary;
pub mod time_range;

pub use query::{AuditQuery, Pages};
pub use time_range::TimeRange;

/// The audit's name for the outbox row it reads: the same type, as an
/// index projection holds it (no payload, due or lease fields).
pub use crate::outbox::OutboxRow as AuditRecord;

/// A state as the operator types it (`failed`, `FAILED`, `in_flight`).
pub fn parse_status(text: &str) -> Result<crate::outbox::Status, String> {
    crate::outbox::Status::ALL
        .into_iter()
        .find(|s| {
            s.as_str().eq_ignore_ascii_case(text)
                || s.as_str().eq_ignore_ascii_case(&text.replace('-', "_"))
        })
        .ok_or_else(|| {
            format!(
                "`{text}` is not a state; one of {}",
                crate::outbox::Status::ALL.map(|s| s.as_str()).join(", ")
            )
        })
}
