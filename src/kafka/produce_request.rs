//! Produce request v3 with record batches that carry the timestamp we choose.
//!
//! samsa's own `ProduceRequest` stamps each record with the clock at the
//! moment it is added, and keeps the stamps private, so the producer cannot
//! report the timestamp Kafka stores. The audit needs it exact (`kafka_timestamp`
//! must equal what a consumer reads), so this file encodes the request
//! itself: every record of a request gets one explicit CreateTime. It plugs
//! into samsa through its public `ToByte` trait and `HeaderRequest`; the
//! reply is parsed by [`super::produce_response`] (samsa's `ProduceResponse`
//! loses the error codes it has no name for).
//!
//! Layout (Kafka protocol, magic 2):
//! ```text
//! ProduceRequest v3 => transactional_id acks timeout [topic [partition record_set]]
//! RecordBatch => baseOffset:i64 batchLength:i32 partitionLeaderEpoch:i32 magic:i8 crc:u32
//!                attributes:i16 lastOffsetDelta:i32 baseTimestamp:i64 maxTimestamp:i64
//!                producerId:i64 producerEpoch:i16 baseSequence:i32 [Record]
//! Record => length:varint attributes:i8 timestampDelta:varlong offsetDelta:varint
//!           key:varbytes value:varbytes [header key:varbytes value:varbytes]
//! ```

use bytes::{BufMut, Bytes};
use samsa::prelude::encode::ToByte;
use samsa::prelude::protocol::HeaderRequest;

use super::varint;

const API_KEY_PRODUCE: i16 = 0;
const API_VERSION: i16 = 3;
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// One record, borrowed from the caller's message.
pub struct Record<'a> {
    /// The record key.
    pub key: &'a [u8],
    /// The record value.
    pub value: &'a [u8],
    /// The record headers, in order.
    pub headers: &'a [(&'static str, Bytes)],
}

impl Record<'_> {
    /// An estimate of the record's size in a record batch, its length
    /// prefix and fields included: key, value and headers plus 2 bytes a
    /// header and 32 for the rest.
    pub fn size(&self) -> usize {
        self.key.len()
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>()
            + 32
    }
}

/// A Produce request (v3) for one topic, encoded by its `ToByte`: one
/// uncompressed record batch per partition, every record stamped with
/// `timestamp` as its CreateTime, no idempotence or transaction.
pub struct ProduceRequest<'a> {
    /// The request's correlation id (the transport numbers requests).
    pub correlation_id: i32,
    /// The client id brokers log.
    pub client_id: &'a str,
    /// Required acks: -1 (all in-sync replicas), 0 or 1.
    pub acks: i16,
    /// How long the broker may wait for the acks.
    pub timeout_ms: i32,
    /// The one topic all partitions belong to.
    pub topic: &'a str,
    /// CreateTime of every record, ms since the epoch.
    pub timestamp: i64,
    /// Partition and its records, in offset order.
    pub partitions: Vec<(i32, Vec<Record<'a>>)>,
}

impl ToByte for ProduceRequest<'_> {
    fn encode<W: BufMut>(&self, out: &mut W) -> samsa::prelude::Result<()> {
        HeaderRequest::new(
            API_KEY_PRODUCE,
            API_VERSION,
            self.correlation_id,
            self.client_id,
        )
        .encode(out)?;
        out.put_i16(-1); // transactional_id: null
        out.put_i16(self.acks);
        out.put_i32(self.timeout_ms);
        out.put_i32(1); // one topic
        self.topic.encode(out)?;
        out.put_i32(self.partitions.len() as i32);
        for (partition, records) in &self.partitions {
            out.put_i32(*partition);
            let batch = record_batch(records, self.timestamp);
            out.put_i32(batch.len() as i32);
            out.put_slice(&batch);
        }
        Ok(())
    }
}

/// One uncompressed record batch, all records stamped `timestamp`.
fn record_batch(records: &[Record], timestamp: i64) -> Vec<u8> {
    // Everything the CRC covers: from attributes to the end; sized once,
    // so that it is not copied as it grows.
    let size: usize = records.iter().map(Record::size).sum();
    let mut body = Vec::with_capacity(size + 40);
    // One record's bytes, before its length prefix: one buffer for all.
    let mut r = Vec::new();
    body.put_i16(0); // attributes: no compression, CreateTime
    body.put_i32(records.len() as i32 - 1); // lastOffsetDelta
    body.put_i64(timestamp); // baseTimestamp
    body.put_i64(timestamp); // maxTimestamp
    body.put_i64(-1); // producerId
    body.put_i16(-1); // producerEpoch
    body.put_i32(-1); // baseSequence
    body.put_i32(records.len() as i32);
    for (offset_delta, record) in records.iter().enumerate() {
        r.clear();
        r.put_i8(0); // attributes
        varint::put(&mut r, 0); // timestampDelta
        varint::put(&mut r, offset_delta as i64);
        put_varbytes(&mut r, record.key);
        put_varbytes(&mut r, record.value);
        varint::put(&mut r, record.headers.len() as i64);
        for (name, value) in record.headers {
            put_varbytes(&mut r, name.as_bytes());
            put_varbytes(&mut r, value);
        }
        varint::put(&mut body, r.len() as i64);
        body.extend_from_slice(&r);
    }

    let mut batch = Vec::with_capacity(body.len() + 21);
    batch.put_i64(0); // baseOffset: the broker assigns it
    batch.put_i32((4 + 1 + 4 + body.len()) as i32); // batchLength: epoch + magic + crc + body
    batch.put_i32(-1); // partitionLeaderEpoch
    batch.put_i8(2); // magic
    batch.put_u32(CRC32C.checksum(&body));
    batch.extend_from_slice(&body);
    batch
}

fn put_varbytes(out: &mut Vec<u8>, bytes: &[u8]) {
    varint::put(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_header_carries_length_crc_and_timestamp() {
        let headers = vec![("outbox_id", Bytes::from_static(b"r-1"))];
        let records = vec![
            Record {
                key: b"k1",
                value: b"{}",
                headers: &headers,
            },
            Record {
                key: b"k2",
                value: b"{\"a\":1}",
                headers: &[],
            },
        ];
        let batch = record_batch(&records, 1_795_867_200_123);
        let length = i32::from_be_bytes(batch[8..12].try_into().unwrap()) as usize;
        assert_eq!(length, batch.len() - 12);
        assert_eq!(batch[16], 2, "magic");
        let crc = u32::from_be_bytes(batch[17..21].try_into().unwrap());
        assert_eq!(crc, CRC32C.checksum(&batch[21..]));
        assert_eq!(
            i32::from_be_bytes(batch[23..27].try_into().unwrap()),
            1,
            "lastOffsetDelta"
        );
        assert_eq!(
            i64::from_be_bytes(batch[27..35].try_into().unwrap()),
            1_795_867_200_123
        );
        assert_eq!(
            i32::from_be_bytes(batch[57..61].try_into().unwrap()),
            2,
            "record count"
        );
        // CRC-32C check value of "123456789".
        assert_eq!(CRC32C.checksum(b"123456789"), 0xe306_9283);
    }
}
