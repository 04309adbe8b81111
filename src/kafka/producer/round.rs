//! One round of a send on the wire: a produce request per leader broker,
//! all in flight at once, and each partition's answer turned into its
//! messages' results.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::Producer;
use crate::kafka::cluster::Cluster;
use crate::kafka::connection::{bounded, timed_out, Connection, REQUEST_TIMEOUT};
use crate::kafka::error::{Blame, KafkaError};
use crate::kafka::error_code::ErrorCode;
use crate::kafka::message::{Delivery, Message};
use crate::kafka::pool::Pool;
use crate::kafka::produce_request::ProduceRequest;
use crate::kafka::produce_response::{self, PartitionAnswer};
use crate::kafka::transport::CLIENT_ID;

/// acks=all: the leader answers once every in-sync replica has the batch.
const ACKS_ALL: i16 = -1;
/// How long the broker may wait for the in-sync replicas.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
// A broker is asked to answer within the produce timeout; the connection
// waits a little longer before giving up on it.
const _: () = assert!(REQUEST_TIMEOUT.as_millis() > PRODUCE_TIMEOUT_MS as u128);

/// Whether a partition's result calls for a new partition map: any failure
/// does. A leader that moved or died, a partition without a leader, a topic
/// made again, an error the map cannot explain: the next send asks the
/// cluster again rather than trust what it knew.
fn needs_refresh(result: &Result<Delivery, KafkaError>) -> bool {
    result.is_err()
}

impl Producer {
    /// One request per leader broker, all in flight at once. Writes each
    /// message's result; returns the messages of batches of more than one
    /// that the broker refused for a message's fault.
    pub(super) async fn send_round(
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
                    let records = indexes.iter().map(|&i| messages[i].record()).collect();
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
                lease.connection = Connection::connect(address?, &self.auth).await?;
                lease.reused = false;
                bounded(lease.connection.call(&request)).await?
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
}

/// `call`, given up at `deadline` (if any) with a retriable error. What it
/// held is dropped: a connection mid-request is never reused (see [`pool`]).
pub(super) async fn before<T>(
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
