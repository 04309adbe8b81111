//! The CPU yardstick: the workshop chapter's handler (one awaited kafkajs
//! `send` per INSERT record, `bench/seed-handler/`), run by Node.js on the
//! same participants and broker, in stream batches of the relay's size.

use super::*;

/// The handler's directory in this checkout.
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/seed-handler");

/// What the seed-style handler reported of itself.
#[derive(Debug, serde::Deserialize)]
pub(super) struct SeedRun {
    /// Rows it sent.
    pub rows: usize,
    /// User CPU of its invocations (after the producer connected), µs.
    pub cpu_user_us: u64,
    /// System CPU of the same, µs.
    pub cpu_system_us: u64,
}

impl SeedRun {
    /// CPU time (user + system) per row sent, µs.
    pub(super) fn cpu_us_per_row(&self) -> f64 {
        tenths((self.cpu_user_us + self.cpu_system_us) as f64 / self.rows.max(1) as f64)
    }
}

/// Runs the handler on `participants` as DynamoDB stream events of
/// `RELAY_BATCH_SIZE` INSERT records each (as the relay gets its rows), to a
/// topic of its own; installs its npm packages first (`npm ci`, from its
/// lock file) when they are missing.
pub(super) async fn seed_handler(
    base: &Config,
    stack: &StackConfig,
    participants: &[(String, serde_json::Value)],
) -> anyhow::Result<SeedRun> {
    let node = local::which("node").context("Node.js (node) is needed for the seed handler")?;
    if !Path::new(DIR).join("node_modules").is_dir() {
        let npm = local::which("npm").context("npm is needed to install the seed handler")?;
        eprintln!("raffle-outbox: installing the seed handler's npm packages (kafkajs) in {DIR}");
        let status = Command::new(npm)
            .args(["ci", "--no-audit", "--no-fund", "--prefix", DIR])
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "npm ci in {DIR} failed: {status}");
    }
    let config = leg(base, stack, "seed").await?;
    let events: Vec<serde_json::Value> = participants
        .chunks(base.relay_batch_size.max(1))
        .enumerate()
        .map(|(b, chunk)| {
            let records: Vec<serde_json::Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, (_, participant))| {
                    let image: serde_dynamo::Item =
                        serde_dynamo::to_item(participant).expect("a JSON object is an item");
                    serde_json::json!({
                        "eventID": format!("seed-{b}-{i}"),
                        "eventName": "INSERT",
                        "eventSource": "aws:dynamodb",
                        "dynamodb": { "NewImage": image, "SequenceNumber": format!("{b}{i:06}") }
                    })
                })
                .collect();
            serde_json::json!({ "Records": records })
        })
        .collect();
    let file = stack.run_dir().join("bench-seed-events.json");
    std::fs::write(&file, serde_json::to_vec(&events)?)?;
    let output = Command::new(node)
        .arg(Path::new(DIR).join("handler.js"))
        .arg(&config.kafka_bootstrap_servers)
        .arg(&config.kafka_topic)
        .arg(&file)
        .stdout(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(
        output.status.success(),
        "the seed handler failed: {}",
        stderr.trim()
    );
    let summary = stderr.lines().last().unwrap_or_default();
    let run: SeedRun = serde_json::from_str(summary)
        .with_context(|| format!("the seed handler's summary: {summary}"))?;
    anyhow::ensure!(
        run.rows == participants.len(),
        "the seed handler sent {} of {}",
        run.rows,
        participants.len()
    );
    Ok(run)
}
