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
//! - Frames are read here ([`read_frame`]), with their length checked against
//!   [`MAX_FRAME_BYTES`] before anything is allocated. samsa's
//!   `TcpConnection::receive_response` allocates (and zeroes) whatever length
//!   the peer announces, up to 4 GiB, then waits for that many bytes; its
//!   dial resolves the host with the blocking `to_socket_addrs` and panics
//!   (`unwrap`) when the name resolves to no address. So plaintext runs on a
//!   tokio `TcpStream` of ours, with the same frame code as TLS.

use std::io;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use samsa::prelude::{encode::ToByte, BrokerAddress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::auth::{tls::TlsConnection, KafkaAuth};
use super::KafkaError;

/// The client id brokers see in their request logs.
pub const CLIENT_ID: &str = "raffle-outbox";

/// The longest frame read from a broker: Kafka's own limit on requests
/// (`socket.request.max.bytes`, 100 MiB). The responses this client asks
/// for are far smaller (a fetch asks for 4 MiB at most); a longer length is
/// a peer that does not speak Kafka (a TLS listener read as plaintext) or a
/// hostile one, and is refused before anything is allocated.
pub const MAX_FRAME_BYTES: u32 = 100 * 1024 * 1024;

/// How long dialling a broker (TCP, TLS and login) may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The share of a SASL session's lifetime after which the connection is
/// re-dialled, so it never meets the broker's deadline mid-request.
const REAUTHENTICATE_AFTER: f64 = 0.8;

enum Transport {
    Tcp(TcpStream),
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
            None => {
                let tcp = TcpStream::connect((address.host.as_str(), address.port))
                    .await
                    .map_err(|e| KafkaError::Connect(format!("{name}: {e}")))?;
                tcp.set_nodelay(true)
                    .map_err(|e| KafkaError::Connect(format!("{name}: {e}")))?;
                Transport::Tcp(tcp)
            }
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

    async fn send<R: ToByte + Send + Sync>(&mut self, request: &R) -> io::Result<()> {
        match &mut self.transport {
            Transport::Tcp(tcp) => write_frame(tcp, request).await,
            Transport::Tls(tls) => tls.write_frame(request).await,
        }
    }

    async fn receive(&mut self) -> io::Result<BytesMut> {
        match &mut self.transport {
            Transport::Tcp(tcp) => read_frame(tcp).await,
            Transport::Tls(tls) => tls.read_frame().await,
        }
    }
}

/// Writes one request as a Kafka frame: its length (INT32), then its bytes.
pub(super) async fn write_frame<S, R>(stream: &mut S, request: &R) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
    R: ToByte,
{
    let mut buffer = vec![0u8; 4];
    request
        .encode(&mut buffer)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:?}")))?;
    let size = (buffer.len() - 4) as u32;
    buffer[..4].copy_from_slice(&size.to_be_bytes());
    stream.write_all(&buffer).await?;
    stream.flush().await
}

/// Reads one Kafka frame: its length, checked against [`MAX_FRAME_BYTES`]
/// before the buffer is allocated, then that many bytes.
pub(super) async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<BytesMut> {
    let length = stream.read_u32().await?;
    if length > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a response frame of {length} bytes, over the {MAX_FRAME_BYTES} byte limit: \
                 not a Kafka broker (or a TLS listener read as plaintext)?"
            ),
        ));
    }
    let mut buffer = BytesMut::zeroed(length as usize);
    stream.read_exact(&mut buffer).await?;
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use samsa::prelude::protocol::MetadataRequest;
    use tokio::net::TcpListener;

    /// A peer that reads one request and answers with a length prefix of
    /// `length`, then nothing: the body never comes, and it keeps the socket
    /// open. Not a Kafka broker: a hostile or confused one.
    async fn answers_with_length(length: u32) -> BrokerAddress {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let size = socket.read_u32().await.unwrap();
            let mut request = vec![0; size as usize];
            socket.read_exact(&mut request).await.unwrap();
            socket.write_all(&length.to_be_bytes()).await.unwrap();
            std::future::pending::<()>().await;
            drop(socket);
        });
        BrokerAddress {
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_before_its_body_is_read() {
        for length in [MAX_FRAME_BYTES + 1, 1 << 30, u32::MAX] {
            let address = answers_with_length(length).await;
            let mut connection = Connection::connect(address, &KafkaAuth::None)
                .await
                .unwrap();
            let answer = tokio::time::timeout(
                Duration::from_secs(10),
                connection.call(|id| MetadataRequest::new(id, CLIENT_ID, &["t"])),
            )
            .await
            .expect("refused at once, without waiting for (or allocating) the body");
            let error = answer.unwrap_err().to_string();
            assert!(
                error.contains(&format!("frame of {length} bytes")) && error.contains("limit"),
                "{error}"
            );
        }
    }
}
