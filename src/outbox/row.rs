//! An outbox row: one participant on its way to Kafka, and the audit record
//! of how it got there.
//!
//! This file is pure: the row's shape, its states, how its id is derived,
//! when it is due again and when it expires. [`super::transition`] names the
//! conditional writes that move a row between states; the attribute names
//! are in [`super::schema`].

use crate::trace::TraceContext;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Namespace of the UUID v5 row ids. Fixed forever: changing it would give a
/// redelivered stream record a new id, and so a second row.
const ROW_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a57_9d3e_4b8a_a0f4_52c1_e7d9_3b06);

/// Namespace of the UUID v5 ids of rows `reconcile --repair` writes for a
/// participant that has none: one id per participant, so a repair run twice
/// (or by two operators at once) makes one row. Fixed forever.
const RECONCILE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x2d0b_8c4e_51f7_4a19_9e62_c3a8_0f5d_7e14);

/// Payloads larger than this are stored gzip-compressed (`payload_gzip`):
/// an item near DynamoDB's 400 KB limit becomes JSON of about the same size,
/// which would not fit in an outbox row beside the audit fields.
pub const INLINE_PAYLOAD_LIMIT: usize = 256 * 1024;

/// The due index is sharded so that pending rows do not all sit under one
/// partition key (a hot key under load). Fixed: the sweep queries each shard.
pub const DUE_SHARDS: u32 = 16;

/// ```text
/// PENDING → IN_FLIGHT → DELIVERED
///              ├──────→ PENDING (the message's fault: retry after backoff) → … → FAILED
///              └──────→ PENDING (the cluster's fault: wait, no attempt spent) → …
/// IN_FLIGHT (lease expired, MAX_ATTEMPTS claims without outcome) → FAILED at the next claim
/// FAILED → PENDING only by redrive;  REJECTED is terminal.
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Waiting to be sent: new (no `due_at`: the outbox stream's, then
    /// the sweep's after the sweep delay), or in the due index, due at
    /// `due_at` (after a failed send, or redriven).
    Pending,
    /// Claimed by a relay until `lease_until`; due again when the lease ends.
    InFlight,
    /// The broker stored it (`kafka_*`); out of the due index. Terminal
    /// (TTL may delete it under a retention policy).
    Delivered,
    /// Given up on, with `last_error`; out of the due index until an
    /// operator redrives it.
    Failed,
    /// A stream record that could not be made into a message, kept with
    /// its `raw_image` and `reject_reason`. Terminal.
    Rejected,
}

impl Status {
    /// Every state, in the order of the state diagram.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::InFlight,
        Status::Delivered,
        Status::Failed,
        Status::Rejected,
    ];

    /// The state as stored in `status` (`IN_FLIGHT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::InFlight => "IN_FLIGHT",
            Status::Delivered => "DELIVERED",
            Status::Failed => "FAILED",
            Status::Rejected => "REJECTED",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The row as stored (attribute names are the audit contract; see README).
