//! The bottom layer: one socket to one broker (TCP, or TLS through [`tls`])
//! carrying Kafka's length-prefixed frames, one request at a time, each
//! answer checked against its request's correlation id. It knows nothing of
//! logins: [`super::auth`] logs in over a [`Transport`], and
//! [`super::connection`] puts the two together.
//!
//! What samsa 0.1.8 lacks and this layer adds:
//! - samsa's `TcpConnection` is `Clone`, and clones share one socket without a
//!   lock: two tasks interleaving writes would corrupt the stream. A
//!   [`Transport`] is not `Clone` and takes `&mut self`: one user at a time.
//! - samsa never checks correlation ids. Every request here gets a fresh id
//!   and the response must carry it, so a stray reply (for example one left on
//!   the socket by an acks=-1 produce through samsa's own `produce()`, which
//!   does not read it) is detected instead of being parsed as the wrong answer.
//! - Frames are read here (`read_frame`), with their length checked against
//!   [`MAX_FRAME_BYTES`] before anything is allocated. samsa's
//!   `TcpConnection::receive_response` allocates (and zeroes) whatever length
//!   the peer announces, up to 4 GiB, then waits for that many bytes; its
//!   dial resolves the host with the blocking `to_socket_addrs` and panics
//!   (`unwrap`) when the name resolves to no address. So plaintext runs on a
//!   tokio `TcpStream` of ours, with the same frame code as TLS.

pub mod tls;

use std::io;

use bytes::{Bytes, BytesMut};
use samsa::prelude::{encode::ToByte, BrokerAddress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::KafkaError;
use tls::{Tls, TlsConnection};

/// The client id brokers see in their request logs.
pub const CLIENT_ID: &str = "raffle-outbox";

/// The longest frame read from a broker: Kafka's own limit on requests
/// (`socket.request.max.bytes`, 100 MiB). The responses this client asks
/// for are far smaller (a fetch asks for 4 MiB at most); a longer length is
/// a peer that does not speak Kafka (a TLS listener read as plaintext) or a
/// hostile one, and is refused before anything is allocated.
pub const MAX_FRAME_BYTES: u32 = 100 * 1024 * 1024;

enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsConnection>),
}

/// One socket to one broker, framed and correlation-checked. Not `Clone`:
/// one owner per socket. A transport whose [`Transport::exchange`] failed
/// may hold half a frame: its owner drops it rather than use it again.
pub struct Transport {
    address: BrokerAddress,
    stream: Stream,
    next_correlation_id: i32,
}

impl Transport {
    /// Dials `address`: TCP (with `TCP_NODELAY`), then the TLS handshake
    /// when `tls` is given. No login and no timeout of its own: the caller
    /// ([`super::connection::Connection::connect`]) bounds the whole dial.
    /// Fails with [`KafkaError::Connect`] naming the broker.
    pub async fn dial(address: BrokerAddress, tls: Option<&Tls>) -> Result<Transport, KafkaError> {
        let name = format!("{}:{}", address.host, address.port);
        let stream = match tls {
            None => {
                let tcp = TcpStream::connect((address.host.as_str(), address.port))
                    .await
                    .map_err(|e| KafkaError::Connect(format!("{name}: {e}")))?;
                tcp.set_nodelay(true)
                    .map_err(|e| KafkaError::Connect(format!("{name}: {e}")))?;
                Stream::Tcp(tcp)
            }
            Some(tls) => Stream::Tls(Box::new(
                tls.connect(&address)
                    .await
                    .map_err(|e| KafkaError::Connect(format!("{name}: TLS: {e}")))?,
            )),
        };
        Ok(Transport {
            address,
            stream,
            next_correlation_id: 1,
        })
    }

    /// The broker this transport is connected to.
    pub fn broker(&self) -> &BrokerAddress {
        &self.address
    }

    /// The broker as `host:port`, for messages and logs.
    pub fn address(&self) -> String {
        format!("{}:{}", self.address.host, self.address.port)
    }

    /// Sends one request built with a fresh correlation id (never 0, wrapping
    /// back to 1) and returns the raw response frame, correlation id first,
    /// once it is checked to answer this request. One round trip; no timeout
    /// of its own. Fails with [`KafkaError::Io`] when the socket does, and
    /// [`KafkaError::Protocol`] for an answer to another request.
    pub async fn exchange<R, F>(&mut self, build: F) -> Result<Bytes, KafkaError>
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
        match &mut self.stream {
            Stream::Tcp(tcp) => write_frame(tcp, request).await,
            Stream::Tls(tls) => tls.write_frame(request).await,
        }
    }

    async fn receive(&mut self) -> io::Result<BytesMut> {
        match &mut self.stream {
            Stream::Tcp(tcp) => read_frame(tcp).await,
            Stream::Tls(tls) => tls.read_frame().await,
        }
    }
}

/// Writes one request as a Kafka frame: its length (INT32), then its bytes,
/// and flushes.
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
    use std::time::Duration;
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
            let mut transport = Transport::dial(address, None).await.unwrap();
            let answer = tokio::time::timeout(
                Duration::from_secs(10),
                transport.exchange(|id| MetadataRequest::new(id, CLIENT_ID, &["t"])),
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
