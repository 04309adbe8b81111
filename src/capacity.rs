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
use aws_sdk_dynamodb::types::AttributeValue;
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

impl Consumed {
    /// Adds `write` units at `place`, computed rather than reported (see
    /// [`write_units`]).
    pub fn add_write(&mut self, place: Place, write: f64) {
        self.by_place.entry(place).or_default().write += write;
    }

    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &Consumed) {
        for (place, units) in &other.by_place {
            let slot = self.by_place.entry(place.clone()).or_default();
            slot.read += units.read;
            slot.write += units.write;
        }
        self.requests += other.requests;
    }
}

/// A DynamoDB item, as the SDK carries it.
pub type Item = std::collections::HashMap<String, AttributeValue>;

/// What a global secondary index holds of an item, for [`write_units`].
#[derive(Debug, Clone, Copy)]
pub struct IndexShape<'a> {
    /// The index's name.
    pub name: &'a str,
    /// Its key attributes: an item without all of them is not in it.
    pub keys: &'a [&'a str],
    /// The attributes it projects besides its keys and the table's (empty:
    /// keys only).
    pub projected: &'a [&'a str],
}

/// An item's size by AWS's published rules (DynamoDB Developer Guide,
/// "Item sizes and formats"): each attribute's name in UTF-8 bytes plus its
/// value: a string's UTF-8 bytes, a binary's bytes, a number's 1 byte per
/// two significant digits plus 1, a boolean or null 1, a list or map 3
/// plus 1 per element (and a map entry's name), sets the sum of their
/// members.
pub fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, v)| name.len() + value_size(v))
        .sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::Ns(set) => set.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(set) => set.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(name, v)| 1 + name.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 0,
    }
}

fn number_size(number: &str) -> usize {
    let mantissa = number.split(['e', 'E']).next().unwrap_or_default();
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.div_ceil(2) + 1
}

/// Write request units one write of an item costs, by place (`None`: the
/// table; only places that are written), from the item `before` and
/// `after` the write (`None`: absent), by AWS's published rules: the table
/// bills the larger of the two per started KB (at least 1); an index entry
/// is its keys, the table's keys and its projected attributes plus 100
/// bytes, and a write puts it (1 per started KB of the new entry), deletes
/// it (of the old), updates it when a projected attribute changed (of the
/// larger), or deletes and puts it when its key changed — and costs the
/// index nothing when none of its attributes changed.
///
/// For the writes DynamoDB Local does not report units for (PartiQL
/// statements); `tests/capacity.rs` holds it to what DynamoDB Local reports
/// for the PutItem and UpdateItem it does.
pub fn write_units<'a>(
    table_keys: &[&str],
    before: Option<&Item>,
    after: Option<&Item>,
    indexes: &[IndexShape<'a>],
) -> Vec<(Option<&'a str>, f64)> {
    let per_kb = |size: usize| size.div_ceil(1024).max(1) as f64;
    let size = before.map_or(0, item_size).max(after.map_or(0, item_size));
    let mut units = vec![(None, per_kb(size))];
    for index in indexes {
        let written = match (
            index_entry(index, table_keys, before),
            index_entry(index, table_keys, after),
        ) {
            (None, None) => 0.0,
            (None, Some((_, size))) | (Some((_, size)), None) => per_kb(size),
            (Some((old, old_size)), Some((new, new_size))) => {
                // Both lists hold the attributes in the same order, the
                // index's keys first.
                let keys = index.keys.len();
                if old[..keys] != new[..keys] {
                    per_kb(old_size) + per_kb(new_size)
                } else if old != new {
                    per_kb(old_size.max(new_size))
                } else {
                    0.0
                }
            }
        };
        if written > 0.0 {
            units.push((Some(index.name), written));
        }
    }
    units
}

