//! `raffle-outbox bench`: the figures of the performance targets, measured
//! in one run on the local stack, each leg on tables and a topic of its own.
//!
//! - the Kafka leg: N participant-sized keyed messages through our producer,
//!   against `kcat -P` sending the same messages to the same broker, and a
//!   loop of one awaited send per message (the usual first version);
//! - the relay: N outbox rows from PENDING to DELIVERED (the stream path);
//! - end to end: N participants saved until all are DELIVERED, by a
//!   `raffle-outbox run` child process (whose peak RSS is measured), against
//!   DynamoDB Local's raw write ceiling measured in the same run;
//! - outbox writes and write units per delivered participant.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{aws_clients, Config};
use crate::kafka::{Message, Producer};
use crate::local::{self, StackConfig};
use crate::outbox::row::rfc3339;
use crate::outbox::{OutboxRow, OutboxStore, Source, Status};
use crate::pipeline::PipelineReport;
use crate::relay::Relay;
use crate::{demo, migrate};

/// librdkafka for kcat: Debian's kcat links librdkafka 2.0.2, which cannot
/// talk to tansu; the confluent-kafka wheel carries a current one.
const LIBRDKAFKA_WHEEL: &str = "confluent-kafka==2.16.1";

#[derive(Debug, Serialize)]
pub struct Figures {
    pub participants: usize,
    pub kafka_leg_msgs_per_s: f64,
    pub kcat_msgs_per_s: Option<f64>,
    pub kcat_note: Option<String>,
    pub one_send_per_message_msgs_per_s: f64,
    pub relay_rows_per_s: f64,
    pub end_to_end_participants_per_s: f64,
    pub ddb_write_ceiling_items_per_s: f64,
    pub ddb_writes_per_participant: f64,
    pub ddb_write_units_per_participant: f64,
    pub relay_peak_rss_mb: f64,
}

/// A configuration of its own for one leg: fresh tables and topic.
async fn leg(base: &Config, stack: &StackConfig, name: &str) -> anyhow::Result<Config> {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut config = base.clone();
    config.participants_table = format!("bench_{name}_participants_{suffix}");
    config.outbox_table = format!("bench_{name}_outbox_{suffix}");
    config.kafka_topic = format!("bench-{name}-{suffix}");
    local::ensure_topic(stack, &config.kafka_topic, 3).await?;
    let (dynamodb, _) = aws_clients().await;
    migrate::migrate(&dynamodb, &config).await?;
    Ok(config)
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    (count as f64 / elapsed.as_secs_f64() * 10.0).round() / 10.0
}

