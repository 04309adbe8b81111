//! The Kafka producer: the only module that knows samsa.
//!
//! samsa 0.1.8 gives us the wire protocol (TCP, request headers, metadata
//! and produce response parsing). What it lacks for an outbox we add here,
//! on its public types: acks=all with the reply actually read and parsed
//! (samsa's `produce()` only reads a reply when `required_acks > 0`, so -1
//! would leave it on the socket), correlation-id checks and one owner per
//! socket ([`connection`]), record batches with a timestamp we know
//! ([`produce_request`]), Kafka's default partitioner ([`partitioner`]), per
//! partition results with retriable and fatal errors told apart, metadata
//! refresh after a leadership or topic error, and batches split so no
//! partition's record batch exceeds the broker's size limit.

pub mod auth;
pub mod connection;
pub mod fetch;
pub mod partitioner;
pub mod pool;
pub mod produce_request;
pub mod varint;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use samsa::prelude::protocol::{
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceResponse,
};
use samsa::prelude::{BrokerAddress, KafkaCode};
use tokio::sync::Mutex;

use auth::KafkaAuth;
use connection::{Connection, CLIENT_ID};
use pool::Pool;
use produce_request::{ProduceRequest, Record};

/// acks=all: the leader answers once every in-sync replica has the batch.
const ACKS_ALL: i16 = -1;
/// How long the broker may wait for the in-sync replicas.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

/// What went wrong talking to Kafka.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot connect to broker {0}")]
    Connect(String),
    #[error("network error: {0}")]
    Io(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("topic {topic}: {code:?}")]
    Topic { topic: String, code: KafkaCode },
    #[error("partition {partition}: broker error {code:?}")]
    Partition { partition: i32, code: KafkaCode },
}

impl KafkaError {
    /// Whether sending again later may succeed. Network trouble and
    /// leadership changes pass; a message the broker refuses as too large, or
    /// a corrupt one, will be refused again.
    pub fn is_retriable(&self) -> bool {
        match self {
            KafkaError::Connect(_) | KafkaError::Io(_) | KafkaError::Protocol(_) => true,
            KafkaError::Topic { code, .. } | KafkaError::Partition { code, .. } => {
                is_retriable(*code)
            }
        }
    }
}

/// Kafka's retriable error codes (the `RetriableException` subclasses).
fn is_retriable(code: KafkaCode) -> bool {
    matches!(
        code,
        KafkaCode::CorruptMessage // a CRC failure is a transport problem; the Java client retries it
            | KafkaCode::UnknownTopicOrPartition
            | KafkaCode::LeaderNotAvailable
            | KafkaCode::NotLeaderForPartition
            | KafkaCode::RequestTimedOut
            | KafkaCode::NetworkException
            | KafkaCode::NotEnoughReplicas
            | KafkaCode::NotEnoughReplicasAfterAppend
            | KafkaCode::Unknown
    )
}

/// Errors after which the partition map may be stale.
fn needs_metadata_refresh(code: KafkaCode) -> bool {
    matches!(
        code,
        KafkaCode::UnknownTopicOrPartition
            | KafkaCode::LeaderNotAvailable
            | KafkaCode::NotLeaderForPartition
    )
}

/// One message to produce.
#[derive(Debug, Clone)]
pub struct Message {
    pub key: String,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

impl Message {
    fn size(&self) -> usize {
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

/// The broker's answer for one message: where it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch: the broker's LogAppendTime when the topic
    /// uses it, otherwise the CreateTime the producer stamped on the record.
    pub timestamp: i64,
}

/// Where the topic's partitions live.
struct Cluster {
    /// Leader broker id per partition index.
    leaders: Vec<i32>,
    brokers: HashMap<i32, BrokerAddress>,
}

/// A producer for one topic, safe to share between tasks.
pub struct Producer {
    topic: String,
    bootstrap: Vec<BrokerAddress>,
    /// How every connection logs in (see [`auth`]).
    auth: KafkaAuth,
    /// Largest record batch per partition per request, in bytes. Kafka's
    /// `message.max.bytes` applies to a whole batch, default 1 MB.
    max_batch_bytes: usize,
    cluster: Mutex<Option<Arc<Cluster>>>,
    /// Connections per leader broker id (see [`pool`]).
    connections: Mutex<HashMap<i32, Arc<Pool>>>,
}

impl Producer {
    /// `bootstrap` is a comma-separated `host:port` list. Plaintext, no
    /// login: the local broker.
    pub async fn connect(bootstrap: &str, topic: &str) -> Result<Producer, KafkaError> {
        Producer::connect_with_auth(bootstrap, topic, KafkaAuth::None).await
    }

