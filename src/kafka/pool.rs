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
//! Ordering: two batches in flight to one partition may be stored in either
//! order, as with Kafka's `max.in.flight.requests.per.connection` > 1 without
//! idempotence. The outbox sends one message per participant (a resend is the
//! same message), so no consumer depends on the order between batches.

use std::sync::Mutex;

use samsa::prelude::BrokerAddress;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::auth::KafkaAuth;
use super::connection::Connection;
use super::KafkaError;

/// Produce requests in flight to one broker at most.
pub const MAX_IN_FLIGHT: usize = 4;

pub struct Pool {
    permits: Semaphore,
    idle: Mutex<Vec<Connection>>,
}

/// A connection taken from the pool; give it back with [`Pool::put`] after a
/// request that completed, or drop it after one that failed.
pub struct Lease<'a> {
    pub connection: Connection,
    _permit: SemaphorePermit<'a>,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool {
            permits: Semaphore::new(MAX_IN_FLIGHT),
            idle: Mutex::default(),
        }
    }
}

impl Pool {
    /// Waits for a free slot, then reuses an idle connection or dials one.
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
        let idle = self.idle.lock().expect("pool lock").pop();
        let connection = match idle {
            Some(connection) => connection,
            None => super::connect(&address()?, auth).await?,
        };
        Ok(Lease {
            connection,
            _permit: permit,
        })
    }

    /// Returns a healthy connection for the next request.
    pub fn put(&self, lease: Lease<'_>) {
        self.idle.lock().expect("pool lock").push(lease.connection);
    }
}
