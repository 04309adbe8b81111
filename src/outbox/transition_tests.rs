//! The transitions' expressions, pinned: a change here changes what the
//! table accepts, and must be one on purpose.

use super::*;
use time::macros::datetime;

fn stored() -> Stored {
    Stored {
        topic: "t".into(),
        partition: 2,
        offset: 7,
        timestamp: 1_000,
    }
}

#[test]
fn a_claimed_row_is_delivered_under_its_lease_keeping_its_claims_attempt() {
    let now = datetime!(2026-11-28 12:00:00 UTC);
    let t = Transition::delivered("r", Holder::Lease("me"), &stored(), now, Some(9));
    assert_eq!(
        t.update,
        "SET #status = :delivered, kafka_topic = :topic, kafka_partition = :partition, \
         kafka_offset = :offset, kafka_timestamp = :timestamp, delivered_at = :now, \
         expires_at = :expires_at REMOVE due_shard, due_at, lease_owner, lease_until"
    );
    assert_eq!(t.condition, "#status = :held_status AND lease_owner = :me");
    assert_eq!(t.values[":held_status"], s("IN_FLIGHT"));
    assert_eq!(t.values[":partition"], n(2));
    assert_eq!(t.values[":now"], s("2026-11-28T12:00:00.000Z"));
    assert_eq!(t.values.len(), 9);
}

/// `t` as the PartiQL text and parameters a batch sends.
fn statement(t: &Transition) -> (String, Vec<AttributeValue>) {
    let shape = t.statement_shape("outbox").unwrap();
    let parameters = t.clone().into_parameters(&shape).unwrap();
    (shape.text, parameters)
}

#[test]
fn the_delivered_transitions_read_the_same_as_partiql_statements() {
    let now = datetime!(2026-11-28 12:00:00 UTC);
    let t = Transition::delivered("r", Holder::Lease("me"), &stored(), now, None);
    let (text, parameters) = statement(&t);
    assert_eq!(
        text,
        "UPDATE \"outbox\" SET \"status\" = ? SET kafka_topic = ? SET kafka_partition = ? \
         SET kafka_offset = ? SET kafka_timestamp = ? SET delivered_at = ? \
         REMOVE due_shard REMOVE due_at REMOVE lease_owner REMOVE lease_until \
         WHERE id = ? AND (\"status\" = ? AND lease_owner = ?)"
    );
    assert_eq!(
        parameters,
        [
            s("DELIVERED"),
            s("t"),
            n(2),
            n(7),
            n(1_000),
            s("2026-11-28T12:00:00.000Z"),
            s("r"),
            s("IN_FLIGHT"),
            s("me"),
        ]
    );
    let t = Transition::delivered("r", Holder::Fresh, &stored(), now, Some(9));
    let (text, parameters) = statement(&t);
    assert_eq!(
        text,
        "UPDATE \"outbox\" SET \"status\" = ? SET kafka_topic = ? SET kafka_partition = ? \
         SET kafka_offset = ? SET kafka_timestamp = ? SET delivered_at = ? SET expires_at = ? \
         SET attempts = ? REMOVE due_shard REMOVE due_at \
         WHERE id = ? AND (\"status\" = ? AND attempts = ? \
         AND (waits IS MISSING OR waits = ?))"
    );
    assert_eq!(parameters.len(), 12);
    assert_eq!(parameters[6..8], [n(9), n(1)]);
    // `:zero` comes twice in the condition: both get its value.
    assert_eq!(parameters[10..], [n(0), n(0)]);
    // ADD has no PartiQL twin here: waits and retries stay UpdateItems.
    assert!(
        Transition::retry("r", Holder::Fresh, "down", 5, Spent::Wait)
            .statement_shape("outbox")
            .is_none()
    );
}

#[test]
fn a_fresh_row_s_wait_counts_a_wait_and_no_attempt() {
    let t = Transition::retry("r", Holder::Fresh, "down", 5, Spent::Wait);
    assert_eq!(
        t.update,
        "SET #status = :pending, last_error = :error, due_at = :due ADD waits :one_wait"
    );
    assert_eq!(
        t.condition,
        "#status = :held_status AND attempts = :zero \
         AND (attribute_not_exists(waits) OR waits = :zero)"
    );
    let t = Transition::retry("r", Holder::Fresh, "too large", 5, Spent::Attempt);
    assert_eq!(
        t.update,
        "SET #status = :pending, last_error = :error, due_at = :due, attempts = :one"
    );
}

#[test]
fn a_claimed_row_failed_unsent_gets_its_claim_s_attempt_back() {
    let t = Transition::failed("r", Holder::Lease("me"), "corrupt", Spent::Nothing);
    assert_eq!(
        t.update,
        "SET #status = :failed, last_error = :error \
         REMOVE due_shard, due_at, lease_owner, lease_until ADD attempts :minus_one"
    );
    assert_eq!(t.values[":minus_one"], n(-1));
}

#[test]
fn claim_redrive_and_expiry_are_conditional_on_the_state_read() {
    let t = Transition::claim("r", "me", 100, "2026-11-28T11:59:00.000Z", 200);
    assert_eq!(
        t.condition,
        "(#status = :pending AND due_at <= :now) OR (#status = :in_flight AND lease_until < :now) \
         OR (#status = :pending AND attribute_not_exists(due_at) AND created_at <= :stale)"
    );
    assert_eq!(t.values[":stale"], s("2026-11-28T11:59:00.000Z"));
    assert_eq!(
        t.update,
        "SET #status = :in_flight, lease_owner = :owner, lease_until = :until, due_at = :until \
         ADD attempts :one"
    );
    let now = datetime!(2026-11-28 12:00:00 UTC);
    let t = Transition::redrive("r", 10, Some("boom"), now);
    assert_eq!(
        t.condition,
        "#status = :failed AND attempts = :attempts_before"
    );
    assert_eq!(t.values[":shard"], s(due_shard("r")));
    let AttributeValue::L(entries) = &t.values[":entry"] else {
        panic!("a list")
    };
    let entry: crate::outbox::RedriveEntry =
        serde_dynamo::from_attribute_value(entries[0].clone()).unwrap();
    assert_eq!(entry.attempts_before, 10);
    assert_eq!(entry.last_error.as_deref(), Some("boom"));
    assert_eq!(
        Transition::expiry("r", Some(5)).update,
        "SET expires_at = :at"
    );
    assert_eq!(Transition::expiry("r", None).update, "REMOVE expires_at");
    assert_eq!(
        Transition::expiry("r", None).condition,
        "#status = :delivered"
    );
}

#[test]
fn the_in_memory_twins_leave_the_row_as_the_writes_do() {
    let now = datetime!(2026-11-28 12:00:00 UTC);
    let source = crate::outbox::Source {
        event_id: "e".into(),
        sequence_number: None,
    };
    let row = OutboxRow::pending(&source, "p".into(), "{}".into(), now).due(now);
    let delivered = row.clone().into_delivered(&stored(), now, None);
    assert_eq!(
        (delivered.status, delivered.attempts, delivered.due_at),
        (Status::Delivered, 1, None)
    );
    assert_eq!(delivered.coordinates().as_deref(), Some("t/2@7"));
    let failed = OutboxRow {
        attempts: 10,
        ..row
    }
    .into_failed("boom");
    assert_eq!(
        (failed.status, failed.attempts, failed.due_shard),
        (Status::Failed, 10, None)
    );
}
