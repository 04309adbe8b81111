//! Kafka's error codes, kept as the broker sent them.
//!
//! samsa 0.1.8's `KafkaCode` names the codes up to 58 and parses every other
//! one (INVALID_RECORD 87, KAFKA_STORAGE_ERROR 56 is there, but
//! FENCED_LEADER_EPOCH 74, THROTTLING_QUOTA_EXCEEDED 89 … are not) as
//! `Unknown` (-1, UNKNOWN_SERVER_ERROR), which loses what the answer was
//! about: a record the topic's schema refused would look like a broker
//! failure. [`ErrorCode`] keeps the number; responses whose codes decide
//! what happens to a row (produce) are parsed here
//! ([`super::produce_response`]), the others convert samsa's code.

use samsa::prelude::KafkaCode;

/// A Kafka protocol error code (`error_code` INT16 of a response), as sent.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub i16);

/// Defines each named code once: its constant (documented with Kafka's
/// name and number) and its entry in [`ErrorCode::name`].
macro_rules! named_codes {
    ($($name:ident = $number:literal,)*) => {
        impl ErrorCode {
            $(
                #[doc = concat!("Kafka's `", stringify!($name), "` (", stringify!($number), ").")]
                pub const $name: ErrorCode = ErrorCode($number);
            )*

            /// Kafka's name for the code, when it is one the producer may
            /// meet (the constants above); `None` for any other number.
            pub fn name(self) -> Option<&'static str> {
                Some(match self {
                    $(ErrorCode::$name => stringify!($name),)*
                    _ => return None,
                })
            }
        }
    };
}

named_codes! {
    UNKNOWN_SERVER_ERROR = -1,
    NONE = 0,
    CORRUPT_MESSAGE = 2,
    UNKNOWN_TOPIC_OR_PARTITION = 3,
    LEADER_NOT_AVAILABLE = 5,
    NOT_LEADER_OR_FOLLOWER = 6,
    REQUEST_TIMED_OUT = 7,
    BROKER_NOT_AVAILABLE = 8,
    REPLICA_NOT_AVAILABLE = 9,
    MESSAGE_TOO_LARGE = 10,
    NETWORK_EXCEPTION = 13,
    INVALID_TOPIC_EXCEPTION = 17,
    RECORD_LIST_TOO_LARGE = 18,
    NOT_ENOUGH_REPLICAS = 19,
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20,
    INVALID_REQUIRED_ACKS = 21,
    TOPIC_AUTHORIZATION_FAILED = 29,
    CLUSTER_AUTHORIZATION_FAILED = 31,
    INVALID_TIMESTAMP = 32,
    UNSUPPORTED_SASL_MECHANISM = 33,
    ILLEGAL_SASL_STATE = 34,
    UNSUPPORTED_VERSION = 35,
    NOT_CONTROLLER = 41,
    INVALID_REQUEST = 42,
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43,
    KAFKA_STORAGE_ERROR = 56,
    SASL_AUTHENTICATION_FAILED = 58,
    FENCED_LEADER_EPOCH = 74,
    UNKNOWN_LEADER_EPOCH = 75,
    INVALID_RECORD = 87,
    THROTTLING_QUOTA_EXCEEDED = 89,
}

/// `INVALID_RECORD (87)`; a code without a name here: `error 123`.
impl std::fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "error {}", self.0),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// samsa's parse of a code: exact for the codes it names, -1 for the rest.
impl From<KafkaCode> for ErrorCode {
    fn from(code: KafkaCode) -> ErrorCode {
        ErrorCode(code as i16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_show_their_kafka_name_and_number() {
        assert_eq!(
            format!("{:?}", ErrorCode::INVALID_RECORD),
            "INVALID_RECORD (87)"
        );
        assert_eq!(format!("{}", ErrorCode(123)), "error 123");
        assert_eq!(
            ErrorCode::from(KafkaCode::TopicAuthorizationFailed),
            ErrorCode::TOPIC_AUTHORIZATION_FAILED
        );
        assert_eq!(
            ErrorCode::from(KafkaCode::Unknown),
            ErrorCode::UNKNOWN_SERVER_ERROR
        );
    }
}
