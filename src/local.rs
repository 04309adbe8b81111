//! The local stack: DynamoDB Local and the tansu Kafka broker, installed on first use and run
//! as background processes on 127.0.0.1.
//!
//! There is no docker on the machines this project runs on, so the project installs and starts
//! the real components itself (see DESIGN.md, "Where it runs → Locally"). Everything lives under
//! one directory, [`StackConfig::home`] (a cache directory, never the repository), laid out as:
//!
//! ```text
//! <home>/up.lock                       exclusive lock held by `up`, `down`, `start/stop_broker`
//! <home>/dynamodb-local-1.25.1/        DynamoDBLocal.jar, DynamoDBLocal_lib/, launcher-<hash>/
//! <home>/tansu-0.6.0/bin/tansu         `cargo install --root` layout
//! <home>/run/<service>.pid             pid of what *we* started, so `down` stops only that
//! <home>/run/<service>.log             the service's stdout and stderr (appended)
//! <home>/run/dynamodb-local/           DynamoDB Local's working directory
//! <home>/run/tansu/                    tansu's working directory and its SQLite database
//! <home>/run/dynamodb-local-file-<port>.{pid,log}   a test's own file-backed DynamoDB Local
//! ```
//!
//! The servers are detached (their own process group, stdin closed, output to the log files),
//! so they outlive the `raffle-outbox up` that started them and are shared by every test and
//! command that runs afterwards. `up` is idempotent and safe to call from several processes at
//! once: the first one installs and starts, the others wait for the lock and then reuse.
//!
//! Note the two services keep their data differently: DynamoDB Local runs `-inMemory`, so
//! tables are gone after `down`, while tansu stores topics and records in SQLite under
//! `<home>/run/tansu/`, which survives `down`/`up` and [`stop_broker`]/[`start_broker`]
//! (fault tests rely on that). A test that restarts DynamoDB starts one of its own that keeps
//! its tables in a directory: [`start_dynamodb_file_backed`].

mod dynamodb_local;
mod process;

pub(crate) use process::which;
mod service;
mod tansu;

pub use dynamodb_local::DynamoDbInstance;

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Default DynamoDB Local port: the one every AWS example uses.
pub const DEFAULT_DYNAMODB_PORT: u16 = 8000;
/// Default Kafka port.
pub const DEFAULT_KAFKA_PORT: u16 = 9092;

/// Where the local stack lives and listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    /// Install and run directory (see the module docs for its layout).
    pub home: PathBuf,
    /// DynamoDB Local's port on 127.0.0.1.
    pub dynamodb_port: u16,
    /// The Kafka broker's port on 127.0.0.1.
    pub kafka_port: u16,
}

impl StackConfig {
    /// Reads the configuration from the environment.
    ///
    /// home = `$RAFFLE_OUTBOX_HOME`, else `$XDG_CACHE_HOME/raffle-outbox`, else
    /// `~/.cache/raffle-outbox`. It is a cache on purpose: everything in it can be
    /// re-installed, and it is shared by every checkout of the project on the machine, so the
    /// 15-minute tansu build happens once per machine, not once per clone.
    ///
    /// ports: `$DYNAMODB_LOCAL_PORT` (default 8000), `$KAFKA_PORT` (default 9092). A value that
    /// is not a port number is ignored with a warning rather than failing, because this
    /// constructor cannot fail and a wrong port shows up clearly at `up` anyway.
    pub fn from_env() -> Self {
        Self::from_lookup(|key| std::env::var_os(key))
    }

    /// [`StackConfig::from_env`] with the environment passed in, so it can be unit-tested
    /// without mutating the process environment (which is racy across test threads).
    fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> Self {
        StackConfig {
            home: home_from(&get),
            dynamodb_port: port_from(&get, "DYNAMODB_LOCAL_PORT", DEFAULT_DYNAMODB_PORT),
            kafka_port: port_from(&get, "KAFKA_PORT", DEFAULT_KAFKA_PORT),
        }
    }

