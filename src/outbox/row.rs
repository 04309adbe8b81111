//! An outbox row: one participant on its way to Kafka, and the audit record
//! of how it got there.
//!
//! This file is pure: the row's shape, its states, how its id is derived and
//! when it is due again. [`super::store`] does the conditional writes that
//! move a row between states.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::kafka::Blame;

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
    Pending,
    InFlight,
    Delivered,
    Failed,
    Rejected,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::InFlight,
        Status::Delivered,
        Status::Failed,
        Status::Rejected,
    ];

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
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    pub status: Status,
    /// RFC 3339, UTC, milliseconds.
    pub created_at: String,
    /// Sends the broker answered with a fault of the message itself (too
    /// large, invalid: [`Blame::Message`]), plus claims that ended without
    /// any outcome (the relay crashed, timed out or was killed mid-send). A
    /// claim counts one in advance and a failure that is not the message's
    /// gives it back, so failures of the cluster, the network or the
    /// credentials never spend attempts. At `MAX_ATTEMPTS` the row is
    /// FAILED: after an answer about the message, or at its next claim ("no
    /// outcome after N claims").
    #[serde(default)]
    pub attempts: u32,
    /// Sends that failed for a cause other than the message ([`Blame::Cluster`]:
    /// a broker outage, a network error, a timeout, leadership, missing
    /// authorization or login): the row went back to PENDING without
    /// spending an attempt, due again after a backoff that grows with this
    /// count (capped at 5 minutes). For audit, and the backoff; never a
    /// reason to fail the row. Absent until the first wait. A row that has
    /// waited is no longer new (see `Holder::Fresh`): only the sweep sends
    /// it again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waits: u32,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_offset: Option<i64>,
    /// Milliseconds since the epoch, as Kafka stores timestamps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    pub source_event_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sequence_number: Option<String>,
    /// Due index partition key: present only while the row has work to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_shard: Option<String>,
    /// Due index sort key, epoch ms: when the row may next be claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<i64>,
}

/// Where a row came from in the participants table's stream.
#[derive(Debug, Clone)]
pub struct Source {
    pub event_id: String,
    pub sequence_number: Option<String>,
}

