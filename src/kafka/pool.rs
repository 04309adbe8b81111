//! Connections to one broker, so more than one produce request can be in
//! flight to it at once.
//!
//! A Kafka connection answers requests in the order it got them, and our
//! [`Connection`] is owned by one caller at a time (see [`super::connection`]).
//! Rather than pipelining several requests on one socket (which needs a
//! reader task matching replies to waiters), the producer keeps up to
//! [`MAX_IN_FLIGHT`] connections per broker, one request on each: the broker
//! works on them in parallel, and a failure poisons only its own connection.
//!
//! Idle connections age out: one unused for longer than the pool's
//! `max_idle` ([`super::ProducerSettings::connection_max_idle`]) is closed
//! rather than reused, since brokers close connections idle for
//! `connections.max.idle.ms` (10 minutes by default, MSK included). A lease
//! says whether its connection was [`Lease::reused`], so the producer can
//! send once more on a new connection when a reused one turns out dead.
//!
//! Ordering: two batches in flight to one partition may be stored in either
//! order, as with Kafka's `max.in.flight.requests.per.connection` > 1 without
//! idempotence. The outbox sends one message per participant (a resend is the
//! same message), so no consumer depends on the order between batches.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use samsa::prelude::BrokerAddress;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::auth::KafkaAuth;
use super::connection::Connection;
use super::error::KafkaError;

/// Produce requests in flight to one broker at most.
pub const MAX_IN_FLIGHT: usize = 4;

/// The connections to one broker: at most [`MAX_IN_FLIGHT`] leased at
/// once (further takers wait), idle ones kept for reuse.
pub struct Pool {
    permits: Semaphore,
    /// Connections not in use, with when they were given back.
    idle: Mutex<Vec<(Connection, Instant)>>,
    max_idle: Duration,
}

/// A connection taken from the pool; give it back with [`Pool::put`] after a
/// request that completed, or drop it after one that failed.
pub struct Lease<'a> {
    /// The connection, this lease's alone until it is put back or dropped.
    pub connection: Connection,
    /// The connection served an earlier request (it was idle in the pool),
    /// as opposed to dialled for this one.
    pub reused: bool,
    _permit: SemaphorePermit<'a>,
}

impl Pool {
    /// An empty pool whose connections are closed once idle for longer
    /// than `max_idle`.
    pub fn new(max_idle: Duration) -> Pool {
        Pool {
            permits: Semaphore::new(MAX_IN_FLIGHT),
            idle: Mutex::default(),
            max_idle,
        }
    }

    /// Waits for a free slot, then reuses the most recently used idle
    /// connection or dials one. Idle connections past `max_idle` are closed
    /// on the way. Costs a dial (and login) when no idle connection is
    /// left; fails only when that dial does (the slot is freed again).
    pub async fn take(
        &self,
        address: impl FnOnce() -> Result<BrokerAddress, KafkaError>,
        auth: &KafkaAuth,
    ) -> Result<Lease<'_>, KafkaError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| KafkaError::Connect("connection pool closed".into()))?;
        let idle = {
            let mut idle = self.idle.lock().expect("pool lock");
            idle.retain(|(connection, since)| {
                let fresh = since.elapsed() <= self.max_idle;
                if !fresh {
                    tracing::debug!(broker = %connection.address(), idle_ms = since.elapsed().as_millis() as u64, "closing a connection idle past its limit");
                }
                fresh
            });
            idle.pop().map(|(connection, _)| connection)
        };
        let reused = idle.is_some();
        let connection = match idle {
            Some(connection) => connection,
            None => Connection::connect(address()?, auth).await?,
        };
        Ok(Lease {
            connection,
            reused,
            _permit: permit,
        })
    }

    /// Returns a healthy connection for the next request.
    pub fn put(&self, lease: Lease<'_>) {
        self.idle
            .lock()
            .expect("pool lock")
            .push((lease.connection, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::net::TcpListener;

    /// A TCP listener that counts the connections made to it (no Kafka:
    /// the pool only dials and hands out sockets).
    async fn counting_listener() -> (BrokerAddress, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                open.push(socket);
            }
        });
        let address = BrokerAddress {
            host: "127.0.0.1".into(),
            port,
        };
        (address, accepted)
    }

    /// Waits (a generous second at most) until the listener has accepted
    /// `expected` connections: it counts them in a task of its own.
    async fn assert_accepted(accepted: &AtomicUsize, expected: usize) {
        for _ in 0..100 {
            if accepted.load(Ordering::SeqCst) == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            expected,
            "connections dialled"
        );
    }

    async fn take_and_put(pool: &Pool, address: &BrokerAddress) -> bool {
        let lease = pool
            .take(|| Ok(address.clone()), &KafkaAuth::None)
            .await
            .unwrap();
        let reused = lease.reused;
        pool.put(lease);
        reused
    }

    #[tokio::test]
    async fn idle_connections_are_reused_until_they_have_idled_too_long() {
        let (address, accepted) = counting_listener().await;
        let pool = Pool::new(Duration::from_secs(60));
        assert!(!take_and_put(&pool, &address).await, "dialled");
        assert!(take_and_put(&pool, &address).await, "reused");
        assert_accepted(&accepted, 1).await;

        let (address, accepted) = counting_listener().await;
        let pool = Pool::new(Duration::from_millis(50));
        assert!(!take_and_put(&pool, &address).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !take_and_put(&pool, &address).await,
            "idle too long: dialled again"
        );
        assert_accepted(&accepted, 2).await;
    }
}
