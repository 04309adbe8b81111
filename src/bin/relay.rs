//! The `relay` Lambda: the outbox table's stream and the schedule's sweep →
//! Kafka, one EMF metrics line per invocation. The logic is in
//! `raffle_outbox::lambda::relay`.

use lambda_runtime::Error;
use raffle_outbox::lambda;

// One thread: at 256 MB a Lambda has a fraction of a vCPU (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda::relay::run_relay().await
}