/// What `index` holds of `item` (its attributes, in a fixed order, its
/// keys first) and
/// the entry's size, or `None` if the item lacks one of its keys.
fn index_entry<'i>(
    index: &IndexShape<'_>,
    table_keys: &[&str],
    item: Option<&'i Item>,
) -> Option<(Vec<(&'i str, &'i AttributeValue)>, usize)> {
    let item = item?;
    if !index.keys.iter().all(|k| item.contains_key(*k)) {
        return None;
    }
    let mut names: Vec<&str> = Vec::new();
    for name in index.keys.iter().chain(table_keys).chain(index.projected) {
        if !names.contains(name) {
            names.push(name);
        }
    }
    let held: Vec<(&str, &AttributeValue)> = names
        .into_iter()
        .filter_map(|name| item.get_key_value(name))
        .map(|(name, value)| (name.as_str(), value))
        .collect();
    let size = 100
        + held
            .iter()
            .map(|(n, v)| n.len() + value_size(v))
            .sum::<usize>();
    Some((held, size))
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

    fn item(attributes: &[(&str, AttributeValue)]) -> Item {
        attributes
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn item_sizes_follow_the_published_rules() {
        let s = |v: &str| AttributeValue::S(v.into());
        let n = |v: &str| AttributeValue::N(v.into());
        assert_eq!(item_size(&item(&[("id", s("abc"))])), 5);
        // 1 byte per two significant digits, plus 1: leading and trailing zeros do not count.
        assert_eq!(item_size(&item(&[("n", n("12345"))])), 1 + 4);
        assert_eq!(item_size(&item(&[("n", n("-0012.3400"))])), 1 + 3);
        assert_eq!(item_size(&item(&[("n", n("0"))])), 1 + 1);
        assert_eq!(item_size(&item(&[("b", AttributeValue::Bool(true))])), 2);
        // A list: 3, plus 1 per element; a map's entries carry their names.
        let list = AttributeValue::L(vec![s("ab"), n("7")]);
        assert_eq!(item_size(&item(&[("l", list)])), 1 + 3 + (1 + 2) + (1 + 2));
        let map = AttributeValue::M([("k".to_string(), s("v"))].into());
        assert_eq!(item_size(&item(&[("m", map)])), 1 + 3 + 1 + 1 + 1);
    }

    #[test]
    fn index_writes_put_delete_update_or_move_the_entry() {
        let s = |v: &str| AttributeValue::S(v.into());
        let by_status = IndexShape {
            name: "by_status",
            keys: &["status", "at"],
            projected: &["offset"],
        };
        let due = IndexShape {
            name: "due",
            keys: &["shard", "due_at"],
            projected: &[],
        };
        let indexes = [by_status, due];
        let new = item(&[
            ("id", s("r")),
            ("status", s("PENDING")),
            ("at", s("1")),
            ("shard", s("3")),
            ("due_at", AttributeValue::N("5".into())),
        ]);
        // An insert: the row and one entry in each index that has its keys.
        assert_eq!(
            write_units(&["id"], None, Some(&new), &indexes),
            [(None, 1.0), (Some("by_status"), 1.0), (Some("due"), 1.0)]
        );
        // The status (a key) changes: delete + put; it leaves `due`: a delete.
        let mut delivered = new.clone();
        delivered.insert("status".into(), s("DELIVERED"));
        delivered.insert("offset".into(), AttributeValue::N("42".into()));
        delivered.remove("due_at");
        assert_eq!(
            write_units(&["id"], Some(&new), Some(&delivered), &indexes),
            [(None, 1.0), (Some("by_status"), 2.0), (Some("due"), 1.0)]
        );
        // A projected attribute changes: an update; an attribute no index
        // holds changes: the table alone.
        let mut moved = delivered.clone();
        moved.insert("offset".into(), AttributeValue::N("43".into()));
        assert_eq!(
            write_units(&["id"], Some(&delivered), Some(&moved), &indexes),
            [(None, 1.0), (Some("by_status"), 1.0)]
        );
        let mut noted = moved.clone();
        noted.insert("note".into(), s("x"));
        assert_eq!(
            write_units(&["id"], Some(&moved), Some(&noted), &indexes),
            [(None, 1.0)]
        );
        // Sizes: the table bills per started KB of the larger image.
        let mut big = noted.clone();
        big.insert("payload".into(), s(&"x".repeat(2_000)));
        assert_eq!(
            write_units(&["id"], Some(&noted), Some(&big), &indexes),
            [(None, 2.0)]
        );
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
