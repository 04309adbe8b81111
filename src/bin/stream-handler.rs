//! The `stream-handler` Lambda: participants table stream → outbox rows,
//! with partial batch responses and one EMF metrics line per batch. The
//! logic is in `raffle_outbox::lambda::stream`.

use lambda_runtime::Error;
use raffle_outbox::lambda;

// One thread: at 256 MB a Lambda has a fraction of a vCPU (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda::stream::run_stream_handler().await
}
