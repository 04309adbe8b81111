//! DynamoDB request units, measured: an AWS SDK interceptor that asks DynamoDB for
//! `ReturnConsumedCapacity: INDEXES` on every request that takes it and adds up what each
//! answer reports, by table and index, as read or write units.
//!
//! For the bench (issue #15): the pipeline's clients are built with a [`CapacityMeter`], so
//! every write and read the pipeline makes is counted without the store code knowing. DynamoDB
//! Local reports consumed capacity as DynamoDB does (per table and per index); a request that
//! fails (e.g. a conditional write whose condition failed) reports none, though DynamoDB bills
//! it, so the meter counts what succeeded: the happy path's cost.
//!
//! Written against the SDK's interceptor interface rather than by adding the parameter to each
//! call: the store code stays as it runs in production, and the meter sees every request,
//! retries included.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use serde_json::Value;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// On-demand list prices in us-east-1, US$ per million request units (the figures
/// `docs/deploy.md` uses).
pub const USD_PER_MILLION_WRU: f64 = 0.625;
/// See [`USD_PER_MILLION_WRU`].
pub const USD_PER_MILLION_RRU: f64 = 0.125;

/// Where units were consumed: a table, or one of its indexes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    /// The table's name.
    pub table: String,
    /// The index's name; `None` for the table itself.
    pub index: Option<String>,
}

/// Read and write units consumed at one [`Place`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    /// Read request units.
    pub read: f64,
    /// Write request units.
    pub write: f64,
}

/// Units consumed so far, by place, and the requests that reported them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Consumed {
    /// Units by table and index.
    pub by_place: BTreeMap<Place, Units>,
    /// Requests whose answer reported consumed capacity.
    pub requests: u64,
}

impl Consumed {
    /// All read and write units, tables and indexes together.
    pub fn total(&self) -> Units {
        self.by_place
            .values()
            .fold(Units::default(), |sum, u| Units {
                read: sum.read + u.read,
                write: sum.write + u.write,
            })
    }

    /// What these units cost at the on-demand list prices, in US$.
    pub fn usd(&self) -> f64 {
        let total = self.total();
        (total.write * USD_PER_MILLION_WRU + total.read * USD_PER_MILLION_RRU) / 1e6
    }

    /// Adds one answer's `ConsumedCapacity` (an object, or a list of them for batch and
    /// transaction operations) for an operation of `kind`. Entries that name read or write
    /// units explicitly (transactions do) are taken as named; a bare `CapacityUnits` counts
    /// as `kind`'s units.
    pub fn add(&mut self, kind: Kind, consumed: &Value) {
        let entries: Vec<&Value> = match consumed {
            Value::Array(entries) => entries.iter().collect(),
            Value::Object(_) => vec![consumed],
            _ => return,
        };
        for entry in entries {
            let Some(table) = entry.get("TableName").and_then(Value::as_str) else {
                continue;
            };
            let mut add = |index: Option<&str>, units: &Value| {
                let place = Place {
                    table: table.to_string(),
                    index: index.map(str::to_string),
                };
                let slot = self.by_place.entry(place).or_default();
                let number = |key: &str| units.get(key).and_then(Value::as_f64);
                match (number("ReadCapacityUnits"), number("WriteCapacityUnits")) {
                    (None, None) => {
                        let n = number("CapacityUnits").unwrap_or(0.0);
                        match kind {
                            Kind::Read => slot.read += n,
                            Kind::Write => slot.write += n,
                        }
                    }
                    (read, write) => {
                        slot.read += read.unwrap_or(0.0);
                        slot.write += write.unwrap_or(0.0);
                    }
                }
            };
            // Without per-index detail, the whole figure is the table's.
            match entry.get("Table") {
                Some(units) => add(None, units),
                None => add(None, entry),
            }
            for key in ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"] {
                if let Some(Value::Object(indexes)) = entry.get(key) {
                    for (name, units) in indexes {
                        add(Some(name), units);
                    }
                }
            }
            self.requests += 1;
        }
    }
}

/// Whether an operation is billed in read or write units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// GetItem, BatchGetItem, Query, Scan, TransactGetItems.
    Read,
    /// PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems.
    Write,
}

impl Kind {
    /// The kind of the DynamoDB operation an `X-Amz-Target` header names
    /// (`DynamoDB_20120810.PutItem`), or `None` for one that does not take
    /// `ReturnConsumedCapacity` (table management, streams).
    pub fn of_target(target: &str) -> Option<Kind> {
        match target.rsplit('.').next()? {
            "GetItem" | "BatchGetItem" | "Query" | "Scan" | "TransactGetItems" => Some(Kind::Read),
            "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems" => {
                Some(Kind::Write)
            }
            _ => None,
        }
    }
}

/// The interceptor: add it to a DynamoDB client's config
/// (`aws_sdk_dynamodb::config::Builder::interceptor`); read the sums with
/// [`CapacityMeter::consumed`]. Clones share one tally.
#[derive(Debug, Clone, Default)]
pub struct CapacityMeter {
    consumed: Arc<Mutex<Consumed>>,
}

