//! One broker connection with the request/response discipline samsa leaves to
//! its caller.
//!
//! What samsa 0.1.8 lacks and this type adds:
//! - samsa's `TcpConnection` is `Clone`, and clones share one socket without a
//!   lock: two tasks interleaving writes would corrupt the stream. Here a
//!   connection is owned and used behind a `Mutex` by its owner.
//! - samsa never checks correlation ids. Every request here gets a fresh id
//!   and the response must carry it, so a stray reply (for example one left on
//!   the socket by an acks=-1 produce through samsa's own `produce()`, which
//!   does not read it) is detected instead of being parsed as the wrong answer.
//! - A connection that failed mid-request is poisoned: the owner drops it and
//!   dials again rather than reading a half-consumed stream.

use bytes::Bytes;
use samsa::prelude::{encode::ToByte, BrokerAddress, BrokerConnection, TcpConnection};

use super::KafkaError;

/// The client id brokers see in their request logs.
pub const CLIENT_ID: &str = "raffle-outbox";

pub struct Connection {
    address: BrokerAddress,
    tcp: TcpConnection,
    next_correlation_id: i32,
}

impl Connection {
    pub async fn connect(address: BrokerAddress) -> Result<Connection, KafkaError> {
        let tcp = TcpConnection::new_(vec![address.clone()])
            .await
            .map_err(|e| {
                KafkaError::Connect(format!("{}:{}: {e:?}", address.host, address.port))
            })?;
        Ok(Connection {
            address,
            tcp,
            next_correlation_id: 1,
        })
    }

    pub fn address(&self) -> String {
        format!("{}:{}", self.address.host, self.address.port)
    }

    /// Sends one request built with a fresh correlation id and returns the
    /// raw response, after checking that it answers this request.
    pub async fn call<R, F>(&mut self, build: F) -> Result<Bytes, KafkaError>
    where
        R: ToByte + Send + Sync,
        F: FnOnce(i32) -> R,
    {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        let request = build(correlation_id);
        self.tcp
            .send_request(&request)
            .await
            .map_err(|e| KafkaError::Io(format!("send to {}: {e:?}", self.address())))?;
        let response = self
            .tcp
            .receive_response()
            .await
            .map_err(|e| KafkaError::Io(format!("receive from {}: {e:?}", self.address())))?
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
}
