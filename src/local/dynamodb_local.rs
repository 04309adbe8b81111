//! DynamoDB Local: Amazon's DynamoDB emulator (a Java server), bound to 127.0.0.1.
//!
//! Amazon publishes DynamoDB Local as a download from its own site, which this project's
//! machines cannot reach; the same jar ships inside the npm package
//! `amplify-dynamodb-simulator`, which they can. So the install is `npm pack` + `tar xzf`,
//! keeping only the jar and its libraries.
//!
//! DynamoDB Local listens on every interface and has no flag to change that. A developer tool
//! should not expose an unauthenticated database to the network, so instead of its own main
//! class it is started through `LocalLauncher.java` (next to this file), which builds the
//! server the same way and binds the Jetty connector to 127.0.0.1 before starting it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::process::{self, PidFile};
use super::service::{Probe, Service};
use super::{ServiceStatus, StackConfig};

/// The npm package (and exact version) that carries the jar.
const NPM_PACKAGE: &str = "amplify-dynamodb-simulator@2.9.30";
/// The DynamoDB Local version inside [`NPM_PACKAGE`] (it prints it at startup). Names the
/// install directory; change both together.
const VERSION: &str = "1.25.1";
/// The launcher's source, compiled at install time (see the module docs).
const LAUNCHER_SOURCE: &str = include_str!("LocalLauncher.java");
/// The launcher's main class, also how `down` recognises our process in `/proc/<pid>/cmdline`.
const LAUNCHER_CLASS: &str = "LocalLauncher";

const JAVA_HINT: &str = "a Java 17+ JDK, e.g. `apt-get install openjdk-17-jdk-headless`";

/// An installed DynamoDB Local: the jar's directory and the compiled launcher's directory.
pub(crate) struct Install {
    dir: PathBuf,
    launcher_dir: PathBuf,
}

fn install_dir(home: &Path) -> PathBuf {
    home.join(format!("dynamodb-local-{VERSION}"))
}

fn service(cfg: &StackConfig) -> Service {
    let run = cfg.run_dir();
    Service {
        name: "dynamodb-local",
        port: cfg.dynamodb_port,
        address: cfg.dynamodb_endpoint(),
        pid_file: PidFile {
            path: run.join("dynamodb-local.pid"),
            marker: LAUNCHER_CLASS,
        },
        log: run.join("dynamodb-local.log"),
        probe: Probe::DynamoDb,
        port_env: "DYNAMODB_LOCAL_PORT",
        // The JVM runs its shutdown hooks and exits in ~0.4 s.
        stop_signal: libc::SIGTERM,
    }
}

/// Installs DynamoDB Local under `home` if it is not there yet, and compiles the launcher.
///
/// Everything is assembled in a temporary directory next to the final one and renamed into
/// place at the end, so an interrupted install is never mistaken for a complete one.
pub(crate) async fn install(home: &Path) -> anyhow::Result<Install> {
    let dir = install_dir(home);
    if !dir.join("DynamoDBLocal.jar").is_file() {
        fetch(home, &dir).await?;
    }
    let launcher_dir = compile_launcher(&dir).await?;
    Ok(Install { dir, launcher_dir })
}

