//! The Kafka producer: the only module that knows samsa.
//!
//! samsa 0.1.8 gives us the wire protocol (request headers, metadata and
//! list-offsets request and response types, SASL requests). What it lacks
//! for an outbox we add here, on its public types: acks=all with the reply
//! actually read and parsed (samsa's `produce()` only reads a reply when
//! `required_acks > 0`, so -1 would leave it on the socket), correlation-id
//! checks, one owner per socket and frames of a bounded length
//! ([`connection`]), record batches with a timestamp we know
//! ([`produce_request`]), produce responses that keep every error code
//! ([`produce_response`], [`error_code`]), Kafka's default partitioner
//! ([`partitioner`]), per partition results with each failure told apart as
//! the message's fault or the cluster's ([`Blame`]), a partition map that is
//! fetched again after any failure, after [`ProducerSettings::metadata_max_age`]
//! and whenever a partition has no leader, pooled connections dialled again
//! after idling ([`pool`]) and a dead pooled one retried once, batches split
//! so no partition's record batch exceeds the broker's size limit, and a
//! batch refused for a message's fault sent again message by message.

pub mod auth;
pub mod connection;
pub mod error_code;
pub mod fetch;
pub mod partitioner;
pub mod pool;
pub mod produce_request;
pub mod produce_response;
mod reader;
pub mod varint;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use samsa::prelude::protocol::{
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
};
use samsa::prelude::{BrokerAddress, KafkaCode};
use tokio::sync::Mutex;

use auth::KafkaAuth;
use connection::{Connection, CLIENT_ID};
pub use error_code::ErrorCode;
use pool::Pool;
use produce_request::{ProduceRequest, Record};
use produce_response::PartitionAnswer;

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
    Topic { topic: String, code: ErrorCode },
    #[error("partition {partition}: broker error {code:?}")]
    Partition { partition: i32, code: ErrorCode },
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
    Message { retriable: bool },
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

/// Whether a partition's result calls for a new partition map: any failure
/// does. A leader that moved or died, a partition without a leader, a topic
/// made again, an error the map cannot explain: the next send asks the
/// cluster again rather than trust what it knew.
fn needs_refresh(result: &Result<Delivery, KafkaError>) -> bool {
    result.is_err()
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

/// Kafka's `metadata.max.age.ms` default: 5 minutes.
pub const METADATA_MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// A little under Kafka's `connections.max.idle.ms` (9 minutes in its
/// clients, 10 on its brokers, which then close the connection).
pub const CONNECTION_MAX_IDLE: Duration = Duration::from_secs(8 * 60);

/// How long a producer trusts what it learned (Kafka's producer settings of
/// the same purpose in the constants' docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSettings {
    /// The partition map is fetched again once it is this old, so that
    /// partitions added to the topic are used ([`METADATA_MAX_AGE`]).
    pub metadata_max_age: Duration,
    /// A pooled connection idle for longer is closed and dialled again
    /// instead of reused ([`CONNECTION_MAX_IDLE`]): brokers (and MSK) close
    /// idle connections, and a send on a closed one fails.
    pub connection_max_idle: Duration,
}

impl Default for ProducerSettings {
    fn default() -> ProducerSettings {
        ProducerSettings {
            metadata_max_age: METADATA_MAX_AGE,
            connection_max_idle: CONNECTION_MAX_IDLE,
        }
    }
}

/// Where the topic's partitions live, as one metadata response said.
struct Cluster {
    /// Leader broker id per partition index; `None` for a partition that
    /// has no leader (leader -1), or one that is not in the broker list.
    leaders: Vec<Option<i32>>,
    brokers: HashMap<i32, BrokerAddress>,
    /// When the metadata was fetched.
    fetched_at: Instant,
    /// Every partition has a leader and no error: only such a map is kept
    /// for later sends. One with a gap serves the send that fetched it (the
    /// partitions that have a leader are sent to) and is fetched again for
    /// the next.
    complete: bool,
}

impl Cluster {
    fn partitions(&self) -> i32 {
        self.leaders.len() as i32
    }

    /// Whether this map may serve a send at `now`: complete, and younger
    /// than `max_age`.
    fn reusable(&self, now: Instant, max_age: Duration) -> bool {
        self.complete && now.saturating_duration_since(self.fetched_at) < max_age
    }

