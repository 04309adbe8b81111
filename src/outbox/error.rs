//! What a write or read of the outbox table came to: [`Written`] when
//! DynamoDB answered, [`StoreError`] when it did not or refused.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Why the outbox table did not answer a request as asked.
///
/// A transition's condition failing is not an error: it is
/// [`Written::ConditionFailed`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Throttling, a network error, a 5xx: the same call may pass later.
    #[error("transient DynamoDB error: {0}")]
    Transient(String),
    /// A request DynamoDB will refuse again whatever the moment (validation,
    /// item too large). A missing table or permission is not one of these:
    /// it is fixed by deploying, and the record must wait for it, not be rejected.
    #[error("DynamoDB refused the request: {0}")]
    Permanent(String),
    /// A stored item is not a readable [`super::OutboxRow`] (or a row could
    /// not be made into a request): retrying cannot help.
    #[error("a stored outbox row cannot be read: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Sorts an SDK error: `ValidationException` and
    /// `SerializationException` are [`StoreError::Permanent`], everything
    /// else (throttling, 5xx, network, a missing table) is
    /// [`StoreError::Transient`].
    pub(super) fn from_sdk<E, R>(err: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let permanent = matches!(
            err.code(),
            Some("ValidationException" | "SerializationException")
        );
        let text = DisplayErrorContext(&err).to_string();
        if permanent {
            StoreError::Permanent(text)
        } else {
            StoreError::Transient(text)
        }
    }
}

/// Whether a conditional write found the row in the state it expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The condition held and the write is in the table.
    Yes,
    /// The condition did not hold: someone else moved the row first (or,
    /// for an insert, the row exists already). Nothing was written.
    ConditionFailed,
}

/// Whether DynamoDB refused a request because its condition did not hold.
pub(super) fn is_condition_failure<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

/// A conditional write's outcome: written, condition failed, or an error.
pub(super) fn written<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<Written, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(Written::Yes),
        Err(e) if is_condition_failure(&e) => Ok(Written::ConditionFailed),
        Err(e) => Err(StoreError::from_sdk(e)),
    }
}
