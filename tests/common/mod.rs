//! What every integration test shares: the real local stack (brought up with
//! the same code as `raffle-outbox local up`), tables and a topic of the
//! test's own, and an independent reader of the topic (librdkafka, through
//! the `rdkafka` crate: not the project's Kafka code).
#![allow(dead_code)]

pub mod broker;
pub mod rows;

use std::collections::{BTreeMap, HashMap};
use std::sync::Once;
use std::time::{Duration, Instant};

use raffle_outbox::config::{aws_clients, default_to_local_stack};
use raffle_outbox::local::{self, StackConfig};
use raffle_outbox::outbox::{OutboxRow, OutboxStore};
use raffle_outbox::pipeline::{Pipeline, PipelineReport};
use raffle_outbox::{demo, migrate, Config};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::OnceCell;

pub const PARTITIONS: i32 = 3;

static ENV: Once = Once::new();
static STACK: OnceCell<()> = OnceCell::const_new();

/// One test's world: its own tables and topic on the shared local stack.
/// Its tables (every table whose name carries its suffix) are deleted when
/// it is dropped, unless the test failed: those are kept for inspection.
/// A suite that left its tables behind grew DynamoDB Local by gigabytes.
pub struct TestEnv {
    pub suffix: String,
    pub stack: StackConfig,
    pub config: Config,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub outbox: OutboxStore,
}

pub async fn env() -> TestEnv {
    let stack = StackConfig::from_env();
    ENV.call_once(|| default_to_local_stack(&stack.dynamodb_endpoint()));
    STACK
        .get_or_init(|| async {
            local::up(&stack).await.expect("local stack up");
        })
        .await;
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let mut config = Config::from_env().expect("config");
    config.participants_table = format!("participants_{suffix}");
    config.outbox_table = format!("outbox_{suffix}");
    config.kafka_topic = format!("test-topic-{suffix}");
    config.kafka_bootstrap_servers = stack.kafka_bootstrap();
    local::ensure_topic(&stack, &config.kafka_topic, PARTITIONS as u32)
        .await
        .expect("topic");
    let (dynamodb, _) = aws_clients().await;
    migrate::migrate(&dynamodb, &config).await.expect("migrate");
    let outbox = OutboxStore::new(dynamodb.clone(), &config.outbox_table);
    TestEnv {
        suffix,
        stack,
        config,
        dynamodb,
        outbox,
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test failed: keeping its tables (*_{}) for inspection",
                self.suffix
            );
            return;
        }
        let suffix = self.suffix.clone();
        // Drop cannot await, and the test's runtime may be shutting down:
        // a runtime and a client of its own, on a thread of its own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let (dynamodb, _) = aws_clients().await;
                let mut pages = dynamodb.list_tables().into_paginator().send();
                let mut tables = Vec::new();
                while let Some(page) = pages.next().await {
                    tables.extend(page?.table_names.unwrap_or_default());
                }
                for table in tables.iter().filter(|t| t.contains(&suffix)) {
                    dynamodb.delete_table().table_name(table).send().await?;
                }
                anyhow::Ok(())
            })
        })
        .join();
        if let Ok(Err(e)) = deleted {
            eprintln!(
                "could not delete the test's tables (*_{}): {e:#}",
                self.suffix
            );
        }
    }
}

impl TestEnv {
    /// Runs the whole local pipeline on the test's tables and topic until it
    /// has been idle for 2 s.
    pub async fn run_pipeline(&self) -> PipelineReport {
        Pipeline::connect(&self.config)
            .await
            .expect("pipeline")
            .run(Some(Duration::from_secs(2)))
            .await
            .expect("pipeline run")
    }

    pub async fn rows(&self) -> Vec<OutboxRow> {
        self.outbox.scan_all().await.expect("scan outbox")
    }

    /// Reads the test's topic with librdkafka until `expected` messages have
    /// arrived, then a little longer so that extra (duplicate) messages show.
    pub fn read_topic(&self, expected: usize) -> Vec<Record> {
        read_topic(
            &self.stack.kafka_bootstrap(),
            &self.config.kafka_topic,
            expected,
        )
    }
}

/// Saves the demo's sample participants numbered `numbers` into `table`;
/// returns their ids.
pub async fn save_participants(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    numbers: std::ops::Range<usize>,
) -> Vec<String> {
    let (ids, items): (Vec<String>, Vec<serde_json::Value>) =
        numbers.map(demo::sample_participant).unzip();
    demo::save_all(dynamodb, table, items)
        .await
        .expect("saving participants");
    ids
}

/// Rows per state, for progress lines and assertion messages.
pub fn counts(rows: &[OutboxRow]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for row in rows {
        *counts.entry(row.status.to_string()).or_default() += 1;
    }
    counts
}

/// One message as an independent client sees it.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: HashMap<String, String>,
    pub timestamp: Option<i64>,
}

pub fn read_topic(bootstrap: &str, topic: &str, expected: usize) -> Vec<Record> {
    read_partitions(bootstrap, topic, PARTITIONS, expected)
}

/// [`read_topic`] for a topic of `partitions` partitions (not [`PARTITIONS`]).
pub fn read_partitions(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("api.version.request", "true")
        .create()
        .expect("rdkafka consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Once `expected` messages are in, read on until the topic has been
    // quiet for a while, so that extra (duplicate) messages show too.
    let mut last_arrival = Instant::now();
    while Instant::now() < deadline {
        if records.len() >= expected && last_arrival.elapsed() > Duration::from_secs(3) {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_arrival = Instant::now();
                records.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
                    headers: m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| {
                                    let value =
                                        h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                                    (h.key.to_string(), value.unwrap_or_default())
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    timestamp: m.timestamp().to_millis(),
                })
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    records
}
