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
//! The feature `dev` (on by default) adds the developer's tools: `cmd` (the
//! CLI's commands), `local` (the local stack and its installers), `bench`,
//! `capacity` and `demo`. The Lambdas are
//! built without it (see `[package.metadata.lambda.build]` in Cargo.toml).

#![warn(missing_docs)]

// The data's path, top to bottom: the entry points, what a participant is,
// capture, the outbox, the relay, Kafka.
pub mod lambda;
pub mod register;

pub mod contract;
pub mod participant;
pub mod trace;

pub mod stream;

pub mod outbox;

pub mod relay;

pub mod kafka;

// The operators' reads and checks (their writes go through `outbox`).
pub mod audit;
pub mod reconcile;
pub mod redrive;
pub mod retention;
pub mod verify;

// What every part uses.
pub mod config;
pub mod deadline;
pub mod failpoint;
pub mod metrics;
pub mod migrate;
pub mod telemetry;

// The developer's tools (feature `dev`): the CLI's commands, the local stack,
// the whole path in one process, the demo, the bench and its request-unit meter.
#[cfg(feature = "dev")]
pub mod bench;
#[cfg(feature = "dev")]
pub mod capacity;
#[cfg(feature = "dev")]
pub mod cmd;
#[cfg(feature = "dev")]
pub mod demo;
#[cfg(feature = "dev")]
pub mod local;
#[cfg(feature = "dev")]
pub mod pipeline;

pub use config::Config;