pub async fn run(base: &Config, stack: &StackConfig, n: usize) -> anyhow::Result<Figures> {
    local::up(stack).await?;
    let participants: Vec<(String, serde_json::Value)> =
        (0..n).map(demo::sample_participant).collect();

    // The Kafka leg.
    let config = leg(base, stack, "kafka").await?;
    let messages: Vec<Message> = participants
        .iter()
        .map(|(id, p)| Message {
            key: id.clone(),
            value: Bytes::from(p.to_string()),
            headers: vec![(
                "outbox_id".into(),
                Bytes::from(uuid::Uuid::new_v4().to_string()),
            )],
        })
        .collect();
    let producer = Producer::connect(&config.kafka_bootstrap_servers, &config.kafka_topic).await?;
    let started = Instant::now();
    for batch in messages.chunks(config.relay_batch_size) {
        let failed = producer
            .send(batch)
            .await
            .iter()
            .filter(|r| r.is_err())
            .count();
        anyhow::ensure!(failed == 0, "{failed} messages refused by the broker");
    }
    let kafka_leg = rate(n, started.elapsed());
    let one_by_one = n.min(2_000);
    let started = Instant::now();
    for message in &messages[..one_by_one] {
        producer
            .send(std::slice::from_ref(message))
            .await
            .remove(0)?;
    }
    let one_send_per_message = rate(one_by_one, started.elapsed());
    let (kcat, kcat_note) = match kcat(stack, base, &participants).await {
        Ok(rate) => (Some(rate), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };

    // DynamoDB Local's write ceiling: BatchWriteItem of the same items.
    let config = leg(base, stack, "ceiling").await?;
    let (dynamodb, _) = aws_clients().await;
    let items: Vec<serde_json::Value> = participants.iter().map(|(_, p)| p.clone()).collect();
    let started = Instant::now();
    demo::save_all(&dynamodb, &config.participants_table, items.clone()).await?;
    let ceiling = rate(n, started.elapsed());

    // The relay: N rows PENDING → DELIVERED through the stream path.
    let config = leg(base, stack, "relay").await?;
    let outbox = OutboxStore::new(dynamodb.clone(), &config.outbox_table);
    let now = OffsetDateTime::now_utc();
    let rows: Vec<OutboxRow> = participants
        .iter()
        .enumerate()
        .map(|(i, (id, p))| {
            let source = Source {
                event_id: format!("bench-{i}-{}", config.outbox_table),
                sequence_number: Some(i.to_string()),
            };
            OutboxRow::pending(
                &source,
                id.clone(),
                p.to_string(),
                now,
                now + Duration::from_secs(3600),
            )
        })
        .collect();
    for result in outbox.insert_all(&rows).await {
        result?;
    }
    let producer = Producer::connect(&config.kafka_bootstrap_servers, &config.kafka_topic).await?;
    let relay = Relay::new(outbox, Arc::new(producer), config.clone());
    let started = Instant::now();
    let report = relay.relay_new(rows).await?;
    anyhow::ensure!(
        report.delivered == n,
        "the relay delivered {} of {n}",
        report.delivered
    );
    let relay_rate = rate(n, started.elapsed());

    // End to end, in a child process: its peak RSS is the relay's.
    let config = leg(base, stack, "e2e").await?;
    let (report, elapsed, peak_rss_kb) = end_to_end(&config, &dynamodb, items).await?;
    let delivered = report.relay.delivered.max(1) as f64;

    Ok(Figures {
        participants: n,
        kafka_leg_msgs_per_s: kafka_leg,
        kcat_msgs_per_s: kcat,
        kcat_note,
        one_send_per_message_msgs_per_s: one_send_per_message,
        relay_rows_per_s: relay_rate,
        end_to_end_participants_per_s: rate(n, elapsed),
        ddb_write_ceiling_items_per_s: ceiling,
        ddb_writes_per_participant: (report.outbox_writes as f64 / delivered * 100.0).round()
            / 100.0,
        ddb_write_units_per_participant: (report.outbox_write_units / delivered * 100.0).round()
            / 100.0,
        relay_peak_rss_mb: (peak_rss_kb as f64 / 1024.0 * 10.0).round() / 10.0,
    })
}

/// Saves the participants while a `raffle-outbox run --until-idle` child
/// relays them; returns its report, the time from the first save to the
/// last DELIVERED mark, and its peak RSS in KiB.
async fn end_to_end(
    config: &Config,
    dynamodb: &aws_sdk_dynamodb::Client,
    items: Vec<serde_json::Value>,
) -> anyhow::Result<(PipelineReport, Duration, i64)> {
    let n = items.len();
    let child = Command::new(std::env::current_exe()?)
        .args(["run", "--until-idle", "--idle-seconds", "3"])
        .env("PARTICIPANTS_TABLE", &config.participants_table)
        .env("OUTBOX_TABLE", &config.outbox_table)
        .env("KAFKA_TOPIC", &config.kafka_topic)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let started = OffsetDateTime::now_utc();
    demo::save_all(dynamodb, &config.participants_table, items).await?;
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    anyhow::ensure!(output.status.success(), "raffle-outbox run failed");
    let report: PipelineReport =
        serde_json::from_slice(&output.stdout).context("the run's report")?;
    let rows = OutboxStore::new(dynamodb.clone(), &config.outbox_table)
        .scan_all()
        .await?;
    let delivered: Vec<&OutboxRow> = rows
        .iter()
        .filter(|r| r.status == Status::Delivered)
        .collect();
    anyhow::ensure!(delivered.len() == n, "{} of {n} delivered", delivered.len());
    let last = delivered
        .iter()
        .filter_map(|r| r.delivered_at.as_deref())
        .max()
        .unwrap_or_default();
    let last = OffsetDateTime::parse(last, &time::format_description::well_known::Rfc3339)?;
    let peak_rss_kb = children_peak_rss_kb();
    tracing::debug!(first_save = %rfc3339(started), last_mark = %rfc3339(last), "end to end");
    Ok((report, (last - started).unsigned_abs(), peak_rss_kb))
}

/// The largest resident set of any child process waited for, in KiB.
fn children_peak_rss_kb() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init().ru_maxrss
    }
}

