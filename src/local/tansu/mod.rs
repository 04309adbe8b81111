//! tansu: an Apache Kafka-compatible broker written in Rust, standing in for Amazon MSK.
//!
//! Installed with `cargo install` (no prebuilt binaries can be downloaded here), with SQLite
//! storage: tansu's in-memory engine answers ListOffsets and mid-batch fetches wrongly, and
//! SQLite also keeps topics and records across broker restarts, which fault tests need.
//!
//! Quirks of 0.6.0 this module works around:
//! - it reads a `.env` from its working directory, so it runs in its own directory;
//! - its options also come from environment variables (`STORAGE_ENGINE`, `CLUSTER_ID`, ...),
//!   so those are removed from its environment to keep a developer's shell from changing it;
//! - `sqlite://` paths are always taken relative to the working directory (an absolute path
//!   loses its leading `/`), so the database is `sqlite://tansu.db` in that directory;
//! - `topic create` on an existing topic exits 1 and logs "Topic with this name already
//!   exists." (Kafka error 36, TOPIC_ALREADY_EXISTS) to stdout, and the broker logs an ERROR;
//! - `topic create --partitions 0` succeeds and makes a topic with no partitions;
//! - its logs carry ANSI colour codes unless `NO_COLOR` is set;
//! - after SIGTERM it waits up to 5 s for open client connections before it exits, after
//!   SIGINT it stops at once, so SIGINT is how we stop it;
//! - its SQLite schema has no index on `header`, and a fetch looks up each record's headers
//!   by `(topition, offset_id)`: every record fetched scanned every header ever stored
//!   (17 ms a record at 380k headers, so 5,000 records took 85 s and a reader timed out),
//!   so [`index_headers`] adds that index once the broker has created its tables;
//! - with `--schema-registry file://./DIR` it validates every produced batch against
//!   `DIR/<topic>.json` when that file exists (`{"properties": {"value": <schema>}}`), and
//!   refuses the whole batch with `INVALID_RECORD` if one record fails; a topic without a
//!   file is not checked. So [`ensure_topic`] writes the event contract's file for its topic.
//!   Without `--schema-registry-cache-expiry` it reads and compiles the file again for every
//!   produce request, which halved our producer's rate against kcat's (its batches are
//!   smaller, so it makes more requests); its cache check is inverted (`tansu-schema`'s
//!   `Registry::schema` uses the cached schema only once it is *older* than the expiry), so
//!   `1ms` compiles each topic's schema once — and if that is ever fixed, `1ms` means
//!   "read it every time", today's behaviour. The stack's topics' files never change.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::probe::Probe;
use super::process::{self, PidFile};
use super::service::{Service, ServiceStatus};
use super::stack::StackConfig;

const VERSION: &str = "0.6.0";
/// `libsql` (SQLite) is the one storage engine the stack uses (the in-memory one answers
/// ListOffsets and mid-batch fetches wrongly); `dynostore` (S3-style object storage) is left
/// out: it pulls in the object-store crates and only lengthens the first install.
const FEATURES: &str = "libsql";

/// Environment variables tansu 0.6.0 reads as option defaults. Removed from the broker's
/// environment so a developer's shell cannot silently change the local broker.
const TANSU_ENV: &[&str] = &[
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "DATA_LAKE",
    "ICEBERG_CATALOG",
    "ICEBERG_NAMESPACE",
    "ICEBERG_WAREHOUSE",
];

fn install_root(home: &Path) -> PathBuf {
    home.join(format!("tansu-{VERSION}"))
}

fn binary(home: &Path) -> PathBuf {
    install_root(home).join("bin").join("tansu")
}

/// tansu's working directory: holds its SQLite database and nothing else (no `.env`).
fn work_dir(cfg: &StackConfig) -> PathBuf {
    cfg.run_dir().join("tansu")
}

/// The broker's schema registry, in its working directory: one `<topic>.json` per topic
/// that carries participants (see [`enforce_contract`]).
const REGISTRY_DIR: &str = "schema-registry";

fn broker_url(cfg: &StackConfig) -> String {
    format!("tcp://127.0.0.1:{}", cfg.kafka_port)
}

