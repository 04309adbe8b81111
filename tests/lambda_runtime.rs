//! The three Lambda binaries as a deployed stack runs them: each compiled
//! `bootstrap` (here the host build of the same `src/bin/` main) behind a
//! Lambda runtime API — cargo-lambda's emulator, `cargo lambda watch
//! --only-lambda-apis`, installed from its PyPI wheel — with the environment
//! `template.yaml` gives it, invoked with events shaped as AWS sends them:
//! an HTTP API (payload 2.0) `POST /participants`, the participants stream
//! batch as the event source mapping wraps it (compared with AWS's documented
//! sample event), the outbox stream batch and the schedule's input. The
//! message is then read back with librdkafka. Malformed events get an error
//! response and lose nothing.

mod common;
#[path = "support/python_tools.rs"]
mod python_tools;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raffle_outbox::outbox::Status;
use raffle_outbox::stream::StreamPoller;
use serde_json::{json, Value};

/// A process killed when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One function behind its own runtime API emulator.
struct Function {
    port: u16,
    /// Where the function's stderr (its log) goes.
    log: PathBuf,
    /// Where its stdout (the EMF metrics lines) goes.
    metrics: PathBuf,
    _emulator: Running,
    _binary: Running,
}

impl Function {
    /// Starts the emulator, then the binary with the template's environment
    /// for `logical_id` and the runtime API's variables.
    fn start(binary: &str, env: HashMap<String, String>) -> Function {
        let port = free_port();
        let emulator = Command::new(python_tools::bin("sam").join("cargo-lambda"))
            .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1"])
            .args(["-P", &port.to_string()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cargo lambda watch starts");
        let emulator = Running(emulator);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the runtime API emulator listens"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::env::temp_dir().join(format!("raffle-outbox-lambda-{port}.log"));
        let metrics = std::env::temp_dir().join(format!("raffle-outbox-lambda-{port}.emf"));
        let binary = Command::new(binary)
            .envs(env)
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
            .env_remove("RUST_LOG")
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .stdout(std::fs::File::create(&metrics).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the function binary starts");
        Function {
            port,
            log,
            metrics,
            _emulator: emulator,
            _binary: Running(binary),
        }
    }

    /// The function's log lines so far, each a JSON object.
    fn log_lines(&self) -> Vec<Value> {
        json_lines(&self.log)
    }

    /// The sum of metric `name` over the function's EMF lines so far.
    fn metric_sum(&self, name: &str) -> f64 {
        json_lines(&self.metrics)
            .iter()
            .filter_map(|line| line.get(name).and_then(Value::as_f64))
            .sum()
    }

    /// Invokes the function as Lambda's Invoke API does; the function's
    /// answer (or its error object) and whether it was an error.
    fn invoke(&self, event: &Value) -> (Value, bool) {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/_/invocations",
            self.port
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut response = agent
            .post(&url)
            .header("content-type", "application/json")
            .send(event.to_string())
            .expect("the emulator answers");
        let status = response.status();
        let body = response.body_mut().read_to_string().unwrap();
        let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        let failed = !status.is_success() || value.get("errorType").is_some();
        (value, failed)
    }
}

fn json_lines(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The environment `template.yaml` gives `function`: Globals and the
/// function's own variables, with parameters, resources and conditions
/// resolved as a stack on an existing cluster without auth would resolve
/// them (the local broker), the tables and topic being the test's.
fn template_env(function: &str, env: &common::TestEnv) -> HashMap<String, String> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap();
    let template: Value = serde_yaml::from_str(&text).unwrap();
    let refs: HashMap<&str, String> = HashMap::from([
        ("ParticipantsTable", env.config.participants_table.clone()),
        ("OutboxTable", env.config.outbox_table.clone()),
        (
            "KafkaBootstrapServers",
            env.config.kafka_bootstrap_servers.clone(),
        ),
        ("KafkaAuth", "none".to_string()),
        ("KafkaTopic", env.config.kafka_topic.clone()),
    ]);
    let conditions = HashMap::from([
        ("IsServerless", false),
        ("IsScram", false),
        ("HasRetention", false),
    ]);
    let resolve =
        |value: &Value| -> Option<String> { resolve(value, &template, &refs, &conditions) };
    let mut vars = HashMap::new();
    for scope in [
        &template["Globals"]["Function"]["Environment"]["Variables"],
        &template["Resources"][function]["Properties"]["Environment"]["Variables"],
    ] {
        for (name, value) in scope.as_object().into_iter().flatten() {
            match resolve(value) {
                Some(v) => vars.insert(name.clone(), v),
                None => vars.remove(name),
            };
        }
    }
    vars
}

/// `None` for `AWS::NoValue`.
fn resolve(
    value: &Value,
    template: &Value,
    refs: &HashMap<&str, String>,
    conditions: &HashMap<&str, bool>,
) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) if o.contains_key("Ref") => {
            let name = o["Ref"].as_str().unwrap();
            if name == "AWS::NoValue" {
                return None;
            }
            Some(refs.get(name).cloned().unwrap_or_else(|| {
                let default = &template["Parameters"][name]["Default"];
                assert!(!default.is_null(), "no value for Ref {name}");
                resolve(default, template, refs, conditions).unwrap()
            }))
        }
        Value::Object(o) if o.contains_key("Fn::If") => {
            let args = o["Fn::If"].as_array().unwrap();
            let condition = args[0].as_str().unwrap();
            let holds = *conditions
                .get(condition)
                .unwrap_or_else(|| panic!("condition {condition} not modelled"));
            resolve(&args[if holds { 1 } else { 2 }], template, refs, conditions)
        }
        other => panic!("cannot resolve {other}"),
    }
}

