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
//! - CPU per delivered row: the relay Lambda's handler handed the outbox
//!   stream's events, and a whole `run` child, against the workshop
//!   chapter's handler (one awaited kafkajs send per record) on the same
//!   participants and broker;
//! - a steady offered load (`--steady-rate` participants/s for
//!   `--steady-seconds`) through the registrar and the pipeline on a metered
//!   client: request units per participant by table and index, their price,
//!   and the latency from save to the message's timestamp;
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

mod kcat;
mod lambda_relay;
mod operators;
mod process;
mod register;
mod seed;
mod steady;

use kcat::*;
pub use lambda_relay::{relay_events, LambdaRun};
use operators::*;
pub use operators::{ExportFigures, ReconcileFigures};
use process::*;
pub use register::{register_load, RegisterFigures};
use seed::*;
use steady::steady;
pub use steady::{PlaceUnits, SteadyFigures};

/// What [`run`] measured: one run's figures, as `bench --json` prints them.
/// Rates are per second of wall-clock time on this machine's local stack,
/// not AWS's.
#[derive(Debug, Serialize)]
pub struct Figures {
    /// N: participants in each main leg (the one-at-a-time legs use at most
    /// 2,000 of them).
    pub participants: usize,
    /// Messages/s through our producer, in relay-sized batches with the
    /// relay's batches in flight.
    pub kafka_leg_msgs_per_s: f64,
    /// Messages/s for `kcat -P` sending the same messages to the same
    /// broker; `None` when kcat could not run (see `kcat_note`).
    pub kcat_msgs_per_s: Option<f64>,
    /// Why there is no kcat figure, when there is none.
    pub kcat_note: Option<String>,
    /// Messages/s for one awaited send per message (up to 2,000 messages).
    pub one_send_per_message_msgs_per_s: f64,
    /// Rows/s from PENDING to DELIVERED, the relay handed all N rows as
    /// the outbox stream would.
    pub relay_rows_per_s: f64,
    /// The relay handed one row at a time (send awaited, then its mark).
    pub relay_one_row_at_a_time_rows_per_s: f64,
    /// Participants/s from saving all N to all DELIVERED, through a
    /// `raffle-outbox run` child process.
    pub end_to_end_participants_per_s: f64,
    /// Items/s DynamoDB Local takes by BatchWriteItem into the participants
    /// table: the ceiling the end-to-end figure is held against.
    pub ddb_write_ceiling_items_per_s: f64,
    /// Outbox table writes per delivered participant in the end-to-end
    /// leg (two decimals).
    pub ddb_writes_per_participant: f64,
    /// Write capacity units DynamoDB reported per delivered participant in
    /// the end-to-end leg (two decimals).
    pub ddb_write_units_per_participant: f64,
    /// Peak resident memory of the end-to-end child process, in MB.
    pub relay_peak_rss_mb: f64,
    /// CPU time (user + system) per delivered row, µs, of the relay
    /// Lambda's invocations alone: N rows already in the outbox, their
    /// stream records handed as events of `RELAY_BATCH_SIZE` to the relay
    /// Lambda's handler in a child process, clocked after it connected, as
    /// the seed handler is (see `lambda_relay`).
    pub relay_cpu_us_per_row: f64,
    /// The same for a whole `raffle-outbox run` child given the same work:
    /// its start and connections, its own polling of the outbox stream (the
    /// event source mapping's work on AWS) and 3 s of idle polling included.
    pub relay_process_cpu_us_per_row: f64,
    /// The same for the end-to-end child: capture (stream reads, outbox
    /// writes) and relay together.
    pub pipeline_cpu_us_per_row: f64,
    /// The same for the workshop chapter's handler (Node.js, kafkajs, one
    /// awaited send per record) sending the same participants; `None` when
    /// it could not run (see `seed_note`).
    pub seed_cpu_us_per_row: Option<f64>,
    /// `relay_cpu_us_per_row` ÷ `seed_cpu_us_per_row` (target ≤ 0.25).
    pub cpu_ratio_vs_seed: Option<f64>,
    /// Why there is no seed figure, when there is none.
    pub seed_note: Option<String>,
    /// Write request units per participant at the steady load (see `steady`).
    pub wru_per_participant: Option<f64>,
    /// Read request units per participant at the steady load.
    pub rru_per_participant: Option<f64>,
    /// US$ of DynamoDB per million participants at the steady load.
    pub ddb_usd_per_million: Option<f64>,
    /// Save → message timestamp at the steady load, ms: median.
    pub latency_p50_ms: Option<i64>,
    /// The same, 99th percentile.
    pub latency_p99_ms: Option<i64>,
    /// The same, largest.
    pub latency_max_ms: Option<i64>,
    /// The steady-load leg in full (units by table and index); `None` when
    /// `--steady-seconds 0`.
    pub steady: Option<SteadyFigures>,
    /// `--export-rows`: an `audit export` of that many rows.
    pub export: Option<ExportFigures>,
    /// `--reconcile-participants`: a `reconcile` of that many participants.
    pub reconcile: Option<ReconcileFigures>,
    /// `--register-participants`: registrations through the register
    /// handler, with retries.
    pub register: Option<RegisterFigures>,
}

