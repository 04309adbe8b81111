//! The outbox: the table between the participants stream and Kafka.
//!
//! [`row`] is the row and its rules (pure); [`store`] is the table and its
//! conditional writes.

pub mod row;
pub mod store;

pub use row::{OutboxRow, Source, Status};
pub use store::{OutboxStore, StoreError, Written};
