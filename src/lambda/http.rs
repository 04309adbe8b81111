//! The HTTP API's adapter: an API Gateway (HTTP API, payload 2.0) request
//! in, one [`Registrar::register`] call, the response out. The rules of a
//! registration are in [`crate::register`]; this file owns only what is
//! HTTP: the media type, the body's encoding and size, the
//! `Idempotency-Key` header and the status codes.

use std::borrow::Cow;

use crate::trace::TraceContext;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use base64::Engine as _;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

use crate::register::{
    within_size_limit, BadRequest, RegisterError, Registrar, MAX_BODY_BYTES, REPLAYED_HEADER,
};

/// The `register` Lambda: reads the configuration, then answers each
/// `POST /participants` with [`Registrar::handle`] until the runtime stops
/// it. Fails only at start (configuration, runtime API); one request's
/// failure is its response.
pub async fn run_register() -> Result<(), Error> {
    let (config, dynamodb) = super::start().await?;
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

impl Registrar {
    /// The HTTP API handler: 201 with the id (and `Idempotent-Replayed:
    /// true` when it repeats an earlier answer), 400 with the reason, 409
    /// for a known id, 413 for a body over [`MAX_BODY_BYTES`], 415 for a
    /// body that is not JSON by its type, 422 for an `Idempotency-Key`
    /// first used with another registration, 503 when the table is
    /// unavailable (the client may retry with the same key). At most one
    /// conditional `PutItem`; a refused request sends none.
    pub async fn handle(&self, request: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let media_type = request
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim);
        if !media_type.is_some_and(|t| t.eq_ignore_ascii_case("application/json")) {
            tracing::info!("registration refused: not application/json");
            return respond(
                415,
                json!({"error": "Content-Type must be application/json"}),
            );
        }
        let body = match body_text(request) {
            Ok(body) => body,
            Err(reason) => return refuse(reason),
        };
        let key = match request
            .headers
            .get_all("idempotency-key")
            .iter()
            .collect::<Vec<_>>()[..]
        {
            [] => None,
            [value] => match value.to_str() {
                Ok(value) => Some(value),
                Err(_) => return refuse(BadRequest::IdempotencyKey),
            },
            _ => return refuse(BadRequest::IdempotencyKey),
        };
        // The registration is a span of the caller's trace, or starts one.
        let trace = incoming_trace(request).map_or_else(TraceContext::new_root, |t| t.child());
        match self.register_in(&body, key, &trace).await {
            Ok(registered) if registered.replayed => {
                tracing::info!(participant_id = %registered.id, "registration replayed");
                let mut response = respond(201, json!({ "id": registered.id }));
                response.headers.insert(
                    REPLAYED_HEADER,
                    "true".parse().expect("a valid header value"),
                );
                response
            }
            Ok(registered) => {
                tracing::info!(
                    participant_id = %registered.id,
                    capacity_units = registered.capacity_units,
                    "participant registered"
                );
                respond(201, json!({ "id": registered.id }))
            }
            Err(RegisterError::BadRequest(reason)) => refuse(reason),
            Err(e @ RegisterError::KeyReused(_)) => {
                tracing::info!(reason = %e, "registration refused: key reused");
                respond(422, json!({ "error": e.to_string() }))
            }
            Err(RegisterError::Conflict(id)) => {
                tracing::info!(participant_id = %id, "registration refused: id exists");
                respond(
                    409,
                    json!({ "error": format!("participant {id} is already registered") }),
                )
            }
            Err(RegisterError::Store(error)) => {
                tracing::error!(error = %error, "registration not saved");
                respond(
                    503,
                    json!({ "error": "the registration could not be saved; try again" }),
                )
            }
        }
    }
}

/// The 400 (or 413) for a refused request, logged with its reason (which
/// names a field, never a value).
fn refuse(reason: BadRequest) -> ApiGatewayV2httpResponse {
    tracing::info!(reason = %reason, "registration refused");
    respond(reason.status(), json!({ "error": reason.to_string() }))
}

/// The request's body as text, measured before it is copied or decoded: a
/// base64 body longer than the encoding of [`MAX_BODY_BYTES`] is refused
/// undecoded.
fn body_text(request: &ApiGatewayV2httpRequest) -> Result<Cow<'_, str>, BadRequest> {
    let Some(body) = request.body.as_deref() else {
        return Err(BadRequest::NoBody);
    };
    if !request.is_base64_encoded {
        within_size_limit(body.len())?;
        return Ok(Cow::Borrowed(body));
    }
    if body.len() > MAX_BODY_BYTES.div_ceil(3) * 4 {
        return Err(BadRequest::BodyTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| BadRequest::NotBase64)?;
    within_size_limit(bytes.len())?;
    String::from_utf8(bytes)
        .map(Cow::Owned)
        .map_err(|_| BadRequest::NotUtf8)
}

/// A JSON response with `status`.
fn respond(status: i64, body: Value) -> ApiGatewayV2httpResponse {
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = status;
    response.headers.insert(
        "content-type",
        "application/json".parse().expect("a valid header value"),
    );
    response.body = Some(Body::Text(body.to_string()));
    response
}

/// The caller's trace context: a W3C `traceparent` header, else the
/// `X-Amzn-Trace-Id` API Gateway and X-Ray set; `None` when neither is there
/// or readable (a bad header never fails a registration).
fn incoming_trace(request: &ApiGatewayV2httpRequest) -> Option<TraceContext> {
    let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
    header("traceparent")
        .and_then(|v| TraceContext::from_traceparent(v).ok())
        .or_else(|| header("x-amzn-trace-id").and_then(|v| TraceContext::from_xray(v).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body is measured in its encoding before it is decoded: exactly
    /// the limit is taken, a byte more is 413, plain or base64.
    #[test]
    fn bodies_are_measured_before_they_are_decoded() {
        let body = r#"{"name":"A","email":"a@b.co","raffle":"r"}"#;
        let padded = format!("{body:<MAX_BODY_BYTES$}");
        let event = |body: &str, base64: bool| {
            let mut event = ApiGatewayV2httpRequest::default();
            event.body = Some(body.to_string());
            event.is_base64_encoded = base64;
            event
        };
        let encoded = base64::engine::general_purpose::STANDARD.encode(&padded);
        assert_eq!(body_text(&event(&encoded, true)).unwrap(), padded);
        assert_eq!(body_text(&event(&padded, false)).unwrap(), padded);
        let over = format!("{padded} ");
        for (body, base64) in [
            (over.clone(), false),
            (
                base64::engine::general_purpose::STANDARD.encode(&over),
                true,
            ),
            (format!("{encoded}AAAA"), true),
        ] {
            assert_eq!(body_text(&event(&body, base64)).unwrap_err().status(), 413);
        }
    }
}