    /// [`Producer::connect`] over TLS, SCRAM or MSK IAM as `auth` says.
    pub async fn connect_with_auth(
        bootstrap: &str,
        topic: &str,
        auth: KafkaAuth,
    ) -> Result<Producer, KafkaError> {
        let bootstrap = parse_bootstrap(bootstrap)?;
        let producer = Producer {
            topic: topic.to_string(),
            bootstrap,
            auth,
            max_batch_bytes: 900 * 1024,
            cluster: Mutex::new(None),
            connections: Mutex::new(HashMap::new()),
        };
        producer.cluster().await?;
        Ok(producer)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The number of partitions of the topic.
    pub async fn partition_count(&self) -> Result<i32, KafkaError> {
        Ok(self.cluster().await?.leaders.len() as i32)
    }

    /// The end offset (the next offset to be written) of every partition,
    /// from the partition leaders: how many messages a partition holds.
    pub async fn end_offsets(&self) -> Result<Vec<i64>, KafkaError> {
        let cluster = self.cluster().await?;
        let mut ends = Vec::with_capacity(cluster.leaders.len());
        for (partition, leader) in cluster.leaders.iter().enumerate() {
            let address = cluster.brokers.get(leader).ok_or_else(|| {
                KafkaError::Protocol(format!("leader {leader} is not in the metadata"))
            })?;
            let mut connection = connect(address, &self.auth).await?;
            let bytes = with_timeout(connection.call(|correlation_id| {
                let mut request = ListOffsetsRequest::new(correlation_id, CLIENT_ID, -1);
                request.add(&self.topic, partition as i32, -1); // -1: the latest offset
                request
            }))
            .await?;
            let response = ListOffsetsResponse::try_from(bytes).map_err(|e| {
                KafkaError::Protocol(format!("unparseable list offsets response: {e:?}"))
            })?;
            let answer = response
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == partition as i32)
                .ok_or_else(|| {
                    KafkaError::Protocol(format!("no offset for partition {partition}"))
                })?;
            if answer.error_code != KafkaCode::None {
                return Err(KafkaError::Partition {
                    partition: partition as i32,
                    code: answer.error_code,
                });
            }
            ends.push(answer.offset);
        }
        Ok(ends)
    }

    /// Produces the messages with acks=all and returns one result per
    /// message, in order.
    ///
    /// Messages are placed with Kafka's default partitioner on their key.
    /// Each partition's messages go in one record batch (split only to stay
    /// under the broker's batch size limit), so they get consecutive offsets
    /// in the order given; all partitions led by one broker share a request.
    pub async fn send(&self, messages: &[Message]) -> Vec<Result<Delivery, KafkaError>> {
        self.send_before(messages, None).await
    }

    /// [`Producer::send`], answered by `deadline` when there is one: the
    /// broker is asked to answer before it (the produce request's timeout),
    /// and a metadata fetch, dial or request still unanswered then is given
    /// up, its messages failing with a retriable [`KafkaError::Io`]. Answers
    /// that came before the deadline are kept.
    pub async fn send_before(
        &self,
        messages: &[Message],
        deadline: Option<Instant>,
    ) -> Vec<Result<Delivery, KafkaError>> {
        let mut results: Vec<Option<Result<Delivery, KafkaError>>> = vec![None; messages.len()];
        match before(deadline, self.cluster()).await {
            Err(e) => return messages.iter().map(|_| Err(e.clone())).collect(),
            Ok(cluster) => {
                let rounds = plan(messages, cluster.leaders.len() as i32, self.max_batch_bytes);
                for round in rounds {
                    self.send_round(&cluster, messages, &round, &mut results, deadline)
                        .await;
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(KafkaError::Protocol("no answer for the message".into())))
            })
            .collect()
    }

