//! The stack's lock: one `up`, `down`, broker start or stop at a time, across processes.

use std::fs::File;

use anyhow::Context as _;

use super::stack::StackConfig;

/// An exclusive `flock` on `<home>/up.lock`, released when dropped (the file is closed).
///
/// `flock` locks belong to the open file description, so two tasks of one process conflict
/// just like two processes do, and the lock disappears with a crashed holder: no stale lock
/// files to clean up. Rust opens files with `O_CLOEXEC`, so the servers we spawn never
/// inherit (and so never keep holding) the lock.
pub(super) struct StackLock {
    _file: File,
}

impl StackLock {
    /// Takes the lock, waiting (and saying so on stderr after a second) while another
    /// process holds it.
    pub(super) async fn acquire(cfg: &StackConfig) -> anyhow::Result<Self> {
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