/// Absent values are left out of the item, not stored as NULL: the due index
/// is sparse, so a row leaves it by losing `due_shard`/`due_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRow {
    /// The key: [`row_id`] of the stream record (or [`reconcile_row_id`]).
    pub id: String,
    /// The participant's id, the Kafka key (absent on a REJECTED row whose
    /// image had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    /// Where the row is in its life.
    pub status: Status,
    /// RFC 3339, UTC, milliseconds.
    pub created_at: String,
    /// Sends the broker answered with a fault of the message itself (too
    /// large, invalid: [`crate::kafka::Blame::Message`]), plus claims that ended without
    /// any outcome (the relay crashed, timed out or was killed mid-send). A
    /// claim counts one in advance and a failure that is not the message's
    /// gives it back, so failures of the cluster, the network or the
    /// credentials never spend attempts. At `MAX_ATTEMPTS` the row is
    /// FAILED: after an answer about the message, or at its next claim ("no
    /// outcome after N claims").
    #[serde(default)]
    pub attempts: u32,
    /// Sends that failed for a cause other than the message ([`crate::kafka::Blame::Cluster`]:
    /// a broker outage, a network error, a timeout, leadership, missing
    /// authorization or login): the row went back to PENDING without
    /// spending an attempt, due again after a backoff that grows with this
    /// count (capped at 5 minutes). For audit, and the backoff; never a
    /// reason to fail the row. Absent until the first wait. A row that has
    /// waited is no longer new (see `Holder::Fresh`): only the sweep sends
    /// it again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waits: u32,
    /// The last failed send's (or mark's) error; kept after a later success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The participant as JSON: the Kafka value, fixed when the row is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The same, gzip-compressed, instead of `payload` when the JSON is too
    /// large to sit in a 400 KB DynamoDB item beside the row's other fields.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub payload_gzip: Option<Vec<u8>>,
    /// REJECTED rows: the stream image as DynamoDB JSON, kept for audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_image: Option<String>,
    /// REJECTED rows: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<String>,
    /// DELIVERED rows: the topic the broker stored the message in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_topic: Option<String>,
    /// DELIVERED rows: its partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_partition: Option<i32>,
    /// DELIVERED rows: its offset in the partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_offset: Option<i64>,
    /// Milliseconds since the epoch, as Kafka stores timestamps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_timestamp: Option<i64>,
    /// DELIVERED rows: when the relay marked it, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// The participants-stream record the row was made from (for a row
    /// `reconcile --repair` wrote: `reconcile:<participant id>`).
    pub source_event_id: String,
    /// That record's sequence number in its shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sequence_number: Option<String>,
    /// Due index partition key: present only while the row has work to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_shard: Option<String>,
    /// Due index sort key, epoch ms: when the row may next be claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<i64>,
    /// IN_FLIGHT rows: the relay that claimed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_owner: Option<String>,
    /// IN_FLIGHT rows: the claim's end, epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<i64>,
    /// Times an operator redrove the row (FAILED → PENDING); absent until
    /// the first.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redrive_count: u32,
    /// One entry per redrive, oldest first; absent until the first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redrive_history: Vec<RedriveEntry>,
    /// Retention: epoch seconds after which DynamoDB's TTL deletes the row.
    /// Only DELIVERED rows carry it, and only under a retention policy
    /// ([`expires_at`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The participant's trace context (a W3C `traceparent` value): the
    /// registration's, or one the stream handler started. Rows written
    /// before traces were kept have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// What one redrive recorded of the row it moved back to PENDING.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedriveEntry {
    /// When, RFC 3339.
    pub at: String,
    /// The row's `attempts` before the redrive reset them to 0.
    pub attempts_before: u32,
    /// The row's `last_error` then, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Where the broker stored a row's message: what the DELIVERED transition
/// records. The outbox's own type; the relay converts the broker's answer
/// into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset in the partition.
    pub offset: i64,
    /// Milliseconds since the epoch: the broker's LogAppendTime when the
    /// topic uses it, otherwise the CreateTime the producer stamped.
    pub timestamp: i64,
}

/// When a row delivered at `delivered_at` expires under `days` of
/// retention, in epoch seconds (what DynamoDB's TTL reads): the expiry rule
/// of the outbox, used by the relay (at delivery) and by `retention` (for
/// rows delivered before a policy change).
pub fn expires_at(delivered_at: OffsetDateTime, days: u32) -> i64 {
    (delivered_at + time::Duration::days(days.into())).unix_timestamp()
}

/// Where a row came from in the participants table's stream.
#[derive(Debug, Clone)]
pub struct Source {
    /// The record's `eventID`: the row's id derives from it.
    pub event_id: String,
    /// The record's sequence number, if it has one.
    pub sequence_number: Option<String>,
}

impl OutboxRow {
    /// A new row waiting to be sent, created at `now`, and outside the due
    /// index: the outbox stream hands it to a relay, and the sweep finds it
    /// through `by_status` only once it is older than the sweep delay (its
    /// stream record lost). Keeping new rows out of the due index saves two
    /// write units per participant: the insert's index entry and the
    /// DELIVERED mark's removal of it. It keeps its `due_shard`, so that any
    /// later `due_at` (a retry, a wait, a claim) puts it in the index.
    pub fn pending(
        source: &Source,
        participant_id: String,
        payload: String,
        now: OffsetDateTime,
    ) -> OutboxRow {
        let id = row_id(&source.event_id);
        let (payload, payload_gzip) = if payload.len() > INLINE_PAYLOAD_LIMIT {
            (None, Some(gzip(payload.as_bytes())))
        } else {
            (Some(payload), None)
        };
        OutboxRow {
            due_shard: Some(due_shard(&id)),
            participant_id: Some(participant_id),
            payload,
            payload_gzip,
            ..OutboxRow::blank(id, Status::Pending, source, now)
        }
    }

