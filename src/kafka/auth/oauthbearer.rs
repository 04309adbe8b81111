//! SASL/OAUTHBEARER (RFC 7628, as Kafka uses it: KIP-255) with MSK IAM
//! tokens, which samsa does not have.
//!
//! The exchange: SaslHandshake v1 naming `OAUTHBEARER`, then one
//! SaslAuthenticate carrying the client's first message,
//! `n,,\x01auth=Bearer <token>\x01\x01` (GS2 header without authzid, one
//! `auth` key-value pair). The broker answers with empty bytes when it accepts
//! the token. When it does not, RFC 7628 has it send an error JSON as a
//! challenge that the client must acknowledge with a single `\x01`; Kafka then
//! fails the exchange, and we report that JSON.
//!
//! The token is a presigned `kafka-cluster:Connect` SigV4 URL, base64url, from
//! AWS's `aws-msk-iam-sasl-signer` crate, valid 15 minutes. [`TokenCache`]
//! keeps one per process and signs a new one once 80% of its lifetime has
//! passed, so connections dialled (and re-dialled when their session ends) in
//! a busy Lambda share a signature instead of signing each time.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_config::Region;
use aws_credential_types::provider::SharedCredentialsProvider;
use tokio::sync::Mutex;

use super::{failed, handshake, sasl_authenticate, session_lifetime};
use crate::kafka::error::KafkaError;
use crate::kafka::transport::Transport;

/// The SASL mechanism name sent in the handshake.
pub const MECHANISM: &str = "OAUTHBEARER";

/// The share of a token's lifetime after which a new one is signed.
const RENEW_AFTER: f64 = 0.8;

/// The client's first (and only) OAUTHBEARER message: RFC 7628's GS2
/// header without authzid and one `auth` pair carrying `token`.
pub fn client_first_message(token: &str) -> Vec<u8> {
    format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// Handshake, then the token.
pub(super) async fn authenticate(
    transport: &mut Transport,
    tokens: &TokenCache,
) -> Result<Option<Duration>, KafkaError> {
    handshake(transport, MECHANISM).await?;
    let token = tokens.token().await.map_err(|e| {
        failed(
            transport,
            MECHANISM,
            format!("signing an MSK IAM token: {e}"),
        )
    })?;
    let response = sasl_authenticate(transport, MECHANISM, client_first_message(&token)).await?;
    if !response.auth_bytes.is_empty() {
        // An RFC 7628 error challenge: acknowledge it, then report it. The
        // broker fails the exchange on the acknowledgement.
        let challenge = String::from_utf8_lossy(&response.auth_bytes).into_owned();
        let _ = sasl_authenticate(transport, MECHANISM, vec![0x01]).await;
        return Err(failed(
            transport,
            MECHANISM,
            format!("the broker refused the token: {challenge}"),
        ));
    }
    Ok(session_lifetime(&response))
}

/// A token and when it stops being valid. Its `Debug` leaves the value out:
/// whoever holds a token connects as the relay until it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The token as sent to the broker (for MSK IAM: a presigned URL, base64url).
    pub value: String,
    /// When the broker stops accepting it.
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Where tokens come from.
#[async_trait]
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    /// A new token, or why none could be made (the text is logged and
    /// becomes a login failure: retriable, the rows wait).
    async fn sign(&self) -> Result<Token, String>;
}

/// MSK IAM tokens for one region, signed with the AWS SDK's credentials
/// (in Lambda: the function role's).
pub struct MskIamSigner {
    region: Region,
    credentials: SharedCredentialsProvider,
}

impl std::fmt::Debug for MskIamSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MskIamSigner")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl MskIamSigner {
    /// A signer for `region`'s MSK clusters. Nothing is signed (nor any
    /// credential fetched) until [`TokenSource::sign`]; each signing is
    /// local (SigV4), no request to AWS beyond what the credentials
    /// provider makes to refresh its credentials.
    pub fn new(region: Region, credentials: SharedCredentialsProvider) -> MskIamSigner {
        MskIamSigner {
            region,
            credentials,
        }
    }
}

