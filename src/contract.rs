//! The event contract: the JSON Schema every message's value conforms to,
//! `schemas/participant-registered/v1.json`, compiled into the binary.
//!
//! It is enforced at both ends of the path (see `docs/contract.md`): the
//! stream handler checks each participant with [`check`] and keeps one that
//! does not conform as a REJECTED row, so nothing off the contract is sent;
//! the local broker (tansu with `--schema-registry`) holds the same file and
//! refuses a record that does not conform with `INVALID_RECORD`, which the
//! relay marks FAILED. The validator is `jsonschema`, the crate tansu's
//! registry validates with, so both ends read the schema the same way.

use std::sync::LazyLock;

use serde_json::Value;

/// The newest schema's text: what capture checks and the broker's registry holds.
pub const SCHEMA: &str = include_str!("../schemas/participant-registered/v1.json");

/// The newest schema's `$id`, sent as every message's `ce_dataschema`
/// header (a unit test holds it equal to [`SCHEMA`]'s `$id`). A new version
/// of the value is a new schema file, a new [`SCHEMA`] and a new URI here.
pub const DATA_SCHEMA: &str = "https://raffle.example.com/schemas/participant-registered/v1.json";

/// [`SCHEMA`], compiled once per process (a few hundred microseconds).
static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(SCHEMA).expect("the schema file is JSON");
    jsonschema::validator_for(&schema).expect("the schema file is a valid JSON Schema")
});

/// Where a participant breaks the contract: the JSON Pointer of the failing
/// value and of the schema rule it fails. Names no data, so it can be
/// stored on a REJECTED row and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the participant does not conform to {DATA_SCHEMA} at `{path}`: it fails the rule `{rule}`"
)]
pub struct Violation {
    /// The failing value's location in the participant (`/tickets`; `/` for the whole).
    pub path: String,
    /// The schema rule it fails (`/properties/tickets/maximum`).
    pub rule: String,
}

/// Checks a participant's JSON against [`SCHEMA`]: `Ok` when it conforms,
/// otherwise the first [`Violation`] the validator finds.
pub fn check(participant: &Value) -> Result<(), Violation> {
    match VALIDATOR.iter_errors(participant).next() {
        None => Ok(()),
        Some(error) => {
            let path = error.instance_path().to_string();
            Err(Violation {
                path: if path.is_empty() { "/".into() } else { path },
                rule: error.schema_path().to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_header_names_the_schema_compiled_in() {
        let schema: Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(schema["$id"], DATA_SCHEMA);
    }

    #[test]
    fn a_violation_names_the_path_and_the_rule_but_not_the_value() {
        assert_eq!(check(&json!({"id": "p-1", "tickets": 3})), Ok(()));
        let violation = check(&json!({"id": "p-1", "tickets": 1000})).unwrap_err();
        assert_eq!(violation.path, "/tickets");
        assert_eq!(violation.rule, "/properties/tickets/maximum");
        assert!(!violation.to_string().contains("1000"), "{violation}");
        let whole = check(&json!(["not", "an", "object"])).unwrap_err();
        assert_eq!(whole.path, "/");
    }
}
