//! A session with one broker: a [`Transport`] that is logged in as
//! [`KafkaAuth`] says, and dialled again (so logged in anew) before the
//! broker ends the session. The layers, bottom up:
//! [`super::transport`] (frames and correlation ids) ←
//! [`super::auth`] (the login, over a transport) ← this module.
//!
//! What it adds to samsa 0.1.8:
//! - One owner at a time: the producer's [`super::pool`] lends connections
//!   out; the topic reader owns its own.
//! - A connection that failed mid-request is poisoned: the owner drops it and
//!   dials again rather than reading a half-consumed stream.
//! - Dialling is bounded, once, by [`DIAL_TIMEOUT`] (TCP, TLS and login
//!   together): a security group that drops packets fails the attempt
//!   instead of hanging a Lambda until its timeout.
//! - Authentication right after the dial, and a new dial (so a new login)
//!   once 80% of the session lifetime the broker granted (KIP-368) has
//!   passed.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use samsa::prelude::{encode::ToByte, BrokerAddress};

use super::auth::KafkaAuth;
use super::error::KafkaError;
use super::transport::Transport;

/// How long dialling a broker may take, TCP, TLS and login together. The
/// only timeout on a dial.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one request may go unanswered before the connection is given
/// up: the producer's produce timeout (30 s, the longest a broker is asked
/// to wait) plus a margin. Without it a broker that stops answering, but
/// keeps the socket open, would hold its caller forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);

/// The share of a SASL session's lifetime after which the connection is
/// re-dialled, so it never meets the broker's deadline mid-request.
const REAUTHENTICATE_AFTER: f64 = 0.8;

/// A logged-in connection to one broker. Not `Clone`: one owner at a time;
/// drop it after a failed call (it may hold half a reply).
pub struct Connection {
    transport: Transport,
    auth: KafkaAuth,
    /// When to dial again because the broker will end the SASL session.
    reauthenticate_at: Option<Instant>,
}

impl Connection {
    /// Dials the broker and logs in, all within [`DIAL_TIMEOUT`]. Costs the
    /// login's requests: none for `none` and `tls`, a handshake and two
    /// SaslAuthenticate round trips for SCRAM, a handshake and one for IAM.
    /// Fails with [`KafkaError::Connect`]: unreachable, too slow, or the
    /// login refused.
    pub async fn connect(
        address: BrokerAddress,
        auth: &KafkaAuth,
    ) -> Result<Connection, KafkaError> {
        let name = format!("{}:{}", address.host, address.port);
        match tokio::time::timeout(DIAL_TIMEOUT, Connection::dial(address, auth)).await {
            Ok(result) => result,
            Err(_) => Err(KafkaError::Connect(format!(
                "{name}: no connection within {DIAL_TIMEOUT:?}"
            ))),
        }
    }

    async fn dial(address: BrokerAddress, auth: &KafkaAuth) -> Result<Connection, KafkaError> {
        let mut transport = Transport::dial(address, auth.tls()).await?;
        let lifetime = auth.authenticate(&mut transport).await?;
        Ok(Connection {
            transport,
            auth: auth.clone(),
            reauthenticate_at: lifetime.map(|l| Instant::now() + l.mul_f64(REAUTHENTICATE_AFTER)),
        })
    }

    /// The broker as `host:port`, for messages and logs.
    pub fn address(&self) -> String {
        self.transport.address()
    }

    /// Sends one request built with a fresh correlation id and returns the
    /// raw response, after checking that it answers this request (see
    /// [`Transport::exchange`]). Dials again first (a new login, bounded by
    /// [`DIAL_TIMEOUT`]) when the SASL session is near its end. No timeout
    /// of its own: bound it with [`bounded`].
    pub async fn call<R, F>(&mut self, build: F) -> Result<Bytes, KafkaError>
    where
        R: ToByte + Send + Sync,
        F: FnOnce(i32) -> R,
    {
        if self
            .reauthenticate_at
            .is_some_and(|at| Instant::now() >= at)
        {
            tracing::info!(broker = %self.address(), "SASL session near its end; dialling again to log in anew");
            *self = Connection::connect(self.transport.broker().clone(), &self.auth).await?;
        }
        self.transport.exchange(build).await
    }
}

/// `call` given up after [`REQUEST_TIMEOUT`] with a retriable
/// [`KafkaError::Io`] ([`timed_out`]). What it held is dropped with it.
pub async fn bounded<T>(
    call: impl Future<Output = Result<T, KafkaError>>,
) -> Result<T, KafkaError> {
    tokio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .map_err(|_| timed_out())?
}

/// The error of a request unanswered within [`REQUEST_TIMEOUT`].
pub fn timed_out() -> KafkaError {
    KafkaError::Io(format!("no answer within {REQUEST_TIMEOUT:?}"))
}
