//! `POST /participants` through the `register` Lambda's handler, with HTTP
//! API (payload 2.0) events as API Gateway sends them, against DynamoDB Local.

mod common;

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use raffle_outbox::register::Registrar;
use serde_json::{json, Value};

/// An HTTP API event for `POST /participants`.
fn request(body: Option<&str>, content_type: &str, base64: bool) -> ApiGatewayV2httpRequest {
    serde_json::from_value(json!({
        "version": "2.0",
        "routeKey": "POST /participants",
        "rawPath": "/participants",
        "rawQueryString": "",
        "headers": {"content-type": content_type, "host": "abc.execute-api.eu-west-1.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc",
            "domainName": "abc.execute-api.eu-west-1.amazonaws.com",
            "http": {"method": "POST", "path": "/participants", "protocol": "HTTP/1.1",
                     "sourceIp": "192.0.2.1", "userAgent": "curl/8"},
            "requestId": "id",
            "routeKey": "POST /participants",
            "stage": "$default",
            "time": "28/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1795867200000i64
        },
        "body": body,
        "isBase64Encoded": base64
    }))
    .expect("an HTTP API event")
}

fn json_body(response: &ApiGatewayV2httpResponse) -> Value {
    assert_eq!(
        response.headers.get("content-type").unwrap(),
        "application/json"
    );
    match &response.body {
        Some(Body::Text(text)) => serde_json::from_str(text).unwrap(),
        other => panic!("a JSON text body, not {other:?}"),
    }
}

#[tokio::test]
async fn good_and_bad_bodies_through_the_handler() {
    let env = common::env().await;
    let registrar = Registrar::new(
        env.dynamodb.clone(),
        &env.config.participants_table,
        env.config.max_message_bytes,
    );
    let id = "7d2c1b7e-3f4a-4b8c-9d0e-1f2a3b4c5d6e";
    let good = &format!(
        r#"{{"id":"{id}","name":"Zoë Example","email":"zoe@example.com","raffle":"summer-2026","tickets":2}}"#
    );

    // 201 and the item in the participants table, as sent plus registered_at.
    let created = registrar
        .handle(&request(Some(good), "application/json", false))
        .await;
    assert_eq!(created.status_code, 201);
    assert_eq!(json_body(&created), json!({ "id": id }));
    let item = env
        .dynamodb
        .get_item()
        .table_name(&env.config.participants_table)
        .key("id", AttributeValue::S(id.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("saved");
    assert_eq!(item["name"], AttributeValue::S("Zoë Example".into()));
    assert_eq!(item["tickets"], AttributeValue::N("2".into()));
    assert!(item.contains_key("registered_at"));

    // The same id again: 409, and the first registration is untouched.
    let again = registrar
        .handle(&request(
            Some(good),
            "application/json; charset=utf-8",
            false,
        ))
        .await;
    assert_eq!(again.status_code, 409);
    assert!(json_body(&again)["error"]
        .as_str()
        .unwrap()
        .contains("already registered"));

    // Base64 bodies (API Gateway encodes some content) are decoded; no id: one is made.
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(r#"{"name":"B","email":"b@example.org","raffle":"summer-2026"}"#);
    let generated = registrar
        .handle(&request(Some(&encoded), "application/json", true))
        .await;
    assert_eq!(generated.status_code, 201);
    let id = json_body(&generated)["id"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok());

    // Bad bodies: 400 with the reason, and nothing saved.
    for (body, reason) in [
        (Some("{"), "the body is not JSON"),
        (Some("[]"), "the body must be a JSON object"),
        (Some(r#"{"name":"C","raffle":"r"}"#), "`email` is required"),
        (
            Some(r#"{"name":"C","email":"c@example.org","raffle":"r","tickets":1000}"#),
            "`tickets` must be an integer from 1 to 100",
        ),
        (
            Some(r#"{"name":"C","email":"c@example.org","raffle":"r","role":"admin"}"#),
            "unknown field `role`",
        ),
        (
            Some(r#"{"name":"C","email":"not an address","raffle":"r"}"#),
            "`email` is not an email address",
        ),
        (None, "the body is empty"),
        // A client-chosen id that is not a UUID (here personal data) is refused.
        (
            Some(r#"{"id":"c@example.org","name":"C","email":"c@example.org","raffle":"r"}"#),
            "`id` must be a UUID",
        ),
    ] {
        let response = registrar
            .handle(&request(body, "application/json", false))
            .await;
        assert_eq!(response.status_code, 400, "{body:?}");
        let error = json_body(&response)["error"].as_str().unwrap().to_string();
        assert!(error.contains(reason), "{body:?}: {error}");
    }
    let wrong_type = registrar
        .handle(&request(Some(good), "text/plain", false))
        .await;
    assert_eq!(wrong_type.status_code, 415);

    let count = env
        .dynamodb
        .scan()
        .table_name(&env.config.participants_table)
        .send()
        .await
        .unwrap()
        .count;
    assert_eq!(count, 2, "only the two good registrations were saved");
}

#[tokio::test]
async fn a_missing_table_is_a_503_not_a_400() {
    let env = common::env().await;
    let registrar = Registrar::new(env.dynamodb.clone(), "no_such_table", 900_000);
    let response = registrar
        .handle(&request(
            Some(r#"{"name":"D","email":"d@example.org","raffle":"r"}"#),
            "application/json",
            false,
        ))
        .await;
    assert_eq!(response.status_code, 503);
}
