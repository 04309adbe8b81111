#![warn(missing_docs)]

//! The outbox: the table between the participants stream and Kafka, and
//! the only code that writes it.
//!
//! - [`schema`]: the table's, indexes' and attributes' names;
//! - [`row`]: the row ([`OutboxRow`]), its states, ids and expiry rule (pure);
//! - [`backoff`]: when a failed send is due again, or given up (pure);
//! - [`transition`]: every state change, named, with its condition;
//! - [`store`]: [`OutboxStore`], the table's handle, whose requests are in
//!   `read` (reads, the due index), `claim` (claims) and `write` (inserts
//!   and the other transitions);
//! - [`error`]: what a request came to ([`Written`], [`StoreError`]).

pub mod backoff;
mod claim;
pub mod error;
mod read;
pub mod row;
pub mod schema;
pub mod store;
pub mod transition;
mod write;

pub use claim::Claimed;
pub use error::{StoreError, Written};
pub use row::{expires_at, OutboxRow, RedriveEntry, Source, Status, Stored};
pub use store::{OutboxStore, WriteStats};
pub use transition::Holder;
