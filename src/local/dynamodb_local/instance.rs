//! A DynamoDB Local of a test's or the benchmark's own, beside the stack's: file-backed (its
//! tables survive a restart) or in memory (empty whatever the stack's went through).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use super::install::{Install, LAUNCHER_CLASS};
use crate::local::probe::{self, Probe};
use crate::local::process::PidFile;
use crate::local::service::Service;
use crate::local::stack::StackConfig;

/// Pid and log files of file-backed instances: `<run>/dynamodb-local-file-<port>.{pid,log}`.
const FILE_BACKED_PREFIX: &str = "dynamodb-local-file-";

fn file_backed_service(cfg: &StackConfig, port: u16) -> Service {
    let run = cfg.run_dir();
    Service {
        name: "dynamodb-local (file-backed)",
        port,
        address: format!("http://127.0.0.1:{port}"),
        pid_file: PidFile {
            path: run.join(format!("{FILE_BACKED_PREFIX}{port}.pid")),
            marker: LAUNCHER_CLASS,
        },
        log: run.join(format!("{FILE_BACKED_PREFIX}{port}.log")),
        probe: Probe::DynamoDb,
        port_env: "the port given to start_dynamodb_file_backed",
        stop_signal: libc::SIGTERM,
    }
}

/// A DynamoDB Local of its own, separate from the stack's: file-backed, keeping its tables
/// (and their streams) in a directory, so they survive [`DynamoDbInstance::restart`] (see
/// [`crate::local::start_dynamodb_file_backed`]), or in memory, starting empty (see
/// [`crate::local::start_dynamodb_in_memory`]).
///
/// File-backed, it is started with `-dbPath <dir> -sharedDb`: one database file
/// (`shared-local-instance.db`) whatever region and access key a client signs with. What survives a restart (seen with
/// 1.25.1, by SIGTERM and by SIGKILL alike): items, tables, each table's stream with the same
/// ARN, shard ids, sequence numbers and event ids; a shard iterator handed out before the
/// restart still works after it (it is self-describing: shard, sequence number and the time
/// it was issued, base64-encoded), until it expires 15 minutes after it was issued
/// (`ExpiredIteratorException`, as in AWS).
///
/// Dropping the instance stops the server (SIGTERM, without waiting), so a failing test does
/// not leave a JVM behind; `raffle-outbox local down` also stops instances left by a test
/// process that was killed.
pub struct DynamoDbInstance {
    service: Service,
    install: Install,
    /// Its working directory; with `file_backed`, where the tables are stored.
    db_dir: PathBuf,
    file_backed: bool,
}

impl DynamoDbInstance {
    /// Starts an instance on `port` working in `db_dir`; `file_backed`:
    /// tables stored there (`-dbPath`), else in memory (`-inMemory`).
    pub(crate) async fn start(
        cfg: &StackConfig,
        install: Install,
        port: u16,
        db_dir: &Path,
        file_backed: bool,
    ) -> anyhow::Result<DynamoDbInstance> {
        if port == 0 {
            bail!("a DynamoDB Local of its own needs a port number, not 0");
        }
        std::fs::create_dir_all(db_dir)
            .with_context(|| format!("creating {}", db_dir.display()))?;
        // Absolute: the server gets the directory as `-dbPath` and as its working directory.
        let db_dir = db_dir
            .canonicalize()
            .with_context(|| format!("resolving {}", db_dir.display()))?;
        std::fs::create_dir_all(cfg.run_dir())?;
        let instance = DynamoDbInstance {
            service: file_backed_service(cfg, port),
            install,
            db_dir,
            file_backed,
        };
        // A live pid file for this port is a leftover of a test process that was killed before
        // it could stop its instance; it may serve another directory, so it goes.
        if let Some(pid) = instance.service.pid_file.live_pid() {
            tracing::warn!(pid, port, "stopping a leftover file-backed DynamoDB Local");
            instance.service.stop().await?;
        }
        instance.start_again().await?;
        Ok(instance)
    }

