//! The `relay` Lambda: the outbox table's stream and the schedule's sweep →
//! Kafka, one EMF metrics line per invocation. The logic is in
//! `raffle_outbox::lambda::relay`.

use lambda_runtime::Error;
use raffle_outbox::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::relay::run_relay().await
}
