//! Registration, the raffle's entry point: a participant's JSON in, one item
//! in the participants table out (its stream does the rest).
//!
//! `POST /participants` (HTTP API → the `register` Lambda) and
//! `raffle-outbox register` run the same [`validate`], so a body one accepts
//! the other accepts. The rules:
//!
//! - the body is a JSON object with only these fields: `name`, `email`,
//!   `raffle` (non-empty strings; `email` shaped like an address), `tickets`
//!   (optional integer 1–100, default 1) and `id` (optional UUID in the
//!   8-4-4-4-12 form, kept in lower case, default a new one; a second
//!   registration with the same id is a 409). Ids are logged and kept, so
//!   only a UUID is taken: nobody can make an email or a name an id;
//! - the server adds `registered_at` (RFC 3339 UTC);
//! - with an `Idempotency-Key` header (the IETF httpapi draft: 1–255
//!   visible ASCII characters other than `"`, `\` and `,`, optionally
//!   quoted as the draft's structured-field string), the participant id is
//!   the key's UUID v5 ([`IDEMPOTENCY_NAMESPACE`]) and the body may not
//!   carry an `id`. The conditional put of that id is the idempotency
//!   record: a retry finds the participant its key made, and is answered as
//!   the first request was (a replay) when its registration fields (`name`,
//!   `email`, `raffle`, `tickets`) are the same, refused (422) otherwise;
//! - then the stream handler's own rules ([`Participant::from_image`]): the
//!   `id` is a non-empty string and the participant's JSON fits in a Kafka
//!   message, so nothing accepted here is REJECTED later.
//!
//! Reasons name the field, never its value: they reach logs.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::outbox::row::rfc3339;
use crate::participant::{to_json, Invalid, Participant, TRACE_ATTRIBUTE};
use crate::trace::TraceContext;