    /// The endpoint to give the AWS SDK (`AWS_ENDPOINT_URL_DYNAMODB`), e.g.
    /// `http://127.0.0.1:8000`. The same endpoint serves the Streams API.
    pub fn dynamodb_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.dynamodb_port)
    }

    /// The Kafka bootstrap address, e.g. `127.0.0.1:9092`.
    pub fn kafka_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    /// Directory for pid files, logs and the broker's working directory.
    pub fn run_dir(&self) -> PathBuf {
        self.home.join("run")
    }
}

fn home_from(get: &impl Fn(&str) -> Option<OsString>) -> PathBuf {
    // An empty variable counts as unset (the usual shell convention). XDG_CACHE_HOME must be
    // absolute to be used, as the XDG Base Directory spec says.
    let non_empty = |key: &str| get(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(home) = non_empty("RAFFLE_OUTBOX_HOME") {
        return home;
    }
    if let Some(cache) = non_empty("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return cache.join("raffle-outbox");
    }
    if let Some(user_home) = non_empty("HOME") {
        return user_home.join(".cache").join("raffle-outbox");
    }
    // No HOME at all (some minimal containers): still somewhere outside the repository.
    std::env::temp_dir().join("raffle-outbox")
}

fn port_from(get: &impl Fn(&str) -> Option<OsString>, key: &str, default: u16) -> u16 {
    let Some(raw) = get(key) else { return default };
    match raw.to_str().and_then(|s| s.trim().parse::<u16>().ok()) {
        Some(port) if port != 0 => port,
        _ => {
            tracing::warn!(variable = key, value = ?raw, default, "not a port number, using the default");
            default
        }
    }
}

/// What runs where, as reported by [`up`] and [`status`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceStatus {
    /// `"dynamodb-local"` or `"tansu"`.
    pub name: &'static str,
    /// Where clients connect: the DynamoDB endpoint URL or the Kafka bootstrap address.
    pub address: String,
    /// The service answers its protocol on that address.
    pub running: bool,
    /// Process id, when the process is one that `up` started.
    pub pid: Option<u32>,
    /// `up` started it (a pid file of ours names a live process). `false` with `running`
    /// means something else already served the port and we reused it: `down` leaves it alone.
    pub started_by_us: bool,
}

/// Installs what is missing, starts what is not running, and waits until both services answer.
///
/// Idempotent: a service whose pid file names a live process that answers is reused; a port
/// that answers the right protocol without a pid file of ours is reused too and reported with
/// `started_by_us: false`. Holds an exclusive lock on `<home>/up.lock` for the whole of
/// install and start, so concurrent callers (parallel test binaries, two terminals) never
/// install twice or start two servers on one port.
pub async fn up(cfg: &StackConfig) -> anyhow::Result<Vec<ServiceStatus>> {
    let _lock = StackLock::acquire(cfg).await?;
    // Install both before starting either, so a failed install (no network, no javac) does
    // not leave half a stack running.
    let ddb_install = dynamodb_local::install(&cfg.home).await?;
    let tansu_bin = tansu::install(&cfg.home).await?;
    let ddb = dynamodb_local::ensure_running(cfg, &ddb_install).await?;
    let broker = tansu::ensure_running(cfg, &tansu_bin).await?;
    Ok(vec![ddb, broker])
}

/// Stops what `up` started (and only that), waiting until each process has exited and its
/// port is free, then removes the pid files.
///
/// Waiting matters: tansu panics with `AddrInUse` when a new broker is started while the old
/// one still holds the port, and tests call `down`/`up` back to back.
pub async fn down(cfg: &StackConfig) -> anyhow::Result<()> {
    let _lock = StackLock::acquire(cfg).await?;
    // Order does not matter (neither depends on the other); the broker is the quick one.
    tansu::stop(cfg).await?;
    dynamodb_local::stop(cfg).await?;
    // And any file-backed DynamoDB Local a killed test process left running.
    dynamodb_local::stop_file_backed_leftovers(cfg).await?;
    Ok(())
}

/// Reports what runs where, without starting or installing anything.
pub async fn status(cfg: &StackConfig) -> anyhow::Result<Vec<ServiceStatus>> {
    Ok(vec![
        dynamodb_local::status(cfg).await,
        tansu::status(cfg).await,
    ])
}

