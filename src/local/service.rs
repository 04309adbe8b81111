//! The life cycle both local services share: reuse what runs, start what does not, wait until
//! it answers, stop only what we started.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::probe::Probe;
use super::process::{self, PidFile};

/// How long a freshly started server gets to answer. DynamoDB Local needs 1–3 s and tansu
/// ~0.1 s on this project's 2-core machines; 60 s leaves room for a loaded CI box.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server gets to exit after its stop signal before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What runs where, as reported by [`up`](crate::local::up) and [`status`](crate::local::status).
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

/// One local server's life cycle: how to find it, probe it, start and stop it.
pub(crate) struct Service {
    pub name: &'static str,
    pub port: u16,
    pub address: String,
    pub pid_file: PidFile,
    pub log: PathBuf,
    pub probe: Probe,
    /// The environment variable that moves the port, named in "port taken" errors.
    pub port_env: &'static str,
    /// The signal that asks it to stop (SIGKILL follows if it has not within 10 s).
    pub stop_signal: libc::c_int,
}

impl Service {
    pub(crate) async fn status(&self) -> ServiceStatus {
        let pid = self.pid_file.live_pid();
        ServiceStatus {
            name: self.name,
            address: self.address.clone(),
            running: self.probe.answers(self.port).await,
            pid,
            started_by_us: pid.is_some(),
        }
    }

    /// Reuses a running server or starts one with `command`, and waits until it answers.
    pub(crate) async fn ensure_running(
        &self,
        command: impl FnOnce() -> anyhow::Result<Command>,
    ) -> anyhow::Result<ServiceStatus> {
        if let Some(pid) = self.pid_file.live_pid() {
            if self.probe.answers(self.port).await {
                tracing::info!(service = self.name, pid, address = %self.address, "already running, reusing it");
                return Ok(self.running(Some(pid)));
            }
            // Ours, alive, but not answering: hung or wedged. Starting a second one would only
            // fail on the port, so replace it.
            tracing::warn!(
                service = self.name,
                pid,
                "running but not answering, restarting it"
            );
            process::terminate(pid, self.pid_file.marker, self.stop_signal, STOP_GRACE).await?;
            process::wait_port_closed(self.port, STOP_GRACE).await;
        }
        self.pid_file.remove()?;

        if self.probe.answers(self.port).await {
            // Someone else's server (another checkout's stack, a developer's own). Using it is
            // what they would expect; stopping it is not ours to do, see `stop`.
            tracing::info!(service = self.name, address = %self.address, "answering already (not started by us), reusing it");
            return Ok(self.running(None));
        }
        if process::tcp_connects(self.port).await {
            bail!(
                "port {} on 127.0.0.1 is taken by something that is not {}; stop it or choose another port with {}",
                self.port, self.name, self.port_env
            );
        }

        let started = Instant::now();
        let mut child = process::spawn_detached(command()?, &self.log)?;
        let pid = child.id();
        // Recorded at once, so that `down` can stop it even if we are interrupted while waiting.
        self.pid_file.write(pid)?;
        tracing::info!(service = self.name, pid, address = %self.address, log = %self.log.display(), "started, waiting until it answers");

        loop {
            if self.probe.answers(self.port).await {
                tracing::info!(
                    service = self.name,
                    pid,
                    startup_ms = started.elapsed().as_millis() as u64,
                    "answering"
                );
                return Ok(self.running(Some(pid)));
            }
            if let Ok(Some(exit)) = child.try_wait() {
                self.pid_file.remove()?;
                bail!(
                    "{} exited during startup ({exit}); read {} — last lines:\n{}",
                    self.name,
                    self.log.display(),
                    process::tail(&self.log, 15)
                );
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = process::terminate(pid, self.pid_file.marker, self.stop_signal, STOP_GRACE)
                    .await;
                self.pid_file.remove()?;
                bail!(
                    "{} did not answer on {} within {:?}; read {} — last lines:\n{}",
                    self.name,
                    self.address,
                    START_TIMEOUT,
                    self.log.display(),
                    process::tail(&self.log, 15)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server if we started it, and returns once it has exited and the port is free.
    pub(crate) async fn stop(&self) -> anyhow::Result<()> {
        let Some(pid) = self.pid_file.live_pid() else {
            self.pid_file.remove()?;
            if self.probe.answers(self.port).await {
                tracing::info!(service = self.name, address = %self.address, "not started by us, leaving it running");
            }
            return Ok(());
        };
        let started = Instant::now();
        process::terminate(pid, self.pid_file.marker, self.stop_signal, STOP_GRACE).await?;
        self.pid_file.remove()?;
        // The process is gone, so the kernel has closed its listening socket; this only
        // guards against a second listener we do not know about.
        if !process::wait_port_closed(self.port, STOP_GRACE).await {
            bail!(
                "{} (pid {pid}) stopped, but 127.0.0.1:{} still accepts connections: another process listens there",
                self.name,
                self.port
            );
        }
        tracing::info!(
            service = self.name,
            pid,
            stop_ms = started.elapsed().as_millis() as u64,
            "stopped"
        );
        Ok(())
    }

    fn running(&self, pid: Option<u32>) -> ServiceStatus {
        ServiceStatus {
            name: self.name,
            address: self.address.clone(),
            running: true,
            pid,
            started_by_us: pid.is_some(),
        }
    }
}
