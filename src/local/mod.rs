//! The local stack: DynamoDB Local and the tansu Kafka broker, installed on first use and run
//! as background processes on 127.0.0.1.
//!
//! There is no docker on the machines this project runs on, so the project installs and starts
//! the real components itself (docs/operating.md, "The local stack"). Everything lives under
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
mod lock;
mod probe;
mod process;
mod reset;
mod service;
mod stack;
mod tansu;

pub use dynamodb_local::DynamoDbInstance;
pub(crate) use process::which;
pub use reset::{reset, DeletedData, ResetReport};
pub use service::ServiceStatus;
pub use stack::{StackConfig, DEFAULT_DYNAMODB_PORT, DEFAULT_KAFKA_PORT};
pub use tansu::topic_schema;

use std::path::Path;

use anyhow::Context as _;

use lock::StackLock;

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

/// Creates `topic` with `partitions` partitions; succeeds if it already exists. The broker
/// then enforces the event contract on it: a record whose value does not conform to
/// [`crate::contract::SCHEMA`] is refused with `INVALID_RECORD`.
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

/// Stops only the broker, waiting until its port is free.
///
/// For fault tests: the relay must survive a broker outage. The SQLite storage keeps topics
/// and records, so [`start_broker`] brings back the same log. A broker that `up` did not
/// start is an error rather than a silent no-op: a fault test would otherwise pass without
/// any outage having happened.
pub async fn stop_broker(cfg: &StackConfig) -> anyhow::Result<()> {
    let _lock = StackLock::acquire(cfg).await?;
    tansu::stop(cfg).await?;
    if probe::kafka_answers(cfg.kafka_port).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_a_port_that_can_be_bound() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
