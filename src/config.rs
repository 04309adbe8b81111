//! Configuration, from the environment, with defaults for the local stack.
//!
//! The Lambda functions and the CLI read the same variables, so a setting
//! means the same thing wherever the code runs. Where DynamoDB is, is not
//! configured here: the AWS SDK's own variables (`AWS_ENDPOINT_URL_DYNAMODB`,
//! `AWS_REGION`, …) decide, so there is no separate local code path.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Every setting, each from a flag or its environment variable, with the
/// local stack's defaults. Parsing checks types and ranges
/// (`RETENTION_DAYS`, `KAFKA_AUTH`) and nothing else: whether the tables,
/// topic and credentials exist is found out on first use.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// The participants table (its stream feeds the outbox).
    #[arg(long, env = "PARTICIPANTS_TABLE", default_value = "participants")]
    pub participants_table: String,

    /// The outbox table.
    #[arg(long, env = "OUTBOX_TABLE", default_value = "outbox")]
    pub outbox_table: String,

    /// The table where `migrate` records which migrations it applied.
    #[arg(
        long,
        env = "MIGRATIONS_TABLE",
        default_value = "raffle_outbox_migrations"
    )]
    pub migrations_table: String,

    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka_bootstrap_servers: String,

    /// The topic every participant is sent to.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "test-topic")]
    pub kafka_topic: String,

    /// Sends per outbox row before it becomes FAILED.
    #[arg(long, env = "MAX_ATTEMPTS", default_value_t = 10)]
    pub max_attempts: u32,

    /// Seconds a relay owns a claimed row; after that another relay may take it.
    #[arg(long, env = "LEASE_SECONDS", default_value_t = 60)]
    pub lease_seconds: u64,

    /// Seconds a new row is left to the relay the outbox stream hands it to,
    /// before the sweep may claim it (the sweep is for retries and crashes).
    #[arg(long, env = "SWEEP_DELAY_SECONDS", default_value_t = 60)]
    pub sweep_delay_seconds: u64,

    /// Rows produced together (the outbox stream's batch size in
    /// `template.yaml` matches); a sweep claims at most 100 of them at a
    /// time (`relay::SWEEP_BATCH_MAX`). A produce request's cost on the
    /// broker is mostly per partition batch: at 1,000 the relay's producer
    /// keeps up with kcat, at 100 it made 0.8 × its rate
    /// (docs/performance.md).
    #[arg(long, env = "RELAY_BATCH_SIZE", default_value_t = 1000)]
    pub relay_batch_size: usize,

    /// Milliseconds kept back at the end of a Lambda invocation: no batch is
    /// started inside them, so the last batch's marks, the metrics line and
    /// the stream handler's answer are written before the function's timeout.
    #[arg(long, env = "DEADLINE_MARGIN_MS", default_value_t = 3_000)]
    pub deadline_margin_ms: u64,

    /// Longest a relay batch's send may take inside a Lambda invocation, in
    /// milliseconds (dial, request, the broker's acks=all wait): a batch is
    /// started only while this much is left before the margin.
    #[arg(long, env = "RELAY_SEND_TIMEOUT_MS", default_value_t = 10_000)]
    pub relay_send_timeout_ms: u64,

    /// Largest participant JSON accepted, in bytes; larger images are REJECTED
    /// (Kafka's default message.max.bytes is 1 MB; keep room for key and headers).
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 900_000)]
    pub max_message_bytes: usize,

    /// Days a DELIVERED row is kept after delivery (DynamoDB's TTL deletes it
    /// then); unset, rows are kept forever, as compliance expects. The relay
    /// writes `expires_at` with the DELIVERED mark; `raffle-outbox retention`
    /// brings rows delivered before a change of policy in line. At least 2:
    /// see [`crate::retention::MIN_DAYS`].
    #[arg(long, env = "RETENTION_DAYS", value_parser = crate::retention::parse_days)]
    pub retention_days: Option<u32>,

    /// The CloudEvents `ce_source` of every message.
    #[arg(long, env = "EVENT_SOURCE", default_value = "/raffle/participants")]
    pub event_source: String,

    /// How to log in to Kafka: none (plaintext; the local broker), tls,
    /// scram (SASL/SCRAM-SHA-512 over TLS) or iam (MSK IAM: SASL/OAUTHBEARER
    /// over TLS).
    #[arg(long, env = "KAFKA_AUTH", value_enum, default_value_t = KafkaAuthMode::None)]
    pub kafka_auth: KafkaAuthMode,

    /// SCRAM user (with KAFKA_SASL_PASSWORD).
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,

    /// SCRAM password (with KAFKA_SASL_USERNAME).
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<Secret>,

    /// SCRAM credentials from this Secrets Manager secret instead (MSK's
    /// format: JSON with `username` and `password`).
    #[arg(long, env = "KAFKA_SASL_SECRET_ARN")]
    pub kafka_sasl_secret_arn: Option<String>,

    /// Trust only the CA certificates in this PEM file for Kafka TLS
    /// (default: Mozilla's roots, which include MSK's Amazon Trust Services).
    #[arg(long, env = "KAFKA_TLS_CA_FILE")]
    pub kafka_tls_ca_file: Option<PathBuf>,

    /// The region MSK IAM tokens are signed for (default: the AWS SDK's region).
    #[arg(long, env = "KAFKA_IAM_REGION")]
    pub kafka_iam_region: Option<String>,
}

