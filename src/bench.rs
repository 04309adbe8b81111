//! `raffle-outbox bench`: the figures of the performance targets, measured
//! in one run on the local stack, each leg on tables and a topic of its own,
//! each leg that writes to DynamoDB on a DynamoDB Local of its own.
//!
//! - the Kafka leg: N participant-sized keyed messages through our producer,
//!   against `kcat -P` sending the same messages to the same broker, and a
//!   loop of one awaited send per message (the usual first version);
//! - the relay: N outbox rows from PENDING to DELIVERED (the stream path),
//!   and the same relay handed one row at a time;
//! - end to end: N participants saved until all are DELIVERED, by a
//!   `raffle-outbox run` child process (whose peak RSS is measured), against
//!   DynamoDB Local's raw write ceiling measured in the same run;
//! - outbox writes and write units per delivered participant;
//! - optionally, `audit export` of a seeded outbox (rows/s, peak RSS);
//! - optionally, registrations through the register handler by concurrent
//!   clients resending at random (registrations/s, p99), each participant
//!   checked once in the table and once on the topic.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use futures::StreamExt as _;
use serde::Serialize;
use time::OffsetDateTime;

use crate::config::Config;
use crate::kafka::{Message, Producer};
use crate::local::{self, StackConfig};
use crate::outbox::row::{epoch_ms, rfc3339};
use crate::outbox::{OutboxRow, OutboxStore, Source, Status, Stored};
use crate::pipeline::PipelineReport;
use crate::relay::{Relay, BATCHES_IN_FLIGHT};
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
    /// The relay handed one row at a time (send awaited, then its mark).
    pub relay_one_row_at_a_time_rows_per_s: f64,
    pub end_to_end_participants_per_s: f64,
    pub ddb_write_ceiling_items_per_s: f64,
    pub ddb_writes_per_participant: f64,
    pub ddb_write_units_per_participant: f64,
    pub relay_peak_rss_mb: f64,
    /// `--export-rows`: an `audit export` of that many rows.
    pub export: Option<ExportFigures>,
    /// `--reconcile-participants`: a `reconcile` of that many participants.
    pub reconcile: Option<ReconcileFigures>,
    /// `--register-participants`: registrations through the register
    /// handler, with retries.
    pub register: Option<RegisterFigures>,
}

/// `raffle-outbox reconcile --json` over a seeded participants table and
/// outbox, in a child process whose peak RSS is measured.
#[derive(Debug, Serialize)]
pub struct ReconcileFigures {
    pub participants: usize,
    pub reconcile_participants_per_s: f64,
    pub reconcile_peak_rss_mb: f64,
    /// Scan segments the command chose for the table.
    pub segments: u64,
    /// Seeding and index backfill, for the record (not in the figure).
    pub seed_s: f64,
    pub index_backfill_s: f64,
}

/// `raffle-outbox audit export --format csv` of a seeded outbox, in a child
/// process whose peak RSS is measured.
#[derive(Debug, Serialize)]
pub struct ExportFigures {
    pub rows: usize,
    pub export_rows_per_s: f64,
    pub export_peak_rss_mb: f64,
    /// Seeding (BatchWriteItem) and adding the audit indexes (backfill), for
    /// the record: they are not part of the export's figure.
    pub seed_s: f64,
    pub index_backfill_s: f64,
}

/// A configuration of its own for one leg: fresh tables and topic. The
/// topic is listed in [`LEG_TOPICS`], for [`delete_leg_topics`].
async fn leg(base: &Config, stack: &StackConfig, name: &str) -> anyhow::Result<Config> {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut config = base.clone();
    config.participants_table = format!("bench_{name}_participants_{suffix}");
    config.outbox_table = format!("bench_{name}_outbox_{suffix}");
    config.kafka_topic = format!("bench-{name}-{suffix}");
    LEG_TOPICS
        .lock()
        .expect("not poisoned")
        .push(config.kafka_topic.clone());
    local::ensure_topic(stack, &config.kafka_topic, 3).await?;
    Ok(config)
}

