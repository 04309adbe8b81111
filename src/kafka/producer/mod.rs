//! The producer: acks=all sends to one topic, each message's result told
//! apart as stored ([`Delivery`]) or failed for the message's fault or the
//! cluster's ([`Blame`]).
//!
//! What it adds to samsa 0.1.8, on samsa's public types: acks=all with the
//! reply actually read and parsed (samsa's `produce()` only reads a reply
//! when `required_acks > 0`, so -1 would leave it on the socket), record
//! batches with a timestamp we know ([`super::produce_request`]), produce
//! responses that keep every error code ([`super::produce_response`]),
//! Kafka's default partitioner ([`super::partitioner`]), per partition
//! results, a partition map ([`super::cluster`]) that is fetched again after
//! any failure, after [`ProducerSettings::metadata_max_age`] and whenever a
//! partition has no leader, pooled connections dialled again after idling
//! ([`super::pool`]) and a dead pooled one retried once, batches split so no
//! partition's record batch exceeds the broker's size limit ([`plan`]), and
//! a batch refused for a message's fault sent again message by message.

mod plan;
mod round;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use samsa::prelude::protocol::{ListOffsetsRequest, ListOffsetsResponse};
use samsa::prelude::{BrokerAddress, KafkaCode};
use tokio::sync::Mutex;

use super::auth::KafkaAuth;
use super::cluster::{parse_bootstrap, Cluster};
use super::connection::{bounded, Connection};
use super::error::KafkaError;
use super::message::{Delivery, Message};
use super::pool::Pool;
use super::transport::CLIENT_ID;
use plan::plan;
use round::before;

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

/// A producer for one topic, safe to share between tasks (`&self`
/// everywhere; up to `MAX_IN_FLIGHT` (4) requests in flight per
/// broker). It promises at-least-once: a message whose result is `Ok` is
/// stored with acks=all; one whose result is `Err` may still have been
/// stored (an answer lost on the way), and sending it again may store it
/// twice. It never retries a failed message by itself, except a request
/// that failed on a reused pooled connection (sent once more on a new one)
/// and a batch refused for a message's fault (its messages sent alone).
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
    /// login: the local broker. Costs what [`Producer::connect_with_settings`] does.
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
    /// producer that connects is one that reached the cluster: one dial
    /// (and login) and one Metadata request per bootstrap server tried
    /// (see the metadata discovery in `kafka/cluster.rs`). Refuses a
    /// malformed bootstrap list, an unreachable cluster, a refused login and
    /// a topic the metadata does not have; does not refuse a topic with
    /// leaderless partitions (their sends fail until they have a leader).
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

    /// The topic every message is produced to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The number of partitions of the topic, from the cached partition map
    /// (no request while it is complete and younger than
    /// [`ProducerSettings::metadata_max_age`], otherwise a metadata discovery).
    pub async fn partition_count(&self) -> Result<i32, KafkaError> {
        Ok(self.cluster().await?.partitions())
    }

    /// The end offset (the next offset to be written) of every partition,
    /// from the partition leaders: how many messages a partition holds.
    /// Costs, per partition, a dial (and login) of its leader and one
    /// ListOffsets request on it, in turn (not pooled); fails on the first
    /// partition that has no leader or an error.
    pub async fn end_offsets(&self) -> Result<Vec<i64>, KafkaError> {
        let cluster = self.cluster().await?;
        let mut ends = Vec::with_capacity(cluster.partitions() as usize);
        for partition in 0..cluster.partitions() {
            let address = cluster.address(cluster.leader(partition)?)?;
            let mut connection = Connection::connect(address, &self.auth).await?;
            let bytes = bounded(connection.call(|correlation_id| {
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
    /// invalid, corrupt: [`Blame::Message`](super::Blame::Message)) does not say which of its
    /// messages is at fault, and nothing of it was stored: when it held
    /// more than one message, each is sent again alone, so each gets an
    /// answer of its own and one bad message costs the others nothing.
    ///
    /// Costs: a metadata discovery when the partition map is not reusable;
    /// then one Produce request per leader broker per round (usually one
    /// round; more when a partition's messages exceed the batch limit), on
    /// pooled connections (a dial when none is idle); after a refused
    /// batch, one request per message of it. Never fails as a whole: every
    /// message gets its own result.
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
        let cluster = Arc::new(Cluster::discover(&self.bootstrap, &self.topic, &self.auth).await?);
        if cluster.complete() {
            *cached = Some(cluster.clone());
        } else {
            tracing::warn!(topic = %self.topic, "some partitions have no leader or an error in the metadata; fetching it again for the next send");
            *cached = None;
        }
        Ok(cluster)
    }
}