/// Creates `topic` with `partitions` partitions; succeeds if it already exists.
///
/// If the existing topic has a different partition count this only warns: the caller asked
/// for the topic to exist, and deleting data to change it is not this function's call.
pub async fn ensure_topic(cfg: &StackConfig, topic: &str, partitions: u32) -> anyhow::Result<()> {
    tansu::ensure_topic(cfg, topic, partitions).await
}

/// Deletes `topic` from the local broker and its records with it; succeeds if there is no such
/// topic. For commands that work on a topic of their own (`demo`, `bench`): the shared topic
/// stays small, as tansu's SQLite store slows down as it grows. Fails if the broker does not
/// answer or refuses.
pub async fn delete_topic(cfg: &StackConfig, topic: &str) -> anyhow::Result<()> {
    tansu::delete_topic(cfg, topic).await
}

/// What [`reset`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResetReport {
    /// The services `reset` stopped (those `up` had started), by name.
    pub stopped: Vec<&'static str>,
    /// The stored data deleted: one entry per directory that existed.
    pub deleted: Vec<DeletedData>,
}

/// One directory of stored data [`reset`] deleted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeletedData {
    /// `"tansu"` or `"dynamodb-local"`.
    pub service: &'static str,
    /// The directory, now gone.
    pub path: PathBuf,
    /// The size of its files before deletion.
    pub bytes: u64,
}

impl std::fmt::Display for ResetReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.stopped.as_slice() {
            [] => writeln!(f, "stopped: nothing (no service of ours was running)")?,
            names => writeln!(f, "stopped: {}", names.join(", "))?,
        }
        for d in &self.deleted {
            let what = match d.service {
                "tansu" => "the broker's topics and records",
                _ => "DynamoDB Local's working directory",
            };
            writeln!(
                f,
                "deleted {} ({:.1} MB): {what}",
                d.path.display(),
                d.bytes as f64 / 1e6
            )?;
        }
        if self.deleted.is_empty() {
            writeln!(f, "deleted: nothing (no stored data)")?;
        }
        write!(
            f,
            "DynamoDB Local keeps its tables in memory: they went with its stop. Installs and logs \
             are kept; `raffle-outbox local up` starts an empty stack."
        )
    }
}

/// Stops what `up` started (as [`down`]) and deletes the stack's stored data: the broker's
/// working directory with its SQLite database (`<home>/run/tansu/`: every topic and record)
/// and DynamoDB Local's working directory (`<home>/run/dynamodb-local/`; its tables are in
/// memory, so they go with the stop). Installs, pid files and logs are kept.
///
/// Refuses, deleting nothing, when a service still answers on its port after the stop (one
/// `up` did not start, which may be using this data). Holds the stack's lock while it checks
/// and deletes, so a concurrent `up` waits.
pub async fn reset(cfg: &StackConfig) -> anyhow::Result<ResetReport> {
    let running: Vec<&'static str> = status(cfg)
        .await?
        .into_iter()
        .filter(|s| s.running && s.started_by_us)
        .map(|s| s.name)
        .collect();
    down(cfg).await?;
    let _lock = StackLock::acquire(cfg).await?;
    if let Some(still) = status(cfg).await?.into_iter().find(|s| s.running) {
        anyhow::bail!(
            "{} still answers on {} (not started by `raffle-outbox local up`): not deleting the \
             stack's data; stop it first",
            still.name,
            still.address
        );
    }
    let mut deleted = Vec::new();
    for (service, dir) in [
        ("tansu", cfg.run_dir().join("tansu")),
        ("dynamodb-local", cfg.run_dir().join("dynamodb-local")),
    ] {
        if !dir.exists() {
            continue;
        }
        let bytes = dir_bytes(&dir);
        std::fs::remove_dir_all(&dir).with_context(|| format!("deleting {}", dir.display()))?;
        tracing::info!(service, path = %dir.display(), bytes, "local data deleted");
        deleted.push(DeletedData {
            service,
            path: dir,
            bytes,
        });
    }
    Ok(ResetReport {
        stopped: running,
        deleted,
    })
}