/// The topics the legs of this process created, until [`delete_leg_topics`].
static LEG_TOPICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Deletes the topics [`run`]'s legs created (tansu's store slows down as it
/// grows, and a 20,000-participant run writes ~150,000 messages); to call
/// after `run`, whatever its outcome. Failures are logged, not returned.
pub async fn delete_leg_topics(stack: &StackConfig) {
    let topics = std::mem::take(&mut *LEG_TOPICS.lock().expect("not poisoned"));
    for topic in topics {
        if let Err(error) = local::delete_topic(stack, &topic).await {
            tracing::warn!(topic, error = %format!("{error:#}"), "bench topic not deleted");
        }
    }
}

/// A leg that writes to DynamoDB: its configuration, and a DynamoDB Local
/// of its own (in memory, empty, stopped when dropped) with the tables
/// migrated. DynamoDB Local's writes to stream-enabled tables slow down with
/// every stream record it holds (from ~3,000 to ~900 items/s after 6,000
/// records here), so a leg on the stack's instance would be measured against
/// whatever ran before it.
struct DynamoLeg {
    config: Config,
    instance: local::DynamoDbInstance,
    dynamodb: aws_sdk_dynamodb::Client,
}

impl DynamoLeg {
    async fn start(base: &Config, stack: &StackConfig, name: &str) -> anyhow::Result<DynamoLeg> {
        DynamoLeg::start_at(base, stack, name, migrate::MIGRATIONS.len()).await
    }

    /// A leg whose tables have only the first `migrations` migrations.
    async fn start_at(
        base: &Config,
        stack: &StackConfig,
        name: &str,
        migrations: usize,
    ) -> anyhow::Result<DynamoLeg> {
        let config = leg(base, stack, name).await?;
        let instance = local::start_dynamodb_in_memory(stack).await?;
        let (dynamodb, _) = instance.clients().await;
        migrate::migrate_to(&dynamodb, &config, migrations).await?;
        Ok(DynamoLeg {
            config,
            instance,
            dynamodb,
        })
    }

    /// `raffle-outbox ARGS` on this leg's tables, topic and DynamoDB Local.
    fn command(&self, args: &[&str]) -> anyhow::Result<Command> {
        let c = &self.config;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(args)
            .env("PARTICIPANTS_TABLE", &c.participants_table)
            .env("OUTBOX_TABLE", &c.outbox_table)
            .env("KAFKA_TOPIC", &c.kafka_topic)
            .env("AWS_ENDPOINT_URL_DYNAMODB", self.instance.endpoint())
            .env(
                "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
                self.instance.endpoint(),
            )
            .env("RUST_LOG", "warn");
        Ok(command)
    }

    /// N outbox rows as the stream handler writes them, stored.
    async fn pending_rows(
        &self,
        participants: &[(String, serde_json::Value)],
    ) -> anyhow::Result<Vec<OutboxRow>> {
        let now = OffsetDateTime::now_utc();
        let rows: Vec<OutboxRow> = participants
            .iter()
            .enumerate()
            .map(|(i, (id, p))| {
                let source = Source {
                    event_id: format!("bench-{i}"),
                    sequence_number: Some(i.to_string()),
                };
                let due = now + Duration::from_secs(3600);
                OutboxRow::pending(&source, id.clone(), p.to_string(), now, due)
            })
            .collect();
        for result in self.outbox().insert_all(&rows).await {
            result?;
        }
        Ok(rows)
    }

    fn outbox(&self) -> OutboxStore {
        OutboxStore::new(self.dynamodb.clone(), &self.config.outbox_table)
    }

    async fn relay(&self) -> anyhow::Result<Relay> {
        let c = &self.config;
        let producer = Producer::connect(&c.kafka_bootstrap_servers, &c.kafka_topic).await?;
        Ok(Relay::new(self.outbox(), Arc::new(producer), c.clone()))
    }
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    tenths(count as f64 / elapsed.as_secs_f64())
}

