//! `POST /participants` through the `register` Lambda's handler, with HTTP
//! API (payload 2.0) events as API Gateway sends them, against DynamoDB Local.

mod common;

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use raffle_outbox::register::Registrar;
use serde_json::{json, Value};
use std::collections::HashMap;

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

/// A JSON `POST /participants` with an `Idempotency-Key` header.
fn keyed(body: &str, key: &str) -> ApiGatewayV2httpRequest {
    let mut event = request(Some(body), "application/json", false);
    event
        .headers
        .insert("idempotency-key", key.parse().expect("a header value"));
    event
}

fn registrar(env: &common::TestEnv) -> Registrar {
    Registrar::new(
        env.dynamodb.clone(),
        &env.config.participants_table,
        env.config.max_message_bytes,
    )
}

/// Every participant in the test's table.
async fn participants(env: &common::TestEnv) -> Vec<HashMap<String, AttributeValue>> {
    env.dynamodb
        .scan()
        .table_name(&env.config.participants_table)
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
}

fn replayed(response: &ApiGatewayV2httpResponse) -> bool {
    match response.headers.get("idempotent-replayed") {
        None => false,
        Some(v) if v == "true" => true,
        Some(other) => panic!("Idempotent-Replayed: {other:?}"),
    }
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
    let registrar = registrar(&env);
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

/// A phone on a flaky network resends its request with the same
/// `Idempotency-Key`: it gets its first answer again (201, the same id,
/// marked as a replay) and the table holds one participant, registered at
/// the first attempt. The same key with another body is a 422; a key and an
/// `id` together, or a malformed key, a 400; nothing is written for either.
#[tokio::test]
async fn a_retry_with_the_same_key_is_answered_as_the_first_time() {
    let env = common::env().await;
    let registrar = registrar(&env);
    let key = "8e03978e-40d5-43e8-bc93-6894a57f9324";
    let body = r#"{"name":"Zoë Example","email":"zoe@example.com","raffle":"summer-2026"}"#;

    let first = registrar.handle(&keyed(body, key)).await;
    assert_eq!(first.status_code, 201);
    assert!(!replayed(&first), "the first answer is not a replay");
    let id = json_body(&first)["id"].as_str().unwrap().to_string();
    let stored = participants(&env).await;
    assert_eq!(stored.len(), 1);
    let registered_at = stored[0]["registered_at"].clone();

    // The same registration, spelled differently (order, spacing, the
    // default ticket count written out): a replay.
    let retry = r#"{ "raffle": "summer-2026", "tickets": 1, "email": "zoe@example.com", "name": "Zoë Example" }"#;
    for again in [body, retry] {
        let response = registrar.handle(&keyed(again, key)).await;
        assert_eq!(response.status_code, 201, "{again}");
        assert!(replayed(&response), "{again}");
        assert_eq!(json_body(&response), json!({ "id": id }));
    }

    // Another registration under the same key: refused, the first untouched.
    let other = registrar
        .handle(&keyed(
            r#"{"name":"Zoë Example","email":"zoe@example.com","raffle":"summer-2026","tickets":5}"#,
            key,
        ))
        .await;
    assert_eq!(other.status_code, 422);
    assert!(!replayed(&other));
    let error = json_body(&other)["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("Idempotency-Key") && error.contains("different"),
        "{error}"
    );

    // A key and an id in the body name the participant twice: 400.
    let both = registrar
        .handle(&keyed(
            r#"{"id":"7d2c1b7e-3f4a-4b8c-9d0e-1f2a3b4c5d6e","name":"Y","email":"y@example.com","raffle":"summer-2026"}"#,
            "another-key",
        ))
        .await;
    assert_eq!(both.status_code, 400);
    assert!(json_body(&both)["error"]
        .as_str()
        .unwrap()
        .contains("not both"));
    for bad in ["", "two words", "zoë"] {
        let response = registrar.handle(&keyed(body, bad)).await;
        assert_eq!(response.status_code, 400, "{bad:?}");
        assert!(json_body(&response)["error"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"));
    }

    let stored = participants(&env).await;
    assert_eq!(stored.len(), 1, "one participant for every request above");
    assert_eq!(stored[0]["id"], AttributeValue::S(id));
    assert_eq!(stored[0]["tickets"], AttributeValue::N("1".into()));
    assert_eq!(stored[0]["registered_at"], registered_at, "never rewritten");

    // What it costs: a keyed registration is one conditional put, one write
    // unit for a participant under 1 KB; a replay is that put failing its
    // condition (billed the same, reported by none) and no read.
    let fresh = registrar.register(body, Some("cost-key")).await.unwrap();
    assert_eq!(fresh.capacity_units, Some(1.0));
    assert!(!fresh.replayed);
    let replay = registrar.register(body, Some("cost-key")).await.unwrap();
    assert_eq!((replay.id, replay.replayed), (fresh.id, true));
    assert_eq!(participants(&env).await.len(), 2);

    // Without a key, nothing changes: the same body twice is two participants.
    for _ in 0..2 {
        let response = registrar
            .handle(&request(Some(body), "application/json", false))
            .await;
        assert_eq!(response.status_code, 201);
        assert!(!replayed(&response));
    }
    assert_eq!(participants(&env).await.len(), 4);
}

/// Two (here eight) requests with one key in flight at once make one
/// participant; every one of them is answered 201 with its id, one as the
/// registration and the others as replays.
#[tokio::test]
async fn concurrent_requests_with_one_key_make_one_participant() {
    let env = common::env().await;
    let registrar = registrar(&env);
    let body = r#"{"name":"Ada","email":"ada@example.com","raffle":"summer-2026","tickets":3}"#;
    let key = "\"c1b5d0a2-7e0f-4f2b-9a47-2f1f6d2b9e10\"";
    let responses = futures::future::join_all((0..8).map(|_| {
        let registrar = registrar.clone();
        tokio::spawn(async move { registrar.handle(&keyed(body, key)).await })
    }))
    .await;
    let responses: Vec<_> = responses.into_iter().map(Result::unwrap).collect();
    let ids: Vec<Value> = responses
        .iter()
        .map(|r| {
            assert_eq!(r.status_code, 201, "{:?}", r.body);
            json_body(r)["id"].clone()
        })
        .collect();
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    assert_eq!(
        responses.iter().filter(|r| !replayed(r)).count(),
        1,
        "one registration, the rest replays"
    );
    let stored = participants(&env).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0]["id"],
        AttributeValue::S(ids[0].as_str().unwrap().into())
    );
}

/// What an abuser sends is measured before it is parsed: an oversized body
/// is a 413 (a base64 one before it is decoded), a body without the JSON
/// content type a 415, one nested too deep or with too many fields a 400
/// that says so; none of them writes anything.
#[tokio::test]
async fn limits_are_answered_before_parsing() {
    use raffle_outbox::register::{MAX_BODY_BYTES, MAX_DEPTH, MAX_FIELDS};
    let env = common::env().await;
    let registrar = registrar(&env);
    let good = r#"{"name":"Zoë","email":"zoe@example.com","raffle":"summer-2026"}"#;
    let oversized = format!("{good:<width$}", width = MAX_BODY_BYTES + 1);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&oversized);
    let huge_encoded = "A".repeat(8 * MAX_BODY_BYTES);
    for (body, base64) in [
        (oversized.as_str(), false),
        (encoded.as_str(), true),
        (huge_encoded.as_str(), true),
    ] {
        let response = registrar
            .handle(&request(Some(body), "application/json", base64))
            .await;
        assert_eq!(response.status_code, 413, "{} bytes", body.len());
        let error = json_body(&response)["error"].as_str().unwrap().to_string();
        assert!(error.contains(&MAX_BODY_BYTES.to_string()), "{error}");
    }

    let mut untyped = request(Some(good), "application/json", false);
    untyped.headers.remove("content-type");
    for request in [
        untyped,
        request(Some(good), "text/plain", false),
        request(Some(good), "application/jsonp", false),
        request(Some(good), "application/x-www-form-urlencoded", false),
    ] {
        let response = registrar.handle(&request).await;
        assert_eq!(response.status_code, 415, "{:?}", request.headers);
        assert!(json_body(&response)["error"]
            .as_str()
            .unwrap()
            .contains("application/json"));
    }
    let charset = registrar
        .handle(&request(
            Some(good),
            "Application/JSON; charset=UTF-8",
            false,
        ))
        .await;
    assert_eq!(
        charset.status_code, 201,
        "parameters and case do not matter"
    );

    let deep = format!(
        r#"{{"name":"A","email":"a@b.co","raffle":"r","tickets":{}1{}}}"#,
        "[".repeat(MAX_DEPTH),
        "]".repeat(MAX_DEPTH)
    );
    let fields: String = (0..MAX_FIELDS).map(|i| format!(r#","f{i}":0"#)).collect();
    let wide = format!(r#"{{"name":"A","email":"a@b.co","raffle":"r"{fields}}}"#);
    for (body, reason) in [
        (deep, format!("nested deeper than {MAX_DEPTH} levels")),
        (wide, format!("more than {MAX_FIELDS} fields")),
    ] {
        let response = registrar
            .handle(&request(Some(&body), "application/json", false))
            .await;
        assert_eq!(response.status_code, 400);
        let error = json_body(&response)["error"].as_str().unwrap().to_string();
        assert!(error.contains(&reason), "{error}");
    }
    assert_eq!(
        participants(&env).await.len(),
        1,
        "only the good registration"
    );
}

/// A registration's trace reaches its message: `POST /participants` with a
/// W3C `traceparent` produces a message of the same trace, on a span of its
/// own (neither the caller's nor the registration's).
#[tokio::test(flavor = "multi_thread")]
async fn the_callers_trace_reaches_the_message() {
    use raffle_outbox::kafka::envelope::TRACEPARENT_HEADER;
    use raffle_outbox::participant::TRACE_ATTRIBUTE;
    use raffle_outbox::trace::TraceContext;

    let env = common::env().await;
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut event = request(
        Some(r#"{"name":"Ada","email":"ada@example.com","raffle":"r","tickets":1}"#),
        "application/json",
        false,
    );
    event
        .headers
        .insert("traceparent", caller.parse().expect("a header value"));
    let created = registrar(&env).handle(&event).await;
    assert_eq!(created.status_code, 201);
    let caller = TraceContext::from_traceparent(caller).unwrap();

    // The participant carries the registration's span of the caller's trace.
    let stored = participants(&env).await.pop().expect("one participant");
    let Some(AttributeValue::S(registered)) = stored.get(TRACE_ATTRIBUTE) else {
        panic!("no {TRACE_ATTRIBUTE} on {stored:?}");
    };
    let registered = TraceContext::from_traceparent(registered).unwrap();
    assert_eq!(registered.trace_id, caller.trace_id);
    assert_ne!(registered.span_id, caller.span_id);

    // And the message: same trace, a new span; the value without the trace.
    let report = env.run_pipeline().await;
    assert_eq!(report.relay.delivered, 1);
    let records = env.read_topic(1);
    assert_eq!(records.len(), 1);
    let sent = TraceContext::from_traceparent(&records[0].headers[TRACEPARENT_HEADER]).unwrap();
    assert_eq!(sent.trace_id, caller.trace_id);
    assert_ne!(sent.span_id, caller.span_id);
    assert_ne!(sent.span_id, registered.span_id);
    let value: Value = serde_json::from_str(records[0].value.as_deref().unwrap()).unwrap();
    assert!(value.get(TRACE_ATTRIBUTE).is_none(), "{value}");
}
