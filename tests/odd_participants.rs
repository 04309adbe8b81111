//! Participants of every awkward shape DynamoDB allows, saved in the real
//! participants table and read back from the topic: each is delivered, its
//! value byte-exact as documented in the README's mapping.

mod common;

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue as Av;
use raffle_outbox::outbox::Status;
use serde_json::json;

fn s(v: &str) -> Av {
    Av::S(v.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn awkward_participants_are_delivered_byte_exact() {
    let env = common::env().await;

    // Near DynamoDB's 400 KB item limit (the limit counts names and values).
    let big_text = "Ünïcödé raffle entry, ".repeat(15_100);
    assert!(big_text.len() > 390_000 && big_text.len() < 400_000);
    let big = HashMap::from([
        ("id".to_string(), s("big")),
        ("essay".to_string(), s(&big_text)),
    ]);

    // Binary and set attributes.
    let binary = HashMap::from([
        ("id".to_string(), s("binary")),
        (
            "photo".to_string(),
            Av::B(Blob::new(vec![0u8, 159, 146, 150, 255])),
        ),
        ("tags".to_string(), Av::Ss(vec!["b".into(), "a".into()])),
        ("numbers".to_string(), Av::Ns(vec!["7".into()])),
        ("blobs".to_string(), Av::Bs(vec![Blob::new(b"x".to_vec())])),
    ]);

    // Maps nested 30 deep (DynamoDB allows 32 levels).
    let mut nested = Av::S("bottom".into());
    let mut nested_json = json!("bottom");
    for _ in 0..30 {
        nested = Av::M(HashMap::from([("level".to_string(), nested)]));
        nested_json = json!({ "level": nested_json });
    }
    let deep = HashMap::from([("id".to_string(), s("deep")), ("tree".to_string(), nested)]);

    // Non-ASCII attribute names, values and id.
    let unicode = HashMap::from([
        ("id".to_string(), s("参加者-ñ-🎟")),
        ("név".to_string(), s("Zoë Ñúñez 🎉")),
        ("город".to_string(), s("Київ")),
    ]);

    for item in [big, binary, deep, unicode] {
        env.dynamodb
            .put_item()
            .table_name(&env.config.participants_table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
    env.run_pipeline().await;

    let rows = env.rows().await;
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter().all(|r| r.status == Status::Delivered),
        "{rows:#?}"
    );
    let big_row = rows
        .iter()
        .find(|r| r.participant_id.as_deref() == Some("big"))
        .unwrap();
    assert!(
        big_row.payload.is_none() && big_row.payload_gzip.is_some(),
        "stored compressed"
    );

    let records = env.read_topic(4);
    assert_eq!(records.len(), 4);
    let value = |id: &str| -> String {
        let record = records
            .iter()
            .find(|r| r.key.as_deref() == Some(id))
            .unwrap();
        record.value.clone().unwrap()
    };
    assert_eq!(
        value("big"),
        json!({"essay": big_text, "id": "big"}).to_string()
    );
    assert_eq!(
        value("binary"),
        r#"{"blobs":["eA=="],"id":"binary","numbers":[7],"photo":"AJ+Slv8=","tags":["a","b"]}"#
    );
    assert_eq!(
        value("deep"),
        json!({"id": "deep", "tree": nested_json}).to_string()
    );
    assert_eq!(
        value("参加者-ñ-🎟"),
        r#"{"id":"参加者-ñ-🎟","név":"Zoë Ñúñez 🎉","город":"Київ"}"#
    );
}
