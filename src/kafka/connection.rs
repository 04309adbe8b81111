//! One broker connection with the request/response discipline samsa leaves to
//! its caller, logged in as [`KafkaAuth`] says.
//!
//! What samsa 0.1.8 lacks and this type adds:
//! - samsa's `TcpConnection` is `Clone`, and clones share one socket without a
//!   lock: two tasks interleaving writes would corrupt the stream. Here a
//!   connection has one user at a time (the producer's [`super::pool`]
//!   lends it out; the topic reader owns its own).
//! - samsa never checks correlation ids. Every request here gets a fresh id
//!   and the response must carry it, so a stray reply (for example one left on
//!   the socket by an acks=-1 produce through samsa's own `produce()`, which
//!   does not read it) is detected instead of being parsed as the wrong answer.
//! - A connection that failed mid-request is poisoned: the owner drops it and
//!   dials again rather than reading a half-consumed stream.
//! - Dialling is bounded ([`DIAL_TIMEOUT`]): a security group that drops
//!   packets fails the attempt instead of hanging a Lambda until its timeout.
//! - Authentication ([`super::auth`]): TLS, SCRAM or MSK IAM right after the
//!   dial, and a new dial (so a new login) before the broker ends the session.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use samsa::prelude::{encode::ToByte, BrokerAddress, BrokerConnection, TcpConnection};

use super::auth::{tls::TlsConnection, KafkaAuth};
use super::KafkaError;

/// The client id brokers see in their request logs.
pub const CLIENT_ID: &str = "raffle-outbox";

/// How long dialling a broker (TCP, TLS and login) may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The share of a SASL session's lifetime after which the connection is
/// re-dialled, so it never meets the broker's deadline mid-request.
const REAUTHENTICATE_AFTER: f64 = 0.8;

enum Transport {
    Tcp(TcpConnection),
    Tls(Box<TlsConnection>),
}

pub struct Connection {
    address: BrokerAddress,
    auth: KafkaAuth,
    transport: Transport,
    next_correlation_id: i32,
    /// When to dial again because the broker will end the SASL session.
    reauthenticate_at: Option<Instant>,
}

impl Connection {
    /// Dials the broker and logs in.
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
        let name = format!("{}:{}", address.host, address.port);
        let transport = match auth.tls() {
            None => Transport::Tcp(
                TcpConnection::new_(vec![address.clone()])
                    .await
                    .map_err(|e| KafkaError::Connect(format!("{name}: {e:?}")))?,
            ),
            Some(tls) => Transport::Tls(Box::new(
                tls.connect(&address)
                    .await
                    .map_err(|e| KafkaError::Connect(format!("{name}: TLS: {e}")))?,
            )),
        };
        let mut connection = Connection {
            address,
            auth: auth.clone(),
            transport,
            next_correlation_id: 1,
            reauthenticate_at: None,
        };
        let auth = connection.auth.clone();
        let lifetime = auth.authenticate(&mut connection).await?;
        connection.reauthenticate_at =
            lifetime.map(|l| Instant::now() + l.mul_f64(REAUTHENTICATE_AFTER));
        Ok(connection)
    }

    pub fn address(&self) -> String {
        format!("{}:{}", self.address.host, self.address.port)
    }

    /// Sends one request built with a fresh correlation id and returns the
    /// raw response, after checking that it answers this request. Dials again
    /// first when the SASL session is near its end.
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
            *self = Connection::connect(self.address.clone(), &self.auth).await?;
        }
        self.exchange(build).await
    }

    /// [`Connection::call`] without the session check: the login itself
    /// uses it.
    pub(super) async fn exchange<R, F>(&mut self, build: F) -> Result<Bytes, KafkaError>
    where
        R: ToByte + Send + Sync,
        F: FnOnce(i32) -> R,
    {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        let request = build(correlation_id);
        self.send(&request)
            .await
            .map_err(|e| KafkaError::Io(format!("send to {}: {e}", self.address())))?;
        let response = self
            .receive()
            .await
            .map_err(|e| KafkaError::Io(format!("receive from {}: {e}", self.address())))?
            .freeze();
        let answered = response
            .get(..4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if answered != Some(correlation_id) {
            return Err(KafkaError::Protocol(format!(
                "{} answered correlation id {answered:?} to request {correlation_id}",
                self.address()
            )));
        }
        Ok(response)
    }

    async fn send<R: ToByte + Send + Sync>(&mut self, request: &R) -> Result<(), String> {
        match &mut self.transport {
            Transport::Tcp(tcp) => tcp
                .send_request(request)
                .await
                .map_err(|e| format!("{e:?}")),
            Transport::Tls(tls) => tls.write_frame(request).await.map_err(|e| e.to_string()),
        }
    }

    async fn receive(&mut self) -> Result<BytesMut, String> {
        match &mut self.transport {
            Transport::Tcp(tcp) => tcp.receive_response().await.map_err(|e| format!("{e:?}")),
            Transport::Tls(tls) => tls.read_frame().await.map_err(|e| e.to_string()),
        }
    }
}
