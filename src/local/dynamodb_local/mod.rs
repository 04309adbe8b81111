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
//!
//! This file runs the stack's instance; `install.rs` downloads the jar and compiles the
//! launcher, `instance.rs` runs a DynamoDB Local of a test's own ([`DynamoDbInstance`]).

mod install;
mod instance;

pub(crate) use install::{install, Install};
pub(crate) use instance::stop_file_backed_leftovers;
pub use instance::DynamoDbInstance;

use anyhow::Context as _;

use super::probe::Probe;
use super::process::PidFile;
use super::service::{Service, ServiceStatus};
use super::stack::StackConfig;
use install::LAUNCHER_CLASS;

/// The stack's DynamoDB Local as a [`Service`].
pub(super) fn service(cfg: &StackConfig) -> Service {
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

/// Reuses or starts the stack's DynamoDB Local (`-inMemory -sharedDb`) and waits until it
/// answers.
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
            install.command(cfg.dynamodb_port, &["-inMemory", "-sharedDb"], &work_dir)
        })
        .await
}

/// Stops the stack's DynamoDB Local if `up` started it.
pub(crate) async fn stop(cfg: &StackConfig) -> anyhow::Result<()> {
    service(cfg).stop().await
}

/// What runs on the stack's DynamoDB port.
pub(crate) async fn status(cfg: &StackConfig) -> ServiceStatus {
    service(cfg).status().await
}