/// The fields a registration may carry.
pub const FIELDS: [&str; 5] = ["id", "name", "email", "raffle", "tickets"];
const MAX_TICKETS: i64 = 100;
/// The fields that make two registrations the same one (a replay).
const REGISTRATION_FIELDS: [&str; 4] = ["name", "email", "raffle", "tickets"];
/// The largest body taken, in bytes (after base64 decoding; a base64 body
/// is measured before it is decoded too). A registration with every field
/// at its longest, each character escaped, fits several times over.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The deepest nesting taken: the body's object is level 1. A registration
/// needs 1; the rest leaves room for the fields' own errors to answer.
pub const MAX_DEPTH: usize = 8;
/// The most fields (object members, at every depth) taken. A registration
/// has at most 5.
pub const MAX_FIELDS: usize = 32;
/// The longest `Idempotency-Key` taken (quotes aside).
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// The namespace of the UUID v5 that turns an `Idempotency-Key` into a
/// participant id. Fixed forever: changing it would make every retry of an
/// earlier key a new participant.
pub const IDEMPOTENCY_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5d0c_4f1e_9b3a_4c6e_8f21_7a9e_0b4d_c3a1);
/// The response header that marks a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Why a request is refused: the text of the 400 (or, for a body over
/// [`MAX_BODY_BYTES`], the 413; see [`BadRequest::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// The HTTP request carried no body.
    #[error("the body is empty; send the participant as JSON")]
    NoBody,
    /// API Gateway marked the body base64 and it does not decode.
    #[error("the body is not valid base64")]
    NotBase64,
    /// The (decoded) body is not UTF-8 text.
    #[error("the body is not UTF-8")]
    NotUtf8,
    /// The body is over [`MAX_BODY_BYTES`]; checked before parsing. The
    /// only 413.
    #[error("the body is larger than {limit} bytes")]
    BodyTooLarge {
        /// [`MAX_BODY_BYTES`].
        limit: usize,
    },
    /// Objects and arrays nest deeper than [`MAX_DEPTH`]; checked before
    /// parsing.
    #[error("the body is nested deeper than {limit} levels (a registration is one flat object)")]
    TooDeep {
        /// [`MAX_DEPTH`].
        limit: usize,
    },
    /// The body has more than [`MAX_FIELDS`] members at all depths; checked
    /// before parsing.
    #[error("the body has more than {limit} fields (a registration has at most 5)")]
    TooManyFields {
        /// [`MAX_FIELDS`].
        limit: usize,
    },
    /// `serde_json` could not parse the body; carries the parser's message.
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("the body must be a JSON object")]
    NotAnObject,
    /// The object has a member outside [`FIELDS`]; carries its name (a
    /// client's key, not a value).
    #[error("unknown field `{0}` (allowed: id, name, email, raffle, tickets)")]
    UnknownField(String),
    /// A required field (`name`, `email` or `raffle`) is absent.
    #[error("`{0}` is required")]
    Missing(&'static str),
    /// A text field holds something other than a JSON string.
    #[error("`{0}` must be a string")]
    NotAString(&'static str),
    /// A text field is empty or only whitespace.
    #[error("`{0}` must not be empty")]
    Empty(&'static str),
    /// A text field has more characters than its limit (`name` 200,
    /// `email` 254, `raffle` 100).
    #[error("`{field}` is longer than {max} characters")]
    TooLong {
        /// The field's name.
        field: &'static str,
        /// Its limit, in characters (not bytes).
        max: usize,
    },
    /// `id` is not a string holding a UUID in the 36-character 8-4-4-4-12
    /// form.
    #[error(
        "`id` must be a UUID (like 0b6f9a3e-5c1d-4e2f-8a7b-9c0d1e2f3a4b); leave it out and one is made"
    )]
    NotAUuid,
    /// `email` is not one `@` between a non-empty local part and a dotted
    /// domain, without spaces. Deliverability is not checked.
    #[error("`email` is not an email address")]
    BadEmail,
    /// `tickets` is present and not an integer from 1 to 100.
    #[error("`tickets` must be an integer from 1 to {MAX_TICKETS}")]
    Tickets,
    /// The `Idempotency-Key` header is empty, over
    /// [`MAX_IDEMPOTENCY_KEY`], or has a character other than visible ASCII
    /// except `"`, `\` and `,`.
    #[error(
        "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters other than `\"`, `\\` and `,` (a UUID is best), optionally in double quotes"
    )]
    IdempotencyKey,
    /// The body has an `id` and the request an `Idempotency-Key`: the key
    /// alone names the participant.
    #[error(
        "send either an `id` or an Idempotency-Key header, not both: the key names the participant"
    )]
    IdAndKey,
    /// The item breaks a rule of the stream handler
    /// ([`Participant::from_image`]): [`Invalid::TooLarge`], or off the
    /// event contract ([`Invalid::OffContract`]; the checks above keep
    /// within it): refused here so it is never REJECTED later.
    #[error("{0}")]
    Participant(#[from] Invalid),
}

impl BadRequest {
    /// The HTTP status that answers it: 413 for a body over the size
    /// limit, 400 for everything else.
    pub fn status(&self) -> i64 {
        match self {
            BadRequest::BodyTooLarge { .. } => 413,
            _ => 400,
        }
    }
}

/// A registration that passed validation: the item to save.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The participant id: the client's UUID in lower case, the
    /// `Idempotency-Key`'s UUID v5, or a new UUID v4.
    pub id: String,
    /// The participant as it will be stored: a JSON object with `id`,
    /// `name`, `email`, `raffle`, `tickets` and `registered_at`.
    pub item: Value,
}

