//! Reading the topic back: Fetch requests through our `Connection`, for
//! `verify` (the project checks its own deliveries with its own Kafka code;
//! the tests check it again with librdkafka).
//!
//! samsa 0.1.8's `FetchRequest` (v4) encodes correctly and is used as is. Its
//! `FetchResponse` parser is not used, for what we found in it:
//! - it ignores each partition's record-set size and parses batches until
//!   one fails, so with two partitions in a response it reads the second
//!   partition's header as a record batch, and a batch the broker cut short
//!   at `max_bytes` (Kafka allows that) can fail the whole response;
//! - record varints are read without zigzag decoding (it halves lengths, and
//!   offset and timestamp deltas come out doubled), and negative lengths (a
//!   null key or header value) are not told from empty ones;
//! - the batch attributes keep only the compression: whether the timestamps
//!   are LogAppendTime and whether a batch is a control batch is lost;
//! - decompression failures panic (`unwrap`).
//!
//! So this file decodes Fetch v4 responses itself: record sets bounded by
//! their size, a trailing partial batch dropped, CRC-32C checked, zigzag
//! varints, CreateTime or LogAppendTime, control batches skipped, gzip
//! batches inflated (the relay never compresses; another producer might).

use std::collections::HashMap;

use bytes::{Buf, Bytes};
use samsa::prelude::protocol::FetchRequest;
use samsa::prelude::BrokerAddress;

use super::auth::KafkaAuth;
use super::cluster::{parse_bootstrap, Cluster};
use super::connection::Connection;
use super::error::KafkaError;
use super::reader::Reader;
use super::transport::CLIENT_ID;

/// Largest response we ask a broker for, per partition and in all.
const MAX_BYTES: i32 = 4 * 1024 * 1024;
/// Kafka's OFFSET_OUT_OF_RANGE error code.
const OFFSET_OUT_OF_RANGE: i16 = 1;
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// One message as the broker stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    /// Its offset in the partition.
    pub offset: i64,
    /// ms since the epoch: CreateTime, or LogAppendTime if the topic uses it.
    pub timestamp: i64,
    /// The record key; `None` for a null key (not the same as empty).
    pub key: Option<Bytes>,
    /// The record value; `None` for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// The headers in the record's order; a null header value is `None`.
    pub headers: Vec<(String, Option<Bytes>)>,
}

impl FetchedRecord {
    /// The value of the first header named `name`, if it has one.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// What one fetch of one partition returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The offset the next produced message will get.
    pub high_watermark: i64,
    /// Whole batches from the one holding the requested offset, in order.
    pub records: Vec<FetchedRecord>,
}

/// Reads one topic's partitions from their leaders, one connection per
/// leader, owned (`&mut self`: one fetch at a time).
pub struct TopicReader {
    topic: String,
    bootstrap: Vec<BrokerAddress>,
    auth: KafkaAuth,
    cluster: Cluster,
    connections: HashMap<i32, Connection>,
}

impl TopicReader {
    /// Plaintext, no login: the local broker. Discovers the partition map
    /// at once (the shared metadata discovery: a dial and a Metadata request
    /// per bootstrap server tried) and refuses what it refuses.
    pub async fn connect(bootstrap: &str, topic: &str) -> Result<TopicReader, KafkaError> {
        TopicReader::connect_with_auth(bootstrap, topic, KafkaAuth::None).await
    }

    /// [`TopicReader::connect`] over TLS, SCRAM or MSK IAM as `auth` says.
    pub async fn connect_with_auth(
        bootstrap: &str,
        topic: &str,
        auth: KafkaAuth,
    ) -> Result<TopicReader, KafkaError> {
        let bootstrap = parse_bootstrap(bootstrap)?;
        Ok(TopicReader {
            topic: topic.to_string(),
            cluster: Cluster::discover(&bootstrap, topic, &auth).await?,
            bootstrap,
            auth,
            connections: HashMap::new(),
        })
    }

    /// The number of partitions, as the last metadata discovery said.
    pub fn partitions(&self) -> i32 {
        self.cluster.partitions()
    }