/// Rounded to one decimal, as the figures are printed.
fn tenths(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Measures every leg (see the module docs) with `n` participants, plus the
/// optional legs whose sizes are not 0 (`register`: participants and
/// clients), each leg on tables and a topic of its own; brings the local
/// stack up first. The legs' topics stay until [`delete_leg_topics`].
pub async fn run(
    base: &Config,
    stack: &StackConfig,
    n: usize,
    export_rows: usize,
    reconcile_participants: usize,
    register: Option<(usize, usize)>,
) -> anyhow::Result<Figures> {
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
                crate::kafka::envelope::OUTBOX_ID_HEADER.into(),
                Bytes::from(uuid::Uuid::new_v4().to_string()),
            )],
        })
        .collect();
    let producer = Producer::connect(&config.kafka_bootstrap_servers, &config.kafka_topic).await?;
    // As the relay sends: batches of RELAY_BATCH_SIZE, BATCHES_IN_FLIGHT at once.
    let started = Instant::now();
    let sends: Vec<_> = messages
        .chunks(config.relay_batch_size)
        .map(|batch| producer.send(batch))
        .collect();
    let failed = futures::stream::iter(sends)
        .buffer_unordered(BATCHES_IN_FLIGHT)
        .map(|results| results.iter().filter(|r| r.is_err()).count())
        .fold(0, |sum, failed| async move { sum + failed })
        .await;
    anyhow::ensure!(failed == 0, "{failed} messages refused by the broker");
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
    let leg = DynamoLeg::start(base, stack, "ceiling").await?;
    let items: Vec<serde_json::Value> = participants.iter().map(|(_, p)| p.clone()).collect();
    let started = Instant::now();
    demo::save_all(&leg.dynamodb, &leg.config.participants_table, items.clone()).await?;
    let ceiling = rate(n, started.elapsed());
    drop(leg);

    // The relay: N rows PENDING → DELIVERED through the stream path.
    let leg = DynamoLeg::start(base, stack, "relay").await?;
    let rows = leg.pending_rows(&participants).await?;
    let relay = leg.relay().await?;
    let started = Instant::now();
    let report = relay.relay_new(rows).await?;
    anyhow::ensure!(
        report.delivered == n,
        "the relay delivered {} of {n}",
        report.delivered
    );
    let relay_rate = rate(n, started.elapsed());
    drop(leg);

    // The same relay given one row at a time: one awaited send (and its
    // mark) per row, the shape of the usual first version.
    let leg = DynamoLeg::start(base, stack, "relay-one").await?;
    let rows = leg.pending_rows(&participants[..one_by_one]).await?;
    let relay = leg.relay().await?;
    let started = Instant::now();
    for row in rows {
        let report = relay.relay_new(vec![row]).await?;
        anyhow::ensure!(report.delivered == 1, "a row was not delivered: {report:?}");
    }
    let relay_one_row_at_a_time = rate(one_by_one, started.elapsed());
    drop(leg);

    // End to end, in a child process: its peak RSS is the relay's.
    let leg = DynamoLeg::start(base, stack, "e2e").await?;
    let (report, elapsed, peak_rss_kb) = end_to_end(&leg, items).await?;
    let delivered = report.relay.delivered.max(1) as f64;
    drop(leg);

    let export = match export_rows {
        0 => None,
        rows => Some(export(base, stack, rows).await?),
    };
    let reconcile = match reconcile_participants {
        0 => None,
        n => Some(reconcile(base, stack, n).await?),
    };
    let register = match register {
        Some((participants, clients)) if participants > 0 => {
            Some(register_load(base, stack, participants, clients).await?)
        }
        _ => None,
    };

    Ok(Figures {
        participants: n,
        kafka_leg_msgs_per_s: kafka_leg,
        kcat_msgs_per_s: kcat,
        kcat_note,
        one_send_per_message_msgs_per_s: one_send_per_message,
        relay_rows_per_s: relay_rate,
        relay_one_row_at_a_time_rows_per_s: relay_one_row_at_a_time,
        end_to_end_participants_per_s: rate(n, elapsed),
        ddb_write_ceiling_items_per_s: ceiling,
        ddb_writes_per_participant: (report.outbox_writes as f64 / delivered * 100.0).round()
            / 100.0,
        ddb_write_units_per_participant: (report.outbox_write_units / delivered * 100.0).round()
            / 100.0,
        relay_peak_rss_mb: mb(peak_rss_kb),
        export,
        reconcile,
        register,
    })
}

