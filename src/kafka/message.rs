//! What the producer is given ([`Message`]) and what it answers for each
//! message it stored ([`Delivery`]).

use bytes::Bytes;

use super::produce_request::Record;

/// One message to produce: a record with a key (the partitioner's input),
/// a value and headers, sent as is (no compression, CreateTime stamped at
/// send). [`super::envelope`] builds the outbox's.
#[derive(Debug, Clone)]
pub struct Message {
    /// The record key; Kafka's default partitioner places the message by it.
    pub key: String,
    /// The record value.
    pub value: Bytes,
    /// Record headers, in order; names need not be unique. The names are
    /// the contract's, known when compiled: no allocation per message.
    pub headers: Vec<(&'static str, Bytes)>,
}

impl Message {
    /// The message as a record of a produce request, borrowed.
    pub(super) fn record(&self) -> Record<'_> {
        Record {
            key: self.key.as_bytes(),
            value: &self.value,
            headers: &self.headers,
        }
    }

    /// An upper estimate of the message's size in a record batch, which
    /// the producer uses to keep batches under the broker's limit
    /// ([`Record::size`]).
    pub(super) fn size(&self) -> usize {
        self.record().size()
    }
}

/// The broker's answer for one message: where it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic it was produced to.
    pub topic: String,
    /// The partition it is stored in.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// Milliseconds since the epoch: the broker's LogAppendTime when the topic
    /// uses it, otherwise the CreateTime the producer stamped on the record.
    pub timestamp: i64,
}
