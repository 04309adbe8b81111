//! `raffle-outbox bench`: the performance figures, measured on the local
//! stack ([`crate::bench`]).

use clap::Args;

use super::{Context, Outcome};

/// `bench`'s arguments.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Participants for the Kafka, relay and end-to-end legs.
    #[arg(long, default_value_t = 20_000)]
    pub participants: usize,
    /// Also measure `audit export` of this many seeded outbox rows
    /// (0: skip; the documented figure is for 100,000).
    #[arg(long, default_value_t = 0)]
    pub export_rows: usize,
    /// Also measure `reconcile` over this many seeded participants
    /// (0: skip; the documented figure is for 100,000).
    #[arg(long, default_value_t = 0)]
    pub reconcile_participants: usize,
    /// Also register this many participants through the register
    /// handler, with Idempotency-Key retries (0: skip).
    #[arg(long, default_value_t = 0)]
    pub register_participants: usize,
    /// Clients registering at once (--register-participants).
    #[arg(long, default_value_t = 32)]
    pub register_clients: usize,
    /// The steady-load leg's offered load, participants/s, registered as
    /// `POST /participants` saves them (0: skip the leg).
    #[arg(long, default_value_t = 200)]
    pub steady_rate: u32,
    /// For how long the steady load is offered, seconds (0: skip the leg).
    #[arg(long, default_value_t = 60)]
    pub steady_seconds: u32,
    /// One JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The bench's own child, not for use by hand: relays the outbox
    /// stream events in this file through the relay Lambda's handler and
    /// prints what its invocations used (`crate::bench::relay_events`).
    #[arg(long, hide = true)]
    pub relay_events: Option<std::path::PathBuf>,
}

impl BenchArgs {
    /// Runs the benchmark (minutes; each leg on tables and a topic of its
    /// own, the topics deleted after) and prints its figures: one line per
    /// figure, or one JSON object with `--json` (and only then).
    pub async fn run(self, ctx: &Context) -> anyhow::Result<Outcome> {
        if let Some(file) = &self.relay_events {
            super::print_json(&crate::bench::relay_events(&ctx.config, file).await?)?;
            return Ok(Outcome::Done);
        }
        let figures = crate::bench::run(
            &ctx.config,
            &ctx.stack,
            self.participants,
            self.export_rows,
            self.reconcile_participants,
            Some((self.register_participants, self.register_clients)),
            (self.steady_rate, self.steady_seconds),
        )
        .await;
        crate::bench::delete_leg_topics(&ctx.stack).await;
        let figures = figures?;
        if self.json {
            super::print_json(&figures)?;
        } else {
            let mut lines = Vec::new();
            flatten("", &serde_json::to_value(&figures)?, &mut lines);
            let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            for (name, value) in lines {
                println!("{name:<width$}  {value}");
            }
        }
        Ok(Outcome::Done)
    }
}

/// The figures as `name value` pairs, nested objects' names joined with
/// `.`, unset ones left out.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(fields) => {
            for (name, value) in fields {
                let name = match prefix {
                    "" => name.clone(),
                    _ => format!("{prefix}.{name}"),
                };
                flatten(&name, value, out);
            }
        }
        serde_json::Value::Null => {}
        serde_json::Value::String(text) => out.push((prefix.to_string(), text.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn figures_print_one_line_each_nested_names_joined() {
        let mut lines = Vec::new();
        let value = serde_json::json!({"a": 1.5, "b": null, "c": {"d": "x"}});
        super::flatten("", &value, &mut lines);
        assert_eq!(
            lines,
            [("a".into(), "1.5".into()), ("c.d".into(), "x".into())]
        );
    }
}
