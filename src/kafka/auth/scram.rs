//! SASL/SCRAM-SHA-512 (RFC 5802, RFC 7677's construction with SHA-512), the
//! only SCRAM variant MSK offers.
//!
//! We name the mechanism ourselves in the handshake and start rsasl's client
//! with exactly that mechanism, so the two cannot disagree (samsa's
//! `do_sasl_v2` lets rsasl choose from the broker's whole list). rsasl checks
//! the server's final signature: a broker that does not know the password
//! cannot pretend the login succeeded.

use std::time::Duration;

use rsasl::prelude::{Mechname, SASLClient, SASLConfig};

use super::{failed, handshake, sasl_authenticate, session_lifetime};
use crate::config::Config;
use crate::kafka::error::KafkaError;
use crate::kafka::transport::Transport;

/// The SASL mechanism name sent in the handshake.
pub const MECHANISM: &str = "SCRAM-SHA-512";

/// A SCRAM user. The password never appears in `Debug` output or logs.
#[derive(Clone)]
pub struct ScramCredentials {
    /// The SCRAM user name.
    pub username: String,
    password: String,
}

impl std::fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// MSK's SCRAM secrets: a Secrets Manager secret whose string is this JSON.
#[derive(serde::Deserialize)]
struct MskSecret {
    username: String,
    password: String,
}

impl ScramCredentials {
    /// Credentials as given; nothing is checked until a broker is logged in to.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> ScramCredentials {
        ScramCredentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// From `KAFKA_SASL_USERNAME` and `KAFKA_SASL_PASSWORD`, or else from the
    /// Secrets Manager secret `KAFKA_SASL_SECRET_ARN`.
    pub async fn from_config(config: &Config) -> anyhow::Result<ScramCredentials> {
        if let (Some(username), Some(password)) =
            (&config.kafka_sasl_username, &config.kafka_sasl_password)
        {
            return Ok(ScramCredentials::new(username, password.expose()));
        }
        let Some(arn) = &config.kafka_sasl_secret_arn else {
            anyhow::bail!(
                "KAFKA_AUTH=scram needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD, or KAFKA_SASL_SECRET_ARN"
            );
        };
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let secret = aws_sdk_secretsmanager::Client::new(&shared)
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "reading the SCRAM secret {arn}: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                )
            })?;
        let text = secret
            .secret_string()
            .ok_or_else(|| anyhow::anyhow!("the SCRAM secret {arn} has no SecretString"))?;
        let parsed: MskSecret = serde_json::from_str(text).map_err(|_| {
            anyhow::anyhow!("the SCRAM secret {arn} is not JSON with `username` and `password`")
        })?;
        Ok(ScramCredentials::new(parsed.username, parsed.password))
    }
}

/// Handshake, then the SCRAM exchange: client-first, server-first,
/// client-final, server-final (verified).
pub(super) async fn authenticate(
    transport: &mut Transport,
    credentials: &ScramCredentials,
) -> Result<Option<Duration>, KafkaError> {
    handshake(transport, MECHANISM).await?;
    let config = SASLConfig::with_credentials(
        None,
        credentials.username.clone(),
        credentials.password.clone(),
    )
    .map_err(|e| failed(transport, MECHANISM, e))?;
    let mechanism = Mechname::parse(MECHANISM.as_bytes()).expect("a valid mechanism name");
    let mut session = SASLClient::new(config)
        .start_suggested(&[mechanism])
        .map_err(|e| failed(transport, MECHANISM, e))?;
    let mut input: Option<Vec<u8>> = None;
    let mut lifetime = None;
    loop {
        let mut output = Vec::new();
        let state = session
            .step(input.as_deref(), &mut output)
            .map_err(|e| failed(transport, MECHANISM, format!("the broker's answer: {e}")))?;
        if !state.has_sent_message() {
            // The server-final message was verified; nothing left to say.
            return Ok(lifetime);
        }
        let response = sasl_authenticate(transport, MECHANISM, output).await?;
        lifetime = session_lifetime(&response);
        if state.is_finished() {
            return Ok(lifetime);
        }
        input = Some(response.auth_bytes.to_vec());
    }
}
