//! Versioned tables: `migrations/` applied in order, each recorded once.
//!
//! A migration is the JSON that `aws dynamodb create-table --cli-input-json`
//! takes, so the files read like the AWS documentation and can be applied by
//! hand in an emergency. They are compiled into the binary (a Lambda or a
//! copied CLI needs no files at run time). The `TableName` in a file is the
//! logical name (`participants`, `outbox`); the configured name replaces it,
//! which is how tests get tables of their own. The ledger records
//! `<migration>@<table>`, so one ledger serves several sets of tables.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, SseSpecification,
    StreamSpecification, StreamViewType, TableStatus,
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

impl Migration {
    pub fn create_table(&self) -> anyhow::Result<CreateTable> {
        serde_json::from_str(self.json).map_err(|e| anyhow::anyhow!("migration {}: {e}", self.id))
    }
}

/// The configured name of a logical table.
fn table_name(config: &Config, logical: &str) -> anyhow::Result<String> {
    match logical {
        "participants" => Ok(config.participants_table.clone()),
        "outbox" => Ok(config.outbox_table.clone()),
        other => anyhow::bail!("migration names unknown table `{other}`"),
    }
}

/// Applies the migrations not yet applied to the configured tables and
/// returns the ones it applied. Running it again changes nothing.
pub async fn migrate(client: &Client, config: &Config) -> anyhow::Result<Vec<String>> {
    ensure_ledger(client, &config.migrations_table).await?;
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        let spec = migration.create_table()?;
        let table = table_name(config, &spec.table_name)?;
        let key = format!("{}@{}", migration.id, table);
        let recorded = client
            .get_item()
            .table_name(&config.migrations_table)
            .key("id", AttributeValue::S(key.clone()))
            .consistent_read(true)
            .send()
            .await?;
        if recorded.item.is_some() {
            continue;
        }
        create_table(client, &spec, &table).await?;
        client
            .put_item()
            .table_name(&config.migrations_table)
            .item("id", AttributeValue::S(key.clone()))
            .item("migration", AttributeValue::S(migration.id.to_string()))
            .item("table", AttributeValue::S(table.clone()))
            .item(
                "applied_at",
                AttributeValue::S(crate::outbox::row::rfc3339(time::OffsetDateTime::now_utc())),
            )
            .send()
            .await?;
        tracing::info!(migration = migration.id, table = %table, "migration applied");
        applied.push(key);
    }
    Ok(applied)
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
    let keys = |elements: &[KeyElement]| -> Vec<KeySchemaElement> {
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
    };
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::from(spec.billing_mode.as_str()))
        .set_key_schema(Some(keys(&spec.key_schema)));
    for a in &spec.attribute_definitions {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()?,
        );
    }
    for index in &spec.global_secondary_indexes {
        let projection = Projection::builder()
            .projection_type(ProjectionType::from(
                index.projection.projection_type.as_str(),
            ))
            .set_non_key_attributes(
                (!index.projection.non_key_attributes.is_empty())
                    .then(|| index.projection.non_key_attributes.clone()),
            )
            .build();
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.index_name)
                .set_key_schema(Some(keys(&index.key_schema)))
                .projection(projection)
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
    for _ in 0..600 {
        let described = client.describe_table().table_name(table).send().await?;
        if described.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("table {table} did not become ACTIVE within 60 s")
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
            let spec = m.create_table().unwrap();
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
