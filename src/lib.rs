//! raffle-outbox: every raffle participant saved in DynamoDB reaches the
//! Kafka topic, and the outbox table proves it.
//!
//! The data's path, top to bottom:
//!
//! ```text
//! participants table ─stream─▶ stream::StreamHandler ─▶ outbox (table)
//!                                                         │
//!                         kafka::Producer ◀─ relay::Relay ◀┘  (DELIVERED + partition/offset)
//! ```
//!
//! [`register`] is the entry point that saves participants (the HTTP API's
//! Lambda and the CLI); [`participant`] maps a stream image to the JSON the
//! compliance team receives; [`metrics`] is the relay's CloudWatch output;
//! [`deadline`] keeps each Lambda invocation inside its time;
//! [`migrate`] owns the table definitions; [`pipeline`] runs the whole path
//! locally, where `local` provides DynamoDB Local and the broker.
//!
//! [`lambda`] holds the Lambdas' entry points, one module per event source
//! (the DynamoDB stream, the schedule, the HTTP API): the only code that
//! knows `aws_lambda_events`' types besides the tests.
//!
//! The feature `dev` (on by default) adds the developer's tools: `local`
//! (the local stack and its installers), `bench` and `demo`. The Lambdas are
//! built without it (see `[package.metadata.lambda.build]` in Cargo.toml).

pub mod audit;
#[cfg(feature = "dev")]
pub mod bench;
#[cfg(feature = "dev")]
pub mod capacity;
#[cfg(feature = "dev")]
pub mod cmd;
pub mod config;
pub mod deadline;
#[cfg(feature = "dev")]
pub mod demo;
pub mod failpoint;
pub mod kafka;
pub mod lambda;
#[cfg(feature = "dev")]
pub mod local;
pub mod metrics;
pub mod migrate;
pub mod outbox;
pub mod participant;
pub mod pipeline;
pub mod reconcile;
pub mod redrive;
pub mod register;
pub mod relay;
pub mod retention;
pub mod stream;
pub mod telemetry;
pub mod trace;
pub mod verify;

pub use config::Config;