/// Saves the participants while a `raffle-outbox run --until-idle` child
/// relays them; returns its report, the time from the first save to the
/// last DELIVERED mark, and its peak RSS in KiB.
async fn end_to_end(
    leg: &DynamoLeg,
    items: Vec<serde_json::Value>,
) -> anyhow::Result<(PipelineReport, Duration, i64)> {
    let (config, dynamodb) = (&leg.config, &leg.dynamodb);
    let n = items.len();
    let child = spawn_measured(leg.command(&["run", "--until-idle", "--idle-seconds", "3"])?)?;
    let started = OffsetDateTime::now_utc();
    demo::save_all(dynamodb, &config.participants_table, items).await?;
    let (stdout, peak_rss_kb) = tokio::task::spawn_blocking(move || child.wait()).await??;
    let report: PipelineReport = serde_json::from_slice(&stdout).context("the run's report")?;
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
    tracing::debug!(first_save = %rfc3339(started), last_mark = %rfc3339(last), "end to end");
    Ok((report, (last - started).unsigned_abs(), peak_rss_kb))
}

fn mb(kib: i64) -> f64 {
    tenths(kib as f64 / 1024.0)
}

/// A child process whose own peak resident set (`VmHWM`) is watched while
/// it runs.
///
/// Not `wait4`'s `ru_maxrss`: Linux carries the parent's high-water mark
/// over the child's `exec`, so a child of this (large) benchmark process
/// reported the benchmark's size — 614 MB for an export that holds 26 MB.
struct Measured {
    child: std::process::Child,
    peak_kib: std::thread::JoinHandle<i64>,
}

fn spawn_measured(mut command: Command) -> anyhow::Result<Measured> {
    let child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let status = format!("/proc/{}/status", child.id());
    // VmHWM only grows; the last reading before the process ends is its peak
    // (to within the 10 ms between readings). A zombie has no VmHWM line.
    let peak_kib = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some(kib) = std::fs::read_to_string(&status)
            .ok()
            .and_then(|s| vm_hwm_kib(&s))
        {
            peak = kib;
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    });
    Ok(Measured { child, peak_kib })
}

/// The `VmHWM:   1234 kB` line of a `/proc/<pid>/status`.
fn vm_hwm_kib(status: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Measured {
    /// Waits for the child; its stdout and its peak RSS in KiB. Fails if it
    /// failed.
    fn wait(mut self) -> anyhow::Result<(Vec<u8>, i64)> {
        use std::io::Read as _;
        let mut stdout = Vec::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_end(&mut stdout)?;
        }
        let peak = self.peak_kib.join().unwrap_or_default();
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "child process failed: {status}");
        Ok((stdout, peak))
    }
}

/// The export leg, on a DynamoDB Local of its own: `rows` outbox rows
/// seeded (98 % DELIVERED, 1 % FAILED, 1 % PENDING, a day's worth), then
/// `audit export --format csv` of all of them to a file, whose record count
/// is checked.
///
/// The rows go into an outbox of version 0002 with its stream turned off
/// (see [`local::disable_stream`]), and the audit indexes are then added by
/// migration, which backfills them, as on a production upgrade.
async fn export(base: &Config, stack: &StackConfig, rows: usize) -> anyhow::Result<ExportFigures> {
    let leg = DynamoLeg::start_at(base, stack, "export", 2).await?;
    let (config, dynamodb) = (&leg.config, &leg.dynamodb);
    local::disable_stream(dynamodb, &config.outbox_table).await?;
    let t0 = OffsetDateTime::now_utc() - Duration::from_secs(86_400);
    let items = (0..rows)
        .map(|i| serde_json::to_value(export_row(i, t0, &config.kafka_topic)))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    demo::save_all(dynamodb, &config.outbox_table, items).await?;
    let seed_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    migrate::migrate(dynamodb, config).await?;
    let index_backfill_s = started.elapsed().as_secs_f64();

    let file = stack.run_dir().join("bench-export.csv");
    let output = file
        .to_str()
        .context("the run directory is not valid UTF-8")?;
    let command = leg.command(&["audit", "export", "--format", "csv", "--output", output])?;
    let started = Instant::now();
    let child = spawn_measured(command)?;
    let (_, peak_rss_kb) = tokio::task::spawn_blocking(move || child.wait()).await??;
    let elapsed = started.elapsed();
    let records = std::fs::read(&file)?
        .windows(2)
        .filter(|w| w == b"\r\n")
        .count();
    anyhow::ensure!(
        records == rows + 1,
        "the export holds {} of {rows} rows",
        records.saturating_sub(1)
    );
    std::fs::remove_file(&file)?;
    Ok(ExportFigures {
        rows,
        export_rows_per_s: rate(rows, elapsed),
        export_peak_rss_mb: mb(peak_rss_kb),
        seed_s: tenths(seed_s),
        index_backfill_s: tenths(index_backfill_s),
    })
}

