//! A raffle participant as the compliance team receives it: the DynamoDB image
//! turned into JSON.
//!
//! The mapping is written out by hand over `serde_dynamo`'s attribute values
//! instead of going through `serde_dynamo::from_item::<serde_json::Value>`,
//! because the generic path would turn binary into arrays of numbers and round
//! large numbers through `f64`. The rules, documented in the README:
//!
//! | DynamoDB | JSON |
//! |---|---|
//! | `S` | string |
//! | `N` | number when JSON can hold it exactly (any 64-bit integer, or a decimal whose shortest `f64` form is the same text); otherwise the decimal text as a string, so no digit is lost |
//! | `BOOL`, `NULL` | `true`/`false`, `null` |
//! | `L`, `M` | array, object (keys sorted) |
//! | `SS`, `NS` | sorted array of strings, of numbers (same rule as `N`; sorted by value) |
//! | `B`, `BS` | base64 string, array of base64 strings (sorted by bytes) |

use base64::Engine as _;
use serde_dynamo::{AttributeValue, Item};
use serde_json::{Map, Number, Value};

use crate::contract::{self, Violation};
use crate::trace::TraceContext;

/// The attribute that holds the participant's id: the Kafka key.
pub const ID_ATTRIBUTE: &str = "id";

/// The attribute `register` stores the registration's trace context in (a W3C `traceparent`
/// value). It travels with the participant to the message's `traceparent` header and is not
/// part of the message value. An attribute of this name that is not a `traceparent` is the
/// participant's own data and stays in the value.
pub const TRACE_ATTRIBUTE: &str = "trace_context";

/// DynamoDB's limit on nesting: lists and maps inside one another, at most
/// 32 deep. A deeper image cannot come from DynamoDB, and its JSON would be
/// more than most JSON readers take (serde_json stops at 128 levels).
pub const MAX_NESTING: usize = 32;

/// A participant that passed validation, ready to be written to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Participant {
    /// The participant id: the Kafka message key.
    pub id: String,
    /// The participant as JSON text: the Kafka message value, byte for byte.
    pub json: String,
    /// The trace the participant was registered in ([`TRACE_ATTRIBUTE`]), if it carries one.
    pub trace: Option<TraceContext>,
}