async fn fetch(home: &Path, dir: &Path) -> anyhow::Result<()> {
    let npm = process::require(
        "npm",
        "it downloads DynamoDB Local",
        "Node.js with npm, e.g. `apt-get install npm`",
    )?;
    let tar = process::require("tar", "it unpacks DynamoDB Local", "`apt-get install tar`")?;
    // Checked now rather than at start: failing after a download is a worse experience.
    process::require(
        "javac",
        "it compiles DynamoDB Local's 127.0.0.1 launcher",
        JAVA_HINT,
    )?;

    eprintln!(
        "raffle-outbox: installing DynamoDB Local {VERSION} (npm package {NPM_PACKAGE}, ~57 MB) into {}; first time only, this takes a minute or so",
        dir.display()
    );
    let started = Instant::now();
    process::remove_stale_temp_dirs(home, ".install-dynamodb-local");
    let tmp = home.join(process::temp_name(".install-dynamodb-local"));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;

    let mut pack = tokio::process::Command::new(npm);
    // --loglevel=warn: without it npm lists all 175 files of the tarball; warnings and
    // errors (network, registry) still come through.
    pack.args(["pack", "--loglevel=warn", NPM_PACKAGE])
        .current_dir(&tmp);
    process::run_visible(pack, &format!("`npm pack {NPM_PACKAGE}`")).await?;

    let tarball = std::fs::read_dir(&tmp)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|ext| ext == "tgz"))
        .with_context(|| format!("`npm pack` left no .tgz in {}", tmp.display()))?;
    let mut untar = tokio::process::Command::new(tar);
    untar.arg("xzf").arg(&tarball).current_dir(&tmp);
    process::run_visible(untar, "unpacking DynamoDB Local (`tar xzf`)").await?;

    let emulator = tmp.join("package").join("emulator");
    let stage = tmp.join("stage");
    std::fs::create_dir_all(&stage)?;
    for (name, required) in [
        ("DynamoDBLocal.jar", true),
        ("DynamoDBLocal_lib", true),
        ("LICENSE.txt", false),
        ("THIRD-PARTY-LICENSES.txt", false),
    ] {
        let from = emulator.join(name);
        if !from.exists() {
            if required {
                bail!(
                    "{NPM_PACKAGE} has no package/emulator/{name}; has the package layout changed?"
                );
            }
            continue;
        }
        std::fs::rename(&from, stage.join(name))
            .with_context(|| format!("moving {}", from.display()))?;
    }
    std::fs::rename(&stage, dir)
        .with_context(|| format!("moving the install into {}", dir.display()))?;
    let _ = std::fs::remove_dir_all(&tmp);

    eprintln!(
        "raffle-outbox: DynamoDB Local installed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Compiles `LocalLauncher.java` into `<dir>/launcher-<hash of the source>/`.
///
/// Keyed by the source's hash, so a changed launcher in a newer raffle-outbox is recompiled
/// while the 64 MB jar install is kept.
async fn compile_launcher(dir: &Path) -> anyhow::Result<PathBuf> {
    let launcher_dir = dir.join(format!(
        "launcher-{:016x}",
        fnv1a(LAUNCHER_SOURCE.as_bytes())
    ));
    if launcher_dir
        .join(format!("{LAUNCHER_CLASS}.class"))
        .is_file()
    {
        return Ok(launcher_dir);
    }
    let javac = process::require(
        "javac",
        "it compiles DynamoDB Local's 127.0.0.1 launcher",
        JAVA_HINT,
    )?;
    process::remove_stale_temp_dirs(dir, ".launcher-tmp");
    let tmp = dir.join(process::temp_name(".launcher-tmp"));
    std::fs::create_dir_all(&tmp)?;
    let source = tmp.join(format!("{LAUNCHER_CLASS}.java"));
    std::fs::write(&source, LAUNCHER_SOURCE)?;
    let mut cmd = tokio::process::Command::new(javac);
    // The jar's manifest Class-Path brings DynamoDBLocal_lib/ (Jetty) onto the class path.
    cmd.arg("-cp")
        .arg(dir.join("DynamoDBLocal.jar"))
        .arg("-d")
        .arg(&tmp)
        .arg(&source)
        .current_dir(&tmp);
    process::run_visible(cmd, "compiling LocalLauncher.java (`javac`)").await?;
    std::fs::rename(&tmp, &launcher_dir)
        .with_context(|| format!("moving the launcher into {}", launcher_dir.display()))?;
    Ok(launcher_dir)
}

/// 64-bit FNV-1a: a stable hash (unlike `DefaultHasher`) for naming the launcher directory.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub(crate) async fn ensure_running(
    cfg: &StackConfig,
    install: &Install,
) -> anyhow::Result<ServiceStatus> {
    let work_dir = cfg.run_dir().join("dynamodb-local");
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    // In memory: every `up` starts from empty tables, which is what tests want; `migrate`
    // recreates them. `-sharedDb`: one database whatever the credentials and region, so a
    // user looking with the AWS CLI and their own credentials sees the stack's tables.
    service(cfg)
        .ensure_running(|| {
            command(
                install,
                cfg.dynamodb_port,
                &["-inMemory", "-sharedDb"],
                &work_dir,
            )
        })
        .await
}

