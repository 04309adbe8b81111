//! `raffle-outbox run`: the whole pipeline in one process, for the local
//! stack ([`crate::pipeline`]).

use std::time::Duration;

use clap::Args;

use super::{Context, Outcome};
use crate::pipeline::Pipeline;

/// `run`'s arguments.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Exit once nothing happened for --idle-seconds.
    #[arg(long)]
    pub until_idle: bool,
    /// Quiet seconds that end a run with --until-idle.
    #[arg(long, default_value_t = 3)]
    pub idle_seconds: u64,
    /// Count in the report's write units those of the writes DynamoDB
    /// Local does not report (the DELIVERED marks), computed from their
    /// sizes (for `bench`; it costs CPU).
    #[arg(long, hide = true)]
    pub compute_statement_units: bool,
}

impl RunArgs {
    /// Polls the participants and outbox streams and sweeps the outbox,
    /// forever or until idle; then prints its report as one JSON object
    /// (stream records read, rows relayed, outbox writes). Fails when the
    /// broker cannot be reached at start or rounds keep failing for 2 min.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<Outcome> {
        let idle = self
            .until_idle
            .then(|| Duration::from_secs(self.idle_seconds));
        let mut pipeline = Pipeline::connect(&ctx.config).await?;
        if self.compute_statement_units {
            pipeline.outbox().stats().compute_statement_units();
        }
        let report = pipeline.run(idle).await?;
        super::print_json(&report)?;
        Ok(Outcome::Done)
    }
}
