//! TLS to a broker, server-authenticated (no client certificate), as MSK's
//! TLS, SCRAM and IAM listeners expect.
//!
//! samsa's own `TlsConnection` always loads a client certificate and key, so
//! it cannot be used for these listeners. [`TlsConnection`] carries Kafka's
//! length-prefixed frames (the transport's own frame code) over a rustls
//! stream.

use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use samsa::prelude::{encode::ToByte, BrokerAddress};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::{client::TlsStream, TlsConnector};

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
    /// local test broker's self-signed certificate). Refuses a file that
    /// cannot be read, holds a malformed PEM section or no certificate at
    /// all; other PEM sections (keys) are skipped.
    pub fn with_ca_file(path: &Path) -> anyhow::Result<Tls> {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| anyhow::anyhow!("KAFKA_TLS_CA_FILE {}: {e}", path.display()))?;
        let mut roots = RootCertStore::empty();
        for cert in certs {
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
    /// certificate is valid for `address.host`. No timeout of its own (the
    /// caller bounds the dial); refuses a host that is not a valid TLS
    /// server name and a certificate the roots do not vouch for.
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
    /// Writes one request frame (see [`super::write_frame`]).
    pub(crate) async fn write_frame<R: ToByte + Sync + Send>(
        &mut self,
        request: &R,
    ) -> io::Result<()> {
        super::write_frame(&mut self.stream, request).await
    }

    /// Reads one response frame, its length capped at
    /// [`super::MAX_FRAME_BYTES`] (see [`super::read_frame`]).
    pub(crate) async fn read_frame(&mut self) -> io::Result<BytesMut> {
        super::read_frame(&mut self.stream).await
    }
}
