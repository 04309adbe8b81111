//! TLS to a broker, server-authenticated (no client certificate), as MSK's
//! TLS, SCRAM and IAM listeners expect.
//!
//! samsa's own `TlsConnection` always loads a client certificate and key, so
//! it cannot be used for these listeners. [`TlsConnection`] is a samsa
//! [`BrokerConnection`] (Kafka's length-prefixed frames over a rustls stream),
//! so samsa's requests, and samsa itself, can run over it.

use std::io::{self, BufReader};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::BytesMut;
use samsa::prelude::{encode::ToByte, BrokerAddress, BrokerConnection};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::ServerName, RootCertStore};
use tokio_rustls::{client::TlsStream, TlsConnector};

use crate::kafka::connection;

/// TLS client settings, built once and shared by every connection.
#[derive(Clone, Debug)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
}

impl Tls {
    /// Trusts Mozilla's root certificates (webpki-roots), which include
    /// Amazon Trust Services: MSK's brokers need nothing more.
    pub fn webpki_roots() -> Tls {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Tls::with_roots(roots)
    }

    /// Trusts only the CA certificates in a PEM file (a private CA, or a
    /// local test broker's self-signed certificate).
    pub fn with_ca_file(path: &Path) -> anyhow::Result<Tls> {
        let file = std::fs::File::open(path)
            .map_err(|e| anyhow::anyhow!("KAFKA_TLS_CA_FILE {}: {e}", path.display()))?;
        let mut roots = RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
            let cert =
                cert.map_err(|e| anyhow::anyhow!("KAFKA_TLS_CA_FILE {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("KAFKA_TLS_CA_FILE {}: {e}", path.display()))?;
        }
        anyhow::ensure!(
            !roots.is_empty(),
            "KAFKA_TLS_CA_FILE {} holds no PEM certificate",
            path.display()
        );
        Ok(Tls::with_roots(roots))
    }

    fn with_roots(roots: RootCertStore) -> Tls {
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Tls {
            config: Arc::new(config),
        }
    }

    /// Dials the broker and completes the TLS handshake, verifying that the
    /// certificate is valid for `address.host`.
    pub async fn connect(&self, address: &BrokerAddress) -> io::Result<TlsConnection> {
        let server_name = ServerName::try_from(address.host.clone()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{}` is not a valid TLS server name: {e}", address.host),
            )
        })?;
        let tcp = TcpStream::connect((address.host.as_str(), address.port)).await?;
        tcp.set_nodelay(true)?;
        let stream = TlsConnector::from(self.config.clone())
            .connect(server_name, tcp)
            .await?;
        Ok(TlsConnection { stream })
    }
}

/// One TLS connection to one broker. Not `Clone`: one owner per socket.
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
}

impl TlsConnection {
    /// Writes one request frame (see [`connection::write_frame`]).
    pub(crate) async fn write_frame<R: ToByte + Sync + Send>(
        &mut self,
        request: &R,
    ) -> io::Result<()> {
        connection::write_frame(&mut self.stream, request).await
    }

    /// Reads one response frame, its length capped at
    /// [`connection::MAX_FRAME_BYTES`] (see [`connection::read_frame`]).
    pub(crate) async fn read_frame(&mut self) -> io::Result<BytesMut> {
        connection::read_frame(&mut self.stream).await
    }
}

/// What samsa needs to dial a [`TlsConnection`].
#[derive(Clone, Debug)]
pub struct TlsDial {
    pub tls: Tls,
    pub address: BrokerAddress,
}

#[async_trait]
impl BrokerConnection for TlsConnection {
    type ConnConfig = TlsDial;

    async fn send_request<R: ToByte + Sync + Send>(
        &mut self,
        req: &R,
    ) -> samsa::prelude::Result<()> {
        self.write_frame(req).await.map_err(samsa_error)
    }

    async fn receive_response(&mut self) -> samsa::prelude::Result<BytesMut> {
        self.read_frame().await.map_err(samsa_error)
    }

    async fn new(dial: TlsDial) -> samsa::prelude::Result<Self> {
        dial.tls.connect(&dial.address).await.map_err(samsa_error)
    }

    async fn from_addr(dial: TlsDial, address: BrokerAddress) -> samsa::prelude::Result<Self> {
        dial.tls.connect(&address).await.map_err(samsa_error)
    }
}

fn samsa_error(e: io::Error) -> samsa::prelude::Error {
    samsa::prelude::Error::IoError(e.kind())
}
