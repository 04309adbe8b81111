//! The outbox table's handle: [`OutboxStore`], the one writer of the table.
//! Its requests are split by responsibility: `outbox/read.rs` (reads and
//! the due index), `outbox/claim.rs` (claims) and `outbox/write.rs` (inserts
//! and the relay's and operators' transitions, named in
//! [`super::transition`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
#[cfg(feature = "dev")]
use std::sync::Mutex;

use aws_sdk_dynamodb::types::{AttributeValue, ConsumedCapacity};
use aws_sdk_dynamodb::Client;

use super::row::OutboxRow;
#[cfg(feature = "dev")]
use super::schema::{ID, INDEXES};
use super::StoreError;
#[cfg(feature = "dev")]
use crate::capacity::{write_units, Consumed, Place};

/// How many conditional writes one relay keeps in flight.
pub(super) const WRITE_CONCURRENCY: usize = 32;

/// Batched requests (`still_new` reads) one store keeps in flight at once.
pub(super) const BATCH_CONCURRENCY: usize = 4;

/// The outbox table: every read and write of it goes through here.
///
/// Cheap to clone (the clones share the SDK client, the [`WriteStats`] and
/// the due-index rotation). It holds no row: every answer is read from
/// DynamoDB, every change is a conditional write ([`super::transition`]).
#[derive(Clone)]
pub struct OutboxStore {
    pub(super) client: Client,
    pub(super) table: String,
    pub(super) stats: Arc<WriteStats>,
    /// The due-index shard the next [`due_ids`](Self::due_ids) serves first.
    pub(super) next_shard: Arc<AtomicUsize>,
}

impl OutboxStore {
    /// A handle on the outbox table named `table` (the configured
    /// `OUTBOX_TABLE`). Sends nothing: a missing table shows at the first
    /// request, as a [`StoreError::Transient`] (it is fixed by deploying).
    pub fn new(client: Client, table: impl Into<String>) -> OutboxStore {
        OutboxStore {
            client,
            table: table.into(),
            stats: Arc::default(),
            next_shard: Arc::default(),
        }
    }

    /// The writes this store (and its clones) made so far.
    pub fn stats(&self) -> &WriteStats {
        &self.stats
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }
}

/// Writes a store made, for the benchmark's writes-per-participant: counted
/// from DynamoDB's answers (`ReturnConsumedCapacity::TOTAL`), so only
/// writes that succeeded count.
#[derive(Debug, Default)]
pub struct WriteStats {
    /// Items written.
    pub items: AtomicU64,
    /// Write capacity units DynamoDB reports as consumed, in tenths.
    pub capacity_tenths: AtomicU64,
    /// Units of the writes DynamoDB Local does not report (the PartiQL
    /// marks), by place, computed by [`crate::capacity::write_units`]; kept
    /// only after [`WriteStats::compute_statement_units`] (the bench), as
    /// computing them costs CPU a relay has no use for (and the Lambdas,
    /// built without the `dev` feature, do not have it).
    #[cfg(feature = "dev")]
    computed: Mutex<Option<Consumed>>,
}

impl WriteStats {
    pub(super) fn record(&self, items: usize, capacity: &[ConsumedCapacity]) {
        self.items.fetch_add(items as u64, Ordering::Relaxed);
        let units: f64 = capacity.iter().filter_map(|c| c.capacity_units).sum();
        self.capacity_tenths
            .fetch_add((units * 10.0).round() as u64, Ordering::Relaxed);
    }

    #[cfg(feature = "dev")]
    /// From now on, computes the units of the writes DynamoDB does not
    /// report (see [`WriteStats::computed_units`]).
    pub fn compute_statement_units(&self) {
        self.computed
            .lock()
            .expect("stats lock")
            .get_or_insert_with(Consumed::default);
    }

    #[cfg(feature = "dev")]
    /// The units computed since [`WriteStats::compute_statement_units`].
    pub fn computed_units(&self) -> Consumed {
        let computed = self.computed.lock().expect("stats lock");
        computed.clone().unwrap_or_default()
    }

    #[cfg(feature = "dev")]
    /// Adds the units of one write of `before` into `after()` on `table`,
    /// if they are being computed (`after` is only built then: it is a
    /// copy of the row).
    pub(super) fn compute(
        &self,
        table: &str,
        before: &OutboxRow,
        after: impl FnOnce() -> OutboxRow,
    ) {
        let mut computed = self.computed.lock().expect("stats lock");
        let Some(consumed) = computed.as_mut() else {
            return;
        };
        let (Ok(before), Ok(after)) = (to_item(before), to_item(&after())) else {
            return;
        };
        for (index, units) in write_units(&[ID], Some(&before), Some(&after), &INDEXES) {
            let place = Place {
                table: table.to_string(),
                index: index.map(str::to_string),
            };
            consumed.add_write(place, units);
            self.capacity_tenths
                .fetch_add((units * 10.0).round() as u64, Ordering::Relaxed);
        }
    }

    /// Items written so far.
    pub fn items(&self) -> u64 {
        self.items.load(Ordering::Relaxed)
    }

    /// Write capacity units consumed so far, to a tenth.
    pub fn capacity_units(&self) -> f64 {
        self.capacity_tenths.load(Ordering::Relaxed) as f64 / 10.0
    }
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The row as a DynamoDB item (absent values left out).
pub(super) fn to_item(row: &OutboxRow) -> Result<HashMap<String, AttributeValue>, StoreError> {
    serde_dynamo::to_item(row).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A stored item as a row; [`StoreError::Corrupt`] if it is not one.
pub(super) fn parse_row(item: HashMap<String, AttributeValue>) -> Result<OutboxRow, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}