/// The total size of the files under `dir` (what can be read of it).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// Stops only the broker, waiting until its port is free.
///
/// For fault tests: the relay must survive a broker outage. The SQLite storage keeps topics
/// and records, so [`start_broker`] brings back the same log. A broker that `up` did not
/// start is an error rather than a silent no-op: a fault test would otherwise pass without
/// any outage having happened.
pub async fn stop_broker(cfg: &StackConfig) -> anyhow::Result<()> {
    let _lock = StackLock::acquire(cfg).await?;
    tansu::stop(cfg).await?;
    if tansu::answers(cfg.kafka_port).await {
        anyhow::bail!(
            "the Kafka broker on {} was not started by `raffle-outbox up`; not stopping it",
            cfg.kafka_bootstrap()
        );
    }
    Ok(())
}

/// Starts only the broker (installing it if needed) and waits until it answers.
pub async fn start_broker(cfg: &StackConfig) -> anyhow::Result<()> {
    let _lock = StackLock::acquire(cfg).await?;
    let tansu_bin = tansu::install(&cfg.home).await?;
    tansu::ensure_running(cfg, &tansu_bin).await.map(drop)
}

/// Starts a DynamoDB Local of its own on 127.0.0.1:`port` that stores its tables in `db_dir`
/// (`-dbPath`, `-sharedDb`), for tests that restart DynamoDB and need the data to survive it.
///
/// It is separate from the stack's DynamoDB Local (which runs `-inMemory` and is shared by
/// every test): same install (installed first if missing), same 127.0.0.1 launcher, same
/// readiness check; its pid and log files are `<home>/run/dynamodb-local-file-<port>.*`.
/// Fails if something else already answers on `port` (see [`free_port`]). Waits until it
/// answers. Dropping the returned instance stops it.
pub async fn start_dynamodb_file_backed(
    cfg: &StackConfig,
    port: u16,
    db_dir: &Path,
) -> anyhow::Result<DynamoDbInstance> {
    start_own_dynamodb(cfg, port, db_dir, true).await
}

/// A DynamoDB Local of its own, in memory, on a free port: empty, whatever
/// the stack's instance went through (the benchmark starts one per leg, as
/// DynamoDB Local's writes to stream-enabled tables slow down with every
/// stream record it holds, across all tables). Dropping it stops it.
pub async fn start_dynamodb_in_memory(cfg: &StackConfig) -> anyhow::Result<DynamoDbInstance> {
    start_own_dynamodb(cfg, free_port()?, &cfg.run_dir(), false).await
}

/// A DynamoDB Local besides the stack's, installed first if missing (under
/// the stack's lock, so a concurrent `up` does not install it twice).
async fn start_own_dynamodb(
    cfg: &StackConfig,
    port: u16,
    dir: &Path,
    file_backed: bool,
) -> anyhow::Result<DynamoDbInstance> {
    let install = {
        let _lock = StackLock::acquire(cfg).await?;
        dynamodb_local::install(&cfg.home).await?
    };
    DynamoDbInstance::start(cfg, install, port, dir, file_backed).await
}

