//! Versioned tables: `migrations/` applied in order, each recorded once.
//!
//! A migration is the JSON that the AWS CLI's `--cli-input-json` takes for
//! the operation its file name ends with: `<n>_<name>.create-table.json`
//! (`aws dynamodb create-table`), `.update-table.json` (`update-table`: one
//! new global secondary index, as DynamoDB allows one per call) or
//! `.update-time-to-live.json` (`update-time-to-live`). So the files read like
//! the AWS documentation and can be applied by hand in an emergency. They are compiled into the binary (a Lambda or a
//! copied CLI needs no files at run time). The `TableName` in a file is the
//! logical name (`participants`, `outbox`); the configured name replaces it,
//! which is how tests get tables of their own. The ledger records
//! `<migration>@<table>`, so one ledger serves several sets of tables.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CreateGlobalSecondaryIndexAction,
    GlobalSecondaryIndex, GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, SseSpecification, StreamSpecification,
    StreamViewType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;
use serde::Deserialize;

use crate::config::Config;

pub struct Migration {
    pub id: &'static str,
    pub json: &'static str,
}

/// Every migration, in order. A test checks this list against the folder.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        id: "0001_participants.create-table",
        json: include_str!("../migrations/0001_participants.create-table.json"),
    },
    Migration {
        id: "0002_outbox.create-table",
        json: include_str!("../migrations/0002_outbox.create-table.json"),
    },
    Migration {
        id: "0003_outbox_by_status.update-table",
        json: include_str!("../migrations/0003_outbox_by_status.update-table.json"),
    },
    Migration {
        id: "0004_outbox_by_participant.update-table",
        json: include_str!("../migrations/0004_outbox_by_participant.update-table.json"),
    },
    Migration {
        id: "0005_outbox_retention.update-time-to-live",
        json: include_str!("../migrations/0005_outbox_retention.update-time-to-live.json"),
    },
];

/// The part of the create-table input the project uses. Unknown fields are
/// an error, so a migration never silently loses a setting.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateTable {
    pub table_name: String,
    pub attribute_definitions: Vec<AttributeDef>,
    pub key_schema: Vec<KeyElement>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<Index>,
    pub billing_mode: String,
    pub stream_specification: Option<StreamSpec>,
    #[serde(rename = "SSESpecification")]
    pub sse_specification: Option<Sse>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AttributeDef {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KeyElement {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Index {
    pub index_name: String,
    pub key_schema: Vec<KeyElement>,
    pub projection: IndexProjection,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct IndexProjection {
    pub projection_type: String,
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StreamSpec {
    pub stream_enabled: bool,
    pub stream_view_type: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Sse {
    pub enabled: bool,
}

/// `aws dynamodb update-table` input: attribute definitions for the new keys
/// and the index to create.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpdateTable {
    pub table_name: String,
    #[serde(default)]
    pub attribute_definitions: Vec<AttributeDef>,
    pub global_secondary_index_updates: Vec<IndexUpdate>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct IndexUpdate {
    pub create: Index,
}

/// `aws dynamodb update-time-to-live` input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpdateTimeToLive {
    pub table_name: String,
    pub time_to_live_specification: TtlSpec,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TtlSpec {
    pub enabled: bool,
    pub attribute_name: String,
}

/// What a migration does, told by its file name's suffix.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    CreateTable(CreateTable),
    UpdateTable(UpdateTable),
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
fn with_later_indexes(
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

/// The configured name of a logical table.
fn table_name(config: &Config, logical: &str) -> anyhow::Result<String> {
    match logical {
        "participants" => Ok(config.participants_table.clone()),
        crate::outbox::schema::TABLE => Ok(config.outbox_table.clone()),
        other => anyhow::bail!("migration names unknown table `{other}`"),
    }
}

/// Applies the migrations not yet applied to the configured tables and
/// returns the ones it applied. Running it again changes nothing.
pub async fn migrate(client: &Client, config: &Config) -> anyhow::Result<Vec<String>> {
    migrate_to(client, config, MIGRATIONS.len()).await
}

/// [`migrate`] with only the first `count` migrations: how a table of an
/// earlier version is made (tests of the upgrade path).
pub async fn migrate_to(
    client: &Client,
    config: &Config,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    ensure_ledger(client, &config.migrations_table).await?;
    let migrations = &MIGRATIONS[..count.min(MIGRATIONS.len())];
    let mut applied = Vec::new();
    for (n, migration) in migrations.iter().enumerate() {
        let operation = migration.operation()?;
        let table = table_name(config, operation.table_name())?;
        let key = |id: &str| format!("{id}@{table}");
        let recorded = client
            .get_item()
            .table_name(&config.migrations_table)
            .key("id", AttributeValue::S(key(migration.id)))
            .consistent_read(true)
            .send()
            .await?;
        if recorded.item.is_some() {
            continue;
        }
        let mut done = vec![migration.id];
        match operation {
            Operation::CreateTable(spec) => {
                let (spec, included) = with_later_indexes(spec, &migrations[n + 1..])?;
                create_table(client, &spec, &table).await?;
                done.extend(included);
            }
            Operation::UpdateTable(spec) => update_table(client, &spec, &table).await?,
            Operation::UpdateTimeToLive(spec) => update_time_to_live(client, &spec, &table).await?,
        }
        for id in done {
            record(client, &config.migrations_table, id, &table).await?;
            tracing::info!(migration = id, table = %table, "migration applied");
            applied.push(key(id));
        }
    }
    Ok(applied)
}

/// Writes `<migration>@<table>` into the ledger.
async fn record(client: &Client, ledger: &str, id: &str, table: &str) -> anyhow::Result<()> {
    client
        .put_item()
        .table_name(ledger)
        .item("id", AttributeValue::S(format!("{id}@{table}")))
        .item("migration", AttributeValue::S(id.to_string()))
        .item("table", AttributeValue::S(table.to_string()))
        .item(
            "applied_at",
            AttributeValue::S(crate::outbox::row::rfc3339(time::OffsetDateTime::now_utc())),
        )
        .send()
        .await?;
    Ok(())
}

/// The ledger itself is not a migration: it must exist before any is read.
async fn ensure_ledger(client: &Client, table: &str) -> anyhow::Result<()> {
    let spec = CreateTable {
        table_name: table.to_string(),
        attribute_definitions: vec![AttributeDef {
            attribute_name: "id".into(),
            attribute_type: "S".into(),
        }],
        key_schema: vec![KeyElement {
            attribute_name: "id".into(),
            key_type: "HASH".into(),
        }],
        global_secondary_indexes: vec![],
        billing_mode: "PAY_PER_REQUEST".into(),
        stream_specification: None,
        sse_specification: None,
    };
    create_table(client, &spec, table).await
}

/// Creates the table unless it exists, and waits until it is ACTIVE.
async fn create_table(client: &Client, spec: &CreateTable, table: &str) -> anyhow::Result<()> {
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::from(spec.billing_mode.as_str()))
        .set_key_schema(Some(key_schema(&spec.key_schema)))
        .set_attribute_definitions(Some(attribute_definitions(&spec.attribute_definitions)?));
    for index in &spec.global_secondary_indexes {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.index_name)
                .set_key_schema(Some(key_schema(&index.key_schema)))
                .projection(projection(&index.projection))
                .build()?,
        );
    }
    if let Some(stream) = &spec.stream_specification {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(stream.stream_enabled)
                .stream_view_type(StreamViewType::from(stream.stream_view_type.as_str()))
                .build()?,
        );
    }
    if let Some(sse) = &spec.sse_specification {
        request =
            request.sse_specification(SseSpecification::builder().enabled(sse.enabled).build());
    }
    match request.send().await {
        Ok(_) => {}
        Err(e) if e.code() == Some("ResourceInUseException") => {}
        Err(e) => {
            return Err(
                anyhow::anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e))
                    .context(format!("create table {table}")),
            )
        }
    }
    wait_until_active(client, table).await
}

