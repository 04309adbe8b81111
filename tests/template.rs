//! `template.yaml` declares the same tables as `migrations/`: keys,
//! attributes, indexes (with their projected attributes), billing, stream
//! view, encryption and time to live may not drift.

use raffle_outbox::migrate::{final_table, CreateTable, TtlSpec};
use serde_json::{json, Value};

/// The table as the migrations leave it, in CloudFormation's spelling.
fn from_migration(spec: &CreateTable, ttl: Option<&TtlSpec>) -> Value {
    json!({
        "AttributeDefinitions": spec.attribute_definitions.iter()
            .map(|a| json!({"AttributeName": a.attribute_name, "AttributeType": a.attribute_type}))
            .collect::<Vec<_>>(),
        "KeySchema": spec.key_schema.iter()
            .map(|k| json!({"AttributeName": k.attribute_name, "KeyType": k.key_type}))
            .collect::<Vec<_>>(),
        "GlobalSecondaryIndexes": spec.global_secondary_indexes.iter().map(|i| json!({
            "IndexName": i.index_name,
            "KeySchema": i.key_schema.iter()
                .map(|k| json!({"AttributeName": k.attribute_name, "KeyType": k.key_type}))
                .collect::<Vec<_>>(),
            "Projection": if i.projection.non_key_attributes.is_empty() {
                json!({"ProjectionType": i.projection.projection_type})
            } else {
                json!({
                    "ProjectionType": i.projection.projection_type,
                    "NonKeyAttributes": i.projection.non_key_attributes,
                })
            },
        })).collect::<Vec<_>>(),
        "BillingMode": spec.billing_mode,
        "StreamViewType": spec.stream_specification.as_ref().map(|s| s.stream_view_type.clone()),
        "SSEEnabled": spec.sse_specification.as_ref().map(|s| s.enabled),
        "TimeToLiveSpecification": ttl
            .map(|t| json!({"AttributeName": t.attribute_name, "Enabled": t.enabled})),
    })
}

/// The same fields read from the template's resource.
fn from_template(properties: &Value) -> Value {
    json!({
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "GlobalSecondaryIndexes": properties.get("GlobalSecondaryIndexes").cloned().unwrap_or(json!([])),
        "BillingMode": properties["BillingMode"],
        "StreamViewType": properties["StreamSpecification"]["StreamViewType"],
        "SSEEnabled": properties["SSESpecification"]["SSEEnabled"],
        "TimeToLiveSpecification": properties.get("TimeToLiveSpecification").cloned(),
    })
}

#[test]
fn template_tables_match_the_migrations() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap();
    let template: Value =
        serde_yaml::from_str(&text).expect("template.yaml is YAML without short-form tags");
    for (resource, logical) in [
        ("ParticipantsTable", "participants"),
        ("OutboxTable", "outbox"),
    ] {
        let (spec, ttl) = final_table(logical).unwrap();
        let properties = &template["Resources"][resource]["Properties"];
        assert_eq!(
            from_template(properties),
            from_migration(&spec, ttl.as_ref()),
            "{resource} drifted from migrations/"
        );
        assert_eq!(
            properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
            json!(true),
            "{resource} has point-in-time recovery"
        );
    }
}

fn template() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap();
    serde_yaml::from_str(&text).expect("template.yaml is YAML without short-form tags")
}

/// Every Lambda is one of our binaries, built by cargo-lambda for Graviton.
#[test]
fn functions_are_arm64_rust_binaries_with_30_second_timeouts() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(globals["Architectures"], json!(["arm64"]));
    assert_eq!(globals["Timeout"], 30);
    for (function, binary) in [
        ("StreamHandlerFunction", "stream-handler"),
        ("RelayFunction", "relay"),
        ("RegisterFunction", "register"),
    ] {
        let f = &template["Resources"][function];
        assert_eq!(f["Type"], "AWS::Serverless::Function");
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda");
        assert_eq!(f["Metadata"]["BuildProperties"]["Binary"], binary);
        let main = format!("{}/src/bin/{binary}.rs", env!("CARGO_MANIFEST_DIR"));
        assert!(std::path::Path::new(&main).exists(), "{main} exists");
    }
}

/// Stream event source mappings: partial batch responses, bisection, bounded
/// retries and a dead-letter destination.
#[test]
fn stream_mappings_report_partial_failures_and_keep_what_fails() {
    let template = template();
    for (function, event) in [
        ("StreamHandlerFunction", "ParticipantsStream"),
        ("RelayFunction", "OutboxStream"),
    ] {
        let p = &template["Resources"][function]["Properties"]["Events"][event]["Properties"];
        assert_eq!(
            p["FunctionResponseTypes"],
            json!(["ReportBatchItemFailures"]),
            "{event}"
        );
        assert_eq!(p["BisectBatchOnFunctionError"], true, "{event}");
        let retries = p["MaximumRetryAttempts"].as_i64().expect("bounded retries");
        assert!((0..=10).contains(&retries), "{event}");
        assert_eq!(
            p["DestinationConfig"]["OnFailure"]["Type"], "SQS",
            "{event}"
        );
    }
    let sweep = &template["Resources"]["RelayFunction"]["Properties"]["Events"]["Sweep"];
    assert_eq!(sweep["Type"], "ScheduleV2");
    assert_eq!(
        sweep["Properties"]["Input"], r#"{"sweep": "schedule"}"#,
        "src/bin/relay.rs recognises it"
    );
}

/// No IAM statement on Resource "*" except Lambda's VPC networking, whose EC2
/// actions have no resource to name.
#[test]
fn iam_statements_name_their_resources() {
    let template = template();
    let mut statements = Vec::new();
    for (name, resource) in template["Resources"].as_object().unwrap() {
        if resource["Type"] != "AWS::IAM::Role" {
            continue;
        }
        for policy in resource["Properties"]["Policies"].as_array().unwrap() {
            for statement in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
                // Conditional statements: `Fn::If: [condition, statement, AWS::NoValue]`.
                let statement = statement.get("Fn::If").map(|f| &f[1]).unwrap_or(statement);
                statements.push((name.clone(), statement.clone()));
            }
        }
    }
    assert!(statements.len() >= 10);
    for (role, statement) in statements {
        if statement["Resource"] == "*" {
            assert_eq!(statement["Sid"], "RunInVpc", "{role}: {statement}");
            let actions = statement["Action"].as_array().unwrap();
            assert!(actions
                .iter()
                .all(|a| a.as_str().unwrap().starts_with("ec2:")));
        }
    }
}

/// The alarms watch the metrics the relay emits (src/metrics.rs).
#[test]
fn alarms_watch_the_relays_metrics() {
    use raffle_outbox::metrics::{relay_invocation, Backlog, DIMENSION, NAMESPACE};
    let template = template();
    let emitted = relay_invocation(
        "t",
        &Default::default(),
        Some(Backlog::default()),
        time::OffsetDateTime::now_utc(),
    )
    .to_json();
    for (alarm, metric) in [
        ("FailedRowsAlarm", "FailedRows"),
        ("OldestPendingAgeAlarm", "OldestPendingAgeSeconds"),
    ] {
        let p = &template["Resources"][alarm]["Properties"];
        assert_eq!(p["Namespace"], NAMESPACE, "{alarm}");
        assert_eq!(p["MetricName"], metric, "{alarm}");
        assert_eq!(p["Dimensions"][0]["Name"], DIMENSION, "{alarm}");
        assert!(emitted[metric].is_number(), "the relay emits {metric}");
    }
}
