//! Outbox rows for tests, built and moved on with the outbox's own
//! constructors and transitions (never by setting states by hand), so a
//! seeded row is the row the pipeline would have left.

use raffle_outbox::demo;
use raffle_outbox::outbox::row::epoch_ms;
use raffle_outbox::outbox::{OutboxRow, OutboxStore, Source, Stored};
use time::OffsetDateTime;

/// Outbox row number `n`: sample participant `n`, PENDING, created now and
/// due at `due`, from stream event `ev-{n}` (so its id is fixed by `n`).
pub fn pending(n: usize, due: OffsetDateTime) -> OutboxRow {
    let (id, participant) = demo::sample_participant(n);
    let source = Source {
        event_id: format!("ev-{n}"),
        sequence_number: Some(format!("{n:021}")),
    };
    let now = OffsetDateTime::now_utc();
    OutboxRow::pending(&source, id, participant.to_string(), now, due)
}

/// `row` as the delivered transition leaves it, stored at
/// `topic`/`partition`@`offset`, delivered when it was created.
pub fn delivered(row: OutboxRow, topic: &str, partition: i32, offset: i64) -> OutboxRow {
    let at = time::OffsetDateTime::parse(
        &row.created_at,
        &time::format_description::well_known::Rfc3339,
    )
    .expect("created_at is RFC 3339");
    let stored = Stored {
        topic: topic.to_string(),
        partition,
        offset,
        timestamp: epoch_ms(at),
    };
    row.into_delivered(&stored, at, None)
}

/// `row` as the failed transition leaves it after `attempts` sends refused
/// for the message's fault, the last with `error`.
pub fn failed(row: OutboxRow, attempts: u32, error: &str) -> OutboxRow {
    OutboxRow { attempts, ..row }.into_failed(error)
}

/// Puts a due row in the state a relay that crashed mid-send leaves it in,
/// `claims` times over: claimed by `relay-that-crashed` under a lease that
/// ended a second ago, each claim counting its attempt. The claim
/// transition itself, so the state is the one a real claim writes.
pub async fn crashed_claims(outbox: &OutboxStore, row: &OutboxRow, claims: u32) {
    let now = OffsetDateTime::now_utc();
    let ended = epoch_ms(now) - 1_000;
    for claim in 0..claims {
        let claimed = outbox
            .claim(
                std::slice::from_ref(&row.id),
                "relay-that-crashed",
                now,
                ended,
            )
            .await;
        assert!(
            claimed.errors.is_empty() && claimed.rows.len() == 1,
            "claim {claim} of {}: {claimed:?}",
            row.id
        );
    }
}