/// The reconcile leg, on a DynamoDB Local of its own: `n` participants
/// registered over a day, each with its outbox row as [`export_row`] makes
/// them (98 % DELIVERED, 1 % FAILED, 1 % PENDING), seeded with both streams
/// off and the audit indexes backfilled; then `reconcile --json`, whose
/// counts are checked.
async fn reconcile(
    base: &Config,
    stack: &StackConfig,
    n: usize,
) -> anyhow::Result<ReconcileFigures> {
    let leg = DynamoLeg::start_at(base, stack, "reconcile", 2).await?;
    let (config, dynamodb) = (&leg.config, &leg.dynamodb);
    local::disable_stream(dynamodb, &config.participants_table).await?;
    local::disable_stream(dynamodb, &config.outbox_table).await?;
    let t0 = OffsetDateTime::now_utc() - Duration::from_secs(86_400);
    let rows: Vec<OutboxRow> = (0..n)
        .map(|i| export_row(i, t0, &config.kafka_topic))
        .collect();
    let participants = rows
        .iter()
        .map(|row| Ok(serde_json::from_slice(&row.payload_bytes()?)?))
        .collect::<anyhow::Result<Vec<serde_json::Value>>>()?;
    let rows = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    demo::save_all(dynamodb, &config.participants_table, participants).await?;
    demo::save_all(dynamodb, &config.outbox_table, rows).await?;
    let seed_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    migrate::migrate(dynamodb, config).await?;
    let index_backfill_s = started.elapsed().as_secs_f64();

    let command = leg.command(&["reconcile", "--json"])?;
    let started = Instant::now();
    let child = spawn_measured(command)?;
    let (stdout, peak_rss_kb) = tokio::task::spawn_blocking(move || child.wait()).await??;
    let elapsed = started.elapsed();
    let report: serde_json::Value = serde_json::from_slice(&stdout)?;
    anyhow::ensure!(
        report["participants"].as_u64() == Some(n as u64)
            && report["classes"]["missing"].as_u64() == Some(0),
        "reconcile saw {report}"
    );
    Ok(ReconcileFigures {
        participants: n,
        reconcile_participants_per_s: rate(n, elapsed),
        reconcile_peak_rss_mb: mb(peak_rss_kb),
        segments: report["segments"].as_u64().unwrap_or(0),
        seed_s: tenths(seed_s),
        index_backfill_s: tenths(index_backfill_s),
    })
}

/// Row `i` of the export leg, created `i` × 0.8 s after `t0`.
fn export_row(i: usize, t0: OffsetDateTime, topic: &str) -> OutboxRow {
    let (id, participant) = demo::sample_participant(i);
    let at = t0 + Duration::from_millis(i as u64 * 800);
    let source = Source {
        event_id: format!("bench-export-{i}"),
        sequence_number: Some(i.to_string()),
    };
    let row = OutboxRow::pending(&source, id, participant.to_string(), at, at);
    match i % 100 {
        // Out of attempts: ten sends refused for the message's fault.
        0 => OutboxRow {
            attempts: 10,
            ..row
        }
        .into_failed("partition 1: broker error MessageSizeTooLarge"),
        1 => row,
        _ => {
            let stored = Stored {
                topic: topic.to_string(),
                partition: (i % 3) as i32,
                offset: i as i64 / 3,
                timestamp: epoch_ms(at),
            };
            row.into_delivered(&stored, at, None)
        }
    }
}