fn service(cfg: &StackConfig) -> Service {
    let run = cfg.run_dir();
    Service {
        name: "tansu",
        port: cfg.kafka_port,
        address: cfg.kafka_bootstrap(),
        pid_file: PidFile {
            path: run.join("tansu.pid"),
            marker: "tansu",
        },
        log: run.join("tansu.log"),
        probe: Probe::Kafka,
        port_env: "KAFKA_PORT",
        // On SIGTERM tansu 0.6.0 waits up to 5 s for connected clients to leave, so every
        // stop with a client attached (the relay, a test consumer) took 5 s. SIGINT (its
        // Ctrl-C path) drops the connections at once. For the data this is a broker crash,
        // which SQLite survives; a produce cut off before its answer is resent by the client,
        // which is the at-least-once path the fault tests exercise anyway.
        stop_signal: libc::SIGINT,
    }
}

/// Installs tansu under `home` if its binary is not there yet; returns the binary's path.
///
/// `cargo install` builds in a temporary target directory and copies the binary into
/// `--root` only when the build succeeded, so the binary's presence marks a complete install.
pub(crate) async fn install(home: &Path) -> anyhow::Result<PathBuf> {
    let bin = binary(home);
    if bin.is_file() {
        return Ok(bin);
    }
    let cargo = process::require(
        "cargo",
        "it builds the tansu Kafka broker",
        "a Rust toolchain, e.g. from https://rustup.rs",
    )?;
    // libsql compiles SQLite from C sources; without a C compiler the build fails minutes in.
    process::require(
        "cc",
        "the tansu build compiles SQLite",
        "a C compiler, e.g. `apt-get install build-essential`",
    )?;
    let root = install_root(home);
    eprintln!(
        "raffle-outbox: installing the tansu {VERSION} Kafka broker (cargo install tansu@{VERSION} --features {FEATURES}) into {}; first time only, this takes ~15 minutes on 2 cores",
        root.display()
    );
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(cargo);
    cmd.args([
        "install",
        &format!("tansu@{VERSION}"),
        "--locked",
        "--features",
        FEATURES,
    ])
    .arg("--root")
    .arg(&root)
    // Not the caller's directory: a project's .cargo/config.toml must not apply here.
    .current_dir(home);
    process::run_visible(cmd, &format!("`cargo install tansu@{VERSION}`")).await?;
    if !bin.is_file() {
        bail!(
            "`cargo install tansu@{VERSION}` succeeded but {} is missing",
            bin.display()
        );
    }
    eprintln!(
        "raffle-outbox: tansu installed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(bin)
}

/// Starts the broker unless it runs already, then makes sure its storage is indexed (see
/// [`index_headers`]).
pub(crate) async fn ensure_running(cfg: &StackConfig, bin: &Path) -> anyhow::Result<ServiceStatus> {
    let dir = work_dir(cfg);
    let registry = dir.join(REGISTRY_DIR);
    std::fs::create_dir_all(&registry)
        .with_context(|| format!("creating {}", registry.display()))?;
    let status = service(cfg)
        .ensure_running(|| {
            let url = broker_url(cfg);
            let mut cmd = Command::new(bin);
            cmd.arg("broker")
                .args(["--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", "sqlite://tansu.db"])
                // `file://` paths are relative to the working directory, as `sqlite://` ones.
                .args(["--schema-registry", &format!("file://./{REGISTRY_DIR}")])
                // Compile each topic's schema once (see the module's quirks).
                .args(["--schema-registry-cache-expiry", "1ms"])
                .current_dir(&dir)
                // Its log level comes from RUST_LOG; the caller's (meant for raffle-outbox)
                // would make tansu log every request at debug level with span events.
                .env("RUST_LOG", "warn")
                // Its log goes to a file: no ANSI colour codes in it.
                .env("NO_COLOR", "1");
            for key in TANSU_ENV {
                cmd.env_remove(key);
            }
            Ok(cmd)
        })
        .await?;
    // A broker that `up` did not start may keep its storage elsewhere: nothing to index here.
    let db = database(cfg);
    if db.is_file() {
        tokio::task::spawn_blocking(move || index_headers(&db))
            .await
            .context("indexing the broker's headers")??;
    }
    Ok(status)
}

/// The broker's SQLite database (`sqlite://tansu.db` in its working directory).
fn database(cfg: &StackConfig) -> PathBuf {
    work_dir(cfg).join("tansu.db")
}

/// Adds the index tansu 0.6.0's schema lacks: `header (topition, offset_id)`, the key its
/// fetch looks each record's headers up by (see the module's quirks). Idempotent; run while
/// the broker runs, after it created its tables at start-up. SQLite, not libsql's own
/// client: the file format is the same, and rusqlite is the well-kept way to open it.
pub(crate) fn index_headers(db: &Path) -> anyhow::Result<()> {
    let connection = rusqlite::Connection::open(db)
        .with_context(|| format!("opening the broker's database {}", db.display()))?;
    // The broker holds the same file open and may be writing.
    connection.busy_timeout(Duration::from_secs(30))?;
    connection
        .execute_batch(
            "create index if not exists raffle_outbox_header_record \
             on header (topition, offset_id)",
        )
        .with_context(|| format!("indexing `header` in {}", db.display()))?;
    Ok(())
}

pub(crate) async fn stop(cfg: &StackConfig) -> anyhow::Result<()> {
    service(cfg).stop().await
}

pub(crate) async fn status(cfg: &StackConfig) -> ServiceStatus {
    service(cfg).status().await
}

/// The topic's file in the broker's schema registry: the event contract
/// ([`crate::contract::SCHEMA`], the very file capture checks with, so the two cannot drift)
/// as the schema of each record's value. No key schema: tansu would parse the key as JSON,
/// and a participant id is plain text.
pub fn topic_schema() -> String {
    let value: serde_json::Value =
        serde_json::from_str(crate::contract::SCHEMA).expect("the schema file is JSON");
    serde_json::json!({ "type": "object", "properties": { "value": value } }).to_string()
}

/// Makes the broker check every record produced to `topic` against the event contract:
/// writes `<topic>.json` into its schema registry (whole, by rename, as the broker may be
/// reading it).
fn enforce_contract(cfg: &StackConfig, topic: &str) -> anyhow::Result<()> {
    let registry = work_dir(cfg).join(REGISTRY_DIR);
    std::fs::create_dir_all(&registry)
        .with_context(|| format!("creating {}", registry.display()))?;
    let file = registry.join(format!("{topic}.json"));
    let partial = registry.join(format!(".{topic}.json.partial"));
    std::fs::write(&partial, topic_schema())
        .and_then(|()| std::fs::rename(&partial, &file))
        .with_context(|| format!("writing {}", file.display()))
}

/// Creates the topic, or succeeds if it exists (see [`super::ensure_topic`]), and makes the
/// broker enforce the event contract on it.
pub(crate) async fn ensure_topic(
    cfg: &StackConfig,
    topic: &str,
    partitions: u32,
) -> anyhow::Result<()> {
    enforce_contract(cfg, topic)?;
    let partitions_arg = i32::try_from(partitions)
        .ok()
        .filter(|p| *p > 0)
        .with_context(|| format!("invalid partition count {partitions}"))?;
    let bin = binary(&cfg.home);
    if !bin.is_file() {
        bail!(
            "tansu is not installed under {}; run `raffle-outbox up` first",
            cfg.home.display()
        );
    }
    if !super::probe::kafka_answers(cfg.kafka_port).await {
        bail!(
            "no Kafka broker answers on {}; run `raffle-outbox up` first",
            cfg.kafka_bootstrap()
        );
    }
    // Look first, create only if missing: creating an existing topic works too (tansu
    // answers TOPIC_ALREADY_EXISTS) but writes an ERROR line into the broker's log each time.
    if let Some(existing) = existing_partitions(cfg, &bin, topic).await? {
        check_partitions(topic, partitions, existing);
        return Ok(());
    }
    let url = broker_url(cfg);
    let output = run_cli(
        cfg,
        &bin,
        &[
            "topic",
            "create",
            topic,
            "--partitions",
            &partitions_arg.to_string(),
            "--broker",
            &url,
        ],
    )
    .await?;
    if output.success {
        tracing::info!(topic, partitions, "topic created");
        return Ok(());
    }
    // Someone created it between our look and our create: exit status 1 and, on stdout,
    // "ERROR tansu: Topic with this name already exists." (Kafka error 36).
    if output.text.contains("already exists") {
        if let Some(existing) = existing_partitions(cfg, &bin, topic).await? {
            check_partitions(topic, partitions, existing);
        }
        return Ok(());
    }
    bail!(
        "`tansu topic create {topic}` failed: {}",
        output.text.trim()
    )
}

/// Deletes `topic` and its records (see [`super::delete_topic`]); succeeds if it is not there.
///
/// Not with `tansu topic delete`: tansu 0.6.0's `topic_delete_by.sql` deletes every topic of
/// the cluster that has a topic of that name (its `where` names the cluster, not the topic),
/// seen wiping the shared broker. Instead, one SQLite transaction on the broker's database
/// deletes the topic's headers and records, then the topic, whose partitions, watermarks,
/// configuration and offsets go with it (`on delete cascade`). The broker reads topics from
/// the database at each request, so the topic is gone for its clients at once.
pub(crate) async fn delete_topic(cfg: &StackConfig, topic: &str) -> anyhow::Result<()> {
    let db = database(cfg);
    let schema = work_dir(cfg)
        .join(REGISTRY_DIR)
        .join(format!("{topic}.json"));
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || delete_topic_rows(&db, &topic)).await??;
    match std::fs::remove_file(&schema) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", schema.display()))
        }
        _ => Ok(()),
    }
}

