//! The outbox table's names, in one place: the table's logical name, its
//! indexes and the attributes a row is stored with. The migrations
//! (`migrations/000{2,3,4,5}_outbox*`) create what is named here; the tests
//! below hold the two together, and hold [`ATTRIBUTES`] to
//! [`super::OutboxRow`]'s stored form.
//!
//! The attribute names are the audit's contract (the export's columns, the
//! compliance team's queries): renaming one is a migration, not a refactor.

#[cfg(feature = "dev")]
use crate::capacity::IndexShape;

/// The outbox's logical table name in `migrations/` (the configured
/// `OUTBOX_TABLE` replaces it).
pub const TABLE: &str = "outbox";

/// The sparse index of rows that have work to do: key [`DUE_SHARD`] /
/// [`DUE_AT`], keys only (migration 0002). New rows are not in it (they
/// have no `due_at`: the outbox stream hands them to a relay); a row enters
/// it with a `due_at` (a failed send, a claim, a redrive) and leaves it by
/// losing those two attributes (DELIVERED, FAILED rows).
pub const DUE_INDEX: &str = "due";
/// Rows by state and creation time: key [`STATUS`] / [`CREATED_AT`],
/// projecting [`AUDIT_ATTRIBUTES`] (migration 0003).
pub const BY_STATUS_INDEX: &str = "by_status";
/// Rows by participant and creation time: key [`PARTICIPANT_ID`] /
/// [`CREATED_AT`], projecting [`AUDIT_ATTRIBUTES`] (migration 0004).
pub const BY_PARTICIPANT_INDEX: &str = "by_participant";

/// The key: UUID v5 of the stream record's event id (or, for a row
/// `reconcile --repair` wrote, of the participant id).
pub const ID: &str = "id";
/// The participant's id: the Kafka key.
pub const PARTICIPANT_ID: &str = "participant_id";
/// `PENDING`, `IN_FLIGHT`, `DELIVERED`, `FAILED` or `REJECTED`.
pub const STATUS: &str = "status";
/// RFC 3339, UTC, exactly three fractional digits (sorts as time).
pub const CREATED_AT: &str = "created_at";
/// Sends that failed for the message's fault, plus claims without outcome.
pub const ATTEMPTS: &str = "attempts";
/// Sends that failed for another cause (absent until the first).
pub const WAITS: &str = "waits";
/// The last send's or mark's error (kept after a later success).
pub const LAST_ERROR: &str = "last_error";
/// The participant as JSON, the Kafka value.
pub const PAYLOAD: &str = "payload";
/// The same, gzip-compressed, when it is over 256 KB.
pub const PAYLOAD_GZIP: &str = "payload_gzip";
/// REJECTED rows: the stream image as DynamoDB JSON.
pub const RAW_IMAGE: &str = "raw_image";
/// REJECTED rows: why.
pub const REJECT_REASON: &str = "reject_reason";
/// DELIVERED rows: where the broker stored the message.
pub const KAFKA_TOPIC: &str = "kafka_topic";
/// DELIVERED rows: the partition.
pub const KAFKA_PARTITION: &str = "kafka_partition";
/// DELIVERED rows: the offset in the partition.
pub const KAFKA_OFFSET: &str = "kafka_offset";
/// DELIVERED rows: the record's timestamp, epoch ms.
pub const KAFKA_TIMESTAMP: &str = "kafka_timestamp";
/// DELIVERED rows: when the relay marked it, RFC 3339.
pub const DELIVERED_AT: &str = "delivered_at";
/// The participants stream record's event id.
pub const SOURCE_EVENT_ID: &str = "source_event_id";
/// The participants stream record's sequence number.
pub const SOURCE_SEQUENCE_NUMBER: &str = "source_sequence_number";
/// [`DUE_INDEX`] partition key, `0`..`15`: present while the row has work.
pub const DUE_SHARD: &str = "due_shard";
/// [`DUE_INDEX`] sort key, epoch ms: when the row may next be claimed.
pub const DUE_AT: &str = "due_at";
/// IN_FLIGHT rows: the relay holding the lease.
pub const LEASE_OWNER: &str = "lease_owner";
/// IN_FLIGHT rows: the lease's end, epoch ms.
pub const LEASE_UNTIL: &str = "lease_until";
/// Times an operator redrove the row (absent until the first).
pub const REDRIVE_COUNT: &str = "redrive_count";
/// One `{at, attempts_before, last_error}` map per redrive.
pub const REDRIVE_HISTORY: &str = "redrive_history";
/// The TTL attribute (migration 0005): epoch seconds after which DynamoDB
/// deletes a DELIVERED row. Only DELIVERED rows carry it, and only under a
/// retention policy.
pub const EXPIRES_AT: &str = "expires_at";
/// The participant's trace context, a W3C `traceparent` value: the
/// registration's when it came through `register`, else one the stream
/// handler started. The relay sends a new span of it with each send.
pub const TRACEPARENT: &str = "traceparent";

/// Every attribute a row may be stored with.
pub const ATTRIBUTES: [&str; 26] = [
    ID,
    PARTICIPANT_ID,
    STATUS,
    CREATED_AT,
    ATTEMPTS,
    WAITS,
    LAST_ERROR,
    PAYLOAD,
    PAYLOAD_GZIP,
    RAW_IMAGE,
    REJECT_REASON,
    KAFKA_TOPIC,
    KAFKA_PARTITION,
    KAFKA_OFFSET,
    KAFKA_TIMESTAMP,
    DELIVERED_AT,
    SOURCE_EVENT_ID,
    SOURCE_SEQUENCE_NUMBER,
    DUE_SHARD,
    DUE_AT,
    LEASE_OWNER,
    LEASE_UNTIL,
    REDRIVE_COUNT,
    REDRIVE_HISTORY,
    EXPIRES_AT,
    TRACEPARENT,
];

/// What the audit indexes hold of a row, keys included: everything an audit
/// asks except the participant's own fields (the payload stays in the
/// table) and the relay's bookkeeping (due, lease, waits).
pub const AUDIT_ATTRIBUTES: [&str; 16] = [
    ID,
    PARTICIPANT_ID,
    STATUS,
    CREATED_AT,
    ATTEMPTS,
    REDRIVE_COUNT,
    KAFKA_TOPIC,
    KAFKA_PARTITION,
    KAFKA_OFFSET,
    KAFKA_TIMESTAMP,
    DELIVERED_AT,
    LAST_ERROR,
    REJECT_REASON,
    SOURCE_EVENT_ID,
    SOURCE_SEQUENCE_NUMBER,
    EXPIRES_AT,
];

/// The indexes, as [`crate::capacity::write_units`] counts their writes
/// (the migrations create them so).
#[cfg(feature = "dev")]
pub const INDEXES: [IndexShape<'static>; 3] = [
    IndexShape {
        name: DUE_INDEX,
        keys: &[DUE_SHARD, DUE_AT],
        projected: &[],
    },
    IndexShape {
        name: BY_STATUS_INDEX,
        keys: &[STATUS, CREATED_AT],
        projected: &AUDIT_ATTRIBUTES,
    },
    IndexShape {
        name: BY_PARTICIPANT_INDEX,
        keys: &[PARTICIPANT_ID, CREATED_AT],
        projected: &AUDIT_ATTRIBUTES,
    },
];

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
