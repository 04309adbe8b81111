//! What the fuzz targets check, shared with `tests/fuzz_corpus.rs` (which
//! replays `fuzz/corpus/` and `fuzz/regressions/` through it on stable Rust).
//! Each function takes the fuzzer's raw bytes and panics when a property
//! fails; an input either maps or yields a clear error, never a panic.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use arbitrary::{Arbitrary, Unstructured};
use raffle_outbox::participant::Participant;
use raffle_outbox::register::{self, BadRequest, MAX_BODY_BYTES};
use serde_dynamo::{AttributeValue, Item};
use serde_json::Value;

/// The stream handler's default message limit (`MAX_MESSAGE_BYTES`).
const MAX_MESSAGE_BYTES: usize = 900_000;
const KEY: &str = "fuzz-idempotency-key";

/// `register::validate` on the bytes as a body, without and with an
/// `Idempotency-Key`, and `register::id_for_key` on them as a header value.
/// An accepted body is exactly the participant item the module documents,
/// and one the stream handler will take; a refused one is a 400 or 413 with
/// a reason.
pub fn register_body(data: &[u8]) {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let now = time::macros::datetime!(2026-11-28 12:00:00.123 UTC);
    for key in [None, Some(KEY)] {
        match register::validate(body, key, MAX_MESSAGE_BYTES, now) {
            Ok(registration) => accepted(&registration, key),
            Err(refused) => {
                assert!(matches!(refused.status(), 400 | 413), "{refused:?}");
                assert!(!refused.to_string().is_empty());
                if body.len() <= MAX_BODY_BYTES {
                    assert_ne!(refused.status(), 413, "{} bytes", body.len());
                }
            }
        }
    }
    match register::id_for_key(body) {
        Ok(id) => {
            let uuid = uuid::Uuid::parse_str(&id).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 5);
            let key = body.trim_matches('"');
            assert!(!key.is_empty() && key.len() <= register::MAX_IDEMPOTENCY_KEY);
            assert!(key.bytes().all(|b| b.is_ascii_graphic()));
        }
        Err(refused) => assert_eq!(refused, BadRequest::IdempotencyKey),
    }
}

fn accepted(registration: &register::Registration, key: Option<&str>) {
    let item = registration.item.as_object().expect("an object");
    let mut fields: Vec<&str> = item.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["email", "id", "name", "raffle", "registered_at", "tickets"]
    );
    assert_eq!(item["id"], registration.id.as_str());
    let id = uuid::Uuid::parse_str(&registration.id).expect("a UUID id");
    assert_eq!(id.hyphenated().to_string(), registration.id, "one spelling");
    if let Some(key) = key {
        assert_eq!(Ok(registration.id.clone()), register::id_for_key(key));
    }
    for field in ["name", "email", "raffle"] {
        let text = item[field].as_str().expect("a string");
        assert!(!text.trim().is_empty(), "{field}");
    }
    let tickets = item["tickets"].as_i64().expect("an integer");
    assert!((1..=100).contains(&tickets));
    let image: Item = serde_dynamo::to_item(&registration.item).expect("an item");
    let participant = Participant::from_image(&image, MAX_MESSAGE_BYTES)
        .expect("the stream handler takes what register accepted");
    assert_eq!(participant.id, registration.id);
}

/// A DynamoDB attribute, as the fuzzer builds it.
#[derive(Arbitrary, Debug, Clone)]
pub enum Attr {
    S(String),
    N(String),
    /// A number from digits, so that well-formed numbers of every size are
    /// common (38 significant digits and more, exponents, signs).
    Digits {
        negative: bool,
        digits: Vec<u8>,
        point: Option<u8>,
        exponent: Option<i16>,
    },
    Bool(bool),
    Null,
    B(Vec<u8>),
    L(Vec<Attr>),
    M(Vec<(String, Attr)>),
    Ss(Vec<String>),
    Ns(Vec<String>),
    Bs(Vec<Vec<u8>>),
    /// `levels` lists or maps around `inner`: deep nesting.
    Nested {
        levels: u16,
        maps: bool,
        inner: Box<Attr>,
    },
}

/// A stream image: an id (usually a string) and other attributes.
#[derive(Arbitrary, Debug)]
pub struct Image {
    id: Option<Attr>,
    attributes: Vec<(String, Attr)>,
    max_bytes: u32,
}

/// The deepest nesting an image is built with, all lists and maps counted:
/// past DynamoDB's 32 levels and the 128 that serde_json lets a stream event
/// carry. Not more: dropping a tree recurses once per level (in
/// serde_dynamo's types, not ours), and a tree nested thousands deep took
/// the fuzzer's stack with it (fuzz/regressions/participant_image/crash-aae4…).
pub const MAX_LEVELS: usize = 300;

