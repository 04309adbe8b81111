//! The backoff rule, at its edges.

use super::*;

#[test]
fn backoff_doubles_with_equal_jitter_and_gives_up() {
    let message = Blame::Message { retriable: true };
    let retry = |attempts, jitter| after_failure(attempts, 0, 10, message, jitter);
    assert_eq!(retry(1, 0.0), AfterFailure::RetryIn(500));
    assert_eq!(retry(1, 1.0), AfterFailure::RetryIn(1_000));
    assert_eq!(retry(3, 0.5), AfterFailure::RetryIn(3_000));
    assert_eq!(retry(9, 0.0), AfterFailure::RetryIn(128_000));
    assert_eq!(
        after_failure(30, 0, 99, message, 1.0),
        AfterFailure::RetryIn(300_000)
    );
    assert_eq!(after_failure(10, 0, 10, message, 0.3), AfterFailure::GiveUp);
    let refused = Blame::Message { retriable: false };
    assert_eq!(after_failure(1, 0, 10, refused, 0.3), AfterFailure::GiveUp);
}

#[test]
fn a_failure_that_is_not_the_message_s_waits_without_spending_attempts() {
    let wait = |attempts, waits, jitter| after_failure(attempts, waits, 2, Blame::Cluster, jitter);
    // The backoff grows with the row's waits, whatever its attempts.
    assert_eq!(wait(1, 0, 0.0), AfterFailure::WaitIn(500));
    assert_eq!(wait(1, 2, 1.0), AfterFailure::WaitIn(4_000));
    // At and past the attempt limit: still waiting, never FAILED.
    assert_eq!(wait(2, 5, 0.0), AfterFailure::WaitIn(16_000));
    assert_eq!(wait(7, 0, 0.0), AfterFailure::WaitIn(500));
    // Capped at five minutes, however long the outage.
    assert_eq!(wait(2, 1_000, 1.0), AfterFailure::WaitIn(300_000));
}
