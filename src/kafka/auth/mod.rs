//! Who the relay is to the broker, and how the connection is protected.
//!
//! Chosen by `KAFKA_AUTH`; each mode matches one of Amazon MSK's listeners:
//!
//! | `KAFKA_AUTH` | transport | SASL mechanism | MSK port |
//! |---|---|---|---|
//! | `none` | TCP | — | 9092 (and the local broker) |
//! | `tls` | TLS | — | 9094 |
//! | `scram` | TLS | SCRAM-SHA-512 ([`scram`]) | 9096 |
//! | `iam` | TLS | OAUTHBEARER with an MSK IAM token ([`oauthbearer`]) | 9098 |
//!
//! TLS ([`Tls`], from `kafka::transport::tls`) trusts Mozilla's root
//! certificates (MSK's brokers present certificates that chain to Amazon
//! Trust Services) or, with `KAFKA_TLS_CA_FILE`, only the CAs in that PEM
//! file.
//!
//! What samsa 0.1.8 offers here and why we do not use it: its `TlsConnection`
//! insists on a client certificate and key (it loads them unconditionally and
//! calls `with_client_auth_cert`), so it cannot open the server-authenticated
//! TLS that SCRAM and IAM run over; its `do_sasl_v2` always starts with
//! SCRAM-SHA-256 (MSK offers only SCRAM-SHA-512, so every login costs a refused
//! handshake and a second connection), then lets rsasl pick "the best"
//! mechanism from the broker's whole list, which can differ from the one it
//! announced in the handshake; it sends every SASL request with the same
//! correlation id and panics (`expect`) on a server message it cannot verify;
//! and it has no OAUTHBEARER. We keep samsa's SaslHandshake (v1) and
//! SaslAuthenticate (v1) request and response types and drive them through
//! a `Transport`, which numbers and checks every request; the SCRAM
//! arithmetic is rsasl's, the crate samsa itself uses. This module sits
//! between the transport below and `connection` above, which dials
//! and then logs in through `KafkaAuth::authenticate`.
//!
//! Sessions end: a broker that supports re-authentication (KIP-368, as MSK
//! does) answers SaslAuthenticate with the session's lifetime and closes the
//! connection after it. `connection::Connection` dials again, and
//! so authenticates again with fresh credentials, once 80% of that lifetime
//! has passed.

pub mod oauthbearer;
pub mod scram;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use samsa::prelude::protocol::{
    SaslAuthenticationRequest, SaslAuthenticationResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use samsa::prelude::KafkaCode;

use super::error::KafkaError;
pub use super::transport::tls::Tls;
use super::transport::{Transport, CLIENT_ID};
use crate::config::{Config, KafkaAuthMode};
pub use oauthbearer::TokenCache;
pub use scram::ScramCredentials;

/// How to reach and log in to the brokers. Cheap to clone: every connection
/// of a producer shares one TLS configuration and one token cache.
#[derive(Clone, Debug, Default)]
pub enum KafkaAuth {
    /// Plaintext TCP, no login: the local broker.
    #[default]
    None,
    /// TLS, no login.
    Tls(Tls),
    /// SASL/SCRAM-SHA-512 over TLS.
    Scram(Tls, ScramCredentials),
    /// SASL/OAUTHBEARER over TLS with MSK IAM tokens.
    Iam(Tls, Arc<TokenCache>),
}

impl KafkaAuth {
    /// The authentication the configuration asks for. SCRAM credentials come
    /// from `KAFKA_SASL_USERNAME`/`KAFKA_SASL_PASSWORD`, or from the Secrets
    /// Manager secret `KAFKA_SASL_SECRET_ARN` (MSK's format: a JSON object with
    /// `username` and `password`), which is how the Lambda gets them; IAM
    /// tokens are signed with the AWS SDK's credentials for `KAFKA_IAM_REGION`
    /// (default: the SDK's region).
    pub async fn from_config(config: &Config) -> anyhow::Result<KafkaAuth> {
        let tls = || -> anyhow::Result<Tls> {
            Ok(match &config.kafka_tls_ca_file {
                Some(path) => Tls::with_ca_file(path)?,
                None => Tls::webpki_roots(),
            })
        };
        Ok(match config.kafka_auth {
            KafkaAuthMode::None => KafkaAuth::None,
            KafkaAuthMode::Tls => KafkaAuth::Tls(tls()?),
            KafkaAuthMode::Scram => {
                KafkaAuth::Scram(tls()?, ScramCredentials::from_config(config).await?)
            }
            KafkaAuthMode::Iam => {
                let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                let region = match &config.kafka_iam_region {
                    Some(region) => aws_config::Region::new(region.clone()),
                    None => shared.region().cloned().ok_or_else(|| {
                        anyhow::anyhow!(
                            "KAFKA_AUTH=iam needs a region: set KAFKA_IAM_REGION or AWS_REGION"
                        )
                    })?,
                };
                let credentials = shared.credentials_provider().ok_or_else(|| {
                    anyhow::anyhow!("KAFKA_AUTH=iam needs AWS credentials (none found by the SDK)")
                })?;
                let signer = oauthbearer::MskIamSigner::new(region, credentials);
                KafkaAuth::Iam(tls()?, Arc::new(TokenCache::new(Arc::new(signer))))
            }
        })
    }

