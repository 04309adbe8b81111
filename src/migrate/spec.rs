//! The migrations as data: the files of `migrations/` compiled in
//! ([`MIGRATIONS`]), read into the types of the AWS CLI's input, and the
//! shape all of them together leave a table in ([`final_table`], which
//! `template.yaml` must declare). No request is sent from here; the runner
//! is `super::runner`.

use serde::Deserialize;

/// One migration, compiled in: its id (the file name without `.json`, which
/// says its order and its operation) and the AWS CLI input it holds.
pub struct Migration {
    /// `<n>_<name>.<operation>`, e.g. `0002_outbox.create-table`.
    pub id: &'static str,
    /// The `--cli-input-json` of the operation.
    pub json: &'static str,
}

/// Every migration, in order. A test checks this list against the folder.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        id: "0001_participants.create-table",
        json: include_str!("../../migrations/0001_participants.create-table.json"),
    },
    Migration {
        id: "0002_outbox.create-table",
        json: include_str!("../../migrations/0002_outbox.create-table.json"),
    },
    Migration {
        id: "0003_outbox_by_status.update-table",
        json: include_str!("../../migrations/0003_outbox_by_status.update-table.json"),
    },
    Migration {
        id: "0004_outbox_by_participant.update-table",
        json: include_str!("../../migrations/0004_outbox_by_participant.update-table.json"),
    },
    Migration {
        id: "0005_outbox_retention.update-time-to-live",
        json: include_str!("../../migrations/0005_outbox_retention.update-time-to-live.json"),
    },
];

/// The part of the create-table input the project uses. Unknown fields are
/// an error, so a migration never silently loses a setting.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateTable {
    /// The logical name (`participants`, `outbox`); the configured name
    /// replaces it.
    pub table_name: String,
    /// The key attributes' types, the indexes' included.
    pub attribute_definitions: Vec<AttributeDef>,
    /// The table's key.
    pub key_schema: Vec<KeyElement>,
    /// Indexes created with the table.
    #[serde(default)]
    pub global_secondary_indexes: Vec<Index>,
    /// `PAY_PER_REQUEST` (the only mode the runner creates).
    pub billing_mode: String,
    /// The table's stream (every table here has one).
    pub stream_specification: Option<StreamSpec>,
    /// Server-side encryption.
    #[serde(rename = "SSESpecification")]
    pub sse_specification: Option<Sse>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
/// One key attribute and its type.
pub struct AttributeDef {
    /// The attribute's name.
    pub attribute_name: String,
    /// `S`, `N` or `B`.
    pub attribute_type: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
/// One part of a key.
pub struct KeyElement {
    /// The attribute's name.
    pub attribute_name: String,
    /// `HASH` or `RANGE`.
    pub key_type: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
/// A global secondary index.
pub struct Index {
    /// Its name, as queries give it.
    pub index_name: String,
    /// Its key.
    pub key_schema: Vec<KeyElement>,
    /// What it copies of each item.
    pub projection: IndexProjection,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
/// What an index copies of each item.
pub struct IndexProjection {
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection_type: String,
    /// With `INCLUDE`: the attributes copied besides the keys.
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
/// A table's stream.
pub struct StreamSpec {
    /// Whether the table has one.
    pub stream_enabled: bool,
    /// What a record carries, e.g. `NEW_IMAGE`.
    pub stream_view_type: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
/// Server-side encryption.
pub struct Sse {
    /// `true`: a KMS key (AWS managed), rather than DynamoDB's own.
    pub enabled: bool,
}

/// `aws dynamodb update-table` input: attribute definitions for the new keys
/// and the index to create.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpdateTable {
    /// The logical name of the table.
    pub table_name: String,
    /// The new index's key attributes.
    #[serde(default)]
    pub attribute_definitions: Vec<AttributeDef>,
    /// The index to create (DynamoDB takes one a call).
    pub global_secondary_index_updates: Vec<IndexUpdate>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
/// One `GlobalSecondaryIndexUpdates` entry: an index to create.
pub struct IndexUpdate {
    /// The index.
    pub create: Index,
}

/// `aws dynamodb update-time-to-live` input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpdateTimeToLive {
    /// The logical name of the table.
    pub table_name: String,
    /// The TTL attribute, and whether expiry is on.
    pub time_to_live_specification: TtlSpec,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
/// A table's time to live: DynamoDB deletes an item, at no cost in write
/// units, within days after the epoch seconds in `attribute_name`.
pub struct TtlSpec {
    /// Whether expiry is on.
    pub enabled: bool,
    /// The attribute holding the expiry time (epoch seconds).
    pub attribute_name: String,
}

/// What a migration does, told by its file name's suffix.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// `.create-table`.
    CreateTable(CreateTable),
    /// `.update-table`: one new index.
    UpdateTable(UpdateTable),
    /// `.update-time-to-live`.
    UpdateTimeToLive(UpdateTimeToLive),
}

impl Operation {
    /// The logical table the migration applies to.
    pub fn table_name(&self) -> &str {
        match self {
            Operation::CreateTable(spec) => &spec.table_name,
            Operation::UpdateTable(spec) => &spec.table_name,
            Operation::UpdateTimeToLive(spec) => &spec.table_name,
        }
    }
}

impl Migration {
    /// The migration's input, read as the operation its id names. Refuses
    /// an id with another suffix, and a field the types here do not know
    /// (so a migration never silently loses a setting).
    pub fn operation(&self) -> anyhow::Result<Operation> {
        let parsed = if self.id.ends_with(".create-table") {
            serde_json::from_str(self.json).map(Operation::CreateTable)
        } else if self.id.ends_with(".update-table") {
            serde_json::from_str(self.json).map(Operation::UpdateTable)
        } else if self.id.ends_with(".update-time-to-live") {
            serde_json::from_str(self.json).map(Operation::UpdateTimeToLive)
        } else {
            anyhow::bail!(
                "migration {}: the name must end with .create-table, .update-table or \
                 .update-time-to-live",
                self.id
            )
        };
        parsed.map_err(|e| anyhow::anyhow!("migration {}: {e}", self.id))
    }

