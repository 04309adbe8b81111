//! The Lambdas' entry points, one module per event source, as
//! aws-samples/serverless-rust-demo arranges them: the only library code
//! that knows `aws_lambda_events`' types. Each adapter turns its event into
//! domain values, calls the core ([`crate::stream`], [`crate::relay`],
//! [`crate::register`], [`crate::reconcile`]) and turns the answer back
//! into the event source's response; each `run_*` is one function's whole
//! life, so the binaries in `src/bin/` are a line each.
//!
//! | function | event source | entry |
//! |---|---|---|
//! | `stream-handler` | participants table stream | [`stream::run_stream_handler`] |
//! | `relay` | outbox table stream, and the schedule (sweep) | [`relay::run_relay`] |
//! | `register` | HTTP API `POST /participants` | [`http::run_register`] |
//! | `reconcile` | the schedule | [`schedule::run_reconcile`] |
//!
//! Every function starts the same way ([`start`]): Lambda's logging
//! conventions ([`crate::telemetry`]), the configuration from the
//! environment, one DynamoDB client.

pub mod http;
pub mod relay;
pub mod schedule;
pub mod stream;

use lambda_runtime::Error;

use crate::config::{aws_clients, Config};
use crate::telemetry;

/// What every function does first: installs the log subscriber, reads the
/// configuration from the environment and builds the DynamoDB client from
/// the AWS SDK's shared configuration (in Lambda: the function's role and
/// region, from its environment). Fails when a configuration variable is
/// malformed.
pub async fn start() -> Result<(Config, aws_sdk_dynamodb::Client), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let (dynamodb, _) = aws_clients().await;
    Ok((config, dynamodb))
}
