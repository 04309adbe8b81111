//! The outbox's message envelope: what a consumer of the topic can rely on
//! besides the value, written by the relay and checked by `verify`, so the
//! header names live here and nowhere else.
//!
//! Every message carries, as record headers (CloudEvents' Kafka binding,
//! binary mode):
//!
//! | header | value |
//! |---|---|
//! | `outbox_id` ([`OUTBOX_ID_HEADER`]) | the outbox row id: what a consumer deduplicates on |
//! | `ce_specversion` | `1.0` |
//! | `ce_id` | the outbox row id |
//! | `ce_source` | the configured event source |
//! | `ce_type` | [`EVENT_TYPE`] |
//! | `ce_time` | the row's `created_at` |
//! | `content-type` | [`CONTENT_TYPE`] |
//! | `ce_dataschema` | [`DATA_SCHEMA`]: the value's JSON Schema, by its `$id` |
//! | `traceparent` ([`TRACEPARENT_HEADER`]) | the participant's trace, a new span of it per send (CloudEvents' distributed-tracing extension) |
//!
//! The key is the participant id and the value the participant's JSON.

use bytes::Bytes;

use super::fetch::FetchedRecord;
use super::message::Message;

/// The header a consumer deduplicates on: the outbox row id.
pub const OUTBOX_ID_HEADER: &str = "outbox_id";
/// The CloudEvents type of every message (`ce_type`).
pub const EVENT_TYPE: &str = "com.raffle.participant.registered";
/// The content type of every message's value (`content-type`).
pub const CONTENT_TYPE: &str = "application/json";
/// The value's schema (`ce_dataschema`), kept with the schema itself.
pub use crate::contract::DATA_SCHEMA;
/// The W3C trace context header a message carries.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// One outbox row's envelope: the values its headers carry.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The outbox row id (`outbox_id`, `ce_id`).
    pub outbox_id: &'a str,
    /// The event source (`ce_source`).
    pub source: &'a str,
    /// When the row was written (`ce_time`), RFC 3339.
    pub time: &'a str,
    /// The trace context this send carries (`traceparent`), a W3C
    /// `traceparent` value.
    pub traceparent: &'a str,
}

impl Envelope<'_> {
    /// The message for this envelope: `key` and `value` as given, the
    /// headers of the table above in that order. No request.
    pub fn message(&self, key: String, value: Bytes) -> Message {
        let copy = |value: &str| Bytes::copy_from_slice(value.as_bytes());
        let fixed = |value: &'static str| Bytes::from_static(value.as_bytes());
        let outbox_id = copy(self.outbox_id);
        Message {
            key,
            value,
            headers: vec![
                (OUTBOX_ID_HEADER, outbox_id.clone()),
                ("ce_specversion", fixed("1.0")),
                ("ce_id", outbox_id),
                ("ce_source", copy(self.source)),
                ("ce_type", fixed(EVENT_TYPE)),
                ("ce_time", copy(self.time)),
                ("content-type", fixed(CONTENT_TYPE)),
                ("ce_dataschema", fixed(DATA_SCHEMA)),
                (TRACEPARENT_HEADER, copy(self.traceparent)),
            ],
        }
    }
}

/// The outbox row id a message read back from the topic carries, if any
/// (its first [`OUTBOX_ID_HEADER`] header with a value).
pub fn outbox_id(record: &FetchedRecord) -> Option<&[u8]> {
    record.header(OUTBOX_ID_HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_relay_writes_verify_reads() {
        let envelope = Envelope {
            outbox_id: "row-1",
            source: "/raffle",
            time: "2026-12-02T10:00:00.000Z",
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        };
        let message = envelope.message("p-1".into(), Bytes::from_static(b"{}"));
        let names: Vec<&str> = message.headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                OUTBOX_ID_HEADER,
                "ce_specversion",
                "ce_id",
                "ce_source",
                "ce_type",
                "ce_time",
                "content-type",
                "ce_dataschema",
                TRACEPARENT_HEADER
            ]
        );
        let record = FetchedRecord {
            offset: 0,
            timestamp: 0,
            key: Some(Bytes::from(message.key.clone())),
            value: Some(message.value.clone()),
            headers: message
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), Some(v.clone())))
                .collect(),
        };
        assert_eq!(outbox_id(&record), Some(&b"row-1"[..]));
        assert_eq!(record.header("ce_type"), Some(EVENT_TYPE.as_bytes()));
    }
}
