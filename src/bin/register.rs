//! The `register` Lambda: `POST /participants` on the HTTP API saves one
//! participant (the rules in `raffle_outbox::register`, shared with
//! `raffle-outbox register`; HTTP in `raffle_outbox::lambda::http`).

use lambda_runtime::Error;
use raffle_outbox::lambda;

// One thread: at 256 MB a Lambda has a fraction of a vCPU (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda::http::run_register().await
}
