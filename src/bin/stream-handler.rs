//! The `stream-handler` Lambda: participants table stream → outbox rows,
//! with partial batch responses and one EMF metrics line per batch. The
//! logic is in `raffle_outbox::lambda::stream`.

use lambda_runtime::Error;
use raffle_outbox::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::stream::run_stream_handler().await
}