    /// One request per leader broker, all in flight at once.
    async fn send_round(
        &self,
        cluster: &Cluster,
        messages: &[Message],
        round: &[(i32, Vec<usize>)],
        results: &mut [Option<Result<Delivery, KafkaError>>],
        deadline: Option<Instant>,
    ) {
        let mut by_broker: HashMap<i32, Vec<&(i32, Vec<usize>)>> = HashMap::new();
        for batch in round {
            by_broker
                .entry(cluster.leaders[batch.0 as usize])
                .or_default()
                .push(batch);
        }
        let requests = by_broker.into_iter().map(|(broker, batches)| async move {
            let outcome = before(
                deadline,
                self.produce_to(cluster, broker, messages, &batches, deadline),
            )
            .await;
            (batches, outcome)
        });
        let mut refresh = false;
        for (batches, outcome) in futures::future::join_all(requests).await {
            for (partition, indexes) in batches {
                let partition_result = match &outcome {
                    Err(e) => Err(e.clone()),
                    Ok((response, timestamp)) => {
                        partition_answer(response, &self.topic, *partition, *timestamp)
                    }
                };
                refresh |= match &partition_result {
                    Err(KafkaError::Partition { code, .. } | KafkaError::Topic { code, .. }) => {
                        needs_metadata_refresh(*code)
                    }
                    // The leader may have moved or died: ask the cluster again.
                    Err(KafkaError::Connect(_) | KafkaError::Io(_)) => true,
                    _ => false,
                };
                for (i, &index) in indexes.iter().enumerate() {
                    results[index] = Some(partition_result.clone().map(|first| Delivery {
                        offset: first.offset + i as i64,
                        ..first
                    }));
                }
            }
        }
        if refresh {
            tracing::info!(topic = %self.topic, "refreshing kafka metadata after a leadership or topic error");
            *self.cluster.lock().await = None;
            // Idle connections may lead to a dead or demoted broker.
            self.connections.lock().await.clear();
        }
    }

    /// Sends one produce request to a broker and reads its acks=all reply.
    async fn produce_to(
        &self,
        cluster: &Cluster,
        broker: i32,
        messages: &[Message],
        batches: &[&(i32, Vec<usize>)],
        deadline: Option<Instant>,
    ) -> Result<(ProduceResponse, i64), KafkaError> {
        let pool = self.pool(broker).await;
        let address = || {
            cluster.brokers.get(&broker).cloned().ok_or_else(|| {
                KafkaError::Protocol(format!("leader {broker} is not in the metadata"))
            })
        };
        let mut lease = pool.take(address, &self.auth).await?;
        let timestamp = now_ms();
        let partitions = batches
            .iter()
            .map(|(partition, indexes)| {
                let records = indexes
                    .iter()
                    .map(|&i| Record {
                        key: messages[i].key.as_bytes(),
                        value: &messages[i].value,
                        headers: &messages[i].headers,
                    })
                    .collect();
                (*partition, records)
            })
            .collect();
        let mut request = Some(ProduceRequest {
            correlation_id: 0,
            client_id: CLIENT_ID,
            acks: ACKS_ALL,
            timeout_ms: deadline.map_or(PRODUCE_TIMEOUT_MS, |d| {
                let left = d.saturating_duration_since(Instant::now()).as_millis();
                left.min(PRODUCE_TIMEOUT_MS as u128) as i32
            }),
            topic: &self.topic,
            timestamp,
            partitions,
        });
        // On an error the lease is dropped, not given back: the socket may
        // hold half a reply, so it is never reused.
        let bytes = with_timeout(lease.connection.call(|correlation_id| ProduceRequest {
            correlation_id,
            ..request.take().expect("built once")
        }))
        .await?;
        pool.put(lease);
        let response = ProduceResponse::try_from(bytes)
            .map_err(|e| KafkaError::Protocol(format!("unparseable produce response: {e:?}")))?;
        Ok((response, timestamp))
    }

    async fn pool(&self, broker: i32) -> Arc<Pool> {
        self.connections
            .lock()
            .await
            .entry(broker)
            .or_default()
            .clone()
    }

    /// The cached partition map, fetched from a bootstrap broker when absent.
    async fn cluster(&self) -> Result<Arc<Cluster>, KafkaError> {
        let mut cached = self.cluster.lock().await;
        if let Some(cluster) = cached.as_ref() {
            return Ok(cluster.clone());
        }
        let cluster = Arc::new(self.fetch_metadata().await?);
        *cached = Some(cluster.clone());
        Ok(cluster)
    }

