//! `openapi.yaml` against the register handler, checked by a tool that is
//! not ours: schemathesis (PyPI, installed by `scripts/python-tools`) makes
//! requests from the document, valid ones and ones that break it, sends them
//! through the local HTTP front (`tests/support/register_http.rs`) to
//! `Registrar::handle` on DynamoDB Local, and checks every answer against the
//! document: status code, headers, content type and body, valid requests
//! accepted and invalid ones refused.

mod common;
#[path = "support/python_tools.rs"]
mod python_tools;
#[path = "support/register_http.rs"]
mod register_http;

use raffle_outbox::register::Registrar;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_register_handler_answers_as_openapi_yaml_says() {
    let env = common::env().await;
    let registrar = Registrar::new(
        env.dynamodb.clone(),
        &env.config.participants_table,
        env.config.max_message_bytes,
    );
    let address = register_http::serve(registrar).await;
    let bin = python_tools::bin("lint");
    let root = env!("CARGO_MANIFEST_DIR");
    // Reports and caches land in a directory of the test's own.
    let scratch = std::env::temp_dir().join(format!("schemathesis-{}", env.suffix));
    std::fs::create_dir_all(&scratch).unwrap();
    let run = tokio::process::Command::new(bin.join("schemathesis"))
        .current_dir(&scratch)
        .env(
            "SCHEMATHESIS_HOOKS",
            format!("{root}/tests/support/schemathesis_hooks.py"),
        )
        .args([
            "--config-file",
            &format!("{root}/tests/support/schemathesis.toml"),
        ])
        .args(["run", &format!("{root}/openapi.yaml")])
        .args(["--url", &format!("http://{address}")])
        .args(["--checks", "all"])
        // API Gateway, not the handler, answers a method without a route
        // (404, no Allow header): nothing of ours to check there.
        .args([
            "--exclude-checks",
            "unsupported_method,allow_header_conformance",
        ])
        .args([
            "--max-examples",
            "25",
            "--seed",
            "20261128",
            "--workers",
            "1",
        ])
        .args(["--generation-database", "none", "--no-color"])
        .output()
        .await
        .expect("schemathesis runs");
    let _ = std::fs::remove_dir_all(&scratch);
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{stdout}");
    assert!(
        run.status.success(),
        "schemathesis found the handler and openapi.yaml disagree:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");

    // Its valid requests registered participants, as the document promises.
    let saved = env
        .dynamodb
        .scan()
        .table_name(&env.config.participants_table)
        .select(aws_sdk_dynamodb::types::Select::Count)
        .send()
        .await
        .unwrap()
        .count;
    assert!(saved > 0, "no registration was saved");
}

/// The limits the document states are the handler's.
#[test]
fn the_documented_limits_are_the_handlers() {
    use raffle_outbox::register::{MAX_BODY_BYTES, MAX_DEPTH, MAX_FIELDS, MAX_IDEMPOTENCY_KEY};
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    let document: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    let description = document["info"]["description"].as_str().unwrap();
    for stated in [
        format!("at most {MAX_BODY_BYTES} bytes (413"),
        format!("at most {MAX_DEPTH} levels of nesting and {MAX_FIELDS} fields (400)"),
    ] {
        assert!(description.contains(&stated), "{stated:?} in {description}");
    }
    let post = &document["paths"]["/participants"]["post"];
    let key = &post["parameters"][0];
    assert_eq!(key["name"], "Idempotency-Key");
    let pattern = key["schema"]["pattern"].as_str().unwrap();
    assert_eq!(
        pattern
            .matches(&format!("{{1,{MAX_IDEMPOTENCY_KEY}}}"))
            .count(),
        2,
        "{pattern}"
    );
    let statuses: Vec<&str> = post["responses"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        statuses,
        ["201", "400", "409", "413", "415", "422", "429", "500", "503"]
    );
}
