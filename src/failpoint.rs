//! Named failpoints, for the crash-safety tests.
//!
//! A test starts a relay with `RAFFLE_OUTBOX_FAILPOINT=<name>`; when the relay
//! reaches that point it logs `failpoint reached` and stops there, waiting to
//! be killed (the test sends SIGKILL, the harshest crash there is). Without
//! the variable a failpoint is one comparison against a value read once, so
//! they stay compiled in: the binary under test is the binary that ships.
//!
//! The points, in the order a relay meets them:
//! - `after_claim`: rows are IN_FLIGHT with our lease, nothing sent;
//! - `after_ack`: the broker acknowledged the batch, no row marked yet;
//! - `during_mark`: the first row of the batch is DELIVERED, the rest are not.

use std::sync::OnceLock;

/// The variable that arms a failpoint by name; read once per process.
pub const ENV: &str = "RAFFLE_OUTBOX_FAILPOINT";

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED.get_or_init(|| std::env::var(ENV).ok()).as_deref()
}

/// Stops here forever if the failpoint `name` is armed.
pub async fn failpoint(name: &'static str) {
    if armed() == Some(name) {
        tracing::error!(failpoint = name, "failpoint reached");
        std::future::pending::<()>().await;
    }
}
