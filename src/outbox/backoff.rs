//! When a row whose send failed is due again, and when it is given up:
//! the pure rule the relay applies before writing the retry, wait or
//! FAILED transition.

use crate::kafka::Blame;

/// What happens to a row whose send failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// The message's fault, and it may pass another time: back to PENDING,
    /// due again after this many milliseconds; the attempt stays spent.
    RetryIn(i64),
    /// Not the message's fault ([`Blame::Cluster`]): back to PENDING, due
    /// again after this many milliseconds, the attempt given back and one
    /// more wait counted. Never FAILED for such a cause.
    WaitIn(i64),
    /// FAILED: the message's fault, and out of attempts or refused for good.
    GiveUp,
}

/// The longest backoff between two sends of a row: 5 minutes.
const MAX_BACKOFF_MS: i64 = 300_000;

/// What to do with a row whose send just failed, and when to send it again.
///
/// `attempts` counts the row's sends answered with a fault of the message,
/// the one that just failed included if it is one, plus its claims that
/// ended without any outcome; `waits` counts the failures that were not the
/// message's fault before this one. Only the message's faults spend
/// attempts (see [`Blame`]); the others make the row wait as long as the
/// cause lasts, the backlog alarm being what tells.
///
/// Both backoffs are exponential with "equal jitter": the ceiling doubles
/// from 1 s (1 s, 2 s, 4 s … capped at 5 min) and the delay is half the
/// ceiling plus `jitter` ∈ [0, 1) of the other half, so relays that failed
/// together do not retry together, yet the attempts of a row cannot be spent
/// in a burst (ten attempts span at least ~4 minutes), and a long outage
/// costs a waiting row one send every 2.5 to 5 minutes.
pub fn after_failure(
    attempts: u32,
    waits: u32,
    max_attempts: u32,
    blame: Blame,
    jitter: f64,
) -> AfterFailure {
    match blame {
        Blame::Cluster => AfterFailure::WaitIn(backoff(waits.saturating_add(1), jitter)),
        Blame::Message { retriable: true } if attempts < max_attempts => {
            AfterFailure::RetryIn(backoff(attempts, jitter))
        }
        Blame::Message { .. } => AfterFailure::GiveUp,
    }
}

/// The delay after the `n`-th failure (n ≥ 1) of one kind.
fn backoff(n: u32, jitter: f64) -> i64 {
    let ceiling = (1_000i64 << n.saturating_sub(1).min(20)).min(MAX_BACKOFF_MS);
    let half = ceiling / 2;
    half + ((half as f64) * jitter.clamp(0.0, 1.0)) as i64
}

#[cfg(test)]
#[path = "backoff_tests.rs"]
mod tests;