    /// Fetches `partition` from `offset`: one Fetch request (up to 4 MiB,
    /// no waiting for new records) to its leader, dialled on first use.
    /// A partition, network or protocol error drops the connections,
    /// discovers the partition map again and tries once more, so a
    /// fetch costs at most two Fetch requests and one discovery. An offset
    /// out of the partition's range is not an error: no records.
    pub async fn fetch(&mut self, partition: i32, offset: i64) -> Result<Fetched, KafkaError> {
        match self.fetch_once(partition, offset).await {
            Err(KafkaError::Protocol(_) | KafkaError::Io(_) | KafkaError::Partition { .. }) => {
                self.cluster = Cluster::discover(&self.bootstrap, &self.topic, &self.auth).await?;
                self.connections.clear();
                self.fetch_once(partition, offset).await
            }
            other => other,
        }
    }

    async fn fetch_once(&mut self, partition: i32, offset: i64) -> Result<Fetched, KafkaError> {
        let leader = self.cluster.leader(partition)?;
        if !self.connections.contains_key(&leader) {
            let address = self.cluster.address(leader)?;
            let connection = Connection::connect(address, &self.auth).await?;
            self.connections.insert(leader, connection);
        }
        let connection = self.connections.get_mut(&leader).expect("inserted above");
        let topic = self.topic.as_str();
        let answer = connection
            .call(|correlation_id| {
                let mut request = FetchRequest::new(correlation_id, CLIENT_ID, 0, 1, MAX_BYTES, 0);
                request.add(topic, partition, offset, MAX_BYTES);
                request
            })
            .await;
        match answer {
            Ok(bytes) => parse_response(bytes, topic, partition),
            Err(e) => {
                self.connections.remove(&leader);
                Err(e)
            }
        }
    }
}

/// Decodes a Fetch v4 response for one partition: its whole batches (a
/// batch cut short at the end is left out), CRC-32C checked, control
/// batches skipped, gzip inflated. Refuses other compressions, a bad CRC,
/// a broker error other than OFFSET_OUT_OF_RANGE (which yields no records)
/// and a response without the partition.
///
/// ```text
/// correlation_id throttle_time_ms [topic [partition error_code high_watermark
///   last_stable_offset [aborted_transaction] records:BYTES]]
/// ```
pub fn parse_response(bytes: Bytes, topic: &str, partition: i32) -> Result<Fetched, KafkaError> {
    let mut r = Reader(bytes);
    r.i32()?; // correlation id (checked by the connection)
    r.i32()?; // throttle time
    for _ in 0..r.i32()? {
        let name = r.string()?;
        for _ in 0..r.i32()? {
            let index = r.i32()?;
            let error_code = r.i16()?;
            let high_watermark = r.i64()?;
            r.i64()?; // last stable offset
            let aborted = r.i32()?.max(0) as usize;
            r.bytes(aborted * 16)?;
            let size = r.i32()?.max(0) as usize;
            let records = r.bytes(size)?;
            if name.as_ref() != topic.as_bytes() || index != partition {
                continue;
            }
            if error_code == OFFSET_OUT_OF_RANGE {
                // Before the log start (deleted) or past the end: no records.
                return Ok(Fetched {
                    high_watermark,
                    records: Vec::new(),
                });
            }
            if error_code != 0 {
                return Err(KafkaError::Protocol(format!(
                    "fetch {topic}/{partition}: broker error code {error_code}"
                )));
            }
            return Ok(Fetched {
                high_watermark,
                records: record_set(records)?,
            });
        }
    }
    Err(KafkaError::Protocol(format!(
        "the fetch response has no {topic}/{partition}"
    )))
}

/// The records of a record set's whole batches.
fn record_set(bytes: Bytes) -> Result<Vec<FetchedRecord>, KafkaError> {
    let mut r = Reader(bytes);
    let mut records = Vec::new();
    while r.0.len() >= 12 {
        let length = r.0.slice(8..12).get_i32() as usize;
        if r.0.len() < 12 + length {
            break; // cut short at max_bytes: fetched again from its offset
        }
        let batch = r.bytes(12 + length)?;
        record_batch(batch, &mut records)?;
    }
    Ok(records)
}

