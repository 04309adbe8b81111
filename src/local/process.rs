//! Process plumbing for the local stack: finding programs, running installers, starting
//! detached servers, pid files, and stopping them again.
//!
//! Unix only (process groups, signals, `/proc`), like the rest of the local stack.

use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::fd::AsFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::net::TcpStream;

/// Finds `program` on `PATH` like `which` does: the first executable regular file.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| {
            fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Like [`which`], but a missing program is an error whose one line tells the user what to
/// install (the CLI prints it and exits 1).
pub(crate) fn require(program: &str, why: &str, install_hint: &str) -> anyhow::Result<PathBuf> {
    which(program).with_context(|| {
        format!("`{program}` not found on PATH ({why}); install it: {install_hint}")
    })
}

/// Runs an installer step with its progress visible to the user.
///
/// stdout goes to our stderr, not our stdout: the CLI may print machine-readable output on
/// stdout (status as JSON), and an installer's chatter must never be mixed into it.
pub(crate) async fn run_visible(
    mut cmd: tokio::process::Command,
    what: &str,
) -> anyhow::Result<()> {
    let stderr_as_stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stderr")?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(stderr_as_stdout))
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    tracing::debug!(?cmd, "running installer step");
    let status = cmd
        .status()
        .await
        .with_context(|| format!("could not run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status}); see its output above");
    }
    Ok(())
}

/// A server started in the background that outlives us.
///
/// It gets its own process group (so the Ctrl-C that interrupts `raffle-outbox up` or a test
/// run is not delivered to it), no stdin, and its stdout and stderr appended to `log`.
pub(crate) fn spawn_detached(mut cmd: Command, log: &Path) -> anyhow::Result<Child> {
    let mut out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening log file {}", log.display()))?;
    // A header per start makes restarts visible when reading the log.
    writeln!(
        out,
        "\n=== raffle-outbox: starting at {:?} (unix time): {:?}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
        cmd
    )?;
    let err = out.try_clone()?;
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    tracing::debug!(?cmd, log = %log.display(), "spawning detached");
    cmd.spawn()
        .with_context(|| format!("could not start {:?}", cmd.get_program()))
}

/// A pid file naming a process that `up` started.
pub(crate) struct PidFile {
    pub path: PathBuf,
    /// A string the process's command line must contain for the pid to count as ours.
    ///
    /// Pid files live in a cache directory that survives reboots, and pids are reused: without
    /// this check, `down` after a reboot could signal an unrelated process.
    pub marker: &'static str,
}

impl PidFile {
    /// The pid recorded in the file, if the file exists and the process is alive and ours.
    pub(crate) fn live_pid(&self) -> Option<u32> {
        let text = fs::read_to_string(&self.path).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        is_ours_and_alive(pid, self.marker).then_some(pid)
    }

    pub(crate) fn write(&self, pid: u32) -> anyhow::Result<()> {
        // Written via a temporary file and rename, so a reader never sees a half-written pid.
        let tmp = self.path.with_extension("pid.tmp");
        fs::write(&tmp, format!("{pid}\n"))
            .and_then(|()| fs::rename(&tmp, &self.path))
            .with_context(|| format!("writing pid file {}", self.path.display()))
    }

    pub(crate) fn remove(&self) -> anyhow::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", self.path.display()))
            }
            _ => Ok(()),
        }
    }
}

fn is_ours_and_alive(pid: u32, marker: &str) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    reap(raw);
    // SAFETY: kill with signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(raw, 0) } != 0 {
        return false;
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if !proc_dir.exists() {
        // No procfs (not Linux): trust the pid file.
        return true;
    }
    // A zombie (exited, not yet reaped by its parent) still answers kill(0).
    if let Ok(stat) = fs::read_to_string(proc_dir.join("stat")) {
        if let Some(state) = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next())
        {
            if state == "Z" || state == "X" {
                return false;
            }
        }
    }
    fs::read(proc_dir.join("cmdline"))
        .map(|cmdline| {
            cmdline
                .split(|b| *b == 0)
                .any(|arg| String::from_utf8_lossy(arg).contains(marker))
        })
        .unwrap_or(false)
}

/// Collects the exit status of `pid` if it is our own child that has exited.
///
/// When the process that ran `up` also runs `down` (a test), the server is its child, and
/// without this it would linger as a zombie that still "exists" for `kill(pid, 0)`. For a pid
/// that is not our child, `waitpid` fails with ECHILD and does nothing.
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: plain syscall on a pid, WNOHANG never blocks.
    unsafe {
        libc::waitpid(pid, &mut status, libc::WNOHANG);
    }
}

/// Sends `signal` (SIGTERM or SIGINT), waits up to `grace` for the process to exit, then
/// SIGKILL and waits again.
pub(crate) async fn terminate(
    pid: u32,
    marker: &str,
    signal: libc::c_int,
    grace: Duration,
) -> anyhow::Result<()> {
    let raw = i32::try_from(pid).context("pid out of range")?;
    tracing::debug!(pid, signal, "asking the process to stop");
    // SAFETY: signalling a pid whose command line we just checked to be our server.
    unsafe { libc::kill(raw, signal) };
    if wait_gone(pid, marker, grace).await {
        return Ok(());
    }
    tracing::warn!(pid, ?grace, "did not exit in time, sending SIGKILL");
    // SAFETY: as above.
    unsafe { libc::kill(raw, libc::SIGKILL) };
    if wait_gone(pid, marker, Duration::from_secs(5)).await {
        return Ok(());
    }
    bail!("process {pid} is still alive after SIGKILL")
}

async fn wait_gone(pid: u32, marker: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_ours_and_alive(pid, marker) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub(crate) async fn tcp_connects(port: u16) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(1),
            TcpStream::connect(("127.0.0.1", port))
        )
        .await,
        Ok(Ok(_))
    )
}

/// Waits until nothing listens on 127.0.0.1:`port` any more.
pub(crate) async fn wait_port_closed(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !tcp_connects(port).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last `lines` lines of a log file, for error messages about a server that did not start.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return String::new();
    };
    // The logs are appended across restarts; only the end matters.
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A unique name for a temporary directory next to the final one (same filesystem, so the
/// final `rename` is atomic).
pub(crate) fn temp_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Removes leftovers of installs that were interrupted (Ctrl-C, crash). Only called under the
/// stack lock, so no other installer is using them.
pub(crate) fn remove_stale_temp_dirs(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            tracing::info!(path = %entry.path().display(), "removing leftover of an interrupted install");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