/// `kcat -P` sending the same keyed messages to a topic of its own; the
/// rate counts only if the topic's end offsets grew by all of them.
async fn kcat(
    stack: &StackConfig,
    base: &Config,
    participants: &[(String, serde_json::Value)],
) -> anyhow::Result<f64> {
    ensure_kcat()?;
    let lib = librdkafka(stack)?;
    let config = leg(base, stack, "kcat").await?;
    let file = stack.run_dir().join("bench-kcat-input.tsv");
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
        // The same messages: our Kafka leg's carry an `outbox_id` header
        // (a UUID) each, and tansu's cost per message doubles with it, so
        // kcat's carry one of the same size.
        .args(["-H", &format!("outbox_id={}", uuid::Uuid::new_v4())])
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

/// kcat from Debian's packages, installed on first use when we are root.
fn ensure_kcat() -> anyhow::Result<()> {
    if local::which("kcat").is_some() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    anyhow::ensure!(
        root && local::which("apt-get").is_some(),
        "kcat is not installed (apt-get install kcat)"
    );
    eprintln!("raffle-outbox: installing kcat (apt-get install -y kcat); first time only");
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "kcat"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "apt-get install kcat failed: {status}");
    Ok(())
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
    // The wheel's libraries (librdkafka and what it links), librdkafka
    // under the name kcat asks for.
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(so.parent().unwrap_or(Path::new(".")))? {
        let path = entry?.path();
        let name = match path == so {
            true => "librdkafka.so.1".into(),
            false => path.file_name().unwrap_or_default().to_owned(),
        };
        std::fs::copy(&path, dir.join(name))?;
    }
    Ok(dir)
}

/// `--register-participants`: registration under load, with retries.
#[derive(Debug, Serialize)]
pub struct RegisterFigures {
    /// Intended participants (one Idempotency-Key each).
    pub participants: usize,
    /// Clients registering at once.
    pub clients: usize,
    /// Requests sent, retries included.
    pub requests: usize,
    /// Requests that resent a key: after its answer (a lost response) or
    /// while its first request was in flight.
    pub retries: usize,
    /// Intended participants registered per second (first request to the
    /// last answer).
    pub registrations_per_s: f64,
    pub requests_per_s: f64,
    /// Per request, through the handler to DynamoDB Local and back.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Participants found on the topic once the local pipeline had run
    /// (each exactly once, or the leg fails).
    pub on_topic: usize,
}

/// An HTTP API event for `POST /participants` with a JSON body and an
/// `Idempotency-Key`, as API Gateway hands it to the register function.
fn register_event(
    body: &str,
    key: &str,
) -> aws_lambda_events::event::apigw::ApiGatewayV2httpRequest {
    let mut event = aws_lambda_events::event::apigw::ApiGatewayV2httpRequest::default();
    event.raw_path = Some("/participants".into());
    for (name, value) in [
        ("content-type", "application/json"),
        ("idempotency-key", key),
    ] {
        event
            .headers
            .insert(name, value.parse().expect("a header value"));
    }
    event.body = Some(body.to_string());
    event
}

/// One client's registration of one participant: its first request, then,
/// at random, the same request again after the answer (1 in 4: the answer
/// was lost) or a second one at the same time (1 in 8: a retry while the
/// first was in flight). Every answer must be 201 with the key's
/// participant id, and only one of them the registration (the others
/// replays). Returns the requests' latencies.
async fn register_with_retries(
    registrar: &crate::register::Registrar,
    key: &str,
    body: &str,
) -> anyhow::Result<Vec<Duration>> {
    let event = register_event(body, key);
    let timed = || async {
        let started = Instant::now();
        let response = registrar.handle(&event).await;
        (response, started.elapsed())
    };
    let answers = match fastrand::u8(0..8) {
        0 => {
            let (a, b) = tokio::join!(timed(), timed());
            vec![a, b]
        }
        1 | 2 => vec![timed().await, timed().await],
        _ => vec![timed().await],
    };
    let expected = crate::register::id_for_key(key)?;
    let mut registered = 0;
    for (response, _) in &answers {
        let body = match &response.body {
            Some(aws_lambda_events::encodings::Body::Text(text)) => text.as_str(),
            _ => "",
        };
        anyhow::ensure!(
            response.status_code == 201,
            "answered {}: {body}",
            response.status_code
        );
        let id: serde_json::Value = serde_json::from_str(body)?;
        anyhow::ensure!(id["id"] == expected.as_str(), "answered {body}");
        if !response
            .headers
            .contains_key(crate::register::REPLAYED_HEADER)
        {
            registered += 1;
        }
    }
    anyhow::ensure!(registered == 1, "{registered} registrations for one key");
    Ok(answers.into_iter().map(|(_, latency)| latency).collect())
}