fn delete_topic_rows(db: &Path, topic: &str) -> anyhow::Result<()> {
    let mut connection = rusqlite::Connection::open(db)
        .with_context(|| format!("opening the broker's database {}", db.display()))?;
    connection.busy_timeout(Duration::from_secs(30))?;
    connection.pragma_update(None, "foreign_keys", true)?;
    let tx = connection.transaction()?;
    let ids: Vec<i64> = tx
        .prepare("select id from topic where name = ?1")?
        .query_map([topic], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        let topitions = "select id from topition where topic = ?1";
        tx.execute(
            &format!("delete from header where topition in ({topitions})"),
            [id],
        )?;
        tx.execute(
            &format!("delete from record where topition in ({topitions})"),
            [id],
        )?;
        tx.execute("delete from topic where id = ?1", [id])?;
    }
    tx.commit()
        .with_context(|| format!("deleting topic {topic} from {}", db.display()))?;
    if !ids.is_empty() {
        tracing::info!(topic, "topic deleted");
    }
    Ok(())
}

fn check_partitions(topic: &str, wanted: u32, existing: usize) {
    if existing == wanted as usize {
        tracing::debug!(topic, partitions = existing, "topic exists already");
    } else {
        tracing::warn!(
            topic,
            wanted,
            existing,
            "topic exists already with a different partition count; keeping it"
        );
    }
}