impl Attr {
    /// The attribute value; `reversed` lists every set's members and every
    /// map's entries in the opposite order (DynamoDB keeps neither order).
    /// Lists and maps nest at most `levels` deep (deeper ones are `NULL`).
    fn build(&self, reversed: bool, levels: usize) -> AttributeValue {
        match self {
            Attr::S(s) => AttributeValue::S(s.clone()),
            Attr::N(n) => AttributeValue::N(n.clone()),
            Attr::Digits {
                negative,
                digits,
                point,
                exponent,
            } => {
                let mut n: String = digits.iter().map(|d| char::from(b'0' + d % 10)).collect();
                if n.is_empty() {
                    n.push('0');
                }
                if let Some(p) = point {
                    n.insert(usize::from(*p) % (n.len() + 1), '.');
                }
                if *negative {
                    n.insert(0, '-');
                }
                if let Some(e) = exponent {
                    n.push_str(&format!("e{e}"));
                }
                AttributeValue::N(n)
            }
            Attr::Bool(b) => AttributeValue::Bool(*b),
            Attr::Null => AttributeValue::Null(true),
            Attr::B(b) => AttributeValue::B(b.clone()),
            Attr::L(_) | Attr::M(_) | Attr::Nested { .. } if levels == 0 => {
                AttributeValue::Null(true)
            }
            Attr::L(list) => {
                AttributeValue::L(list.iter().map(|a| a.build(reversed, levels - 1)).collect())
            }
            Attr::M(entries) => AttributeValue::M(map(entries, reversed, levels - 1)),
            Attr::Ss(set) => AttributeValue::Ss(in_order(set, reversed)),
            Attr::Ns(set) => AttributeValue::Ns(in_order(set, reversed)),
            Attr::Bs(set) => AttributeValue::Bs(in_order(set, reversed)),
            Attr::Nested {
                levels: wanted,
                maps,
                inner,
            } => {
                let wrap = usize::from(*wanted).min(levels);
                let mut value = inner.build(reversed, levels - wrap);
                for _ in 0..wrap {
                    value = if *maps {
                        AttributeValue::M(HashMap::from([("n".to_string(), value)]))
                    } else {
                        AttributeValue::L(vec![value])
                    };
                }
                value
            }
        }
    }
}

/// A set's members as given, or reversed.
fn in_order<T: Clone>(set: &[T], reversed: bool) -> Vec<T> {
    let mut members = set.to_vec();
    if reversed {
        members.reverse();
    }
    members
}

/// A map with each name once (the first one wins), inserted in order or
/// reversed.
fn map(
    entries: &[(String, Attr)],
    reversed: bool,
    levels: usize,
) -> HashMap<String, AttributeValue> {
    let mut unique = BTreeMap::new();
    for (name, attr) in entries {
        unique.entry(name.clone()).or_insert(attr);
    }
    let mut entries: Vec<_> = unique.into_iter().collect();
    if reversed {
        entries.reverse();
    }
    entries
        .into_iter()
        .map(|(name, attr)| (name, attr.build(reversed, levels)))
        .collect()
}

impl Image {
    fn build(&self, reversed: bool) -> Item {
        let mut attributes = map(&self.attributes, reversed, MAX_LEVELS);
        if let Some(id) = &self.id {
            attributes.insert("id".into(), id.build(reversed, MAX_LEVELS));
        }
        Item::from(attributes)
    }
}

/// `Participant::from_image` on an arbitrary attribute tree: the same
/// participant (or the same error) whatever order its sets and maps come
/// in; an accepted participant is a JSON object within the limit whose `id`
/// is the image's.
pub fn participant_image(data: &[u8]) {
    let Ok(image) = Image::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let max_bytes = image.max_bytes as usize % (MAX_MESSAGE_BYTES + 1);
    let mapped = Participant::from_image(&image.build(false), max_bytes);
    assert_eq!(
        mapped,
        Participant::from_image(&image.build(true), max_bytes),
        "one image, one participant"
    );
    match mapped {
        Ok(participant) => {
            assert!(participant.json.len() <= max_bytes);
            let json: Value = serde_json::from_str(&participant.json).expect("JSON text");
            assert_eq!(json["id"], participant.id.as_str());
            assert!(!participant.id.is_empty());
        }
        Err(invalid) => assert!(!invalid.to_string().is_empty()),
    }
}
