//! What can go wrong talking to Kafka ([`KafkaError`]), and whose fault it
//! is ([`Blame`]): the one decision the outbox makes from a failed send.

use super::error_code::ErrorCode;

/// What went wrong talking to Kafka. `Clone`, so one failure can be the
/// answer of every message it concerns; its text names the broker or the
/// partition, never a message's content.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KafkaError {
    /// No usable connection: the bootstrap list is malformed, the broker is
    /// unreachable or too slow to dial, or the login was refused.
    #[error("cannot connect to broker {0}")]
    Connect(String),
    /// The connection failed mid-request or the answer did not come in time.
    #[error("network error: {0}")]
    Io(String),
    /// An answer this client cannot use: unparseable, for another request,
    /// or missing what was asked.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The metadata's answer about the whole topic (missing, not authorized).
    #[error("topic {topic}: {code:?}")]
    Topic {
        /// The topic asked about.
        topic: String,
        /// The broker's error code for it.
        code: ErrorCode,
    },
    /// A broker's answer about one partition (or a partition with no leader).
    #[error("partition {partition}: broker error {code:?}")]
    Partition {
        /// The partition index.
        partition: i32,
        /// The broker's error code for it.
        code: ErrorCode,
    },
}

impl KafkaError {
    /// Whose fault the failure is (see [`Blame`]): a broker's answer about
    /// the message itself is the message's; everything else (connecting,
    /// logging in, the network, timeouts, leadership, authorization, a
    /// broker's own failure, an answer this client cannot read) is the
    /// cluster's.
    pub fn blame(&self) -> Blame {
        match self {
            KafkaError::Topic { code, .. } | KafkaError::Partition { code, .. } => blame(*code),
            KafkaError::Connect(_) | KafkaError::Io(_) | KafkaError::Protocol(_) => Blame::Cluster,
        }
    }

    /// Whether sending the message again may succeed: every failure but a
    /// message the broker refused for good (too large, invalid).
    pub fn is_retriable(&self) -> bool {
        !matches!(self.blame(), Blame::Message { retriable: false })
    }
}

/// Whose fault a failed send is, which decides what it costs the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The broker answered about this message itself: it is too large, or
    /// the topic refuses it (invalid, corrupt). Sending it unchanged will
    /// most likely get the same answer, so the outbox counts an attempt.
    /// `retriable`: the answer may differ next time (CORRUPT_MESSAGE, which a
    /// transfer can cause); otherwise it never will.
    Message {
        /// Whether the same message may be accepted on a later try.
        retriable: bool,
    },
    /// The cluster, the network or the credentials (or this client): the
    /// same message may pass once that is fixed, so it costs the message
    /// nothing; it waits, and the outbox's backlog alarm is what tells.
    Cluster,
}

/// Kafka's error codes that are the message's fault (Kafka's protocol
/// guide: "The request included a message larger than the max message size
/// the server will accept", "…message batch larger than the configured
/// segment size", "This record has failed the validation on broker",
/// "This message has failed its CRC checksum, exceeds the valid size, has a
/// null key for a compacted topic, or is otherwise corrupt"). Every other
/// code is the cluster's: leadership and replication (NOT_LEADER…,
/// NOT_ENOUGH_REPLICAS…), timeouts, authorization (TOPIC_/CLUSTER_
/// AUTHORIZATION_FAILED, SASL), a missing topic, the broker's own failures
/// (UNKNOWN_SERVER_ERROR, KAFKA_STORAGE_ERROR), throttling, and settings of
/// this client or the cluster rather than of a message (INVALID_TIMESTAMP:
/// the timestamp is the relay's clock at send time; INVALID_REQUIRED_ACKS,
/// UNSUPPORTED_VERSION).
fn blame(code: ErrorCode) -> Blame {
    match code {
        ErrorCode::CORRUPT_MESSAGE => Blame::Message { retriable: true },
        ErrorCode::MESSAGE_TOO_LARGE
        | ErrorCode::RECORD_LIST_TOO_LARGE
        | ErrorCode::INVALID_RECORD => Blame::Message { retriable: false },
        _ => Blame::Cluster,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table: whose fault each failure is.
    #[test]
    fn only_answers_about_the_message_itself_are_the_message_s_fault() {
        let partition = |code| KafkaError::Partition { partition: 0, code };
        let message = |retriable| Blame::Message { retriable };
        for (code, blame) in [
            (ErrorCode::MESSAGE_TOO_LARGE, message(false)),
            (ErrorCode::RECORD_LIST_TOO_LARGE, message(false)),
            (ErrorCode::INVALID_RECORD, message(false)),
            (ErrorCode::CORRUPT_MESSAGE, message(true)),
            (ErrorCode::TOPIC_AUTHORIZATION_FAILED, Blame::Cluster),
            (ErrorCode::CLUSTER_AUTHORIZATION_FAILED, Blame::Cluster),
            (ErrorCode::SASL_AUTHENTICATION_FAILED, Blame::Cluster),
            (ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, Blame::Cluster),
            (ErrorCode::LEADER_NOT_AVAILABLE, Blame::Cluster),
            (ErrorCode::NOT_LEADER_OR_FOLLOWER, Blame::Cluster),
            (ErrorCode::NOT_ENOUGH_REPLICAS, Blame::Cluster),
            (ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND, Blame::Cluster),
            (ErrorCode::REQUEST_TIMED_OUT, Blame::Cluster),
            (ErrorCode::KAFKA_STORAGE_ERROR, Blame::Cluster),
            (ErrorCode::UNKNOWN_SERVER_ERROR, Blame::Cluster),
            (ErrorCode::INVALID_TIMESTAMP, Blame::Cluster),
            (ErrorCode::INVALID_REQUIRED_ACKS, Blame::Cluster),
            (ErrorCode::UNSUPPORTED_VERSION, Blame::Cluster),
            (ErrorCode::THROTTLING_QUOTA_EXCEEDED, Blame::Cluster),
            (ErrorCode(999), Blame::Cluster),
        ] {
            assert_eq!(partition(code).blame(), blame, "{code:?}");
        }
        let topic = KafkaError::Topic {
            topic: "t".into(),
            code: ErrorCode::TOPIC_AUTHORIZATION_FAILED,
        };
        assert_eq!(topic.blame(), Blame::Cluster);
        for error in [
            KafkaError::Connect("127.0.0.1:9092: connection refused".into()),
            KafkaError::Connect("b-1: SCRAM-SHA-512 authentication failed: wrong".into()),
            KafkaError::Io("no answer within 35s".into()),
            KafkaError::Protocol("no answer for partition 2".into()),
        ] {
            assert_eq!(error.blame(), Blame::Cluster, "{error}");
        }
    }

    #[test]
    fn retriable_codes() {
        assert!(KafkaError::Partition {
            partition: 0,
            code: ErrorCode::NOT_LEADER_OR_FOLLOWER
        }
        .is_retriable());
        assert!(!KafkaError::Partition {
            partition: 0,
            code: ErrorCode::MESSAGE_TOO_LARGE
        }
        .is_retriable());
        assert!(KafkaError::Io("reset".into()).is_retriable());
    }
}
