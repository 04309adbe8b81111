//! The participants table's stream: where every participant enters the
//! outbox.
//!
//! [`handler`] turns a stream batch into outbox rows (the `stream-handler`
//! Lambda's logic); [`poller`] reads the stream locally, where there is no
//! event source mapping, and feeds the same handler.

pub mod handler;
pub mod poller;

pub use handler::{Batch, Handled, Insert, StreamHandler};
pub use poller::StreamPoller;