/// Adds the migration's indexes that the table lacks (a migration that
/// stopped half way is finished, not repeated), then waits until the table
/// and every index are ACTIVE: on AWS a new index backfills for a while, and
/// the audit commands must not query it before.
async fn update_table(client: &Client, spec: &UpdateTable, table: &str) -> anyhow::Result<()> {
    for update in &spec.global_secondary_index_updates {
        let index = &update.create;
        let described = client.describe_table().table_name(table).send().await?;
        let exists = described
            .table
            .and_then(|t| t.global_secondary_indexes)
            .unwrap_or_default()
            .iter()
            .any(|i| i.index_name.as_deref() == Some(index.index_name.as_str()));
        if !exists {
            let create = CreateGlobalSecondaryIndexAction::builder()
                .index_name(&index.index_name)
                .set_key_schema(Some(key_schema(&index.key_schema)))
                .projection(projection(&index.projection))
                .build()?;
            client
                .update_table()
                .table_name(table)
                .set_attribute_definitions(Some(attribute_definitions(
                    &spec.attribute_definitions,
                )?))
                .global_secondary_index_updates(
                    GlobalSecondaryIndexUpdate::builder().create(create).build(),
                )
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e))
                        .context(format!("add index {} to {table}", index.index_name))
                })?;
        }
        wait_until_active(client, table).await?;
    }
    Ok(())
}

/// Turns TTL on (or off) for the attribute, unless it already is.
async fn update_time_to_live(
    client: &Client,
    spec: &UpdateTimeToLive,
    table: &str,
) -> anyhow::Result<()> {
    let wanted = &spec.time_to_live_specification;
    let current = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await?
        .time_to_live_description;
    let enabled = current.as_ref().and_then(|d| d.time_to_live_status.clone())
        == Some(TimeToLiveStatus::Enabled);
    let attribute = current.as_ref().and_then(|d| d.attribute_name.as_deref());
    if enabled == wanted.enabled && (!enabled || attribute == Some(&wanted.attribute_name)) {
        return Ok(());
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(wanted.enabled)
                .attribute_name(&wanted.attribute_name)
                .build()?,
        )
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e))
                .context(format!("time to live on {table}"))
        })?;
    Ok(())
}

/// Waits until the table and all its indexes are ACTIVE.
async fn wait_until_active(client: &Client, table: &str) -> anyhow::Result<()> {
    for _ in 0..3000 {
        let described = client.describe_table().table_name(table).send().await?;
        let table_active = described
            .table
            .as_ref()
            .and_then(|t| t.table_status.clone())
            == Some(TableStatus::Active);
        let indexes_active = described
            .table
            .and_then(|t| t.global_secondary_indexes)
            .unwrap_or_default()
            .iter()
            .all(|i| i.index_status == Some(IndexStatus::Active));
        if table_active && indexes_active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("table {table} and its indexes did not become ACTIVE within 5 minutes")
}

fn key_schema(elements: &[KeyElement]) -> Vec<KeySchemaElement> {
    elements
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .expect("name and type are set")
        })
        .collect()
}

fn attribute_definitions(defs: &[AttributeDef]) -> anyhow::Result<Vec<AttributeDefinition>> {
    defs.iter()
        .map(|a| {
            Ok(AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()?)
        })
        .collect()
}

fn projection(spec: &IndexProjection) -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::from(spec.projection_type.as_str()))
        .set_non_key_attributes(
            (!spec.non_key_attributes.is_empty()).then(|| spec.non_key_attributes.clone()),
        )
        .build()
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