/// The command that starts DynamoDB Local through the 127.0.0.1 launcher on `port`, with
/// `storage` (`-inMemory`, or `-dbPath <dir> -sharedDb`) and `work_dir` as its working
/// directory (it writes `dynamodb-local-metadata.json` there).
fn command(
    install: &Install,
    port: u16,
    storage: &[&str],
    work_dir: &Path,
) -> anyhow::Result<Command> {
    let java = process::require("java", "DynamoDB Local runs on it", JAVA_HINT)?;
    let mut class_path = install.dir.join("DynamoDBLocal.jar").into_os_string();
    class_path.push(":");
    class_path.push(&install.launcher_dir);
    let mut library_path = std::ffi::OsString::from("-Djava.library.path=");
    library_path.push(install.dir.join("DynamoDBLocal_lib"));
    let mut cmd = Command::new(java);
    cmd.arg(library_path)
        .arg("-cp")
        .arg(class_path)
        .arg(LAUNCHER_CLASS)
        .args(storage)
        .args(["-port", &port.to_string(), "-disableTelemetry"])
        // In 1.25.1 `-disableTelemetry` only sets a field nothing reads; what stops the
        // start-up event to Amazon is this variable (checked with javap:
        // TelemetryUtil.checkForTelemetryFlag is true unless it is "0").
        .env("DDB_LOCAL_TELEMETRY", "0")
        .current_dir(work_dir);
    Ok(cmd)
}

pub(crate) async fn stop(cfg: &StackConfig) -> anyhow::Result<()> {
    service(cfg).stop().await
}

pub(crate) async fn status(cfg: &StackConfig) -> ServiceStatus {
    service(cfg).status().await
}

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
/// [`super::start_dynamodb_file_backed`]), or in memory, starting empty (see
/// [`super::start_dynamodb_in_memory`]).
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
        answers(self.service.port).await
    }

    /// DynamoDB and DynamoDB Streams clients for this instance, with a fixed region and dummy
    /// credentials. The endpoint is set on each service's own configuration: set only on the
    /// shared `SdkConfig`, it would lose to `AWS_ENDPOINT_URL_DYNAMODB(_STREAMS)` in the
    /// environment (the SDK prefers the service-specific variable), which the stack's
    /// tests and the CLI set for the shared DynamoDB Local.
    pub async fn clients(&self) -> (aws_sdk_dynamodb::Client, aws_sdk_dynamodbstreams::Client) {
        let endpoint = self.endpoint();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "local",
                "local",
                None,
                None,
                "raffle-outbox-local",
            ))
            .load()
            .await;
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(&shared)
            .endpoint_url(&endpoint)
            .build();
        let streams = aws_sdk_dynamodbstreams::config::Builder::from(&shared)
            .endpoint_url(&endpoint)
            .build();
        (
            aws_sdk_dynamodb::Client::from_conf(dynamodb),
            aws_sdk_dynamodbstreams::Client::from_conf(streams),
        )
    }

    /// Stops the server (SIGTERM) and returns once it has exited and its port is free.
    /// The data stays in [`DynamoDbInstance::db_dir`]. Stopping a stopped instance is a no-op.
    pub async fn stop(&self) -> anyhow::Result<()> {
        self.service.stop().await
    }

    /// Starts the server again on the same port and directory, and waits until it answers
    /// (~2.5 s). A no-op when it runs already.
    pub async fn start_again(&self) -> anyhow::Result<()> {
        if self.service.pid_file.live_pid().is_none() && answers(self.service.port).await {
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
            .ensure_running(|| command(&self.install, self.service.port, storage, &self.db_dir))
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

/// Whether DynamoDB (Local) answers HTTP on 127.0.0.1:`port`.
///
/// Sends an unsigned `ListTables`; DynamoDB answers it with a 400
/// `MissingAuthenticationToken` and an `x-amzn-RequestId` header, which is enough to know it
/// is DynamoDB and that it serves requests, without credentials or an HTTP client dependency.
pub(crate) async fn answers(port: u16) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let request = format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Type: application/x-amz-json-1.0\r\n\
             X-Amz-Target: DynamoDB_20120810.ListTables\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(response)) => {
            let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
            text.starts_with("http/1.") && text.contains("x-amzn-requestid")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_dir_is_versioned_under_home() {
        assert_eq!(
            install_dir(Path::new("/h")),
            PathBuf::from("/h/dynamodb-local-1.25.1")
        );
    }

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
        assert_ne!(own.pid_file.path, service(&cfg).pid_file.path);
    }

    #[test]
    fn fnv1a_is_stable() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