/// `kcat -P` sending the same keyed messages to a topic of its own; the
/// rate counts only if the topic's end offsets grew by all of them.
async fn kcat(
    stack: &StackConfig,
    base: &Config,
    participants: &[(String, serde_json::Value)],
) -> anyhow::Result<f64> {
    local::which("kcat").context("kcat is not installed (apt-get install kcat)")?;
    let lib = librdkafka(stack)?;
    let config = leg(base, stack, "kcat").await?;
    let file = stack.home.join("run").join("bench-kcat-input.tsv");
    let lines: Vec<String> = participants
        .iter()
        .map(|(id, p)| format!("{id}\t{p}"))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n")?;
    let started = Instant::now();
    let status = Command::new("kcat")
        .args([
            "-P",
            "-b",
            &config.kafka_bootstrap_servers,
            "-t",
            &config.kafka_topic,
            "-K",
            "\t",
        ])
        .args(["-X", "acks=all", "-X", "partitioner=murmur2", "-l"])
        .arg(&file)
        .env("LD_LIBRARY_PATH", &lib)
        .status()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(status.success(), "kcat failed: {status}");
    let producer = Producer::connect(&config.kafka_bootstrap_servers, &config.kafka_topic).await?;
    let stored: i64 = producer.end_offsets().await?.iter().sum();
    anyhow::ensure!(
        stored == participants.len() as i64,
        "kcat exited 0 but the topic holds {stored} of {} messages (librdkafka's metadata requests go unanswered by tansu at times)",
        participants.len()
    );
    Ok(rate(participants.len(), elapsed))
}

/// A directory with `librdkafka.so.1` from the confluent-kafka wheel,
/// fetched with pip on first use.
fn librdkafka(stack: &StackConfig) -> anyhow::Result<PathBuf> {
    let dir = stack.home.join("librdkafka");
    if dir.join("librdkafka.so.1").exists() {
        return Ok(dir);
    }
    eprintln!(
        "raffle-outbox: fetching a current librdkafka for kcat ({LIBRDKAFKA_WHEEL}) into {}",
        dir.display()
    );
    let wheel_dir = stack.home.join("librdkafka-wheel");
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(&wheel_dir)
        .arg(LIBRDKAFKA_WHEEL)
        .status()?;
    anyhow::ensure!(status.success(), "pip download {LIBRDKAFKA_WHEEL} failed");
    let wheel = std::fs::read_dir(&wheel_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("no wheel downloaded")?;
    let unpacked = wheel_dir.join("unpacked");
    let status = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked)
        .status()?;
    anyhow::ensure!(status.success(), "unpacking {} failed", wheel.display());
    let so = std::fs::read_dir(unpacked.join("confluent_kafka.libs"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("librdkafka"))
        })
        .context("no librdkafka in the wheel")?;
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(so.parent().unwrap_or(Path::new(".")))? {
        let path = entry?.path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap_or_default()))?;
    }
    std::fs::copy(&so, dir.join("librdkafka.so.1"))?;
    Ok(dir)
}
