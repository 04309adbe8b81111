//! How to tell that the right kind of server answers on a port (not merely *something*):
//! one request of its own protocol each, on 127.0.0.1, given up after 2 s. Used by the
//! services' life cycle ([`super::service`]) and by `stop_broker`.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Which protocol a service's readiness is checked with.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Probe {
    /// [`dynamodb_answers`].
    DynamoDb,
    /// [`kafka_answers`].
    Kafka,
}

impl Probe {
    /// Whether the server on 127.0.0.1:`port` answers this protocol now.
    pub(crate) async fn answers(self, port: u16) -> bool {
        match self {
            Probe::DynamoDb => dynamodb_answers(port).await,
            Probe::Kafka => kafka_answers(port).await,
        }
    }
}

/// Whether DynamoDB (Local) answers HTTP on 127.0.0.1:`port`.
///
/// Sends an unsigned `ListTables`; DynamoDB answers it with a 400
/// `MissingAuthenticationToken` and an `x-amzn-RequestId` header, which is enough to know it
/// is DynamoDB and that it serves requests, without credentials or an HTTP client dependency.
pub(crate) async fn dynamodb_answers(port: u16) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let request = format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Type: application/x-amz-json-1.0\r\n\
             X-Amz-Target: DynamoDB_20120810.ListTables\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(response)) => {
            let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
            text.starts_with("http/1.") && text.contains("x-amzn-requestid")
        }
        _ => false,
    }
}

/// Whether a Kafka broker answers on 127.0.0.1:`port`.
///
/// Sends an ApiVersions v0 request and checks the reply's correlation id and error code: a
/// bare TCP connect would also succeed against an unrelated server or a broker that is still
/// opening its storage.
pub(crate) async fn kafka_answers(port: u16) -> bool {
    const API_VERSIONS: i16 = 18;
    const CORRELATION_ID: i32 = 0x7261_6666;
    const CLIENT_ID: &[u8] = b"raffle-outbox-probe";
    let probe = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut body = Vec::new();
        body.extend_from_slice(&API_VERSIONS.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes()); // api version 0
        body.extend_from_slice(&CORRELATION_ID.to_be_bytes());
        body.extend_from_slice(&(CLIENT_ID.len() as i16).to_be_bytes());
        body.extend_from_slice(CLIENT_ID);
        let mut request = (body.len() as i32).to_be_bytes().to_vec();
        request.extend_from_slice(&body);
        stream.write_all(&request).await?;

        let size = stream.read_i32().await?;
        if !(6..=1 << 20).contains(&size) {
            return Ok(false);
        }
        let correlation_id = stream.read_i32().await?;
        let error_code = stream.read_i16().await?;
        Ok::<_, std::io::Error>(correlation_id == CORRELATION_ID && error_code == 0)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Ok(true))
    )
}