/// `KAFKA_AUTH`: see [`crate::kafka::auth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KafkaAuthMode {
    /// Plaintext, no login (the local broker).
    None,
    /// TLS, no login.
    Tls,
    /// SASL/SCRAM-SHA-512 over TLS.
    Scram,
    /// MSK IAM (SASL/OAUTHBEARER) over TLS.
    Iam,
}

/// A secret setting: kept out of `Debug` output, so out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret's text, for the one place that sends it; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl Config {
    /// The configuration from the environment alone (for the Lambda mains).
    pub fn from_env() -> Result<Config, clap::Error> {
        #[derive(clap::Parser)]
        struct Env {
            #[command(flatten)]
            config: Config,
        }
        <Env as clap::Parser>::try_parse_from(["raffle-outbox"]).map(|e| e.config)
    }

    /// [`lease_seconds`](Self::lease_seconds) as a duration.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_seconds)
    }

    /// [`deadline_margin_ms`](Self::deadline_margin_ms) as a duration.
    pub fn deadline_margin(&self) -> Duration {
        Duration::from_millis(self.deadline_margin_ms)
    }

    /// [`relay_send_timeout_ms`](Self::relay_send_timeout_ms) as a duration.
    pub fn relay_send_timeout(&self) -> Duration {
        Duration::from_millis(self.relay_send_timeout_ms)
    }
}

/// DynamoDB and DynamoDB Streams clients, configured the AWS SDK's standard
/// way (region, credentials and endpoint from the environment).
pub async fn aws_clients() -> (aws_sdk_dynamodb::Client, aws_sdk_dynamodbstreams::Client) {
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    (
        aws_sdk_dynamodb::Client::new(&shared),
        aws_sdk_dynamodbstreams::Client::new(&shared),
    )
}

/// Points the AWS SDK at DynamoDB Local unless the environment already says
/// where to go: sets `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_DYNAMODB_STREAMS`,
/// a region and dummy credentials, each only when unset. The CLI calls this
/// unless `RAFFLE_OUTBOX_TARGET=aws`; the Lambda functions never do.
///
/// Must run before any thread is started (it edits the process environment).
pub fn default_to_local_stack(dynamodb_endpoint: &str) {
    let defaults = [
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint),
        ("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", dynamodb_endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
    ];
    if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
        return;
    }
    for (name, value) in defaults {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
}