/// One record batch (magic 2): see `produce_request.rs` for the layout.
fn record_batch(bytes: Bytes, out: &mut Vec<FetchedRecord>) -> Result<(), KafkaError> {
    let mut r = Reader(bytes);
    let base_offset = r.i64()?;
    r.i32()?; // length
    r.i32()?; // partition leader epoch
    let magic = r.i8()?;
    if magic != 2 {
        return Err(KafkaError::Protocol(format!("record batch magic {magic}")));
    }
    let crc = r.i32()? as u32;
    if CRC32C.checksum(&r.0) != crc {
        return Err(KafkaError::Protocol(format!(
            "record batch at offset {base_offset} fails its CRC"
        )));
    }
    let attributes = r.i16()?;
    r.i32()?; // last offset delta
    let base_timestamp = r.i64()?;
    let max_timestamp = r.i64()?;
    r.bytes(8 + 2 + 4)?; // producer id, epoch, base sequence
    let count = r.i32()?;
    if attributes & 0x20 != 0 {
        return Ok(()); // a control batch (transaction marker): no messages
    }
    let log_append_time = attributes & 0x08 != 0;
    let mut r = match attributes & 0x07 {
        0 => r,
        1 => Reader(gunzip(&r.0)?),
        other => {
            return Err(KafkaError::Protocol(format!(
                "record batch at offset {base_offset} uses compression {other}, which verify cannot read"
            )))
        }
    };
    for _ in 0..count {
        let length = r.varint()? as usize;
        let mut rec = Reader(r.bytes(length)?);
        rec.i8()?; // attributes
        let timestamp_delta = rec.varint()?;
        let offset_delta = rec.varint()?;
        let key = rec.varbytes()?;
        let value = rec.varbytes()?;
        let mut headers = Vec::new();
        for _ in 0..rec.varint()? {
            let name = rec.varbytes()?.unwrap_or_default();
            headers.push((String::from_utf8_lossy(&name).into_owned(), rec.varbytes()?));
        }
        out.push(FetchedRecord {
            offset: base_offset + offset_delta,
            timestamp: if log_append_time {
                max_timestamp
            } else {
                base_timestamp + timestamp_delta
            },
            key,
            value,
            headers,
        });
    }
    Ok(())
}

fn gunzip(bytes: &[u8]) -> Result<Bytes, KafkaError> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out)
        .map_err(|e| KafkaError::Protocol(format!("gzip record batch: {e}")))?;
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::super::produce_request::{ProduceRequest, Record};
    use super::*;
    use samsa::prelude::encode::ToByte;

    /// A record set as a broker returns it: the batches our producer encodes,
    /// with offsets assigned (here they stay as encoded: base offset 0).
    fn batches(timestamp: i64) -> Vec<u8> {
        let headers = vec![("outbox_id", Bytes::from_static(b"row-1"))];
        let request = ProduceRequest {
            correlation_id: 1,
            client_id: "t",
            acks: -1,
            timeout_ms: 1,
            topic: "t",
            timestamp,
            partitions: vec![(
                0,
                vec![
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
                ],
            )],
        };
        let mut bytes = Vec::new();
        request.encode(&mut bytes).unwrap();
        let batch_start = bytes.len() - record_set_len(&bytes);
        bytes[batch_start..].to_vec()
    }

    /// The request ends with the record set's size (i32) and the record
    /// set: the first position where an i32 says "the rest is me".
    fn record_set_len(request: &[u8]) -> usize {
        (0..request.len() - 4)
            .find(|&i| {
                let size = i32::from_be_bytes(request[i..i + 4].try_into().unwrap());
                size > 0 && i + 4 + size as usize == request.len()
            })
            .map(|i| request.len() - i - 4)
            .unwrap()
    }

    #[test]
    fn decodes_our_own_batches() {
        let set = batches(1_795_867_200_123);
        let records = record_set(Bytes::from(set.clone())).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].offset, 0);
        assert_eq!(records[1].offset, 1);
        assert_eq!(records[1].timestamp, 1_795_867_200_123);
        assert_eq!(records[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(records[0].header("outbox_id"), Some(&b"row-1"[..]));
        assert_eq!(records[1].value.as_deref(), Some(&b"{\"a\":1}"[..]));

        // A batch cut short is left for the next fetch, not an error.
        let mut two = set.clone();
        two.extend_from_slice(&set[..set.len() - 5]);
        assert_eq!(record_set(Bytes::from(two)).unwrap().len(), 2);

        // A flipped byte fails the CRC.
        let mut bad = set.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(record_set(Bytes::from(bad)).is_err());
    }

    #[test]
    fn zigzag_varints_and_null_bytes() {
        let mut r = Reader(Bytes::from_static(&[0x01, 0x02, 0xd8, 0x04, 0x01]));
        assert_eq!(r.varint().unwrap(), -1);
        assert_eq!(r.varint().unwrap(), 1);
        assert_eq!(r.varint().unwrap(), 300);
        assert_eq!(r.varbytes().unwrap(), None);
        assert!(r.i8().is_err(), "short input is an error, not a panic");
    }
}