#[async_trait]
impl TokenSource for MskIamSigner {
    async fn sign(&self) -> Result<Token, String> {
        let (value, expires_ms) =
            aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(
                self.region.clone(),
                self.credentials.clone(),
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(Token {
            value,
            expires_at: UNIX_EPOCH + Duration::from_millis(expires_ms.max(0) as u64),
        })
    }
}

/// One token per process, renewed once 80% of its lifetime has passed.
#[derive(Debug)]
pub struct TokenCache {
    source: Arc<dyn TokenSource>,
    cached: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    token: Token,
    renew_at: SystemTime,
}

impl TokenCache {
    /// An empty cache over `source`: the first [`TokenCache::token`] signs.
    pub fn new(source: Arc<dyn TokenSource>) -> TokenCache {
        TokenCache {
            source,
            cached: Mutex::new(None),
        }
    }

    /// The current token: the cached one until 80% of its lifetime has
    /// passed, else a newly signed one (callers wait on one signing at a
    /// time). Fails with the source's error; a failure is not cached.
    pub async fn token(&self) -> Result<String, String> {
        self.token_at(SystemTime::now()).await
    }

    /// The cached token while `now` is before its renewal time, else a new one.
    pub async fn token_at(&self, now: SystemTime) -> Result<String, String> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| now < c.renew_at) {
            return Ok(c.token.value.clone());
        }
        let token = self.source.sign().await?;
        let lifetime = token.expires_at.duration_since(now).unwrap_or_default();
        let renew_at = now + lifetime.mul_f64(RENEW_AFTER);
        let value = token.value.clone();
        *cached = Some(Cached { token, renew_at });
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Default)]
    struct Counting {
        signed: AtomicUsize,
    }

    /// Tokens valid 900 s from the fixed epoch below, numbered.
    #[async_trait]
    impl TokenSource for Counting {
        async fn sign(&self) -> Result<Token, String> {
            let n = self.signed.fetch_add(1, Ordering::SeqCst);
            Ok(Token {
                value: format!("token-{n}"),
                expires_at: start() + Duration::from_secs(900 * (n as u64 + 1)),
            })
        }
    }

    fn start() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[tokio::test]
    async fn a_token_is_reused_until_80_percent_of_its_lifetime() {
        let source = Arc::new(Counting::default());
        let cache = TokenCache::new(source.clone());
        let at = |s: u64| start() + Duration::from_secs(s);
        assert_eq!(cache.token_at(at(0)).await.unwrap(), "token-0");
        assert_eq!(cache.token_at(at(300)).await.unwrap(), "token-0");
        assert_eq!(cache.token_at(at(719)).await.unwrap(), "token-0");
        // 720 s = 80% of 900 s: sign again.
        assert_eq!(cache.token_at(at(720)).await.unwrap(), "token-1");
        assert_eq!(source.signed.load(Ordering::SeqCst), 2);
    }

    /// A token is a bearer credential (whoever holds it connects as the
    /// relay for 15 minutes): `Debug`, so any log line, never shows it.
    #[tokio::test]
    async fn debug_output_never_shows_the_token() {
        let secret = "presigned-url-c2VjcmV0LXNpZ25hdHVyZQ";
        let token = Token {
            value: secret.to_string(),
            expires_at: start(),
        };
        let shown = format!("{token:?} {token:#?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");

        #[derive(Debug)]
        struct Fixed(Token);
        #[async_trait]
        impl TokenSource for Fixed {
            async fn sign(&self) -> Result<Token, String> {
                Ok(self.0.clone())
            }
        }
        let cache = TokenCache::new(Arc::new(Fixed(token)));
        assert_eq!(cache.token_at(start()).await.unwrap(), secret);
        let shown = format!("{cache:?} {cache:#?}");
        assert!(!shown.contains(secret), "a cache holding it: {shown}");
    }

    #[test]
    fn the_client_first_message_is_rfc_7628s() {
        assert_eq!(
            client_first_message("abc"),
            b"n,,\x01auth=Bearer abc\x01\x01".to_vec()
        );
    }
}