    /// The leader of `partition`, or LEADER_NOT_AVAILABLE for this
    /// partition when it has none.
    fn leader(&self, partition: i32) -> Result<i32, KafkaError> {
        match self.leaders.get(partition as usize) {
            Some(Some(leader)) => Ok(*leader),
            Some(None) => Err(KafkaError::Partition {
                partition,
                code: ErrorCode::LEADER_NOT_AVAILABLE,
            }),
            None => Err(KafkaError::Protocol(format!(
                "no partition {partition} in the metadata"
            ))),
        }
    }

    fn address(&self, broker: i32) -> Result<BrokerAddress, KafkaError> {
        self.brokers
            .get(&broker)
            .cloned()
            .ok_or_else(|| KafkaError::Protocol(format!("leader {broker} is not in the metadata")))
    }
}

/// A producer for one topic, safe to share between tasks.
pub struct Producer {
    topic: String,
    bootstrap: Vec<BrokerAddress>,
    /// How every connection logs in (see [`auth`]).
    auth: KafkaAuth,
    settings: ProducerSettings,
    /// Largest record batch per partition per request, in bytes. Kafka's
    /// `message.max.bytes` applies to a whole batch, default 1 MB.
    max_batch_bytes: usize,
    /// The last complete partition map (see [`Cluster::complete`]).
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
        Producer::connect_with_settings(bootstrap, topic, auth, ProducerSettings::default()).await
    }

    /// [`Producer::connect_with_auth`] with other timings than Kafka's
    /// defaults (tests use short ones). Fetches the partition map once, so a
    /// producer that connects is one that reached the cluster.
    pub async fn connect_with_settings(
        bootstrap: &str,
        topic: &str,
        auth: KafkaAuth,
        settings: ProducerSettings,
    ) -> Result<Producer, KafkaError> {
        let bootstrap = parse_bootstrap(bootstrap)?;
        let producer = Producer {
            topic: topic.to_string(),
            bootstrap,
            auth,
            settings,
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
        Ok(self.cluster().await?.partitions())
    }

    /// The end offset (the next offset to be written) of every partition,
    /// from the partition leaders: how many messages a partition holds.
    pub async fn end_offsets(&self) -> Result<Vec<i64>, KafkaError> {
        let cluster = self.cluster().await?;
        let mut ends = Vec::with_capacity(cluster.leaders.len());
        for partition in 0..cluster.partitions() {
            let address = cluster.address(cluster.leader(partition)?)?;
            let mut connection = connect(&address, &self.auth).await?;
            let bytes = with_timeout(connection.call(|correlation_id| {
                let mut request = ListOffsetsRequest::new(correlation_id, CLIENT_ID, -1);
                request.add(&self.topic, partition, -1); // -1: the latest offset
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
                .find(|p| p.partition_index == partition)
                .ok_or_else(|| {
                    KafkaError::Protocol(format!("no offset for partition {partition}"))
                })?;
            if answer.error_code != KafkaCode::None {
                return Err(KafkaError::Partition {
                    partition,
                    code: answer.error_code.into(),
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
    ///
    /// A record batch the broker refuses for a message's fault (too large,
    /// invalid, corrupt: [`Blame::Message`]) does not say which of its
    /// messages is at fault, and nothing of it was stored: when it held
    /// more than one message, each is sent again alone, so each gets an
    /// answer of its own and one bad message costs the others nothing.
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
                let all: Vec<usize> = (0..messages.len()).collect();
                let mut refused_together = Vec::new();
                for round in plan(messages, &all, cluster.partitions(), self.max_batch_bytes) {
                    refused_together.extend(
                        self.send_round(&cluster, messages, &round, &mut results, deadline)
                            .await,
                    );
                }
                if !refused_together.is_empty() {
                    tracing::warn!(
                        topic = %self.topic,
                        messages = refused_together.len(),
                        "a record batch was refused for a message's fault; sending its messages one by one"
                    );
                    refused_together.sort_unstable();
                    for round in plan(messages, &refused_together, cluster.partitions(), 0) {
                        self.send_round(&cluster, messages, &round, &mut results, deadline)
                            .await;
                    }
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

    /// One request per leader broker, all in flight at once. Writes each
    /// message's result; returns the messages of batches of more than one
    /// that the broker refused for a message's fault.
    async fn send_round(
        &self,
        cluster: &Cluster,
        messages: &[Message],
        round: &[(i32, Vec<usize>)],
        results: &mut [Option<Result<Delivery, KafkaError>>],
        deadline: Option<Instant>,
    ) -> Vec<usize> {
        let mut answers = Vec::new();
        let mut by_broker: HashMap<i32, Vec<&(i32, Vec<usize>)>> = HashMap::new();
        for batch in round {
            match cluster.leader(batch.0) {
                Ok(leader) => by_broker.entry(leader).or_default().push(batch),
                // No leader known: nothing to send it to this time.
                Err(e) => answers.push((batch, Err(e))),
            }
        }
        let requests = by_broker.into_iter().map(|(broker, batches)| async move {
            let outcome = before(
                deadline,
                self.produce_to(cluster, broker, messages, &batches, deadline),
            )
            .await;
            (batches, outcome)
        });
        for (batches, outcome) in futures::future::join_all(requests).await {
            for batch in batches {
                let answer = match &outcome {
                    Err(e) => Err(e.clone()),
                    Ok((response, timestamp)) => {
                        partition_answer(response, &self.topic, batch.0, *timestamp)
                    }
                };
                answers.push((batch, answer));
            }
        }
        let (mut refresh, mut redial) = (false, false);
        let mut refused_together = Vec::new();
        for ((_, indexes), answer) in answers {
            refresh |= needs_refresh(&answer);
            redial |= matches!(answer, Err(KafkaError::Connect(_) | KafkaError::Io(_)));
            if let Err(e) = &answer {
                if matches!(e.blame(), Blame::Message { .. }) && indexes.len() > 1 {
                    refused_together.extend(indexes.iter().copied());
                }
            }
            for (i, &index) in indexes.iter().enumerate() {
                results[index] = Some(answer.clone().map(|first| Delivery {
                    offset: first.offset + i as i64,
                    ..first
                }));
            }
        }
        if refresh {
            tracing::info!(topic = %self.topic, "refreshing kafka metadata after a failed send");
            *self.cluster.lock().await = None;
        }
        if redial {
            // Idle connections may lead to a dead or demoted broker.
            self.connections.lock().await.clear();
        }
        refused_together
    }

    /// Sends one produce request to a broker and reads its acks=all reply.
    async fn produce_to(
        &self,
        cluster: &Cluster,
        broker: i32,
        messages: &[Message],
        batches: &[&(i32, Vec<usize>)],
        deadline: Option<Instant>,
    ) -> Result<(Vec<PartitionAnswer>, i64), KafkaError> {
        let pool = self.pool(broker).await;
        let address = cluster.address(broker);
        let mut lease = pool.take(|| address.clone(), &self.auth).await?;
        let timestamp = now_ms();
        let request = |correlation_id| ProduceRequest {
            correlation_id,
            client_id: CLIENT_ID,
            acks: ACKS_ALL,
            timeout_ms: deadline.map_or(PRODUCE_TIMEOUT_MS, |d| {
                let left = d.saturating_duration_since(Instant::now()).as_millis();
                left.min(PRODUCE_TIMEOUT_MS as u128) as i32
            }),
            topic: &self.topic,
            timestamp,
            partitions: batches
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
                .collect(),
        };
        // On an error the lease is dropped, not given back: the socket may
        // hold half a reply, so it is never reused.
        let bytes = match tokio::time::timeout(REQUEST_TIMEOUT, lease.connection.call(&request))
            .await
        {
            Err(_) => return Err(timed_out()),
            // A pooled connection that fails is most likely one the broker
            // closed while it idled (a restart, its idle limit): the request
            // goes once more on a new connection, so a dead socket is never
            // reported (nor spends a message's attempt). Had the broker
            // stored the first one after all, the message is stored twice,
            // as after any lost answer (at-least-once).
            Ok(Err(KafkaError::Io(error))) if lease.reused => {
                tracing::info!(broker, %error, "pooled kafka connection failed; sending again on a new one");
                lease.connection = connect(&address?, &self.auth).await?;
                lease.reused = false;
                with_timeout(lease.connection.call(&request)).await?
            }
            Ok(result) => result?,
        };
        pool.put(lease);
        Ok((produce_response::parse(bytes)?, timestamp))
    }

    async fn pool(&self, broker: i32) -> Arc<Pool> {
        self.connections
            .lock()
            .await
            .entry(broker)
            .or_insert_with(|| Arc::new(Pool::new(self.settings.connection_max_idle)))
            .clone()
    }

    /// The partition map: the cached one while it is reusable (complete
    /// and younger than the metadata max age), otherwise fetched from a
    /// bootstrap broker, and cached only if complete.
    async fn cluster(&self) -> Result<Arc<Cluster>, KafkaError> {
        let mut cached = self.cluster.lock().await;
        if let Some(cluster) = cached
            .as_ref()
            .filter(|c| c.reusable(Instant::now(), self.settings.metadata_max_age))
        {
            return Ok(cluster.clone());
        }
        let cluster = Arc::new(self.fetch_metadata().await?);
        if cluster.complete {
            *cached = Some(cluster.clone());
        } else {
            tracing::warn!(topic = %self.topic, "some partitions have no leader or an error in the metadata; fetching it again for the next send");
            *cached = None;
        }
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
        .map_err(|_| timed_out())?
}

fn timed_out() -> KafkaError {
    KafkaError::Io(format!("no answer within {REQUEST_TIMEOUT:?}"))
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

/// The partition map in a metadata response. A partition whose leader is
/// -1 (or not among the brokers) has no leader; one with an error still
/// uses its leader, if any (REPLICA_NOT_AVAILABLE: a follower is down, the
/// leader takes writes); either makes the map incomplete, so it is fetched
/// again for the next send instead of being trusted until a send fails.
fn cluster_from(response: MetadataResponse, topic: &str) -> Result<Cluster, KafkaError> {
    let found = response
        .topics
        .iter()
        .find(|t| t.name.as_ref() == topic.as_bytes())
        .ok_or_else(|| KafkaError::Topic {
            topic: topic.to_string(),
            code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
        })?;
    if found.error_code != KafkaCode::None || found.partitions.is_empty() {
        let code = if found.error_code == KafkaCode::None {
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        } else {
            found.error_code.into()
        };
        return Err(KafkaError::Topic {
            topic: topic.to_string(),
            code,
        });
    }
    let brokers: HashMap<i32, BrokerAddress> = response
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
    let mut leaders = vec![None; found.partitions.len()];
    let mut complete = true;
    for p in &found.partitions {
        let slot = leaders.get_mut(p.partition_index as usize).ok_or_else(|| {
            KafkaError::Protocol(format!(
                "partition {} out of range in metadata",
                p.partition_index
            ))
        })?;
        let known = p.leader_id >= 0 && brokers.contains_key(&p.leader_id);
        *slot = known.then_some(p.leader_id);
        complete &= known && p.error_code == KafkaCode::None;
    }
    // A partition index the response skipped has no leader either.
    complete &= leaders.iter().all(Option::is_some);
    Ok(Cluster {
        leaders,
        brokers,
        fetched_at: Instant::now(),
        complete,
    })
}

/// The broker's answer for one partition, as the first message's delivery.
fn partition_answer(
    answers: &[PartitionAnswer],
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<Delivery, KafkaError> {
    let answer = answers
        .iter()
        .find(|a| a.topic.as_ref() == topic.as_bytes() && a.partition == partition)
        .ok_or_else(|| KafkaError::Protocol(format!("no answer for partition {partition}")))?;
    if answer.error_code != ErrorCode::NONE {
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

/// Splits the messages at `indexes` (in order) into rounds of per-partition
/// batches: indexes grouped by partition in their order, each batch under
/// `max_batch_bytes` (a single larger message still travels alone, and the
/// broker's answer decides; 0 puts every message in a batch of its own).
/// Round `n` carries the `n`-th batch of every partition, so a partition's
/// batches go out in order.
fn plan(
    messages: &[Message],
    indexes: &[usize],
    partitions: i32,
    max_batch_bytes: usize,
) -> Vec<Vec<(i32, Vec<usize>)>> {
    let mut per_partition: Vec<Vec<Vec<usize>>> = vec![Vec::new(); partitions as usize];
    let mut sizes: Vec<usize> = vec![0; partitions as usize];
    for &index in indexes {
        let message = &messages[index];
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

    fn all(messages: &[Message]) -> Vec<usize> {
        (0..messages.len()).collect()
    }

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
        let rounds = plan(&messages, &all(&messages), 3, 1 << 20);
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
        let rounds = plan(&messages, &all(&messages), 3, 1000);
        let batches: Vec<Vec<usize>> = rounds
            .iter()
            .flat_map(|r| r.iter().map(|(_, b)| b.clone()))
            .collect();
        assert_eq!(batches, vec![vec![0, 1], vec![2, 3], vec![4]]);
        let oversized = plan(&[message("k", 5000)], &[0], 3, 1000);
        assert_eq!(
            oversized.len(),
            1,
            "a lone large message still goes, the broker decides"
        );
        let alone = plan(&messages, &[1, 3, 4], 3, 0);
        assert_eq!(
            alone,
            vec![
                vec![(alone[0][0].0, vec![1])],
                vec![(alone[0][0].0, vec![3])],
                vec![(alone[0][0].0, vec![4])]
            ],
            "with no room, each message goes in a batch of its own, in order"
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

    /// A metadata response for topic `t` on broker 1, one partition per
    /// `(error, leader)`.
    fn metadata(partitions: &[(KafkaCode, i32)]) -> MetadataResponse {
        use samsa::prelude::protocol::metadata::response::{Broker, Partition, Topic};
        MetadataResponse {
            brokers: vec![Broker {
                node_id: 1,
                host: Bytes::from_static(b"b-1"),
                port: 9092,
                rack: None,
            }],
            topics: vec![Topic {
                error_code: KafkaCode::None,
                name: Bytes::from_static(b"t"),
                is_internal: false,
                partitions: partitions
                    .iter()
                    .enumerate()
                    .map(|(i, (error_code, leader_id))| Partition {
                        error_code: *error_code,
                        partition_index: i as i32,
                        leader_id: *leader_id,
                        replica_nodes: vec![],
                        isr_nodes: vec![],
                    })
                    .collect(),
            }],
            ..MetadataResponse::default()
        }
    }

    #[test]
    fn a_partition_map_is_reused_only_while_complete_and_younger_than_the_max_age() {
        let max_age = Duration::from_secs(300);
        let complete = cluster_from(metadata(&[(KafkaCode::None, 1); 2]), "t").unwrap();
        let fetched = std::time::Instant::now();
        assert!(complete.reusable(fetched, max_age));
        assert!(
            !complete.reusable(fetched + max_age + Duration::from_secs(1), max_age),
            "older than the max age: fetched again, so added partitions are seen"
        );

        let leaderless = cluster_from(
            metadata(&[(KafkaCode::None, 1), (KafkaCode::LeaderNotAvailable, -1)]),
            "t",
        )
        .unwrap();
        assert!(
            !leaderless.reusable(fetched, max_age),
            "a partition without a leader: fetched again for the next send"
        );
        assert_eq!(leaderless.leader(0).unwrap(), 1);
        assert!(
            matches!(
                leaderless.leader(1),
                Err(KafkaError::Partition { partition: 1, code }) if code == ErrorCode::LEADER_NOT_AVAILABLE
            ),
            "{:?}",
            leaderless.leader(1)
        );

        let replica_down =
            cluster_from(metadata(&[(KafkaCode::ReplicaNotAvailable, 1)]), "t").unwrap();
        assert_eq!(
            replica_down.leader(0).unwrap(),
            1,
            "its leader still takes writes"
        );
        assert!(
            !replica_down.reusable(fetched, max_age),
            "a partition error: fetched again"
        );
    }

    #[test]
    fn any_failed_partition_refreshes_the_partition_map() {
        let partition = |code| KafkaError::Partition { partition: 0, code };
        for error in [
            partition(ErrorCode::NOT_LEADER_OR_FOLLOWER),
            partition(ErrorCode::MESSAGE_TOO_LARGE),
            partition(ErrorCode::NOT_ENOUGH_REPLICAS),
            partition(ErrorCode::KAFKA_STORAGE_ERROR),
            KafkaError::Topic {
                topic: "t".into(),
                code: ErrorCode::TOPIC_AUTHORIZATION_FAILED,
            },
            KafkaError::Protocol("no answer for partition 0".into()),
            KafkaError::Io("reset".into()),
        ] {
            assert!(needs_refresh(&Err(error.clone())), "{error}");
        }
        let delivered = Delivery {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            timestamp: 1,
        };
        assert!(!needs_refresh(&Ok(delivered)));
    }

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
