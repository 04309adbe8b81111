//! `--register-participants`: registration under load, with retries.

use super::*;

/// `--register-participants`: registration under load, with retries.
#[derive(Debug, Serialize)]
pub struct RegisterFigures {
    /// Intended participants (one Idempotency-Key each).
    pub participants: usize,
    /// Clients registering at once.
    pub clients: usize,
    /// Requests sent, retries included.
    pub requests: usize,
    /// Requests that resent a key: after its answer (a lost response) or
    /// while its first request was in flight.
    pub retries: usize,
    /// Intended participants registered per second (first request to the
    /// last answer).
    pub registrations_per_s: f64,
    /// Requests answered per second, retries included.
    pub requests_per_s: f64,
    /// The median latency per request, through the handler to DynamoDB
    /// Local and back.
    pub p50_ms: f64,
    /// The 99th percentile of the same latency.
    pub p99_ms: f64,
    /// Participants found on the topic once the local pipeline had run
    /// (each exactly once, or the leg fails).
    pub on_topic: usize,
}

/// An HTTP API event for `POST /participants` with a JSON body and an
/// `Idempotency-Key`, as API Gateway hands it to the register function.
pub(super) fn register_event(
    body: &str,
    key: &str,
) -> aws_lambda_events::event::apigw::ApiGatewayV2httpRequest {
    let mut event = aws_lambda_events::event::apigw::ApiGatewayV2httpRequest::default();
    event.raw_path = Some("/participants".into());
    for (name, value) in [
        ("content-type", "application/json"),
        ("idempotency-key", key),
    ] {
        event
            .headers
            .insert(name, value.parse().expect("a header value"));
    }
    event.body = Some(body.to_string());
    event
}

/// One client's registration of one participant: its first request, then,
/// at random, the same request again after the answer (1 in 4: the answer
/// was lost) or a second one at the same time (1 in 8: a retry while the
/// first was in flight). Every answer must be 201 with the key's
/// participant id, and only one of them the registration (the others
/// replays). Returns the requests' latencies.
pub(super) async fn register_with_retries(
    registrar: &crate::register::Registrar,
    key: &str,
    body: &str,
) -> anyhow::Result<Vec<Duration>> {
    let event = register_event(body, key);
    let timed = || async {
        let started = Instant::now();
        let response = registrar.handle(&event).await;
        (response, started.elapsed())
    };
    let answers = match fastrand::u8(0..8) {
        0 => {
            let (a, b) = tokio::join!(timed(), timed());
            vec![a, b]
        }
        1 | 2 => vec![timed().await, timed().await],
        _ => vec![timed().await],
    };
    let expected = crate::register::id_for_key(key)?;
    let mut registered = 0;
    for (response, _) in &answers {
        let body = match &response.body {
            Some(aws_lambda_events::encodings::Body::Text(text)) => text.as_str(),
            _ => "",
        };
        anyhow::ensure!(
            response.status_code == 201,
            "answered {}: {body}",
            response.status_code
        );
        let id: serde_json::Value = serde_json::from_str(body)?;
        anyhow::ensure!(id["id"] == expected.as_str(), "answered {body}");
        if !response
            .headers
            .contains_key(crate::register::REPLAYED_HEADER)
        {
            registered += 1;
        }
    }
    anyhow::ensure!(registered == 1, "{registered} registrations for one key");
    Ok(answers.into_iter().map(|(_, latency)| latency).collect())
}

/// A `POST /participants` body: sample participant `i`'s fields (the
/// registrar gives it its id and registration time).
pub(super) fn registration_body(i: usize) -> String {
    let (_, p) = demo::sample_participant(i);
    serde_json::json!({
        "name": p["name"], "email": p["email"], "raffle": p["raffle"], "tickets": p["tickets"],
    })
    .to_string()
}

/// The register leg, on a DynamoDB Local of its own: `n` participants
/// registered through the register handler by `clients` concurrent clients
/// that resend requests at random (`register_with_retries`); then each
/// intended participant must be in the table once, and, after `raffle-outbox
/// run` has relayed them, on the topic once (read back with the project's
/// [`TopicReader`](crate::kafka::fetch::TopicReader)).
pub async fn register_load(
    base: &Config,
    stack: &StackConfig,
    n: usize,
    clients: usize,
) -> anyhow::Result<RegisterFigures> {
    let leg = DynamoLeg::start(base, stack, "register").await?;
    let registrar = crate::register::Registrar::new(
        leg.dynamodb.clone(),
        &leg.config.participants_table,
        leg.config.max_message_bytes,
    );
    let intended: Vec<(String, String)> = (0..n)
        .map(|i| (uuid::Uuid::new_v4().to_string(), registration_body(i)))
        .collect();
    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(&intended)
        .map(|(key, body)| register_with_retries(&registrar, key, body))
        .buffer_unordered(clients.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?
        .concat();
    let elapsed = started.elapsed();

    let expected: std::collections::BTreeSet<String> = intended
        .iter()
        .map(|(key, _)| crate::register::id_for_key(key))
        .collect::<Result<_, _>>()?;
    let mut saved = std::collections::BTreeSet::new();
    let mut pages = leg
        .dynamodb
        .scan()
        .table_name(&leg.config.participants_table)
        .projection_expression("id")
        .into_paginator()
        .items()
        .send();
    while let Some(item) = pages.next().await {
        if let Some(aws_sdk_dynamodb::types::AttributeValue::S(id)) = item?.get("id") {
            saved.insert(id.clone());
        }
    }
    anyhow::ensure!(
        saved == expected,
        "{} participants saved for {n} intended",
        saved.len()
    );

    finish_run::<PipelineReport>(leg.spawn_run()?).await?;
    let mut reader = crate::kafka::fetch::TopicReader::connect(
        &leg.config.kafka_bootstrap_servers,
        &leg.config.kafka_topic,
    )
    .await?;
    let mut on_topic = std::collections::BTreeMap::<String, usize>::new();
    for partition in 0..reader.partitions() {
        let mut offset = 0;
        loop {
            let fetched = reader.fetch(partition, offset).await?;
            let from = offset;
            for record in fetched.records.iter().filter(|r| r.offset >= from) {
                let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default());
                *on_topic.entry(key.into_owned()).or_default() += 1;
                offset = record.offset + 1;
            }
            if offset >= fetched.high_watermark || fetched.records.is_empty() {
                break;
            }
        }
    }
    let once = on_topic.values().all(|&count| count == 1);
    anyhow::ensure!(
        once && on_topic.keys().eq(expected.iter()),
        "{} keys on the topic for {n} participants, {} more than once",
        on_topic.len(),
        on_topic.values().filter(|&&c| c > 1).count()
    );

    latencies.sort_unstable();
    let percentile = |p: f64| {
        let rank = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        tenths(latencies[rank - 1].as_secs_f64() * 1000.0)
    };
    Ok(RegisterFigures {
        participants: n,
        clients,
        requests: latencies.len(),
        retries: latencies.len() - n,
        registrations_per_s: rate(n, elapsed),
        requests_per_s: rate(latencies.len(), elapsed),
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        on_topic: on_topic.len(),
    })
}
