//! The event contract enforced by the broker: the local stack's tansu holds
//! `schemas/participant-registered/v1.json` for every participants topic
//! (`local::ensure_topic`), refuses a record off the contract with
//! `INVALID_RECORD`, and never refuses what capture lets through.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use raffle_outbox::kafka::{Message, Producer};
use raffle_outbox::outbox::Status;
use raffle_outbox::participant::Participant;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use serde_dynamo::{AttributeValue as Av, Item};
use time::OffsetDateTime;

/// An independent client (librdkafka) producing `value` to the test's topic:
/// the broker's own answer, whatever our producer would make of it.
async fn produce_with_librdkafka(
    env: &common::TestEnv,
    value: &str,
) -> Result<(), RDKafkaErrorCode> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &env.config.kafka_bootstrap_servers)
        .set("message.timeout.ms", "10000")
        .set("enable.idempotence", "false")
        .set("retries", "0")
        .create()
        .expect("librdkafka producer");
    producer
        .send(
            FutureRecord::to(&env.config.kafka_topic)
                .key("k")
                .payload(value),
            Duration::from_secs(10),
        )
        .await
        .map(|_| ())
        .map_err(|(error, _)| error.rdkafka_error_code().expect("a broker error code"))
}

/// The broker itself refuses a value off the contract (an independent client
/// sees INVALID_RECORD) and takes one on it; the relay marks a row whose
/// payload is off the contract (written before capture checked it) FAILED
/// with the broker's answer after one attempt, and delivers the row beside it.
#[tokio::test(flavor = "multi_thread")]
async fn the_broker_refuses_a_record_off_the_contract_and_the_relay_fails_its_row() {
    let mut env = common::env().await;
    env.config.max_attempts = 10;

    assert_eq!(
        produce_with_librdkafka(&env, r#"{"id":"p-1","tickets":1000}"#).await,
        Err(RDKafkaErrorCode::InvalidRecord)
    );
    assert_eq!(
        produce_with_librdkafka(&env, r#"{"name":"no id"}"#).await,
        Err(RDKafkaErrorCode::InvalidRecord)
    );
    assert_eq!(
        produce_with_librdkafka(&env, r#"{"id":"p-2","tickets":100}"#).await,
        Ok(())
    );

    let now = OffsetDateTime::now_utc();
    let off = common::rows::pending_with(0, now, |p| p["tickets"] = serde_json::json!(1000));
    let on = common::rows::pending(1, now);
    common::rows::seed(&env, &[off.clone(), on.clone()]).await;

    let report = common::rows::relay_with(&env, env.config.clone()).await;

    assert_eq!((report.delivered, report.failed), (1, 1), "{report:?}");
    let refused = env.outbox.get(&off.id).await.unwrap().unwrap();
    assert_eq!((refused.status, refused.attempts), (Status::Failed, 1));
    let error = refused.last_error.unwrap_or_default();
    assert!(error.contains("INVALID_RECORD"), "{error}");
    let delivered = env.outbox.get(&on.id).await.unwrap().unwrap();
    assert_eq!(delivered.status, Status::Delivered);
    // On the topic: librdkafka's accepted record and the delivered row's, nothing else.
    let records = env.read_topic(2);
    let keys: Vec<Option<&str>> = records.iter().map(|r| r.key.as_deref()).collect();
    assert_eq!(records.len(), 2, "{keys:?}");
    assert!(keys.contains(&on.participant_id.as_deref()), "{keys:?}");
}

/// Random participants of the shapes DynamoDB allows, on both sides of the
/// contract's rules: each one capture accepts is sent to the enforcing
/// broker, and the broker accepts every one of them. (The two ends hold the
/// same schema file; this holds that they also read it alike.)
#[tokio::test(flavor = "multi_thread")]
async fn what_capture_accepts_the_broker_never_refuses() {
    const PARTICIPANTS: usize = 2_000;
    let env = common::env().await;
    let mut rng = fastrand::Rng::with_seed(13);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for n in 0..PARTICIPANTS {
        let image = random_image(&mut rng, n);
        match Participant::from_image(&image, 900_000) {
            Ok(participant) => accepted.push(Message {
                key: participant.id,
                value: Bytes::from(participant.json),
                headers: Vec::new(),
            }),
            Err(_) => refused += 1,
        }
    }
    eprintln!("capture accepted {} and refused {refused}", accepted.len());
    assert!(
        accepted.len() > PARTICIPANTS / 4 && refused > PARTICIPANTS / 4,
        "the generator reaches both sides of the contract"
    );

    let producer = Producer::connect(&env.config.kafka_bootstrap_servers, &env.config.kafka_topic)
        .await
        .unwrap();
    let mut refused_by_broker = Vec::new();
    for chunk in accepted.chunks(200) {
        for (message, result) in chunk.iter().zip(producer.send(chunk).await) {
            if let Err(error) = result {
                refused_by_broker.push((message.value.clone(), error.to_string()));
            }
        }
    }
    assert_eq!(refused_by_broker, Vec::new());
    assert_eq!(env.read_topic(accepted.len()).len(), accepted.len());
}

/// A participant image: an id, and each of the contract's fields present or
/// not, of the right type or not, inside its bounds or not, plus attributes
/// the contract does not name.
fn random_image(rng: &mut fastrand::Rng, n: usize) -> Item {
    let text = |rng: &mut fastrand::Rng, max: usize| -> String {
        let pieces = ["a", "Zoë", " ", "\t", "@", ".", "🎟", "x.y", "-", "\u{a0}"];
        let len = rng.usize(0..=max);
        (0..len)
            .map(|_| pieces[rng.usize(..pieces.len())])
            .collect()
    };
    let mut item: HashMap<String, Av> = HashMap::new();
    item.insert("id".into(), Av::S(format!("p-{n}-{}", text(rng, 3))));
    if rng.bool() {
        let name = match rng.u8(0..10) {
            0 => Av::N(rng.u32(..).to_string()),
            1 => Av::S(" ".repeat(rng.usize(1..3))),
            2 => Av::S("n".repeat(rng.usize(190..210))),
            _ => Av::S(text(rng, 12)),
        };
        item.insert("name".into(), name);
    }
    if rng.bool() {
        let email = match rng.u8(0..6) {
            0 => format!("{}@example.com", text(rng, 4)),
            1 => "a@b".to_string(),
            2 => format!("{}@{}.org", "l".repeat(rng.usize(1..260)), text(rng, 3)),
            _ => format!("ada{}@example.com", rng.u16(..)),
        };
        item.insert("email".into(), Av::S(email));
    }
    if rng.bool() {
        item.insert("raffle".into(), Av::S(text(rng, 8)));
    }
    if rng.bool() {
        let tickets = match rng.u8(0..6) {
            0 => Av::N(rng.i32(-5..=0).to_string()),
            1 => Av::N(rng.i32(101..1000).to_string()),
            2 => Av::N("2.5".into()),
            3 => Av::S("3".into()),
            _ => Av::N(rng.i32(1..=100).to_string()),
        };
        item.insert("tickets".into(), tickets);
    }
    if rng.bool() {
        let at = match rng.u8(0..4) {
            0 => "yesterday".to_string(),
            _ => "2026-12-02T10:15:30.123Z".to_string(),
        };
        item.insert("registered_at".into(), Av::S(at));
    }
    if rng.bool() {
        item.insert("newsletter".into(), Av::Bool(rng.bool()));
        item.insert("photo".into(), Av::B(vec![0, 159, 255]));
        item.insert("tags".into(), Av::Ss(vec!["b".into(), "a".into()]));
        item.insert("lucky".into(), Av::Ns(vec!["7".into(), "1e40".into()]));
        item.insert(
            "address".into(),
            Av::M(HashMap::from([("city".into(), Av::S("Київ".into()))])),
        );
        item.insert("nothing".into(), Av::Null(true));
    }
    Item::from(item)
}
