//! Kafka: the only module that knows samsa, and where samsa's gaps are
//! fixed. samsa 0.1.8 gives us the wire protocol's request and response
//! types (request headers, Metadata, ListOffsets, Fetch requests, SASL);
//! everything an outbox needs beyond them is built here, on its public
//! types, and each file says which gap it closes.
//!
//! What the rest of the crate uses:
//! - [`Producer`]: acks=all sends to one topic, one [`Delivery`] or
//!   [`KafkaError`] per [`Message`], each failure told apart as the
//!   message's fault or the cluster's ([`Blame`]).
//! - [`envelope`]: the headers every outbox message carries, shared by the
//!   relay that writes them and `verify` that checks them.
//! - [`fetch::TopicReader`]: reading the topic back, for `verify`.
//! - [`auth::KafkaAuth`]: how to reach and log in to the brokers (MSK's
//!   listeners: plaintext, TLS, SCRAM, IAM).
//!
//! The layers, bottom up, each importing only those below it:
//!
//! ```text
//! transport   frames on one socket (TCP or TLS), correlation ids checked
//! auth        the SASL login, over a transport
//! connection  a session: dial + login within one timeout, re-dial before the session ends
//! pool        connections per broker for the producer
//! cluster     bootstrap list, the one metadata discovery, the partition map
//! producer    sends (batches, rounds, retries);  fetch: the topic reader
//! ```
//!
//! Codecs beside them: `produce_request` (record batches),
//! `produce_response` and `error_code` (every error code kept),
//! [`partitioner`] (Kafka's default), `varint`.

#![warn(missing_docs)]

pub mod auth;
mod cluster;
mod connection;
pub mod envelope;
mod error;
mod error_code;
pub mod fetch;
mod message;
pub mod partitioner;
mod pool;
mod produce_request;
mod produce_response;
mod producer;
mod reader;
mod transport;
mod varint;

pub use error::{Blame, KafkaError};
pub use error_code::ErrorCode;
pub use message::{Delivery, Message};
pub use producer::{Producer, ProducerSettings, CONNECTION_MAX_IDLE, METADATA_MAX_AGE};
