//! The `stream-handler` Lambda: participants table stream → outbox rows,
//! with partial batch responses and one EMF metrics line per batch. The
//! logic is in `raffle_outbox::lambda::stream`.

use lambda_runtime::Error;
use raffle_outbox::lambda;

// One thread: a Lambda at 256 MB has a fraction of a vCPU, and a
// multi-thread runtime spends CPU waking workers it cannot run
// (docs/performance.md, "CPU").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda::stream::run_stream_handler().await
}
