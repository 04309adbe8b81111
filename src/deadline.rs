//! Time budgets. A Lambda invocation ends at its deadline whatever it is
//! doing: a relay cut off there leaves its rows IN_FLIGHT until their lease
//! ends (and sends them twice if the broker had them), and writes no metrics
//! line. So the relay and the stream handler start work only while it can end
//! before the deadline, less a margin kept back for what must always happen
//! last: the last batch's marks, the metrics line, the batch response.
//!
//! The core takes a plain [`Instant`]; the Lambda mains convert their
//! context's deadline with [`from_epoch_ms`].

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Below this, a "deadline" is not an epoch time (it would be before
/// September 2001): it can only be a duration.
const FIRST_PLAUSIBLE_EPOCH_MS: u64 = 1_000_000_000_000;

/// The [`Instant`] of a deadline given in milliseconds since the epoch (a
/// Lambda context's `deadline`). A deadline already past is now.
///
/// Lambda sends an epoch time. cargo-lambda 1.9.2's runtime emulator sends
/// `600000` whatever its `--timeout`: the invocation's time limit, not an
/// epoch. Taken literally that is 1970, and every invocation would stop
/// before it began; a value that cannot be an epoch is read as a duration
/// from now instead.
pub fn from_epoch_ms(deadline_ms: u64) -> Instant {
    if deadline_ms < FIRST_PLAUSIBLE_EPOCH_MS {
        return Instant::now() + Duration::from_millis(deadline_ms);
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// When work must be over: a deadline less the margin kept back for the
/// last writes, or no limit at all (the local pipeline, the CLI).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Option<Instant>,
    margin: Duration,
}

impl Budget {
    /// No deadline: everything may start, nothing is cut short.
    pub const UNLIMITED: Budget = Budget {
        deadline: None,
        margin: Duration::ZERO,
    };

    /// Work ends `margin` before `deadline`.
    pub fn new(deadline: Instant, margin: Duration) -> Budget {
        Budget {
            deadline: Some(deadline),
            margin,
        }
    }

    /// When work started now must be over (`None`: no limit). Past once
    /// less than the margin is left.
    pub fn work_until(&self) -> Option<Instant> {
        self.deadline
            .map(|d| d.checked_sub(self.margin).unwrap_or(d))
    }

    /// Whether work that may take up to `needs` can start now and still end
    /// by [`work_until`](Self::work_until). Always true without a deadline.
    pub fn allows(&self, needs: Duration) -> bool {
        self.work_until()
            .is_none_or(|until| Instant::now() + needs <= until)
    }

    /// When work of at most `needs`, started now, must be over: after
    /// `needs`, or at [`work_until`](Self::work_until) if that comes first
    /// (`None`: no limit).
    pub fn end_of(&self, needs: Duration) -> Option<Instant> {
        self.work_until()
            .map(|until| until.min(Instant::now() + needs))
    }

    /// Time left until the deadline itself (`None`: no limit): what the
    /// writes kept for last may use.
    pub fn left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_deadline_is_read_as_a_time_and_a_small_one_as_a_duration() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let left = |d: Instant| d.saturating_duration_since(Instant::now()).as_secs();
        assert!((28..=30).contains(&left(from_epoch_ms(now_ms + 30_000))));
        assert_eq!(left(from_epoch_ms(now_ms - 5_000)), 0, "past: now");
        // cargo-lambda's emulator: 600000 means ten minutes, not 1970.
        assert!((598..=600).contains(&left(from_epoch_ms(600_000))));
    }

    #[test]
    fn work_may_start_only_while_it_ends_before_the_margin() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let budget = Budget::new(deadline, Duration::from_secs(3));
        assert_eq!(budget.work_until(), Some(deadline - Duration::from_secs(3)));
        assert!(budget.allows(Duration::from_secs(20)));
        assert!(
            !budget.allows(Duration::from_secs(28)),
            "it would eat the margin"
        );
        assert!(budget.left().unwrap() <= Duration::from_secs(30));
        let end = budget.end_of(Duration::from_secs(5)).unwrap();
        assert!(end <= Instant::now() + Duration::from_secs(5));
        assert_eq!(
            budget.end_of(Duration::from_secs(60)),
            budget.work_until(),
            "never past the margin"
        );

        let spent = Budget::new(Instant::now(), Duration::from_secs(3));
        assert!(!spent.allows(Duration::ZERO));
        assert_eq!(spent.left(), Some(Duration::ZERO));

        assert!(Budget::UNLIMITED.allows(Duration::from_secs(86_400)));
        assert_eq!(
            (Budget::UNLIMITED.work_until(), Budget::UNLIMITED.left()),
            (None, None)
        );
        assert_eq!(Budget::UNLIMITED.end_of(Duration::from_secs(1)), None);
    }

    #[test]
    fn an_epoch_deadline_becomes_the_instant_as_far_away() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let before = Instant::now();
        let at = from_epoch_ms(now_ms + 30_000);
        // Generous bounds: only the conversion is checked, not the clock.
        assert!(at >= before + Duration::from_secs(29));
        assert!(at <= Instant::now() + Duration::from_secs(31));
        assert!(from_epoch_ms(now_ms - 5_000) <= Instant::now(), "past: now");
    }
}