/// A configuration of its own for one leg: fresh tables and topic. The
/// topic is listed in [`LEG_TOPICS`], for [`delete_leg_topics`].
pub(super) async fn leg(base: &Config, stack: &StackConfig, name: &str) -> anyhow::Result<Config> {
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
pub(super) struct DynamoLeg {
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

    /// `raffle-outbox run --until-idle --idle-seconds 3` on this leg, its
    /// peak RSS and CPU measured (and the write units of its marks computed);
    /// see [`finish_run`].
    fn spawn_run(&self) -> anyhow::Result<Measured> {
        spawn_measured(self.command(&[
            "run",
            "--until-idle",
            "--idle-seconds",
            "3",
            "--compute-statement-units",
        ])?)
    }

    /// [`spawn_run`](Self::spawn_run) with the sweep kept off new rows for
    /// an hour, so the child relays only what the outbox stream hands it,
    /// and logging as in production (`info`: a JSON line per send response,
    /// written to /dev/null), so its CPU time includes the logs'.
    fn spawn_stream_only_run(&self) -> anyhow::Result<Measured> {
        let mut command = self.command(&["run", "--until-idle", "--idle-seconds", "3"])?;
        command
            .env("SWEEP_DELAY_SECONDS", "3600")
            .env("RUST_LOG", "info")
            .stderr(Stdio::null());
        spawn_measured(command)
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
                OutboxRow::pending(&source, id.clone(), p.to_string(), now)
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

    fn audit(&self) -> crate::audit::AuditQuery {
        crate::audit::AuditQuery::new(self.dynamodb.clone(), &self.config.outbox_table)
    }

    async fn relay(&self) -> anyhow::Result<Relay> {
        let c = &self.config;
        let producer = Producer::connect(&c.kafka_bootstrap_servers, &c.kafka_topic).await?;
        Ok(Relay::new(self.outbox(), Arc::new(producer), c.clone()))
    }
}

pub(super) fn rate(count: usize, elapsed: Duration) -> f64 {
    tenths(count as f64 / elapsed.as_secs_f64())
}

/// Rounded to one decimal, as the figures are printed.
pub(super) fn tenths(x: f64) -> f64 {
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
    steady_load: (u32, u32),
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
                crate::kafka::envelope::OUTBOX_ID_HEADER,
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

    // End to end, in a child process: its peak RSS and CPU are the relay's.
    let leg = DynamoLeg::start(base, stack, "e2e").await?;
    let (report, elapsed, e2e) = end_to_end(&leg, items).await?;
    let delivered = report.relay.delivered.max(1) as f64;
    let pipeline_cpu_us_per_row = tenths(e2e.cpu.as_micros() as f64 / delivered);
    drop(leg);

    // The relay alone in a child process, for its CPU: the rows are in the
    // outbox already (new, and the sweep kept off them), so the child only
    // relays what the outbox stream hands it.
    let leg = DynamoLeg::start(base, stack, "relay-cpu").await?;
    leg.pending_rows(&participants).await?;
    let (relayed, relay_child): (PipelineReport, _) =
        finish_run(leg.spawn_stream_only_run()?).await?;
    anyhow::ensure!(
        relayed.relay.delivered == n,
        "the relay child delivered {} of {n}",
        relayed.relay.delivered
    );
    let relay_process_cpu_us_per_row = tenths(relay_child.cpu.as_micros() as f64 / n as f64);
    drop(leg);

    // The relay Lambda's handler alone, clocked as the seed handler is: the
    // same rows' stream records as events, its invocations only.
    let leg = DynamoLeg::start(base, stack, "relay-lambda").await?;
    leg.pending_rows(&participants).await?;
    let events = stack.run_dir().join("bench-relay-events.json");
    leg.write_outbox_events(n, &events).await?;
    let (lambda_run, _): (LambdaRun, _) = finish_run(leg.spawn_lambda_relay(&events)?).await?;
    let lambda_delivered = leg.audit().count(Status::Delivered).await?;
    anyhow::ensure!(
        lambda_run.records == n && lambda_delivered == n as u64,
        "the relay Lambda was handed {} records and delivered {lambda_delivered} of {n}",
        lambda_run.records
    );
    let relay_cpu_us_per_row = tenths(lambda_run.cpu_us as f64 / n as f64);
    drop(leg);
    let (seed_cpu_us_per_row, seed_note) = match seed_handler(base, stack, &participants).await {
        Ok(run) => (Some(run.cpu_us_per_row()), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };

    let steady = match steady_load {
        (rate, seconds) if rate > 0 && seconds > 0 => {
            Some(steady(base, stack, rate, seconds).await?)
        }
        _ => None,
    };

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
        relay_peak_rss_mb: mb(e2e.peak_rss_kib),
        relay_cpu_us_per_row,
        relay_process_cpu_us_per_row,
        pipeline_cpu_us_per_row,
        cpu_ratio_vs_seed: seed_cpu_us_per_row
            .map(|seed| (relay_cpu_us_per_row / seed * 100.0).round() / 100.0),
        seed_cpu_us_per_row,
        seed_note,
        wru_per_participant: steady.as_ref().map(|s| s.wru_per_participant),
        rru_per_participant: steady.as_ref().map(|s| s.rru_per_participant),
        ddb_usd_per_million: steady.as_ref().map(|s| s.ddb_usd_per_million),
        latency_p50_ms: steady.as_ref().map(|s| s.latency_p50_ms),
        latency_p99_ms: steady.as_ref().map(|s| s.latency_p99_ms),
        latency_max_ms: steady.as_ref().map(|s| s.latency_max_ms),
        steady,
        export,
        reconcile,
        register,
    })
}

/// Saves the participants while a `raffle-outbox run --until-idle` child
/// relays them; returns its report, the time from the first save to the
/// last DELIVERED mark, and what the child used (peak RSS, CPU).
pub(super) async fn end_to_end(
    leg: &DynamoLeg,
    items: Vec<serde_json::Value>,
) -> anyhow::Result<(PipelineReport, Duration, Finished)> {
    let (config, dynamodb) = (&leg.config, &leg.dynamodb);
    let n = items.len();
    let child = leg.spawn_run()?;
    let started = OffsetDateTime::now_utc();
    demo::save_all(dynamodb, &config.participants_table, items).await?;
    let (report, finished) = finish_run(child).await?;
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
    Ok((report, (last - started).unsigned_abs(), finished))
}

pub(super) fn mb(kib: i64) -> f64 {
    tenths(kib as f64 / 1024.0)
}
