//! Kafka authentication against a real broker: a tansu of the test's own
//! (own directory, own ports; the shared broker is never touched).
//!
//! What tansu 0.6.0 can do: SASL with SCRAM-SHA-256/512 (`--authentication`,
//! users made with `tansu user create`) and PLAIN; it accepts `--cert` and
//! `--key` but never uses them (its broker builds a TLS acceptor and drops
//! it: every listener is plaintext), and it has no token validator for
//! OAUTHBEARER. So TLS is provided here by a small TLS-terminating proxy in
//! front of the broker (rustls, a CA and a `localhost` certificate made by the
//! test), which the broker advertises as its address: the producer's TLS,
//! and SCRAM over that TLS, run end to end as they would against MSK's 9094
//! and 9096 listeners. The messages are then read back with librdkafka from
//! the same broker restarted without authentication.

mod common;

use common::broker::Broker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use raffle_outbox::kafka::auth::oauthbearer::{Token, TokenCache, TokenSource};
use raffle_outbox::kafka::auth::{KafkaAuth, ScramCredentials, Tls};
use raffle_outbox::kafka::{Message, Producer};
use raffle_outbox::local::{free_port, StackConfig};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

const TOPIC: &str = "auth-topic";
const USER: &str = "relay";
const PASSWORD: &str = "correct horse battery staple";

/// A CA, and a `localhost` certificate it signed (with its key).
fn certificates(dir: &Path) -> (PathBuf, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (ca_file, leaf.der().clone(), key)
}

/// Terminates TLS on 127.0.0.1:`port` and forwards to the broker.
async fn tls_proxy(
    port: u16,
    broker_port: u16,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) {
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut broker) = TcpStream::connect(("127.0.0.1", broker_port)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
            });
        }
    });
}

fn messages(prefix: &str) -> Vec<Message> {
    (0..3)
        .map(|i| Message {
            key: format!("{prefix}-{i}"),
            value: Bytes::from(format!("{{\"id\":\"{prefix}-{i}\",\"n\":{i}}}")),
            headers: vec![],
        })
        .collect()
}

async fn produce(bootstrap: &str, auth: KafkaAuth, prefix: &str) {
    let producer = Producer::connect_with_auth(bootstrap, TOPIC, auth)
        .await
        .unwrap_or_else(|e| panic!("{prefix}: connect: {e}"));
    for result in producer.send(&messages(prefix)).await {
        result.unwrap_or_else(|e| panic!("{prefix}: send: {e}"));
    }
}

async fn refused(bootstrap: &str, auth: KafkaAuth) -> String {
    let attempt = tokio::time::timeout(Duration::from_secs(20), async {
        let producer = Producer::connect_with_auth(bootstrap, TOPIC, auth).await?;
        producer
            .send(&messages("refused"))
            .await
            .remove(0)
            .map(drop)
    })
    .await
    .expect("a refusal is quick, not a hang");
    attempt.expect_err("refused").to_string()
}

/// A token tansu cannot check (it has no OAUTHBEARER validator).
#[derive(Debug)]
struct Unverifiable;

#[async_trait::async_trait]
impl TokenSource for Unverifiable {
    async fn sign(&self) -> Result<Token, String> {
        Ok(Token {
            value: "bm90LWEtcmVhbC10b2tlbg".into(),
            expires_at: SystemTime::now() + Duration::from_secs(900),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_scram_against_a_real_broker() {
    // The shared stack is only used for its installed tansu binary.
    let stack = StackConfig::from_env();
    raffle_outbox::local::up(&stack).await.expect("local stack");
    let mut broker = Broker::new(&stack);
    let (ca_file, cert, key) = certificates(&broker.dir);
    let (broker_port, proxy_port) = (broker.port, free_port().unwrap());
    let through_tls = format!("localhost:{proxy_port}");
    let advertised_tls = format!("tcp://localhost:{proxy_port}");
    tls_proxy(proxy_port, broker_port, cert, key).await;
    let tls = Tls::with_ca_file(&ca_file).unwrap();

    // Without authentication: the topic, the SCRAM user, TLS alone.
    broker.start_with(&advertised_tls, &[]).await;
    broker.create_topic(TOPIC, 3).await;
    broker
        .cli(&["user", "create", USER, PASSWORD, "--mechanism", "scram512"])
        .await;
    produce(&through_tls, KafkaAuth::Tls(tls.clone()), "tls").await;
    let untrusted = refused(&through_tls, KafkaAuth::Tls(Tls::webpki_roots())).await;
    assert!(
        untrusted.contains("TLS") && untrusted.contains("certificate"),
        "{untrusted}"
    );
    let plaintext_to_tls = refused(&through_tls, KafkaAuth::None).await;
    assert!(!plaintext_to_tls.is_empty());
    broker.stop().await;

    // With authentication: SCRAM-SHA-512 over TLS; wrong password and no
    // login refused; an OAUTHBEARER exchange the broker cannot validate.
    broker
        .start_with(&advertised_tls, &["--authentication"])
        .await;
    let scram =
        |password: &str| KafkaAuth::Scram(tls.clone(), ScramCredentials::new(USER, password));
    produce(&through_tls, scram(PASSWORD), "scram").await;
    let wrong = refused(&through_tls, scram("wrong password")).await;
    assert!(
        wrong.contains("SCRAM-SHA-512 authentication failed"),
        "{wrong}"
    );
    let anonymous = refused(&through_tls, KafkaAuth::Tls(tls.clone())).await;
    assert!(!anonymous.is_empty());
    let bearer = refused(
        &through_tls,
        KafkaAuth::Iam(
            tls.clone(),
            Arc::new(TokenCache::new(Arc::new(Unverifiable))),
        ),
    )
    .await;
    assert!(
        bearer.contains("OAUTHBEARER authentication failed"),
        "{bearer}"
    );
    println!("refusals: untrusted CA: {untrusted}\nplaintext to TLS: {plaintext_to_tls}\nwrong password: {wrong}\nno login: {anonymous}\nOAUTHBEARER: {bearer}");
    broker.stop().await;

    // Read back with librdkafka, plaintext, from the same log.
    broker.start().await;
    let records = common::read_topic(&broker.bootstrap(), TOPIC, 6);
    broker.stop().await;
    let mut keys: Vec<String> = records.iter().filter_map(|r| r.key.clone()).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["scram-0", "scram-1", "scram-2", "tls-0", "tls-1", "tls-2"],
        "each message sent over TLS and over SCRAM is stored once"
    );
}