/// The partition count of `topic` as `tansu topic list` reports it (JSON metadata).
async fn existing_partitions(
    cfg: &StackConfig,
    bin: &Path,
    topic: &str,
) -> anyhow::Result<Option<usize>> {
    let url = broker_url(cfg);
    let output = run_cli(cfg, bin, &["topic", "list", "--broker", &url]).await?;
    if !output.success {
        bail!("`tansu topic list` failed: {}", output.text.trim());
    }
    partitions_in_listing(&output.text, topic)
}

/// Finds `topic` in the output of `tansu topic list` (a JSON array of Metadata topics on one
/// line of stdout) and returns its partition count, or `None` if it is not there.
fn partitions_in_listing(text: &str, topic: &str) -> anyhow::Result<Option<usize>> {
    // Log lines, if any, start with a timestamp; the JSON line starts with '['.
    let json = text
        .lines()
        .find(|l| l.trim_start().starts_with('['))
        .context("no JSON in `tansu topic list` output")?;
    let topics: Vec<serde_json::Value> =
        serde_json::from_str(json).context("parsing `tansu topic list` output")?;
    Ok(topics
        .iter()
        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(topic))
        .map(|t| {
            t.get("partitions")
                .and_then(|p| p.as_array())
                .map_or(0, Vec::len)
        }))
}

struct CliOutput {
    success: bool,
    /// stdout and stderr together: tansu logs its errors to stdout.
    text: String,
}

async fn run_cli(cfg: &StackConfig, bin: &Path, args: &[&str]) -> anyhow::Result<CliOutput> {
    let dir = work_dir(cfg);
    std::fs::create_dir_all(&dir)?;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args)
        .current_dir(&dir)
        // `error` makes it log the Kafka error (e.g. "already exists") we look for, and
        // nothing more.
        .env("RUST_LOG", "error")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .with_context(|| format!("`tansu {}` did not finish within 60 s", args.join(" ")))?
        .with_context(|| format!("could not run {}", bin.display()))?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    tracing::debug!(?args, status = %output.status, output = %text.trim(), "tansu cli");
    Ok(CliOutput {
        success: output.status.success(),
        text,
    })
}

#[cfg(test)]
mod tests;