/// Turns off a table's stream, for seeding many rows that no stream reader
/// needs (the export's tests and benchmark) into DynamoDB Local, whose
/// writes to stream-enabled tables slow down with every stream record it
/// holds: 100,000 rows with the stream on would take tens of minutes and
/// slow every later test sharing the instance.
pub async fn disable_stream(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> anyhow::Result<()> {
    dynamodb
        .update_table()
        .table_name(table)
        .stream_specification(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(false)
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("turning off the stream of {table}"))?;
    Ok(())
}

/// A TCP port on 127.0.0.1 that is free now (the kernel's pick for port 0). Free is not
/// reserved: another process may take it before it is used, which a server's start then
/// reports.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// An exclusive `flock` on `<home>/up.lock`, released when dropped (the file is closed).
///
/// `flock` locks belong to the open file description, so two tasks of one process conflict
/// just like two processes do, and the lock disappears with a crashed holder: no stale lock
/// files to clean up. Rust opens files with `O_CLOEXEC`, so the servers we spawn never
/// inherit (and so never keep holding) the lock.
struct StackLock {
    _file: File,
}

impl StackLock {
    async fn acquire(cfg: &StackConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&cfg.home)
            .with_context(|| format!("creating {}", cfg.home.display()))?;
        let path = cfg.home.join("up.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => return Ok(StackLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        // Someone else is installing, starting or stopping. Block on the lock off the async
        // runtime's threads; if that takes more than a moment (an install can take 15
        // minutes), tell the user why we appear to hang.
        let mut wait = tokio::task::spawn_blocking(move || file.lock().map(|()| file));
        let locked = tokio::select! {
            locked = &mut wait => locked,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                eprintln!(
                    "raffle-outbox: waiting for another raffle-outbox process to finish with the local stack (lock {})",
                    path.display()
                );
                wait.await
            }
        };
        locked
            .context("lock task panicked")?
            .map(|file| StackLock { _file: file })
            .with_context(|| format!("locking {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg_with(vars: &[(&str, &str)]) -> StackConfig {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        StackConfig::from_lookup(|key| map.get(key).cloned())
    }

    #[test]
    fn home_prefers_raffle_outbox_home() {
        let cfg = cfg_with(&[
            ("RAFFLE_OUTBOX_HOME", "/opt/ro"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(cfg.home, PathBuf::from("/opt/ro"));
    }

    #[test]
    fn home_falls_back_to_xdg_cache_then_home() {
        let cfg = cfg_with(&[("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(cfg.home, PathBuf::from("/xdg/raffle-outbox"));
        let cfg = cfg_with(&[("HOME", "/home/u")]);
        assert_eq!(cfg.home, PathBuf::from("/home/u/.cache/raffle-outbox"));
    }

    #[test]
    fn empty_or_relative_values_are_ignored() {
        let cfg = cfg_with(&[
            ("RAFFLE_OUTBOX_HOME", ""),
            ("XDG_CACHE_HOME", "relative/cache"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(cfg.home, PathBuf::from("/home/u/.cache/raffle-outbox"));
    }

    #[test]
    fn no_home_at_all_still_leaves_the_repository_alone() {
        let cfg = cfg_with(&[]);
        assert_eq!(cfg.home, std::env::temp_dir().join("raffle-outbox"));
    }

    #[test]
    fn ports_default_and_override() {
        let cfg = cfg_with(&[("HOME", "/h")]);
        assert_eq!((cfg.dynamodb_port, cfg.kafka_port), (8000, 9092));
        assert_eq!(cfg.dynamodb_endpoint(), "http://127.0.0.1:8000");
        assert_eq!(cfg.kafka_bootstrap(), "127.0.0.1:9092");

        let cfg = cfg_with(&[("DYNAMODB_LOCAL_PORT", "18000"), ("KAFKA_PORT", " 19092 ")]);
        assert_eq!((cfg.dynamodb_port, cfg.kafka_port), (18000, 19092));
        assert_eq!(cfg.dynamodb_endpoint(), "http://127.0.0.1:18000");
        assert_eq!(cfg.kafka_bootstrap(), "127.0.0.1:19092");
    }

    #[test]
    fn bad_ports_fall_back_to_defaults() {
        let cfg = cfg_with(&[("DYNAMODB_LOCAL_PORT", "eight"), ("KAFKA_PORT", "0")]);
        assert_eq!((cfg.dynamodb_port, cfg.kafka_port), (8000, 9092));
        let cfg = cfg_with(&[("KAFKA_PORT", "70000")]);
        assert_eq!(cfg.kafka_port, 9092);
    }

    #[test]
    fn free_port_is_a_port_that_can_be_bound() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn run_dir_is_under_home() {
        let cfg = cfg_with(&[("RAFFLE_OUTBOX_HOME", "/x")]);
        assert_eq!(cfg.run_dir(), PathBuf::from("/x/run"));
    }
}
