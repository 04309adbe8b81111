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

impl Measured {
    /// Waits for the child; its stdout and its peak RSS in KiB. Fails if it
    /// failed.
    pub(super) fn wait(mut self) -> anyhow::Result<(Vec<u8>, i64)> {
        use std::io::Read as _;
        let mut stdout = Vec::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_end(&mut stdout)?;
        }
        let peak = self.peak_kib.join().unwrap_or_default();
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "child process failed: {status}");
        Ok((stdout, peak))
    }
}
