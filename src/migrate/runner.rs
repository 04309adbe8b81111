//! The migration runner: applies the migrations not yet recorded in the
//! ledger table, in order, to the configured tables, and records each.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CreateGlobalSecondaryIndexAction,
    GlobalSecondaryIndex, GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, SseSpecification, StreamSpecification,
    StreamViewType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;

use super::spec::{
    with_later_indexes, AttributeDef, CreateTable, IndexProjection, KeyElement, Operation,
    UpdateTable, UpdateTimeToLive, MIGRATIONS,
};
use crate::config::Config;

/// The configured name of a logical table.
fn table_name(config: &Config, logical: &str) -> anyhow::Result<String> {
    match logical {
        "participants" => Ok(config.participants_table.clone()),
        crate::outbox::schema::TABLE => Ok(config.outbox_table.clone()),
        other => anyhow::bail!("migration names unknown table `{other}`"),
    }
}

/// Applies the migrations not yet applied to the configured tables and
/// returns the ones it applied (`<migration>@<table>`). Running it again
/// changes nothing. Costs one consistent GetItem of the ledger per
/// migration, and for each one applied its operation, a PutItem into the
/// ledger and DescribeTable polls until the table (and a new index: about
/// 70 s of backfill on DynamoDB Local) is active. Stops at the first
/// error; what was applied before it stays recorded.
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
