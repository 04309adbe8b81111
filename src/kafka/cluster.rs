//! Where a topic's partitions live: the bootstrap list, the one metadata
//! discovery the producer and the topic reader share, and the partition map
//! it yields ([`Cluster`]).
//!
//! Discovery ([`Cluster::discover`]) asks the bootstrap servers in their
//! order, one Metadata request for the one topic on a fresh connection
//! each, and takes the first answer. A server that cannot be dialled (within
//! [`DIAL_TIMEOUT`](super::connection::DIAL_TIMEOUT)), does not answer (within
//! [`REQUEST_TIMEOUT`](super::connection::REQUEST_TIMEOUT)) or answers
//! something unreadable is skipped for the next; an answer about the topic
//! itself (missing, not authorized) is the cluster's and ends the search,
//! since another server would say the same.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use samsa::prelude::protocol::{MetadataRequest, MetadataResponse};
use samsa::prelude::{BrokerAddress, KafkaCode};

use super::auth::KafkaAuth;
use super::connection::{bounded, Connection};
use super::error::KafkaError;
use super::error_code::ErrorCode;
use super::transport::CLIENT_ID;

/// Parses a comma-separated `host:port` list (spaces and empty entries
/// ignored; the port is what follows the last colon). Refuses an entry
/// without a valid port with [`KafkaError::Connect`]. No request: nothing
/// is resolved or dialled here.
pub fn parse_bootstrap(bootstrap: &str) -> Result<Vec<BrokerAddress>, KafkaError> {
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

/// Where the topic's partitions live, as one metadata response said.
pub(super) struct Cluster {
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
    /// Whether every partition has a leader and no error (see the field).
    pub(super) fn complete(&self) -> bool {
        self.complete
    }

    /// The one metadata discovery (see the module's docs): at most one dial
    /// and one Metadata request per bootstrap server, tried in order until
    /// one answers. Fails with the topic's error as soon as a server gives
    /// one, otherwise with the last server's error
    /// ([`KafkaError::Connect`] for an empty list).
    pub(super) async fn discover(
        bootstrap: &[BrokerAddress],
        topic: &str,
        auth: &KafkaAuth,
    ) -> Result<Cluster, KafkaError> {
        let mut last_error = KafkaError::Connect("no bootstrap servers".into());
        for address in bootstrap {
            match Cluster::ask(address, topic, auth).await {
                Ok(cluster) => return Ok(cluster),
                // A topic error is the cluster's answer; another server would say the same.
                Err(e @ KafkaError::Topic { .. }) => return Err(e),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// One Metadata request for `topic` to `address`, on a connection of its own.
    async fn ask(
        address: &BrokerAddress,
        topic: &str,
        auth: &KafkaAuth,
    ) -> Result<Cluster, KafkaError> {
        let mut connection = Connection::connect(address.clone(), auth).await?;
        let topics = [topic];
        let bytes = bounded(
            connection
                .call(|correlation_id| MetadataRequest::new(correlation_id, CLIENT_ID, &topics)),
        )
        .await?;
        let response = MetadataResponse::try_from(bytes)
            .map_err(|e| KafkaError::Protocol(format!("unparseable metadata response: {e:?}")))?;
        cluster_from(response, topic)
    }

    /// The number of partitions of the topic.
    pub(super) fn partitions(&self) -> i32 {
        self.leaders.len() as i32
    }

    /// Whether this map may serve a send at `now`: complete, and younger
    /// than `max_age`.
    pub(super) fn reusable(&self, now: Instant, max_age: Duration) -> bool {
        self.complete && now.saturating_duration_since(self.fetched_at) < max_age
    }

    /// The leader of `partition`, or LEADER_NOT_AVAILABLE for this
    /// partition when it has none.
    pub(super) fn leader(&self, partition: i32) -> Result<i32, KafkaError> {
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

    /// Where broker `broker` listens, or a protocol error when the metadata
    /// did not list it.
    pub(super) fn address(&self, broker: i32) -> Result<BrokerAddress, KafkaError> {
        self.brokers
            .get(&broker)
            .cloned()
            .ok_or_else(|| KafkaError::Protocol(format!("leader {broker} is not in the metadata")))
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::net::TcpListener;

    /// A server that accepts connections and closes them at once: the dial
    /// succeeds, the Metadata request fails.
    async fn hangs_up() -> BrokerAddress {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        BrokerAddress {
            host: "127.0.0.1".into(),
            port,
        }
    }

    /// A port nothing listens on (bound, then released).
    async fn refuses() -> BrokerAddress {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        BrokerAddress {
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[tokio::test]
    async fn discovery_asks_the_next_server_after_any_failure_but_a_topic_error() {
        let none = Cluster::discover(&[], "t", &KafkaAuth::None).await;
        assert!(
            matches!(&none, Err(KafkaError::Connect(e)) if e.contains("no bootstrap")),
            "{:?}",
            none.err()
        );
        // The first server is dialled but fails the request; the second is
        // asked, and its (connect) error is the one reported.
        let servers = [hangs_up().await, refuses().await];
        let error = Cluster::discover(&servers, "t", &KafkaAuth::None)
            .await
            .err()
            .expect("no server answers");
        assert!(
            matches!(&error, KafkaError::Connect(e) if e.contains(&servers[1].port.to_string())),
            "{error}"
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
}
