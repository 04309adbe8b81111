//! Versioned tables: `migrations/` applied in order, each recorded once.
//!
//! A migration is the JSON that the AWS CLI's `--cli-input-json` takes for
//! the operation its file name ends with: `<n>_<name>.create-table.json`
//! (`aws dynamodb create-table`), `.update-table.json` (`update-table`: one
//! new global secondary index, as DynamoDB allows one per call) or
//! `.update-time-to-live.json` (`update-time-to-live`). So the files read like
//! the AWS documentation and can be applied by hand in an emergency. They are compiled into the binary (a Lambda or a
//! copied CLI needs no files at run time). The `TableName` in a file is the
//! logical name (`participants`, `outbox`); the configured name replaces it,
//! which is how tests get tables of their own. The ledger records
//! `<migration>@<table>`, so one ledger serves several sets of tables.

//!
//! `spec.rs` holds the migrations as data (their types, [`MIGRATIONS`],
//! [`final_table`]); `runner.rs` applies them ([`migrate`], [`migrate_to`]).

mod runner;
mod spec;

pub use runner::{migrate, migrate_to};
pub use spec::{
    final_table, AttributeDef, CreateTable, Index, IndexProjection, IndexUpdate, KeyElement,
    Migration, Operation, Sse, StreamSpec, TtlSpec, UpdateTable, UpdateTimeToLive, MIGRATIONS,
};
