//! The event contract: `schemas/participant-registered/vN.json`, the JSON
//! Schema of every message's value, holds what the producers write and
//! evolves additively.
//!
//! The validator is `jsonschema` 0.41, the one tansu 0.6.0's schema registry
//! validates produced records with.

use raffle_outbox::participant::Participant;
use raffle_outbox::{demo, register};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// Every version of the schema, oldest first.
fn versions() -> Vec<(u32, Value)> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/participant-registered"
    );
    let mut versions: Vec<(u32, Value)> = std::fs::read_dir(dir)
        .expect("schemas/participant-registered")
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            let n: u32 = name
                .strip_prefix('v')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{} is not named vN.json", path.display()));
            let text = std::fs::read_to_string(&path).unwrap();
            (n, serde_json::from_str(&text).unwrap())
        })
        .collect();
    versions.sort_by_key(|(n, _)| *n);
    assert_eq!(versions.first().map(|(n, _)| *n), Some(1));
    versions
}

fn v1() -> jsonschema::Validator {
    jsonschema::validator_for(&versions()[0].1).expect("v1 is a valid JSON Schema")
}

/// The paths of `instance`'s errors under `schema`, empty when it conforms.
fn errors(schema: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    schema
        .iter_errors(instance)
        .map(|e| format!("{} ({e})", e.instance_path()))
        .collect()
}

#[test]
fn every_version_is_a_valid_2020_12_schema_with_examples() {
    for (n, schema) in versions() {
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "v{n}"
        );
        assert!(
            jsonschema::meta::is_valid(&schema),
            "v{n} is not a valid JSON Schema"
        );
        let validator = jsonschema::validator_for(&schema).unwrap();
        let examples = schema["examples"].as_array().expect("examples");
        assert!(!examples.is_empty(), "v{n} has examples");
        for example in examples {
            assert_eq!(
                errors(&validator, example),
                Vec::<String>::new(),
                "v{n}: {example}"
            );
        }
    }
}

/// The compatibility rule: a version accepts every example of the versions
/// before it (changes are additive), so a consumer of v1 never sees a v1
/// document refused by a later schema.
#[test]
fn a_later_version_accepts_every_earlier_example() {
    let versions = versions();
    for (i, (n, schema)) in versions.iter().enumerate() {
        let validator = jsonschema::validator_for(schema).unwrap();
        for (m, earlier) in &versions[..i] {
            for example in earlier["examples"].as_array().unwrap() {
                assert_eq!(
                    errors(&validator, example),
                    Vec::<String>::new(),
                    "v{n} refuses v{m}'s example {example}"
                );
            }
        }
    }
}

/// What `POST /participants` writes, mapped as the stream handler maps it,
/// is a v1 document: at the limits `register` allows, too.
#[test]
fn what_register_accepts_conforms() {
    let schema = v1();
    let now = OffsetDateTime::now_utc();
    let bodies = [
        json!({"name": "Ada", "email": "ada@example.com", "raffle": "spring", "tickets": 1}),
        json!({"name": "n".repeat(200), "email": format!("{}@example.com", "e".repeat(242)),
               "raffle": "r".repeat(100), "tickets": 100}),
        json!({"id": "0B6F9A4E-3D5C-4F7E-9C1A-2B8D7E6F5A40", "name": "Zoë 🎟",
               "email": "o'brien+raffle@mail.example.co.uk", "raffle": "ünïcode", "tickets": 7}),
    ];
    for body in bodies {
        let registration = register::validate(&body.to_string(), None, 900_000, now)
            .unwrap_or_else(|e| panic!("register refused {body}: {e}"));
        let image: serde_dynamo::Item = serde_dynamo::to_item(&registration.item).unwrap();
        let participant = Participant::from_image(&image, 900_000).unwrap();
        let value: Value = serde_json::from_str(&participant.json).unwrap();
        assert_eq!(errors(&schema, &value), Vec::<String>::new(), "{value}");
    }
    let (_, sample) = demo::sample_participant(7);
    assert_eq!(errors(&schema, &sample), Vec::<String>::new(), "{sample}");
}

/// Documents that break the contract are refused, and the error names the
/// failing path (what a REJECTED row's reason will carry), never the value.
#[test]
fn what_breaks_the_contract_is_refused_at_its_path() {
    let schema = v1();
    let cases = [
        (json!({"name": "no id"}), ""),
        (json!({"id": ""}), "/id"),
        (json!({"id": 42}), "/id"),
        (json!({"id": "p", "tickets": 0}), "/tickets"),
        (json!({"id": "p", "tickets": "3"}), "/tickets"),
        (json!({"id": "p", "email": "not-an-address"}), "/email"),
        (json!({"id": "p", "email": "a@b."}), "/email"),
        (json!({"id": "p", "name": "   "}), "/name"),
        (json!({"id": "p", "registered_at": 5}), "/registered_at"),
        (json!(["id", "p"]), ""),
    ];
    for (instance, path) in cases {
        let found = errors(&schema, &instance);
        assert!(
            found.iter().any(|e| e.starts_with(&format!("{path} "))),
            "{instance}: expected an error at `{path}`, got {found:?}"
        );
    }
}

/// The `ce_dataschema` header every message carries names the current
/// schema by its `$id`: the two cannot drift.
#[test]
fn the_header_names_the_latest_schema() {
    let versions = versions();
    let (_, latest) = versions.last().unwrap();
    assert_eq!(
        latest["$id"].as_str(),
        Some(raffle_outbox::kafka::envelope::DATA_SCHEMA)
    );
}
