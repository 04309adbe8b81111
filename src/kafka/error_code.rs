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

impl ErrorCode {
    pub const UNKNOWN_SERVER_ERROR: ErrorCode = ErrorCode(-1);
    pub const NONE: ErrorCode = ErrorCode(0);
    pub const CORRUPT_MESSAGE: ErrorCode = ErrorCode(2);
    pub const UNKNOWN_TOPIC_OR_PARTITION: ErrorCode = ErrorCode(3);
    pub const LEADER_NOT_AVAILABLE: ErrorCode = ErrorCode(5);
    pub const NOT_LEADER_OR_FOLLOWER: ErrorCode = ErrorCode(6);
    pub const REQUEST_TIMED_OUT: ErrorCode = ErrorCode(7);
    pub const BROKER_NOT_AVAILABLE: ErrorCode = ErrorCode(8);
    pub const REPLICA_NOT_AVAILABLE: ErrorCode = ErrorCode(9);
    pub const MESSAGE_TOO_LARGE: ErrorCode = ErrorCode(10);
    pub const NETWORK_EXCEPTION: ErrorCode = ErrorCode(13);
    pub const INVALID_TOPIC_EXCEPTION: ErrorCode = ErrorCode(17);
    pub const RECORD_LIST_TOO_LARGE: ErrorCode = ErrorCode(18);
    pub const NOT_ENOUGH_REPLICAS: ErrorCode = ErrorCode(19);
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: ErrorCode = ErrorCode(20);
    pub const INVALID_REQUIRED_ACKS: ErrorCode = ErrorCode(21);
    pub const TOPIC_AUTHORIZATION_FAILED: ErrorCode = ErrorCode(29);
    pub const CLUSTER_AUTHORIZATION_FAILED: ErrorCode = ErrorCode(31);
    pub const INVALID_TIMESTAMP: ErrorCode = ErrorCode(32);
    pub const UNSUPPORTED_SASL_MECHANISM: ErrorCode = ErrorCode(33);
    pub const ILLEGAL_SASL_STATE: ErrorCode = ErrorCode(34);
    pub const UNSUPPORTED_VERSION: ErrorCode = ErrorCode(35);
    pub const NOT_CONTROLLER: ErrorCode = ErrorCode(41);
    pub const INVALID_REQUEST: ErrorCode = ErrorCode(42);
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: ErrorCode = ErrorCode(43);
    pub const KAFKA_STORAGE_ERROR: ErrorCode = ErrorCode(56);
    pub const SASL_AUTHENTICATION_FAILED: ErrorCode = ErrorCode(58);
    pub const FENCED_LEADER_EPOCH: ErrorCode = ErrorCode(74);
    pub const UNKNOWN_LEADER_EPOCH: ErrorCode = ErrorCode(75);
    pub const INVALID_RECORD: ErrorCode = ErrorCode(87);
    pub const THROTTLING_QUOTA_EXCEEDED: ErrorCode = ErrorCode(89);

    /// Kafka's name for the code, when it is one the producer may meet.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            ErrorCode::UNKNOWN_SERVER_ERROR => "UNKNOWN_SERVER_ERROR",
            ErrorCode::NONE => "NONE",
            ErrorCode::CORRUPT_MESSAGE => "CORRUPT_MESSAGE",
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION => "UNKNOWN_TOPIC_OR_PARTITION",
            ErrorCode::LEADER_NOT_AVAILABLE => "LEADER_NOT_AVAILABLE",
            ErrorCode::NOT_LEADER_OR_FOLLOWER => "NOT_LEADER_OR_FOLLOWER",
            ErrorCode::REQUEST_TIMED_OUT => "REQUEST_TIMED_OUT",
            ErrorCode::BROKER_NOT_AVAILABLE => "BROKER_NOT_AVAILABLE",
            ErrorCode::REPLICA_NOT_AVAILABLE => "REPLICA_NOT_AVAILABLE",
            ErrorCode::MESSAGE_TOO_LARGE => "MESSAGE_TOO_LARGE",
            ErrorCode::NETWORK_EXCEPTION => "NETWORK_EXCEPTION",
            ErrorCode::INVALID_TOPIC_EXCEPTION => "INVALID_TOPIC_EXCEPTION",
            ErrorCode::RECORD_LIST_TOO_LARGE => "RECORD_LIST_TOO_LARGE",
            ErrorCode::NOT_ENOUGH_REPLICAS => "NOT_ENOUGH_REPLICAS",
            ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            ErrorCode::INVALID_REQUIRED_ACKS => "INVALID_REQUIRED_ACKS",
            ErrorCode::TOPIC_AUTHORIZATION_FAILED => "TOPIC_AUTHORIZATION_FAILED",
            ErrorCode::CLUSTER_AUTHORIZATION_FAILED => "CLUSTER_AUTHORIZATION_FAILED",
            ErrorCode::INVALID_TIMESTAMP => "INVALID_TIMESTAMP",
            ErrorCode::UNSUPPORTED_SASL_MECHANISM => "UNSUPPORTED_SASL_MECHANISM",
            ErrorCode::ILLEGAL_SASL_STATE => "ILLEGAL_SASL_STATE",
            ErrorCode::UNSUPPORTED_VERSION => "UNSUPPORTED_VERSION",
            ErrorCode::NOT_CONTROLLER => "NOT_CONTROLLER",
            ErrorCode::INVALID_REQUEST => "INVALID_REQUEST",
            ErrorCode::UNSUPPORTED_FOR_MESSAGE_FORMAT => "UNSUPPORTED_FOR_MESSAGE_FORMAT",
            ErrorCode::KAFKA_STORAGE_ERROR => "KAFKA_STORAGE_ERROR",
            ErrorCode::SASL_AUTHENTICATION_FAILED => "SASL_AUTHENTICATION_FAILED",
            ErrorCode::FENCED_LEADER_EPOCH => "FENCED_LEADER_EPOCH",
            ErrorCode::UNKNOWN_LEADER_EPOCH => "UNKNOWN_LEADER_EPOCH",
            ErrorCode::INVALID_RECORD => "INVALID_RECORD",
            ErrorCode::THROTTLING_QUOTA_EXCEEDED => "THROTTLING_QUOTA_EXCEEDED",
            _ => return None,
        })
    }
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