    /// The endpoint to give the AWS SDK, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        self.service.address.clone()
    }

    /// The TCP port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.service.port
    }

    /// Where the tables are stored.
    pub fn db_dir(&self) -> &Path {
        &self.db_dir
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.service.pid_file.live_pid()
    }

    /// Whether it answers DynamoDB requests now.
    pub async fn answers(&self) -> bool {
        probe::dynamodb_answers(self.service.port).await
    }

    /// DynamoDB and DynamoDB Streams clients for this instance, with a fixed region and dummy
    /// credentials. The endpoint is set on each service's own configuration: set only on the
    /// shared `SdkConfig`, it would lose to `AWS_ENDPOINT_URL_DYNAMODB(_STREAMS)` in the
    /// environment (the SDK prefers the service-specific variable), which the stack's
    /// tests and the CLI set for the shared DynamoDB Local.
    pub async fn clients(&self) -> (aws_sdk_dynamodb::Client, aws_sdk_dynamodbstreams::Client) {
        let shared = self.shared_config().await;
        let streams = aws_sdk_dynamodbstreams::config::Builder::from(&shared)
            .endpoint_url(self.endpoint())
            .build();
        (
            aws_sdk_dynamodb::Client::from_conf(self.dynamodb_config(&shared).build()),
            aws_sdk_dynamodbstreams::Client::from_conf(streams),
        )
    }

    /// A DynamoDB client for this instance, as [`DynamoDbInstance::clients`] makes it, with
    /// `meter` counting the request units of every request it sends.
    pub async fn metered_dynamodb(
        &self,
        meter: &crate::capacity::CapacityMeter,
    ) -> aws_sdk_dynamodb::Client {
        let shared = self.shared_config().await;
        let config = self
            .dynamodb_config(&shared)
            .interceptor(meter.clone())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// The fixed region and dummy credentials of this instance's clients.
    async fn shared_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "local",
                "local",
                None,
                None,
                "raffle-outbox-local",
            ))
            .load()
            .await
    }

    fn dynamodb_config(&self, shared: &aws_config::SdkConfig) -> aws_sdk_dynamodb::config::Builder {
        aws_sdk_dynamodb::config::Builder::from(shared).endpoint_url(self.endpoint())
    }

    /// Stops the server (SIGTERM) and returns once it has exited and its port is free.
    /// The data stays in [`DynamoDbInstance::db_dir`]. Stopping a stopped instance is a no-op.
    pub async fn stop(&self) -> anyhow::Result<()> {
        self.service.stop().await
    }

    /// Starts the server again on the same port and directory, and waits until it answers
    /// (~2.5 s). A no-op when it runs already.
    pub async fn start_again(&self) -> anyhow::Result<()> {
        if self.service.pid_file.live_pid().is_none()
            && probe::dynamodb_answers(self.service.port).await
        {
            // `Service::ensure_running` would reuse it; for an instance with data of its own
            // that would be the wrong database.
            bail!(
                "something else already serves DynamoDB on 127.0.0.1:{}; a file-backed instance needs a port of its own",
                self.service.port
            );
        }
        let db_path = self
            .db_dir
            .to_str()
            .context("the database directory is not valid UTF-8")?;
        let storage: &[&str] = match self.file_backed {
            true => &["-dbPath", db_path, "-sharedDb"],
            false => &["-inMemory", "-sharedDb"],
        };
        self.service
            .ensure_running(|| {
                self.install
                    .command(self.service.port, storage, &self.db_dir)
            })
            .await
            .map(drop)
    }

    /// [`DynamoDbInstance::stop`], then [`DynamoDbInstance::start_again`].
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.stop().await?;
        self.start_again().await
    }
}

impl Drop for DynamoDbInstance {
    fn drop(&mut self) {
        if let Some(pid) = self.service.pid_file.live_pid() {
            if let Ok(raw) = i32::try_from(pid) {
                // SAFETY: signalling a pid whose command line was just checked to be ours.
                unsafe { libc::kill(raw, libc::SIGTERM) };
            }
        }
        let _ = self.service.pid_file.remove();
    }
}

/// Stops file-backed instances whose test process died before it could stop them (their pid
/// files are still in the run directory), and removes the logs file-backed instances leave
/// (one per port, and tests pick a new port each run). For `down`.
pub(crate) async fn stop_file_backed_leftovers(cfg: &StackConfig) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(cfg.run_dir()) else {
        return Ok(());
    };
    let mut ports: Vec<u16> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let rest = name.to_str()?.strip_prefix(FILE_BACKED_PREFIX)?;
            let port = rest.strip_suffix(".pid").or(rest.strip_suffix(".log"))?;
            port.parse().ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    for port in ports {
        let service = file_backed_service(cfg, port);
        service.stop().await?;
        let _ = std::fs::remove_file(&service.log);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_backed_instances_have_files_of_their_own_per_port() {
        let cfg = StackConfig {
            home: "/h".into(),
            dynamodb_port: 8000,
            kafka_port: 9092,
        };
        let own = file_backed_service(&cfg, 41234);
        assert_eq!(
            own.pid_file.path,
            PathBuf::from("/h/run/dynamodb-local-file-41234.pid")
        );
        assert_eq!(
            own.log,
            PathBuf::from("/h/run/dynamodb-local-file-41234.log")
        );
        assert_eq!(own.address, "http://127.0.0.1:41234");
        // Not the stack's own `dynamodb-local.pid`.
        assert_ne!(
            own.pid_file.path,
            PathBuf::from("/h/run/dynamodb-local.pid")
        );
    }
}