/// The register leg, on a DynamoDB Local of its own: `n` participants
/// registered through the register handler by `clients` concurrent clients
/// that resend requests at random ([`register_with_retries`]); then each
/// intended participant must be in the table once, and, after `raffle-outbox
/// run` has relayed them, on the topic once (read back with the project's
/// [`TopicReader`](crate::kafka::fetch::TopicReader)).
pub async fn register_load(
    base: &Config,
    stack: &StackConfig,
    n: usize,
    clients: usize,
) -> anyhow::Result<RegisterFigures> {
    let leg = DynamoLeg::start(base, stack, "register").await?;
    let registrar = crate::register::Registrar::new(
        leg.dynamodb.clone(),
        &leg.config.participants_table,
        leg.config.max_message_bytes,
    );
    let intended: Vec<(String, String)> = (0..n)
        .map(|i| {
            let (_, p) = demo::sample_participant(i);
            let body = serde_json::json!({
                "name": p["name"], "email": p["email"], "raffle": p["raffle"], "tickets": p["tickets"],
            });
            (uuid::Uuid::new_v4().to_string(), body.to_string())
        })
        .collect();
    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(&intended)
        .map(|(key, body)| register_with_retries(&registrar, key, body))
        .buffer_unordered(clients.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?
        .concat();
    let elapsed = started.elapsed();

    let expected: std::collections::BTreeSet<String> = intended
        .iter()
        .map(|(key, _)| crate::register::id_for_key(key))
        .collect::<Result<_, _>>()?;
    let mut saved = std::collections::BTreeSet::new();
    let mut pages = leg
        .dynamodb
        .scan()
        .table_name(&leg.config.participants_table)
        .projection_expression("id")
        .into_paginator()
        .items()
        .send();
    while let Some(item) = pages.next().await {
        if let Some(aws_sdk_dynamodb::types::AttributeValue::S(id)) = item?.get("id") {
            saved.insert(id.clone());
        }
    }
    anyhow::ensure!(
        saved == expected,
        "{} participants saved for {n} intended",
        saved.len()
    );

    let run = leg.command(&["run", "--until-idle", "--idle-seconds", "3"])?;
    tokio::task::spawn_blocking(move || spawn_measured(run)?.wait()).await??;
    let mut reader = crate::kafka::fetch::TopicReader::connect(
        &leg.config.kafka_bootstrap_servers,
        &leg.config.kafka_topic,
    )
    .await?;
    let mut on_topic = std::collections::BTreeMap::<String, usize>::new();
    for partition in 0..reader.partitions() {
        let mut offset = 0;
        loop {
            let fetched = reader.fetch(partition, offset).await?;
            let from = offset;
            for record in fetched.records.iter().filter(|r| r.offset >= from) {
                let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default());
                *on_topic.entry(key.into_owned()).or_default() += 1;
                offset = record.offset + 1;
            }
            if offset >= fetched.high_watermark || fetched.records.is_empty() {
                break;
            }
        }
    }
    let once = on_topic.values().all(|&count| count == 1);
    anyhow::ensure!(
        once && on_topic.keys().eq(expected.iter()),
        "{} keys on the topic for {n} participants, {} more than once",
        on_topic.len(),
        on_topic.values().filter(|&&c| c > 1).count()
    );

    latencies.sort_unstable();
    let percentile = |p: f64| {
        let rank = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        tenths(latencies[rank - 1].as_secs_f64() * 1000.0)
    };
    Ok(RegisterFigures {
        participants: n,
        clients,
        requests: latencies.len(),
        retries: latencies.len() - n,
        registrations_per_s: rate(n, elapsed),
        requests_per_s: rate(latencies.len(), elapsed),
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        on_topic: on_topic.len(),
    })
}
