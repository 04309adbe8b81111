//! The `reconcile` Lambda: on its schedule (created only when the stack's
//! `ReconcileSchedule` parameter is set), every participant classified by
//! its outbox rows, one EMF line of counts per class. The logic is in
//! `raffle_outbox::lambda::schedule`.

use lambda_runtime::Error;
use raffle_outbox::lambda;

// One thread: at 256 MB a Lambda has a fraction of a vCPU (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda::schedule::run_reconcile().await
}