/// Why a stream image cannot become a participant. The text is stored on the
/// REJECTED outbox row, so it names the problem without repeating any data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The record carries no `NewImage`, or an empty one (a REMOVE, or a
    /// stream that does not include new images).
    #[error("the stream record has no NewImage (is the stream view type NEW_IMAGE or NEW_AND_OLD_IMAGES?) or the image is empty")]
    NoImage,
    /// The image has no [`ID_ATTRIBUTE`].
    #[error("the image has no `id` attribute")]
    NoId,
    /// The id attribute is not a string; carries its DynamoDB type (`N`,
    /// `B`, …).
    #[error("the `id` attribute is of type {0}, expected a string (S)")]
    IdNotString(&'static str),
    /// The id attribute is the empty string.
    #[error("the `id` attribute is an empty string")]
    EmptyId,
    /// The participant's JSON is over the message limit: Kafka would refuse
    /// it.
    #[error("the participant is {size} bytes as JSON, over the {limit}-byte message limit")]
    TooLarge {
        /// The JSON's length in bytes.
        size: usize,
        /// The `max_bytes` it was checked against.
        limit: usize,
    },
    /// The participant does not conform to the event contract
    /// ([`crate::contract`]): the failing path and rule, never the value.
    #[error(transparent)]
    OffContract(#[from] Violation),
    /// Lists and maps nest deeper than [`MAX_NESTING`].
    #[error("the image nests lists and maps deeper than {limit} levels (DynamoDB's limit)")]
    TooDeep {
        /// [`MAX_NESTING`].
        limit: usize,
    },
}

impl Participant {
    /// Validates a stream `NewImage` and maps it to JSON: refused when it
    /// is empty, has no string `id`, nests deeper than [`MAX_NESTING`], does
    /// not conform to the event contract ([`contract::check`]) or maps to
    /// more than `max_bytes`.
    ///
    /// `max_bytes` is the largest JSON value the broker will take (Kafka's
    /// `message.max.bytes` less room for key and headers).
    pub fn from_image(image: &Item, max_bytes: usize) -> Result<Participant, Invalid> {
        if image.is_empty() {
            return Err(Invalid::NoImage);
        }
        let id = match image.get(ID_ATTRIBUTE) {
            None => return Err(Invalid::NoId),
            Some(AttributeValue::S(id)) if id.is_empty() => return Err(Invalid::EmptyId),
            Some(AttributeValue::S(id)) => id.clone(),
            Some(other) => return Err(Invalid::IdNotString(type_name(other))),
        };
        if image
            .values()
            .any(|value| nested_deeper_than(value, MAX_NESTING))
        {
            return Err(Invalid::TooDeep { limit: MAX_NESTING });
        }
        let trace = match image.get(TRACE_ATTRIBUTE) {
            Some(AttributeValue::S(value)) => TraceContext::from_traceparent(value).ok(),
            _ => None,
        };
        let mut value = to_json(image);
        if trace.is_some() {
            if let Value::Object(fields) = &mut value {
                fields.remove(TRACE_ATTRIBUTE);
            }
        }
        contract::check(&value)?;
        let json = value.to_string();
        if json.len() > max_bytes {
            return Err(Invalid::TooLarge {
                size: json.len(),
                limit: max_bytes,
            });
        }
        Ok(Participant { id, json, trace })
    }
}

/// Whether lists and maps nest more than `levels` deep in `value`; looks no
/// deeper than that, so its own recursion is bounded.
fn nested_deeper_than(value: &AttributeValue, levels: usize) -> bool {
    let mut children: Box<dyn Iterator<Item = &AttributeValue>> = match value {
        AttributeValue::L(list) => Box::new(list.iter()),
        AttributeValue::M(map) => Box::new(map.values()),
        _ => return false,
    };
    levels == 0 || children.any(|child| nested_deeper_than(child, levels - 1))
}

/// The whole image as a JSON object (see the module docs for the rules).
pub fn to_json(image: &Item) -> Value {
    Value::Object(map_to_json(image.iter()))
}

fn map_to_json<'a>(
    entries: impl Iterator<Item = (&'a String, &'a AttributeValue)>,
) -> Map<String, Value> {
    entries
        .map(|(name, value)| (name.clone(), attribute_to_json(value)))
        .collect()
}

fn attribute_to_json(value: &AttributeValue) -> Value {
    let base64 =
        |bytes: &Vec<u8>| Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => number_to_json(n),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::B(bytes) => base64(bytes),
        AttributeValue::L(list) => Value::Array(list.iter().map(attribute_to_json).collect()),
        AttributeValue::M(map) => Value::Object(map_to_json(map.iter())),
        AttributeValue::Ss(set) => {
            Value::Array(sorted(set.clone()).into_iter().map(Value::String).collect())
        }
        AttributeValue::Ns(set) => {
            // One total order: finite numbers by value (then text: "1" and
            // "1.0"), then infinities and NaN as f64 orders them, then
            // members that are no number at all (never from DynamoDB), by text.
            let mut numbers: Vec<(Option<f64>, &String)> =
                set.iter().map(|n| (n.parse::<f64>().ok(), n)).collect();
            numbers.sort_by(|(x, a), (y, b)| match (x, y) {
                (Some(x), Some(y)) => x.total_cmp(y).then_with(|| a.cmp(b)),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => a.cmp(b),
            });
            Value::Array(numbers.iter().map(|(_, n)| number_to_json(n)).collect())
        }
        AttributeValue::Bs(set) => Value::Array(sorted(set.clone()).iter().map(base64).collect()),
    }
}

/// Sets have no order in DynamoDB (and come back in any order); sorting
/// them makes the JSON of a participant one fixed text.
fn sorted<T: Ord>(mut set: Vec<T>) -> Vec<T> {
    set.sort();
    set
}

