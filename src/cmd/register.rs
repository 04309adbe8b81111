//! `raffle-outbox register`: one participant saved as `POST /participants`
//! saves it ([`crate::register`]).

use clap::Args;

use super::{Context, Outcome};
use crate::register::Registrar;

/// `register`'s arguments.
#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// The participant: {"name", "email", "raffle", optional "tickets", optional "id" (a UUID)}.
    /// `-` reads it from stdin.
    pub json: String,
}

impl RegisterArgs {
    /// Validates and saves the participant with the HTTP API's rules and
    /// prints its id. A participant the rules refuse is printed as `error:
    /// …` on stderr with exit status 2, and nothing is saved.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<Outcome> {
        let json = match self.json.as_str() {
            "-" => std::io::read_to_string(std::io::stdin())?,
            _ => self.json,
        };
        let config = &ctx.config;
        let registrar = Registrar::new(
            ctx.dynamodb().await,
            &config.participants_table,
            config.max_message_bytes,
        );
        let registration = registrar
            .register(&json, None)
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        println!("{}", registration.id);
        Ok(Outcome::Done)
    }
}