    /// The TLS settings, when the transport is TLS.
    pub fn tls(&self) -> Option<&Tls> {
        match self {
            KafkaAuth::None => None,
            KafkaAuth::Tls(tls) | KafkaAuth::Scram(tls, _) | KafkaAuth::Iam(tls, _) => Some(tls),
        }
    }

    /// Logs in on a freshly dialled connection. Returns the session's
    /// lifetime when the broker limits it (KIP-368).
    pub(super) async fn authenticate(
        &self,
        transport: &mut Transport,
    ) -> Result<Option<Duration>, KafkaError> {
        match self {
            KafkaAuth::None | KafkaAuth::Tls(_) => Ok(None),
            KafkaAuth::Scram(_, credentials) => scram::authenticate(transport, credentials).await,
            KafkaAuth::Iam(_, tokens) => oauthbearer::authenticate(transport, tokens).await,
        }
    }
}

/// An authentication failure, as the error a caller sees: the broker could
/// not be used. Retriable on purpose: a wrong password or a missing IAM
/// permission is fixed by deploying, and the rows must wait for that, not
/// become FAILED.
pub(super) fn failed(
    transport: &Transport,
    mechanism: &str,
    why: impl std::fmt::Display,
) -> KafkaError {
    KafkaError::Connect(format!(
        "{}: {mechanism} authentication failed: {why}",
        transport.address()
    ))
}

/// SaslHandshake v1: announces the mechanism; the broker answers with the
/// mechanisms it has enabled when it does not support ours.
pub(super) async fn handshake(
    transport: &mut Transport,
    mechanism: &str,
) -> Result<(), KafkaError> {
    let bytes = transport
        .exchange(|id| SaslHandshakeRequest::new(id, CLIENT_ID, mechanism.to_string()))
        .await?;
    let response = SaslHandshakeResponse::try_from(bytes)
        .map_err(|e| KafkaError::Protocol(format!("unparseable SaslHandshake response: {e:?}")))?;
    if response.error_code != KafkaCode::None {
        let offered: Vec<String> = response
            .mechanisms
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect();
        return Err(failed(
            transport,
            mechanism,
            format!(
                "the broker refused the mechanism ({:?}); it offers: {}",
                response.error_code,
                offered.join(", ")
            ),
        ));
    }
    Ok(())
}

/// One SaslAuthenticate v1 round trip. A refusal is an error carrying the
/// broker's message.
pub(super) async fn sasl_authenticate(
    transport: &mut Transport,
    mechanism: &str,
    auth_bytes: Vec<u8>,
) -> Result<SaslAuthenticationResponse, KafkaError> {
    let auth_bytes = Bytes::from(auth_bytes);
    let bytes = transport
        .exchange(|id| SaslAuthenticationRequest::new(id, CLIENT_ID, auth_bytes.clone()))
        .await?;
    let response = SaslAuthenticationResponse::try_from(bytes).map_err(|e| {
        KafkaError::Protocol(format!("unparseable SaslAuthenticate response: {e:?}"))
    })?;
    if response.error_code != KafkaCode::None {
        let message = response
            .error_message
            .as_ref()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_default();
        return Err(failed(
            transport,
            mechanism,
            format!("{:?}: {message}", response.error_code),
        ));
    }
    Ok(response)
}

/// The session lifetime a SaslAuthenticate response grants (0: unlimited).
pub(super) fn session_lifetime(response: &SaslAuthenticationResponse) -> Option<Duration> {
    (response.session_lifetime_ms > 0)
        .then(|| Duration::from_millis(response.session_lifetime_ms as u64))
}
