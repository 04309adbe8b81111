//! Produce response v3, parsed here rather than by samsa's `ProduceResponse`,
//! which reads error codes through its `KafkaCode` and so turns every code it
//! has no name for (INVALID_RECORD among them) into UNKNOWN_SERVER_ERROR: the
//! relay must know whether the broker refused the message or failed itself.
//!
//! ```text
//! ProduceResponse v3 => correlation_id [topic [partition error_code base_offset
//!                       log_append_time]] throttle_time_ms
//! ```

use bytes::Bytes;

use super::error::KafkaError;
use super::error_code::ErrorCode;
use super::reader::Reader;

/// The broker's answer for one partition of a produce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAnswer {
    /// The topic, as the broker spelled it.
    pub topic: Bytes,
    /// The partition index.
    pub partition: i32,
    /// The broker's code for this partition, kept as sent.
    pub error_code: ErrorCode,
    /// The offset of the batch's first record.
    pub base_offset: i64,
    /// The broker's LogAppendTime (ms) when the topic uses it, else -1.
    pub log_append_time: i64,
}

/// Every partition answer of a produce response (v3), in the broker's order.
pub fn parse(bytes: Bytes) -> Result<Vec<PartitionAnswer>, KafkaError> {
    let mut r = Reader(bytes);
    r.i32()?; // correlation id (checked by the connection)
    let mut answers = Vec::new();
    for _ in 0..r.i32()?.max(0) {
        let topic = r.string()?;
        for _ in 0..r.i32()?.max(0) {
            answers.push(PartitionAnswer {
                topic: topic.clone(),
                partition: r.i32()?,
                error_code: ErrorCode(r.i16()?),
                base_offset: r.i64()?,
                log_append_time: r.i64()?,
            });
        }
    }
    r.i32()?; // throttle time
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn keeps_codes_samsa_has_no_name_for() {
        let mut bytes = Vec::new();
        bytes.put_i32(7); // correlation id
        bytes.put_i32(1);
        bytes.put_i16(1);
        bytes.put_slice(b"t");
        bytes.put_i32(2);
        for (partition, code, offset) in [(0, 0, 41), (1, 87, -1)] {
            bytes.put_i32(partition);
            bytes.put_i16(code);
            bytes.put_i64(offset);
            bytes.put_i64(-1);
        }
        bytes.put_i32(0); // throttle time
        let answers = parse(Bytes::from(bytes.clone())).unwrap();
        assert_eq!(answers.len(), 2);
        assert_eq!(
            (answers[0].error_code, answers[0].base_offset),
            (ErrorCode::NONE, 41)
        );
        assert_eq!(answers[1].error_code, ErrorCode::INVALID_RECORD);
        assert!(
            parse(Bytes::from(bytes[..bytes.len() - 6].to_vec())).is_err(),
            "short is an error"
        );
    }
}