    /// The partition map from the first bootstrap server that answers.
    async fn fetch_metadata(&self) -> Result<Cluster, KafkaError> {
        let mut last_error = KafkaError::Connect("no bootstrap servers".into());
        for address in &self.bootstrap {
            match self.metadata_from(address).await {
                Ok(cluster) => return Ok(cluster),
                // A topic error is the cluster's answer; another server would say the same.
                Err(e @ KafkaError::Topic { .. }) => return Err(e),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    async fn metadata_from(&self, address: &BrokerAddress) -> Result<Cluster, KafkaError> {
        let mut connection = connect(address, &self.auth).await?;
        let topics = [self.topic.as_str()];
        let bytes = with_timeout(
            connection
                .call(|correlation_id| MetadataRequest::new(correlation_id, CLIENT_ID, &topics)),
        )
        .await?;
        let response = MetadataResponse::try_from(bytes)
            .map_err(|e| KafkaError::Protocol(format!("unparseable metadata response: {e:?}")))?;
        cluster_from(response, &self.topic)
    }
}

/// How long a request may go unanswered before the connection is given up:
/// the broker's own produce timeout plus a margin. Without it a broker that
/// stops answering, but keeps the socket open, would hold the relay (and
/// its leases) forever.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(PRODUCE_TIMEOUT_MS as u64 + 5_000);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

async fn connect(address: &BrokerAddress, auth: &KafkaAuth) -> Result<Connection, KafkaError> {
    tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(address.clone(), auth))
        .await
        .map_err(|_| KafkaError::Connect(format!("{}:{}: timed out", address.host, address.port)))?
}

async fn with_timeout<T>(
    call: impl std::future::Future<Output = Result<T, KafkaError>>,
) -> Result<T, KafkaError> {
    tokio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .map_err(|_| KafkaError::Io(format!("no answer within {REQUEST_TIMEOUT:?}")))?
}

/// `call`, given up at `deadline` (if any) with a retriable error. What it
/// held is dropped: a connection mid-request is never reused (see [`pool`]).
async fn before<T>(
    deadline: Option<Instant>,
    call: impl std::future::Future<Output = Result<T, KafkaError>>,
) -> Result<T, KafkaError> {
    match deadline {
        None => call.await,
        Some(deadline) => tokio::time::timeout_at(deadline.into(), call)
            .await
            .map_err(|_| KafkaError::Io("no answer before the invocation's deadline".into()))?,
    }
}

fn cluster_from(response: MetadataResponse, topic: &str) -> Result<Cluster, KafkaError> {
    let found = response
        .topics
        .iter()
        .find(|t| t.name.as_ref() == topic.as_bytes())
        .ok_or_else(|| KafkaError::Topic {
            topic: topic.to_string(),
            code: KafkaCode::UnknownTopicOrPartition,
        })?;
    if found.error_code != KafkaCode::None || found.partitions.is_empty() {
        let code = if found.error_code == KafkaCode::None {
            KafkaCode::UnknownTopicOrPartition
        } else {
            found.error_code
        };
        return Err(KafkaError::Topic {
            topic: topic.to_string(),
            code,
        });
    }
    let mut leaders = vec![-1; found.partitions.len()];
    for p in &found.partitions {
        let slot = leaders.get_mut(p.partition_index as usize).ok_or_else(|| {
            KafkaError::Protocol(format!(
                "partition {} out of range in metadata",
                p.partition_index
            ))
        })?;
        *slot = p.leader_id;
    }
    let brokers = response
        .brokers
        .iter()
        .map(|b| {
            let host = String::from_utf8_lossy(&b.host).into_owned();
            (
                b.node_id,
                BrokerAddress {
                    host,
                    port: b.port as u16,
                },
            )
        })
        .collect();
    Ok(Cluster { leaders, brokers })
}

/// The broker's answer for one partition, as the first message's delivery.
fn partition_answer(
    response: &ProduceResponse,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<Delivery, KafkaError> {
    let answer = response
        .responses
        .iter()
        .filter(|r| r.name.as_ref() == topic.as_bytes())
        .flat_map(|r| r.partition_responses.iter())
        .find(|p| p.index == partition)
        .ok_or_else(|| KafkaError::Protocol(format!("no answer for partition {partition}")))?;
    if answer.error_code != KafkaCode::None {
        return Err(KafkaError::Partition {
            partition,
            code: answer.error_code,
        });
    }
    Ok(Delivery {
        topic: topic.to_string(),
        partition,
        offset: answer.base_offset,
        timestamp: if answer.log_append_time >= 0 {
            answer.log_append_time
        } else {
            timestamp
        },
    })
}

/// Splits messages into rounds of per-partition batches: message indexes
/// grouped by partition in their original order, each batch under
/// `max_batch_bytes` (a single larger message still travels alone, and the
/// broker's answer decides). Round `n` carries the `n`-th batch of every
/// partition, so a partition's batches go out in order.
fn plan(
    messages: &[Message],
    partitions: i32,
    max_batch_bytes: usize,
) -> Vec<Vec<(i32, Vec<usize>)>> {
    let mut per_partition: Vec<Vec<Vec<usize>>> = vec![Vec::new(); partitions as usize];
    let mut sizes: Vec<usize> = vec![0; partitions as usize];
    for (index, message) in messages.iter().enumerate() {
        let p = partitioner::partition_for(message.key.as_bytes(), partitions) as usize;
        let size = message.size();
        let batches = &mut per_partition[p];
        if batches.is_empty() || sizes[p] + size > max_batch_bytes && sizes[p] > 0 {
            batches.push(Vec::new());
            sizes[p] = 0;
        }
        batches.last_mut().expect("pushed above").push(index);
        sizes[p] += size;
    }
    let rounds = per_partition.iter().map(Vec::len).max().unwrap_or(0);
    (0..rounds)
        .map(|n| {
            per_partition
                .iter()
                .enumerate()
                .filter_map(|(p, batches)| batches.get(n).map(|b| (p as i32, b.clone())))
                .collect()
        })
        .collect()
}

fn parse_bootstrap(bootstrap: &str) -> Result<Vec<BrokerAddress>, KafkaError> {
    bootstrap
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|server| {
            let (host, port) = server
                .rsplit_once(':')
                .ok_or_else(|| KafkaError::Connect(format!("`{server}` is not host:port")))?;
            let port = port
                .parse()
                .map_err(|_| KafkaError::Connect(format!("`{server}` has no valid port")))?;
            Ok(BrokerAddress {
                host: host.to_string(),
                port,
            })
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(key: &str, size: usize) -> Message {
        Message {
            key: key.to_string(),
            value: Bytes::from(vec![b'x'; size]),
            headers: vec![],
        }
    }

    #[test]
    fn plan_groups_by_partition_in_order() {
        let keys = ["a", "b", "c", "d", "e", "f", "a", "b"];
        let messages: Vec<_> = keys.iter().map(|k| message(k, 10)).collect();
        let rounds = plan(&messages, 3, 1 << 20);
        assert_eq!(rounds.len(), 1);
        let mut seen = vec![];
        for (p, indexes) in &rounds[0] {
            assert!(
                indexes.windows(2).all(|w| w[0] < w[1]),
                "order kept within a partition"
            );
            for &i in indexes {
                assert_eq!(partitioner::partition_for(keys[i].as_bytes(), 3), *p);
                seen.push(i);
            }
        }
        seen.sort();
        assert_eq!(seen, (0..keys.len()).collect::<Vec<_>>());
    }

    #[test]
    fn plan_splits_batches_over_the_size_limit() {
        let messages: Vec<_> = (0..5).map(|_| message("same-key", 400)).collect();
        let rounds = plan(&messages, 3, 1000);
        let batches: Vec<Vec<usize>> = rounds
            .iter()
            .flat_map(|r| r.iter().map(|(_, b)| b.clone()))
            .collect();
        assert_eq!(batches, vec![vec![0, 1], vec![2, 3], vec![4]]);
        let oversized = plan(&[message("k", 5000)], 3, 1000);
        assert_eq!(
            oversized.len(),
            1,
            "a lone large message still goes, the broker decides"
        );
    }

    #[test]
    fn bootstrap_parsing() {
        let parsed = parse_bootstrap("127.0.0.1:9092, b-1.msk:9098").unwrap();
        assert_eq!(
            parsed[1],
            BrokerAddress {
                host: "b-1.msk".into(),
                port: 9098
            }
        );
        assert!(parse_bootstrap("nohost").is_err());
    }

    #[test]
    fn retriable_codes() {
        assert!(KafkaError::Partition {
            partition: 0,
            code: KafkaCode::NotLeaderForPartition
        }
        .is_retriable());
        assert!(!KafkaError::Partition {
            partition: 0,
            code: KafkaCode::MessageSizeTooLarge
        }
        .is_retriable());
        assert!(KafkaError::Io("reset".into()).is_retriable());
    }
}
