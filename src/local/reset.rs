//! `local reset`: the stack stopped and its stored data deleted, installs kept.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::lock::StackLock;
use super::{down, status, StackConfig};

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