impl OutboxRow {
    /// A row waiting to be sent, due for the sweep at `due` (the relay the
    /// outbox stream hands it to sends it before that).
    pub fn pending(
        source: &Source,
        participant_id: String,
        payload: String,
        now: OffsetDateTime,
        due: OffsetDateTime,
    ) -> OutboxRow {
        let id = row_id(&source.event_id);
        let (payload, payload_gzip) = if payload.len() > INLINE_PAYLOAD_LIMIT {
            (None, Some(gzip(payload.as_bytes())))
        } else {
            (Some(payload), None)
        };
        OutboxRow {
            due_shard: Some(due_shard(&id)),
            due_at: Some(epoch_ms(due)),
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

/// What happens to a row whose send failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// The message's fault, and it may pass another time: back to PENDING,
    /// due again after this many milliseconds; the attempt stays spent.
    RetryIn(i64),
    /// Not the message's fault ([`Blame::Cluster`]): back to PENDING, due
    /// again after this many milliseconds, the attempt given back and one
    /// more wait counted. Never FAILED for such a cause.
    WaitIn(i64),
    /// FAILED: the message's fault, and out of attempts or refused for good.
    GiveUp,
}

/// The longest backoff between two sends of a row: 5 minutes.
const MAX_BACKOFF_MS: i64 = 300_000;

/// What to do with a row whose send just failed, and when to send it again.
///
/// `attempts` counts the row's sends answered with a fault of the message,
/// the one that just failed included if it is one, plus its claims that
/// ended without any outcome; `waits` counts the failures that were not the
/// message's fault before this one. Only the message's faults spend
/// attempts (see [`Blame`]); the others make the row wait as long as the
/// cause lasts, the backlog alarm being what tells.
///
/// Both backoffs are exponential with "equal jitter": the ceiling doubles
/// from 1 s (1 s, 2 s, 4 s … capped at 5 min) and the delay is half the
/// ceiling plus `jitter` ∈ [0, 1) of the other half, so relays that failed
/// together do not retry together, yet the attempts of a row cannot be spent
/// in a burst (ten attempts span at least ~4 minutes), and a long outage
/// costs a waiting row one send every 2.5 to 5 minutes.
pub fn after_failure(
    attempts: u32,
    waits: u32,
    max_attempts: u32,
    blame: Blame,
    jitter: f64,
) -> AfterFailure {
    match blame {
        Blame::Cluster => AfterFailure::WaitIn(backoff(waits.saturating_add(1), jitter)),
        Blame::Message { retriable: true } if attempts < max_attempts => {
            AfterFailure::RetryIn(backoff(attempts, jitter))
        }
        Blame::Message { .. } => AfterFailure::GiveUp,
    }
}

/// The delay after the `n`-th failure (n ≥ 1) of one kind.
fn backoff(n: u32, jitter: f64) -> i64 {
    let ceiling = (1_000i64 << n.saturating_sub(1).min(20)).min(MAX_BACKOFF_MS);
    let half = ceiling / 2;
    half + ((half as f64) * jitter.clamp(0.0, 1.0)) as i64
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

pub fn epoch_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn source(event_id: &str) -> Source {
        Source {
            event_id: event_id.into(),
            sequence_number: Some("100".into()),
        }
    }

    #[test]
    fn rfc3339_is_utc_with_three_fractional_digits_so_strings_sort_as_times() {
        assert_eq!(
            rfc3339(datetime!(2026-11-28 10:00:05 UTC)),
            "2026-11-28T10:00:05.000Z"
        );
        assert_eq!(
            rfc3339(datetime!(2026-11-28 10:00:05.1 UTC)),
            "2026-11-28T10:00:05.100Z"
        );
        assert_eq!(
            rfc3339(datetime!(2026-11-28 12:00:05.123456 +02:00)),
            "2026-11-28T10:00:05.123Z"
        );
        let times = [
            datetime!(2026-11-28 10:00:05.05 UTC),
            datetime!(2026-11-28 10:00:05.1 UTC),
            datetime!(2026-11-28 10:00:05 UTC),
        ];
        let mut by_string = times.map(rfc3339);
        by_string.sort();
        let mut by_time = times;
        by_time.sort();
        assert_eq!(by_string, by_time.map(rfc3339));
    }

    #[test]
    fn row_id_is_a_deterministic_uuid_v5_of_the_event_id() {
        let a = row_id("c81e728d9d4c2f636f067f89cc14862c");
        assert_eq!(a, row_id("c81e728d9d4c2f636f067f89cc14862c"));
        assert_ne!(a, row_id("eccbc87e4b5ce2fe28308fd9f2a7baf3"));
        let parsed = Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 5);
        // Pinned: a change here would make redelivered records into new rows.
        assert_eq!(
            row_id("event-1"),
            Uuid::new_v5(&ROW_ID_NAMESPACE, b"event-1").to_string()
        );
        assert_eq!(
            ROW_ID_NAMESPACE.to_string(),
            "6f1c2a57-9d3e-4b8a-a0f4-52c1e7d93b06"
        );
    }

    #[test]
    fn reconcile_ids_are_one_per_participant_and_apart_from_stream_ids() {
        let a = reconcile_row_id("0b9d6c2e-1f4a-4c8e-9a57-3d2f6e8b1c40");
        assert_eq!(a, reconcile_row_id("0b9d6c2e-1f4a-4c8e-9a57-3d2f6e8b1c40"));
        assert_ne!(a, reconcile_row_id("another"));
        assert_ne!(a, row_id("0b9d6c2e-1f4a-4c8e-9a57-3d2f6e8b1c40"));
        assert_eq!(Uuid::parse_str(&a).unwrap().get_version_num(), 5);
        let now = datetime!(2026-11-28 12:00:00 UTC);
        let row =
            OutboxRow::pending(&source("e1"), "p".into(), "{}".into(), now, now).with_id(a.clone());
        assert_eq!(row.id, a);
        assert_eq!(row.due_shard, Some(due_shard(&a)));
    }

    #[test]
    fn pending_rows_are_due_now_and_rejected_rows_never() {
        let now = datetime!(2026-11-28 12:00:00.123456 UTC);
        let p = OutboxRow::pending(&source("e1"), "p-1".into(), "{}".into(), now, now);
        assert_eq!(p.status, Status::Pending);
        assert_eq!(p.due_at, Some(1_795_867_200_123));
        assert_eq!(p.created_at, "2026-11-28T12:00:00.123Z");
        assert!(p.due_shard.as_deref().unwrap().parse::<u32>().unwrap() < DUE_SHARDS);
        let r = OutboxRow::rejected(&source("e2"), None, Some("{}".into()), "no id".into(), now);
        assert_eq!(
            (r.status, r.due_shard, r.due_at),
            (Status::Rejected, None, None)
        );
    }

    #[test]
    fn rows_round_trip_through_dynamodb_items_without_nulls() {
        let now = datetime!(2026-11-28 12:00:00 UTC);
        let row = OutboxRow::pending(
            &source("e1"),
            "p-1".into(),
            r#"{"id":"p-1"}"#.into(),
            now,
            now,
        );
        let item: serde_dynamo::Item = serde_dynamo::to_item(&row).unwrap();
        assert!(!item.contains_key("kafka_offset"), "absent, not NULL");
        assert_eq!(
            item.get("status"),
            Some(&serde_dynamo::AttributeValue::S("PENDING".into()))
        );
        let back: OutboxRow = serde_dynamo::from_item(item).unwrap();
        assert_eq!(back, row);
    }

    #[test]
    fn large_payloads_are_stored_compressed_and_read_back_exactly() {
        let now = datetime!(2026-11-28 12:00:00 UTC);
        let big = format!(r#"{{"id":"p","bio":"{}"}}"#, "Zoë ".repeat(100_000));
        let row = OutboxRow::pending(&source("e1"), "p".into(), big.clone(), now, now);
        assert!(row.payload.is_none());
        assert!(row.payload_gzip.as_ref().unwrap().len() < INLINE_PAYLOAD_LIMIT);
        let item: serde_dynamo::Item = serde_dynamo::to_item(&row).unwrap();
        assert!(matches!(
            item.get("payload_gzip"),
            Some(serde_dynamo::AttributeValue::B(_))
        ));
        let back: OutboxRow = serde_dynamo::from_item(item).unwrap();
        assert_eq!(back.payload_bytes().unwrap(), big.as_bytes());
        let small = OutboxRow::pending(&source("e2"), "p".into(), "{}".into(), now, now);
        assert_eq!(small.payload_bytes().unwrap(), b"{}");
    }

    #[test]
    fn backoff_doubles_with_equal_jitter_and_gives_up() {
        let message = Blame::Message { retriable: true };
        let retry = |attempts, jitter| after_failure(attempts, 0, 10, message, jitter);
        assert_eq!(retry(1, 0.0), AfterFailure::RetryIn(500));
        assert_eq!(retry(1, 1.0), AfterFailure::RetryIn(1_000));
        assert_eq!(retry(3, 0.5), AfterFailure::RetryIn(3_000));
        assert_eq!(retry(9, 0.0), AfterFailure::RetryIn(128_000));
        assert_eq!(
            after_failure(30, 0, 99, message, 1.0),
            AfterFailure::RetryIn(300_000)
        );
        assert_eq!(after_failure(10, 0, 10, message, 0.3), AfterFailure::GiveUp);
        let refused = Blame::Message { retriable: false };
        assert_eq!(after_failure(1, 0, 10, refused, 0.3), AfterFailure::GiveUp);
    }

    #[test]
    fn a_failure_that_is_not_the_message_s_waits_without_spending_attempts() {
        let wait =
            |attempts, waits, jitter| after_failure(attempts, waits, 2, Blame::Cluster, jitter);
        // The backoff grows with the row's waits, whatever its attempts.
        assert_eq!(wait(1, 0, 0.0), AfterFailure::WaitIn(500));
        assert_eq!(wait(1, 2, 1.0), AfterFailure::WaitIn(4_000));
        // At and past the attempt limit: still waiting, never FAILED.
        assert_eq!(wait(2, 5, 0.0), AfterFailure::WaitIn(16_000));
        assert_eq!(wait(7, 0, 0.0), AfterFailure::WaitIn(500));
        // Capped at five minutes, however long the outage.
        assert_eq!(wait(2, 1_000, 1.0), AfterFailure::WaitIn(300_000));
    }
}