    /// The Kafka value: the participant JSON, decompressed if need be.
    pub fn payload_bytes(&self) -> std::io::Result<Vec<u8>> {
        match (&self.payload, &self.payload_gzip) {
            (Some(json), _) => Ok(json.as_bytes().to_vec()),
            (None, Some(compressed)) => {
                let mut json = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&compressed[..]),
                    &mut json,
                )?;
                Ok(json)
            }
            (None, None) => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the row has no payload",
            )),
        }
    }

    /// A record that could not be understood, kept with its reason.
    pub fn rejected(
        source: &Source,
        participant_id: Option<String>,
        raw_image: Option<String>,
        reason: String,
        now: OffsetDateTime,
    ) -> OutboxRow {
        OutboxRow {
            participant_id,
            raw_image,
            reject_reason: Some(reason),
            ..OutboxRow::blank(row_id(&source.event_id), Status::Rejected, source, now)
        }
    }

    /// What the row's `expires_at` should be under `days` of retention
    /// (`None`: keep forever): [`expires_at`] of its `delivered_at`, and
    /// `None` for a row never delivered (or whose `delivered_at` is not RFC
    /// 3339), which never expires.
    pub fn expiry(&self, days: Option<u32>) -> Option<i64> {
        let delivered_at = self.delivered_at.as_deref()?;
        let delivered_at =
            OffsetDateTime::parse(delivered_at, &time::format_description::well_known::Rfc3339)
                .ok()?;
        days.map(|days| expires_at(delivered_at, days))
    }

    /// Where the broker stored it, as `topic/partition@offset`; `None`
    /// until it is DELIVERED.
    pub fn coordinates(&self) -> Option<String> {
        Some(format!(
            "{}/{}@{}",
            self.kafka_topic.as_deref()?,
            self.kafka_partition?,
            self.kafka_offset?
        ))
    }

    /// The same row carrying `trace` (its trace context). No request.
    pub fn with_trace(self, trace: &TraceContext) -> OutboxRow {
        OutboxRow {
            traceparent: Some(trace.to_string()),
            ..self
        }
    }

    /// The same row in the due index, due for the sweep at `due`, as rows
    /// were inserted before new rows left the index (the sweep still takes
    /// such rows; tests seed them to be swept at a time of their choosing).
    /// No request.
    pub fn due(self, due: OffsetDateTime) -> OutboxRow {
        OutboxRow {
            due_shard: Some(due_shard(&self.id)),
            due_at: Some(epoch_ms(due)),
            ..self
        }
    }

    /// The same row under another id (its due shard follows the id).
    pub fn with_id(self, id: String) -> OutboxRow {
        OutboxRow {
            due_shard: self.due_shard.as_ref().map(|_| due_shard(&id)),
            id,
            ..self
        }
    }

    fn blank(id: String, status: Status, source: &Source, now: OffsetDateTime) -> OutboxRow {
        OutboxRow {
            id,
            participant_id: None,
            status,
            created_at: rfc3339(now),
            attempts: 0,
            waits: 0,
            last_error: None,
            payload: None,
            payload_gzip: None,
            raw_image: None,
            reject_reason: None,
            kafka_topic: None,
            kafka_partition: None,
            kafka_offset: None,
            kafka_timestamp: None,
            delivered_at: None,
            source_event_id: source.event_id.clone(),
            source_sequence_number: source.sequence_number.clone(),
            due_shard: None,
            due_at: None,
            lease_owner: None,
            lease_until: None,
            redrive_count: 0,
            redrive_history: Vec::new(),
            expires_at: None,
            traceparent: None,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// The row id of a stream record: UUID v5 of its event id, so a redelivered
/// record (a Lambda retry, a replayed shard) maps to the same row.
pub fn row_id(event_id: &str) -> String {
    Uuid::new_v5(&ROW_ID_NAMESPACE, event_id.as_bytes()).to_string()
}

/// The id of the row `reconcile --repair` writes for a participant: UUID v5
/// of the participant id in the reconcile namespace.
pub fn reconcile_row_id(participant_id: &str) -> String {
    Uuid::new_v5(&RECONCILE_ID_NAMESPACE, participant_id.as_bytes()).to_string()
}

/// The due-index shard of a row, stable for its life.
pub fn due_shard(row_id: &str) -> String {
    let hash = row_id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    (hash % DUE_SHARDS).to_string()
}

/// RFC 3339 in UTC with exactly three fractional digits. Fixed width on
/// purpose: `created_at` is the range key of the audit indexes, which compare
/// strings, so string order must be time order (`…05.1Z` would sort after
/// `…05.05Z` if the digits were trimmed).
pub fn rfc3339(t: OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_default()
}

/// Milliseconds since the epoch: the unit of `due_at`, `lease_until` and
/// `kafka_timestamp`.
pub fn epoch_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
#[path = "row_tests.rs"]
mod tests;
