//! A child process whose peak resident set is watched while it runs.

use super::*;

/// A child process whose own peak resident set (`VmHWM`) is watched while
/// it runs.
///
/// Not `wait4`'s `ru_maxrss`: Linux carries the parent's high-water mark
/// over the child's `exec`, so a child of this (large) benchmark process
/// reported the benchmark's size — 614 MB for an export that holds 26 MB.
pub(super) struct Measured {
    child: std::process::Child,
    peak_kib: std::thread::JoinHandle<i64>,
}

pub(super) fn spawn_measured(mut command: Command) -> anyhow::Result<Measured> {
    let child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let status = format!("/proc/{}/status", child.id());
    // VmHWM only grows; the last reading before the process ends is its peak
    // (to within the 10 ms between readings). A zombie has no VmHWM line.
    let peak_kib = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some(kib) = std::fs::read_to_string(&status)
            .ok()
            .and_then(|s| vm_hwm_kib(&s))
        {
            peak = kib;
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    });
    Ok(Measured { child, peak_kib })
}

/// The `VmHWM:   1234 kB` line of a `/proc/<pid>/status`.
pub(super) fn vm_hwm_kib(status: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What a [`Measured`] child left: its stdout, its peak RSS, and the CPU
/// time it used (user + system).
pub(crate) struct Finished {
    pub(crate) stdout: Vec<u8>,
    pub(crate) peak_rss_kib: i64,
    pub(crate) cpu: Duration,
}

/// Waits (off the async runtime) for a `raffle-outbox` child (`run`, from
/// [`DynamoLeg::spawn_run`], or the relay Lambda's, from
/// [`DynamoLeg::spawn_lambda_relay`]); its report (the last line it printed
/// on stdout, one JSON object) and what it used.
pub(super) async fn finish_run<T: serde::de::DeserializeOwned>(
    child: Measured,
) -> anyhow::Result<(T, Finished)> {
    let finished = tokio::task::spawn_blocking(move || child.wait()).await??;
    let stdout = String::from_utf8_lossy(&finished.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let report =
        serde_json::from_str(last).with_context(|| format!("the child's report: {last}"))?;
    Ok((report, finished))
}

impl Measured {
    /// Waits for the child (with `wait4`, for its own CPU time: unlike
    /// `ru_maxrss`, the times are the child's alone). Fails if it failed.
    pub(super) fn wait(mut self) -> anyhow::Result<Finished> {
        use std::io::Read as _;
        use std::os::unix::process::ExitStatusExt as _;
        let mut stdout = Vec::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_end(&mut stdout)?;
        }
        let peak_rss_kib = self.peak_kib.join().unwrap_or_default();
        let pid = libc::pid_t::try_from(self.child.id())?;
        let mut status = 0;
        // SAFETY: `usage` is a plain C struct that wait4 fills; the pid is our own child,
        // not yet waited for (std's `Child` only waits in `wait`/`try_wait`, not called).
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        anyhow::ensure!(waited == pid, "wait4: {}", std::io::Error::last_os_error());
        let status = std::process::ExitStatus::from_raw(status);
        anyhow::ensure!(status.success(), "child process failed: {status}");
        Ok(Finished {
            stdout,
            peak_rss_kib,
            cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        })
    }
}

/// A `timeval` (rusage's user and system times) as a duration.
pub(super) fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}