/// The operation kind of the request in flight, from `modify_before_signing` to
/// `read_after_deserialization`.
#[derive(Debug, Clone, Copy)]
struct Metered(Kind);

impl Storable for Metered {
    type Storer = StoreReplace<Self>;
}

impl CapacityMeter {
    /// A meter with nothing counted.
    pub fn new() -> Self {
        Self::default()
    }

    /// What has been counted so far.
    pub fn consumed(&self) -> Consumed {
        self.consumed.lock().expect("meter lock").clone()
    }

    /// Forgets what has been counted (e.g. the bench's set-up writes).
    pub fn reset(&self) {
        *self.consumed.lock().expect("meter lock") = Consumed::default();
    }

    /// A DynamoDB client built from `shared` with this meter on it.
    pub fn client(&self, shared: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::from(shared)
            .interceptor(self.clone())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }
}

impl Intercept for CapacityMeter {
    fn name(&self) -> &'static str {
        "CapacityMeter"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        let Some(kind) = request
            .headers()
            .get("x-amz-target")
            .and_then(Kind::of_target)
        else {
            return Ok(());
        };
        let Some(body) = request.body().bytes() else {
            return Ok(());
        };
        let mut json: Value = serde_json::from_slice(body)?;
        let Some(object) = json.as_object_mut() else {
            return Ok(());
        };
        object.insert("ReturnConsumedCapacity".into(), "INDEXES".into());
        let body = serde_json::to_vec(&json)?;
        request
            .headers_mut()
            .insert("content-length", body.len().to_string());
        *request.body_mut() = SdkBody::from(body);
        cfg.interceptor_state().store_put(Metered(kind));
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Metered(kind)) = cfg.load::<Metered>().copied() else {
            return Ok(());
        };
        if !context.response().status().is_success() {
            return Ok(());
        }
        let Some(body) = context.response().body().bytes() else {
            return Ok(());
        };
        let answer: Value = serde_json::from_slice(body)?;
        if let Some(consumed) = answer.get("ConsumedCapacity") {
            self.consumed
                .lock()
                .expect("meter lock")
                .add(kind, consumed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn place(table: &str, index: Option<&str>) -> Place {
        Place {
            table: table.into(),
            index: index.map(Into::into),
        }
    }

    #[test]
    fn a_put_counts_write_units_by_table_and_index() {
        let mut consumed = Consumed::default();
        // As DynamoDB Local answers a PutItem of a 3 KB item with one keys-only index.
        consumed.add(
            Kind::Write,
            &json!({"TableName":"t","CapacityUnits":4.0,"Table":{"CapacityUnits":3.0},
                    "GlobalSecondaryIndexes":{"by_s":{"CapacityUnits":1.0}}}),
        );
        assert_eq!(
            consumed.by_place[&place("t", None)],
            Units {
                read: 0.0,
                write: 3.0
            }
        );
        assert_eq!(consumed.by_place[&place("t", Some("by_s"))].write, 1.0);
        assert_eq!(consumed.total().write, 4.0);
        assert_eq!(consumed.requests, 1);
    }

    #[test]
    fn a_transaction_names_its_units_and_lists_tables() {
        let mut consumed = Consumed::default();
        consumed.add(
            Kind::Write,
            &json!([{"TableName":"a","CapacityUnits":2.0,"WriteCapacityUnits":2.0,
                     "Table":{"WriteCapacityUnits":2.0,"CapacityUnits":2.0}},
                    {"TableName":"b","CapacityUnits":1.0,"ReadCapacityUnits":1.0,
                     "Table":{"ReadCapacityUnits":1.0,"CapacityUnits":1.0}}]),
        );
        assert_eq!(consumed.by_place[&place("a", None)].write, 2.0);
        assert_eq!(consumed.by_place[&place("b", None)].read, 1.0);
        assert_eq!(
            consumed.total(),
            Units {
                read: 1.0,
                write: 2.0
            }
        );
    }

    #[test]
    fn a_read_without_detail_is_the_tables() {
        let mut consumed = Consumed::default();
        consumed.add(Kind::Read, &json!({"TableName":"t","CapacityUnits":0.5}));
        assert_eq!(consumed.by_place[&place("t", None)].read, 0.5);
    }

    #[test]
    fn dollars_at_list_prices() {
        let mut consumed = Consumed::default();
        consumed.add(Kind::Write, &json!({"TableName":"t","CapacityUnits":8.0}));
        consumed.add(Kind::Read, &json!({"TableName":"t","CapacityUnits":2.0}));
        assert!((consumed.usd() - (8.0 * 0.625 + 2.0 * 0.125) / 1e6).abs() < 1e-15);
    }

    #[test]
    fn only_data_operations_are_metered() {
        assert_eq!(
            Kind::of_target("DynamoDB_20120810.TransactWriteItems"),
            Some(Kind::Write)
        );
        assert_eq!(Kind::of_target("DynamoDB_20120810.Query"), Some(Kind::Read));
        assert_eq!(Kind::of_target("DynamoDB_20120810.DescribeTable"), None);
        assert_eq!(Kind::of_target("DynamoDBStreams_20120810.GetRecords"), None);
    }
}