/// An API Gateway HTTP API (payload format 2.0) `POST /participants` event,
/// as AWS documents it.
fn http_api_event(content_type: &str, body: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "POST /participants",
        "rawPath": "/participants",
        "rawQueryString": "",
        "headers": {
            "accept": "*/*",
            "content-length": body.len().to_string(),
            "content-type": content_type,
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "user-agent": "curl/8.5.0",
            "x-amzn-trace-id": "Root=1-6750a1b2-0123456789abcdef01234567",
            "x-forwarded-for": "198.51.100.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": "POST",
                "path": "/participants",
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7",
                "userAgent": "curl/8.5.0"
            },
            "requestId": "C3mJYjKLoAMEVnA=",
            "routeKey": "POST /participants",
            "stage": "$default",
            "time": "02/Dec/2026:08:00:00 +0000",
            "timeEpoch": 1796198400000u64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// One batch read from a table's stream, as the event source mapping wraps it.
async fn stream_batch(env: &common::TestEnv, table: &str) -> Value {
    let (_, streams) = raffle_outbox::config::aws_clients().await;
    let mut poller = StreamPoller::for_table(&env.dynamodb, streams, table)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = poller.poll().await.unwrap();
        let records: Vec<Value> = events
            .iter()
            .flat_map(|e| {
                serde_json::to_value(e).unwrap()["Records"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .collect();
        if !records.is_empty() {
            return json!({ "Records": records });
        }
        assert!(Instant::now() < deadline, "{table}'s stream has records");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deployed_binaries_behind_a_lambda_runtime_api_take_aws_shaped_events() {
    let env = common::env().await;

    // register: one good body, three bad ones.
    let register = Function::start(
        env!("CARGO_BIN_EXE_register"),
        template_env("RegisterFunction", &env),
    );
    let good =
        r#"{"name":"Ada Lovelace","email":"ada@example.com","raffle":"winter-2026","tickets":2}"#;
    let (created, failed) = register.invoke(&http_api_event("application/json", good));
    assert!(!failed, "{created}");
    assert_eq!(created["statusCode"], 201, "{created}");
    let body: Value = serde_json::from_str(created["body"].as_str().unwrap()).unwrap();
    let id = body["id"].as_str().unwrap().to_string();
    for (content_type, bad, status) in [
        ("application/json", "{not json", 400),
        ("text/plain", good, 415),
        (
            "application/json",
            r#"{"id":"ada@example.com","name":"A","email":"a@example.com","raffle":"r"}"#,
            400,
        ),
    ] {
        let (answer, failed) = register.invoke(&http_api_event(content_type, bad));
        assert!(
            !failed,
            "a bad body is an HTTP answer, not a function error: {answer}"
        );
        assert_eq!(answer["statusCode"], status, "{bad}: {answer}");
        let error: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
    }
    // Lambda's log conventions: Lambda's context at the top level of each
    // line, the first invocation's lines marked as the cold start.
    let lines = register.log_lines();
    let invoked: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("function_request_id").is_some())
        .collect();
    assert!(invoked.len() >= 3, "{lines:?}");
    for line in &invoked {
        assert_eq!(line["function_name"], "_");
        assert!(
            line["xray_trace_id"]
                .as_str()
                .is_some_and(|t| t.starts_with("Root=")),
            "{line}"
        );
        assert!(
            line["message"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }
    assert_eq!(invoked[0]["cold_start"], true);
    assert_eq!(invoked.last().unwrap()["cold_start"], false);
    let registered = invoked
        .iter()
        .find(|l| l["message"] == "participant registered")
        .expect("a line for the registration");
    assert_eq!(registered["participant_id"], id.as_str());
    assert!(
        !lines
            .iter()
            .any(|l| l.to_string().contains("ada@example.com")),
        "no personal field in the log"
    );
    drop(register);

    // stream-handler: the participants stream's batch, as the mapping wraps it.
    let batch = stream_batch(&env, &env.config.participants_table).await;
    let sample: Value =
        serde_json::from_str(include_str!("fixtures/dynamodb-stream-event.json")).unwrap();
    let (ours, aws) = (&batch["Records"][0], &sample["Records"][0]);
    for key in keys(aws) {
        assert!(
            ours.get(&key).is_some_and(|v| !v.is_null()),
            "our record lacks {key}: {ours}"
        );
    }
    for key in keys(&aws["dynamodb"]) {
        assert!(
            ours["dynamodb"].get(&key).is_some(),
            "our record's dynamodb lacks {key}: {ours}"
        );
    }
    assert_eq!(ours["eventSource"], aws["eventSource"]);
    assert_eq!(ours["eventName"], "INSERT");
    let handler = Function::start(
        env!("CARGO_BIN_EXE_stream-handler"),
        template_env("StreamHandlerFunction", &env),
    );
    // A malformed event is an error response; the mapping retries the batch.
    let (error, failed) = handler.invoke(&json!({"Records": "not a list"}));
    assert!(failed, "{error}");
    assert!(
        env.rows().await.is_empty(),
        "nothing written from a malformed batch"
    );
    let (answer, failed) = handler.invoke(&batch);
    assert!(!failed, "{answer}");
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    // AWS's own sample event, exactly as documented: its record has no `id`,
    // so it becomes a REJECTED row with the reason (nothing is dropped).
    let (answer, failed) = handler.invoke(&sample);
    assert!(!failed, "{answer}");
    assert_eq!(answer["batchItemFailures"], json!([]));
    // The dashboard's metrics, one EMF line per batch.
    assert_eq!(handler.metric_sum("Captured"), 1.0);
    assert_eq!(handler.metric_sum("Rejected"), 1.0);
    assert_eq!(handler.metric_sum("RetriedRecords"), 0.0);
    drop(handler);
    let rows = env.rows().await;
    assert_eq!(common::counts(&rows).get("PENDING"), Some(&1), "{rows:?}");
    assert_eq!(common::counts(&rows).get("REJECTED"), Some(&1), "{rows:?}");

    // relay: a malformed event, then the outbox stream's batch, then the schedule.
    let relay = Function::start(
        env!("CARGO_BIN_EXE_relay"),
        template_env("RelayFunction", &env),
    );
    let (error, failed) = relay.invoke(&json!({"Records": 7}));
    assert!(failed, "{error}");
    let outbox_batch = stream_batch(&env, &env.config.outbox_table).await;
    let (answer, failed) = relay.invoke(&outbox_batch);
    assert!(!failed, "{answer}");
    let (answer, failed) = relay.invoke(&json!({"sweep": "schedule"}));
    assert!(!failed, "{answer}");
    drop(relay);

    let row = env
        .rows()
        .await
        .into_iter()
        .find(|r| r.participant_id.as_deref() == Some(&id))
        .unwrap();
    assert_eq!(row.status, Status::Delivered, "{row:?}");
    let records = env.read_topic(1);
    assert_eq!(records.len(), 1, "one message, sent once: {records:?}");
    let message = &records[0];
    assert_eq!(message.key.as_deref(), Some(id.as_str()));
    assert_eq!(
        (Some(message.partition), Some(message.offset)),
        (row.kafka_partition, row.kafka_offset)
    );
    let value: Value = serde_json::from_str(message.value.as_deref().unwrap()).unwrap();
    assert_eq!(value["email"], "ada@example.com");
    assert_eq!(message.headers.get("outbox_id"), Some(&row.id));
}
