//! The `register` Lambda: `POST /participants` on the HTTP API saves one
//! participant into the participants table (see `raffle_outbox::register`
//! for the rules, shared with `raffle-outbox register`).

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use raffle_outbox::config::aws_clients;
use raffle_outbox::register::Registrar;
use raffle_outbox::{telemetry, Config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let (dynamodb, _) = aws_clients().await;
    let registrar = Registrar::new(
        dynamodb,
        &config.participants_table,
        config.max_message_bytes,
    );
    let registrar = &registrar;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            Ok::<ApiGatewayV2httpResponse, Error>(registrar.handle(&event.payload).await)
        },
    ))
    .await
}