/// Checks a body (and the request's `Idempotency-Key`, if any) and builds
/// the participant item (see the module docs).
pub fn validate(
    body: &str,
    idempotency_key: Option<&str>,
    max_message_bytes: usize,
    now: OffsetDateTime,
) -> Result<Registration, BadRequest> {
    let keyed_id = idempotency_key.map(id_for_key).transpose()?;
    within_size_limit(body.len())?;
    measure(body)?;
    let value: Value =
        serde_json::from_str(body).map_err(|e| BadRequest::NotJson(e.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(BadRequest::NotAnObject);
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(BadRequest::UnknownField(unknown.clone()));
    }
    let id = match (fields.get("id"), keyed_id) {
        (Some(_), Some(_)) => return Err(BadRequest::IdAndKey),
        (None, Some(id)) => id,
        (None, None) => uuid::Uuid::new_v4().to_string(),
        (Some(id), None) => id.as_str().and_then(uuid_id).ok_or(BadRequest::NotAUuid)?,
    };
    let name = text(&fields, "name", 200)?;
    let email = text(&fields, "email", 254)?;
    if !looks_like_email(&email) {
        return Err(BadRequest::BadEmail);
    }
    let raffle = text(&fields, "raffle", 100)?;
    let tickets = match fields.get("tickets") {
        None => 1,
        Some(t) => t
            .as_i64()
            .filter(|n| (1..=MAX_TICKETS).contains(n))
            .ok_or(BadRequest::Tickets)?,
    };
    let item = json!({
        "id": id,
        "name": name,
        "email": email,
        "raffle": raffle,
        "tickets": tickets,
        "registered_at": rfc3339(now),
    });
    // The stream handler's rules, on the item exactly as it will be stored.
    let image: serde_dynamo::Item =
        serde_dynamo::to_item(&item).expect("a JSON object is a DynamoDB item");
    Participant::from_image(&image, max_message_bytes)?;
    Ok(Registration { id, item })
}

/// Refuses a body over [`MAX_BODY_BYTES`] (413), before it is parsed.
pub(crate) fn within_size_limit(bytes: usize) -> Result<(), BadRequest> {
    if bytes > MAX_BODY_BYTES {
        return Err(BadRequest::BodyTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    Ok(())
}

/// Refuses a body nested deeper than [`MAX_DEPTH`] or with more than
/// [`MAX_FIELDS`] fields, from one pass over its bytes that follows strings
/// (brackets and colons in text are text), before any parser allocates for
/// it. What it lets through, well-formed or not, is the parser's to judge.
fn measure(body: &str) -> Result<(), BadRequest> {
    let (mut depth, mut fields) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in body.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(BadRequest::TooDeep { limit: MAX_DEPTH });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b':' => {
                fields += 1;
                if fields > MAX_FIELDS {
                    return Err(BadRequest::TooManyFields { limit: MAX_FIELDS });
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn text(
    fields: &Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<String, BadRequest> {
    let value = fields.get(field).ok_or(BadRequest::Missing(field))?;
    let text = value.as_str().ok_or(BadRequest::NotAString(field))?;
    if text.trim().is_empty() {
        return Err(BadRequest::Empty(field));
    }
    if text.chars().count() > max {
        return Err(BadRequest::TooLong { field, max });
    }
    Ok(text.to_string())
}

/// A client's id, if it is a UUID in the 8-4-4-4-12 form: in lower case, so
/// one participant has one spelling (and a repeated request is a 409).
fn uuid_id(id: &str) -> Option<String> {
    let uuid = uuid::Uuid::try_parse(id).ok().filter(|_| id.len() == 36)?;
    Some(uuid.hyphenated().to_string())
}

/// The participant id an `Idempotency-Key` header value names: the UUID v5
/// of the key (without the quotes of its structured-field form), or
/// [`BadRequest::IdempotencyKey`] when the value is not a key.
pub fn id_for_key(value: &str) -> Result<String, BadRequest> {
    let key = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    let allowed = |c: char| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | ',');
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !key.chars().all(allowed) {
        return Err(BadRequest::IdempotencyKey);
    }
    Ok(uuid::Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, key.as_bytes()).to_string())
}

/// Whether a stored participant is the registration a retried request
/// makes: the same [`REGISTRATION_FIELDS`] (not the same `registered_at`).
fn same_registration(stored: &serde_dynamo::Item, retry: &Registration) -> bool {
    let stored = to_json(stored);
    REGISTRATION_FIELDS
        .iter()
        .all(|field| stored.get(field) == retry.item.get(field))
}

/// One `@` between a non-empty local part and a dotted domain, no spaces:
/// enough to catch a wrong field, without pretending to validate deliverability.
fn looks_like_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(char::is_whitespace)
}

mod registrar;

pub use registrar::{RegisterError, Registered, Registrar};

#[cfg(test)]
mod tests;
