//! The registration's one write: the conditional put of a participant, and
//! what its answer means (created, replayed, conflict, key reused).

use super::*;

/// A registration that is in the participants table.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The participant's id.
    pub id: String,
    /// True when this request repeated an earlier one's `Idempotency-Key`
    /// and registration: nothing was written, the first answer stands.
    pub replayed: bool,
    /// The write's request units as DynamoDB reported them (`None` for a
    /// replay: a failed conditional put reports none, though it is billed
    /// as a write of the stored item's size).
    pub capacity_units: Option<f64>,
}

/// What a registration attempt came to.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// [`validate`] refused the request; nothing was sent to DynamoDB. The
    /// HTTP API answers [`BadRequest::status`].
    #[error("{0}")]
    BadRequest(#[from] BadRequest),
    /// A participant with this id exists and the request has no
    /// `Idempotency-Key`; nothing was written (409). Carries the id.
    #[error("participant {0} is already registered")]
    Conflict(String),
    /// The `Idempotency-Key`'s participant exists with different `name`,
    /// `email`, `raffle` or `tickets`; nothing was written (422). Carries
    /// the id.
    #[error("this Idempotency-Key was first used for a different registration (participant {0}); use a new key for a new registration")]
    KeyReused(String),
    /// The put failed for any other reason (throttling, network,
    /// permissions, a missing table) after the SDK's own retries, or the
    /// item did not convert (503). Whether it was written is unknown: a
    /// retry with the same `Idempotency-Key` finds out without writing
    /// twice. Carries the SDK's error text.
    #[error("the participants table did not take the item: {0}")]
    Store(String),
}

/// Saves validated registrations into the participants table.
#[derive(Clone)]
pub struct Registrar {
    client: Client,
    table: String,
    max_message_bytes: usize,
}

impl Registrar {
    /// A registrar that writes to `table` through `client`, refusing a
    /// participant whose JSON is over `max_message_bytes` (the limit the
    /// stream handler applies). Sends nothing.
    pub fn new(client: Client, table: impl Into<String>, max_message_bytes: usize) -> Registrar {
        Registrar {
            client,
            table: table.into(),
            max_message_bytes,
        }
    }

    /// Validates the body and saves the participant, unless one with its id
    /// exists (a conditional put: a retried request never overwrites). When
    /// it exists and the request has an `Idempotency-Key`, the stored
    /// participant (returned by the failed put itself, so a replay costs
    /// that one write and no read) decides: the same registration is a
    /// replay, another one [`RegisterError::KeyReused`]. Without a key an
    /// existing id is a [`RegisterError::Conflict`].
    pub async fn register(
        &self,
        body: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Registered, RegisterError> {
        self.register_in(body, idempotency_key, &TraceContext::new_root())
            .await
    }

    /// [`Registrar::register`] as a span of a trace: `trace` (the
    /// registration's own span, a child of the caller's) is stored with the
    /// participant ([`TRACE_ATTRIBUTE`]), beside its fields, and travels to
    /// the message's `traceparent`. Same requests and answers.
    pub async fn register_in(
        &self,
        body: &str,
        idempotency_key: Option<&str>,
        trace: &TraceContext,
    ) -> Result<Registered, RegisterError> {
        let mut registration = validate(
            body,
            idempotency_key,
            self.max_message_bytes,
            OffsetDateTime::now_utc(),
        )?;
        if let Some(fields) = registration.item.as_object_mut() {
            fields.insert(TRACE_ATTRIBUTE.into(), trace.to_string().into());
        }
        let item = serde_dynamo::to_item(&registration.item)
            .map_err(|e| RegisterError::Store(e.to_string()))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(id)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        let id = registration.id.clone();
        match result {
            Ok(output) => Ok(Registered {
                id,
                replayed: false,
                capacity_units: output.consumed_capacity().and_then(|c| c.capacity_units()),
            }),
            Err(e) => match e.into_service_error() {
                PutItemError::ConditionalCheckFailedException(failed) => {
                    let stored = serde_dynamo::Item::from(failed.item.unwrap_or_default());
                    match idempotency_key {
                        None => Err(RegisterError::Conflict(id)),
                        Some(_) if same_registration(&stored, &registration) => Ok(Registered {
                            id,
                            replayed: true,
                            capacity_units: None,
                        }),
                        Some(_) => Err(RegisterError::KeyReused(id)),
                    }
                }
                other => Err(RegisterError::Store(
                    aws_sdk_dynamodb::error::DisplayErrorContext(other).to_string(),
                )),
            },
        }
    }
}