    /// The create-table input of a `.create-table` migration.
    pub fn create_table(&self) -> anyhow::Result<CreateTable> {
        match self.operation()? {
            Operation::CreateTable(spec) => Ok(spec),
            _ => anyhow::bail!("migration {} does not create a table", self.id),
        }
    }
}

/// A logical table as all the migrations together leave it: its create-table
/// input with every later index added, and the TTL attribute if one is set.
/// (What `template.yaml` must declare.)
pub fn final_table(logical: &str) -> anyhow::Result<(CreateTable, Option<TtlSpec>)> {
    let mut ttl = None;
    let mut table = None;
    for (n, migration) in MIGRATIONS.iter().enumerate() {
        match migration.operation()? {
            Operation::CreateTable(spec) if spec.table_name == logical => {
                table = Some(with_later_indexes(spec, &MIGRATIONS[n + 1..])?.0);
            }
            Operation::UpdateTimeToLive(update) if update.table_name == logical => {
                ttl = Some(update.time_to_live_specification);
            }
            _ => {}
        }
    }
    let table = table.ok_or_else(|| anyhow::anyhow!("no migration creates `{logical}`"))?;
    Ok((table, ttl.filter(|t| t.enabled)))
}

/// A create-table input with the indexes that `later` update-table
/// migrations add to the same table, and those migrations' ids.
///
/// A table created from scratch is created in this shape at once: DynamoDB
/// builds the indexes of an empty new table immediately, while adding one to
/// an existing table backfills it (about 70 s per index on DynamoDB Local,
/// longer on a large AWS table). The included migrations are recorded as
/// applied with the create; an existing table gets them one by one.
pub(super) fn with_later_indexes(
    mut spec: CreateTable,
    later: &[Migration],
) -> anyhow::Result<(CreateTable, Vec<&'static str>)> {
    let mut included = Vec::new();
    for migration in later {
        let Operation::UpdateTable(update) = migration.operation()? else {
            continue;
        };
        if update.table_name != spec.table_name {
            continue;
        }
        for definition in update.attribute_definitions {
            if !spec.attribute_definitions.contains(&definition) {
                spec.attribute_definitions.push(definition);
            }
        }
        spec.global_secondary_indexes.extend(
            update
                .global_secondary_index_updates
                .into_iter()
                .map(|u| u.create),
        );
        included.push(migration.id);
    }
    Ok((spec, included))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_in_order_and_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .trim_end_matches(".json")
                    .to_string()
            })
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.id).collect();
        assert_eq!(files, listed);
        for m in MIGRATIONS {
            if let Operation::CreateTable(spec) = m.operation().unwrap() {
                assert!(
                    spec.stream_specification
                        .as_ref()
                        .is_some_and(|s| s.stream_enabled),
                    "{}",
                    m.id
                );
            }
        }
    }

    #[test]
    fn the_outbox_ends_with_the_audit_indexes_and_a_ttl() {
        use crate::outbox::schema::{BY_PARTICIPANT_INDEX, BY_STATUS_INDEX, DUE_INDEX, TABLE};
        let (outbox, ttl) = final_table(TABLE).unwrap();
        let indexes: Vec<&str> = outbox
            .global_secondary_indexes
            .iter()
            .map(|i| i.index_name.as_str())
            .collect();
        assert_eq!(indexes, [DUE_INDEX, BY_STATUS_INDEX, BY_PARTICIPANT_INDEX]);
        for index in &outbox.global_secondary_indexes {
            for key in &index.key_schema {
                assert!(
                    outbox
                        .attribute_definitions
                        .iter()
                        .any(|a| a.attribute_name == key.attribute_name),
                    "{} is defined",
                    key.attribute_name
                );
            }
        }
        assert_eq!(
            ttl.unwrap().attribute_name,
            crate::outbox::schema::EXPIRES_AT
        );
        assert!(final_table("participants").unwrap().1.is_none());
    }
}