/// A DynamoDB number as JSON without losing a digit: DynamoDB keeps 38
/// significant digits, JSON consumers usually read doubles.
fn number_to_json(n: &str) -> Value {
    if let Ok(i) = n.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Ok(u) = n.parse::<u64>() {
        return Value::Number(u.into());
    }
    match n.parse::<f64>().ok().and_then(Number::from_f64) {
        Some(f) if f.to_string() == n => Value::Number(f),
        _ => Value::String(n.to_string()),
    }
}

/// The DynamoDB type name of an attribute, for error messages.
fn type_name(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::S(_) => "S",
        AttributeValue::N(_) => "N",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::B(_) => "B",
        AttributeValue::L(_) => "L",
        AttributeValue::M(_) => "M",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn item(entries: Vec<(&str, AttributeValue)>) -> Item {
        Item::from(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<HashMap<_, _>>(),
        )
    }

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    #[test]
    fn the_trace_context_travels_beside_the_value() {
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let image = item(vec![("id", s("p-1")), (TRACE_ATTRIBUTE, s(traceparent))]);
        let participant = Participant::from_image(&image, 1000).unwrap();
        assert_eq!(participant.json, r#"{"id":"p-1"}"#);
        assert_eq!(participant.trace.unwrap().to_string(), traceparent);
    }

    #[test]
    fn an_attribute_named_like_the_trace_that_is_not_one_is_data() {
        let image = item(vec![("id", s("p-1")), (TRACE_ATTRIBUTE, s("mine"))]);
        let participant = Participant::from_image(&image, 1000).unwrap();
        assert_eq!(participant.json, r#"{"id":"p-1","trace_context":"mine"}"#);
        assert_eq!(participant.trace, None);
        let untraced = Participant::from_image(&item(vec![("id", s("p-2"))]), 1000).unwrap();
        assert_eq!(untraced.trace, None);
    }

    #[test]
    fn maps_every_attribute_type() {
        let image = item(vec![
            ("id", s("p-1")),
            ("name", s("Zoë 🎟")),
            ("int", AttributeValue::N("42".into())),
            ("negative", AttributeValue::N("-7".into())),
            ("big", AttributeValue::N("18446744073709551615".into())),
            ("decimal", AttributeValue::N("2.5".into())),
            (
                "precise",
                AttributeValue::N("12345678901234567890123456789.5".into()),
            ),
            ("yes", AttributeValue::Bool(true)),
            ("nothing", AttributeValue::Null(true)),
            ("blob", AttributeValue::B(b"hi\x00".to_vec())),
            (
                "list",
                AttributeValue::L(vec![s("a"), AttributeValue::N("1".into())]),
            ),
            (
                "map",
                AttributeValue::M(HashMap::from([(
                    "nested".to_string(),
                    AttributeValue::Bool(false),
                )])),
            ),
            ("tags", AttributeValue::Ss(vec!["y".into(), "x".into()])),
            (
                "lucky",
                AttributeValue::Ns(vec!["10".into(), "7".into(), "0.5".into()]),
            ),
            ("blobs", AttributeValue::Bs(vec![vec![255], vec![1, 2]])),
        ]);
        assert_eq!(
            to_json(&image),
            json!({
                "id": "p-1",
                "name": "Zoë 🎟",
                "int": 42,
                "negative": -7,
                "big": 18446744073709551615u64,
                "decimal": 2.5,
                "precise": "12345678901234567890123456789.5",
                "yes": true,
                "nothing": null,
                "blob": "aGkA",
                "list": ["a", 1],
                "map": {"nested": false},
                "tags": ["x", "y"],
                "lucky": [0.5, 7, 10],
                "blobs": ["AQI=", "/w=="],
            })
        );
    }

    #[test]
    fn json_text_is_deterministic_with_sorted_keys() {
        let image = item(vec![("id", s("p")), ("b", s("2")), ("a", s("1"))]);
        let p = Participant::from_image(&image, 1000).unwrap();
        assert_eq!(p.json, r#"{"a":"1","b":"2","id":"p"}"#);
        assert_eq!(p.id, "p");
    }

    /// Found by the fuzzer (fuzz/regressions/participant_image): an image
    /// nested deeper than DynamoDB allows (32 levels of lists and maps)
    /// became JSON that serde_json, like most JSON readers, refuses to read
    /// (past 128 levels), and every level was a stack frame of the mapping.
    /// Such an image is refused with a reason; at DynamoDB's limit it maps.
    #[test]
    fn an_image_nested_past_dynamodbs_limit_is_refused() {
        let nested = |levels: usize, maps: bool| {
            let mut value = s("leaf");
            for _ in 0..levels {
                value = if maps {
                    AttributeValue::M(HashMap::from([("n".to_string(), value)]))
                } else {
                    AttributeValue::L(vec![value])
                };
            }
            item(vec![("id", s("p")), ("deep", value)])
        };
        for maps in [false, true] {
            let at_limit = Participant::from_image(&nested(MAX_NESTING, maps), 900_000).unwrap();
            let json: serde_json::Value = serde_json::from_str(&at_limit.json).unwrap();
            assert_eq!(json["id"], "p");
            for levels in [MAX_NESTING + 1, 200, 1_000] {
                assert_eq!(
                    Participant::from_image(&nested(levels, maps), 900_000).unwrap_err(),
                    Invalid::TooDeep { limit: MAX_NESTING },
                    "{levels} levels"
                );
            }
        }
        let reason = Invalid::TooDeep { limit: MAX_NESTING }.to_string();
        assert!(reason.contains("deeper than 32"), "{reason}");
    }

    /// Found by the fuzzer (fuzz/regressions/participant_image/crash-c4e2…):
    /// an NS with members that are not numbers was ordered by value where
    /// both parsed and by text otherwise, which is no order at all ("9" <
    /// "10" < "5x" < "9"), and Rust's sort panicked on it. DynamoDB stores
    /// only numbers in an NS, so real sets never had this; they keep their
    /// order (by value), and anything else sorts after them, by text.
    #[test]
    fn a_number_set_with_text_in_it_has_one_order() {
        let ns = |members: &[&str]| {
            attribute_to_json(&AttributeValue::Ns(
                members.iter().map(|m| m.to_string()).collect(),
            ))
        };
        assert_eq!(ns(&["10", "9", "5x"]), json!([9, 10, "5x"]));
        assert_eq!(ns(&["5x", "10", "9"]), json!([9, 10, "5x"]));
        assert_eq!(ns(&["9", "5x", "10"]), json!([9, 10, "5x"]));
        assert_eq!(
            ns(&["1e400", "NaN", "-1", "x", "2.5", ""]),
            json!([-1, 2.5, "1e400", "NaN", "", "x"]),
            "infinity and NaN parse: after every finite number"
        );

        let mut found: Vec<&str> = vec![""; 3];
        found.push("68888888");
        found.extend([""; 14]);
        found.push("ǿ");
        found.extend([""; 86]);
        found.extend([
            "999999999ggg\u{5}\0ggggggggggggggggg",
            "99999999999999999999999999999999999",
            "9999999",
            "9999###",
            "\u{1a}####",
            "##",
        ]);
        let forward = ns(&found);
        found.reverse();
        assert_eq!(ns(&found), forward);
    }

    #[test]
    fn rejects_what_cannot_be_a_participant() {
        let check = |image: Item| Participant::from_image(&image, 1000).unwrap_err();
        assert_eq!(check(item(vec![])), Invalid::NoImage);
        assert_eq!(check(item(vec![("name", s("x"))])), Invalid::NoId);
        assert_eq!(
            check(item(vec![("id", AttributeValue::N("1".into()))])),
            Invalid::IdNotString("N")
        );
        assert_eq!(check(item(vec![("id", s(""))])), Invalid::EmptyId);
        let big = item(vec![("id", s("p")), ("blob", s(&"x".repeat(2000)))]);
        assert!(matches!(check(big), Invalid::TooLarge { limit: 1000, .. }));
    }
}
