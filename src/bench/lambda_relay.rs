//! The relay Lambda's handler measured as the seed handler is measured: the
//! outbox stream's records are read into a file of Lambda events first,
//! then a child process (`raffle-outbox bench --relay-events FILE`) connects
//! as the Lambda does and hands each event to [`lambda::relay::invoke`],
//! counting the CPU time of the invocations alone. The seed handler's clock
//! also starts after its events are parsed and its producer connected; the
//! whole `run` process (start, connection, polling the stream itself, which
//! the event source mapping does on AWS) is measured apart.

use serde::Deserialize;

use super::*;
use crate::lambda;
use crate::stream::poller::StreamPoller;

/// The template's Lambda timeout: each invocation's deadline.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the child printed last on stdout: the outbox stream records it was
/// handed and the CPU time (user + system) of its invocations.
#[derive(Serialize, Deserialize, Debug)]
pub struct LambdaRun {
    /// Stream records in the events, all invocations together.
    pub records: usize,
    /// User + system CPU time of the invocations, µs.
    pub cpu_us: u64,
}

/// The child: reads the events in `file` (a JSON list of DynamoDB stream
/// events), connects to DynamoDB and Kafka as the relay Lambda does, then
/// invokes the relay Lambda's handler once per event, each with the
/// template's 30 s deadline. Fails at the first invocation that fails.
pub async fn relay_events(config: &Config, file: &Path) -> anyhow::Result<LambdaRun> {
    let events: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(file)?)
        .with_context(|| format!("the events in {}", file.display()))?;
    let records = events
        .iter()
        .map(|e| e["Records"].as_array().map_or(0, Vec::len))
        .sum();
    let (dynamodb, _) = crate::config::aws_clients().await;
    let table = config.outbox_table.as_str();
    let relay = Relay::connect(config.clone(), &dynamodb).await?;
    let started = cpu_time()?;
    for event in events {
        let deadline = Instant::now() + INVOCATION_TIMEOUT;
        lambda::relay::invoke(&relay, &dynamodb, table, event, deadline)
            .await
            .map_err(|e| anyhow::anyhow!("relay invocation: {e}"))?;
    }
    let cpu_us = u64::try_from((cpu_time()? - started).as_micros())?;
    Ok(LambdaRun { records, cpu_us })
}

/// This process's user + system CPU time so far (`getrusage`, the kernel's
/// accounting that `/proc/self/stat` shows in clock ticks, to the µs).
fn cpu_time() -> anyhow::Result<Duration> {
    // SAFETY: `usage` is a plain C struct that getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let done = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    anyhow::ensure!(done == 0, "getrusage: {}", std::io::Error::last_os_error());
    Ok(timeval(usage.ru_utime) + timeval(usage.ru_stime))
}

impl DynamoLeg {
    /// The `n` records of this leg's outbox stream, as the outbox stream's
    /// event source mapping hands them to the relay: events of at most
    /// `RELAY_BATCH_SIZE` records (the template's `BatchSize`), written as a
    /// JSON list to `file`. Fails if fewer than `n` arrive within a minute.
    pub(super) async fn write_outbox_events(&self, n: usize, file: &Path) -> anyhow::Result<()> {
        let (_, streams) = self.instance.clients().await;
        let mut poller =
            StreamPoller::for_table(&self.dynamodb, streams, &self.config.outbox_table).await?;
        let mut records = Vec::with_capacity(n);
        let give_up = Instant::now() + Duration::from_secs(60);
        while records.len() < n {
            anyhow::ensure!(
                Instant::now() < give_up,
                "{} of {n} outbox stream records read",
                records.len()
            );
            let events = poller.poll().await?;
            if events.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            for event in events {
                records.extend(event.records);
            }
        }
        let events: Vec<serde_json::Value> = records
            .chunks(self.config.relay_batch_size.max(1))
            .map(|chunk| serde_json::json!({ "Records": chunk }))
            .collect();
        std::fs::write(file, serde_json::to_vec(&events)?)?;
        Ok(())
    }

    /// The child of [`relay_events`] on this leg, its logs as in production
    /// (`info`, written to /dev/null); its report is its last stdout line
    /// (the lines before are the invocations' metrics).
    pub(super) fn spawn_lambda_relay(&self, file: &Path) -> anyhow::Result<Measured> {
        let file = file.to_str().context("the events file's path")?;
        let mut command = self.command(&["bench", "--relay-events", file])?;
        command.env("RUST_LOG", "info").stderr(Stdio::null());
        spawn_measured(command)
    }
}
