//! `template.yaml` declares the same tables as `migrations/`: keys,
//! attributes, indexes (with their projected attributes), billing, stream
//! view, encryption and time to live may not drift; and the functions, the
//! streams (`template/streams.rs`), security (`template/security.rs`) and
//! operations (`template/operations.rs`) are what the design says.

#[path = "template/operations.rs"]
mod operations;
#[path = "template/security.rs"]
mod security;
#[path = "template/streams.rs"]
mod streams;

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

/// The Lambdas link only what they run: `sam build` (rust-cargolambda) runs
/// `cargo lambda build --bin <Binary>`, which reads
/// `[package.metadata.lambda.build]` from Cargo.toml and so builds without
/// the default `dev` feature (the local stack, bench, demo); the function
/// binaries need no feature, and the CLI, which does, is never a function.
#[test]
fn the_lambdas_are_built_without_the_dev_tools() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("Cargo.toml");
    let section = |name: &str| -> Vec<String> {
        let header = format!("[{name}]");
        manifest
            .lines()
            .skip_while(|line| line.trim() != header)
            .skip(1)
            .take_while(|line| !line.trim_start().starts_with('['))
            .map(|line| line.split('#').next().unwrap().replace(' ', ""))
            .filter(|line| !line.is_empty())
            .collect()
    };
    assert!(
        section("package.metadata.lambda.build").contains(&"no_default_features=true".into()),
        "cargo-lambda builds without default features"
    );
    assert!(section("features").contains(&r#"default=["dev"]"#.into()));
    let template = template();
    let functions = template["Resources"].as_object().unwrap().values();
    let binaries: Vec<&str> = functions
        .filter(|r| r["Metadata"]["BuildMethod"] == "rust-cargolambda")
        .map(|r| r["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap())
        .collect();
    assert_eq!(binaries.len(), 4, "{binaries:?}");
    assert!(!binaries.contains(&"raffle-outbox"));
    for binary in binaries {
        let main = format!("{}/src/bin/{binary}.rs", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&main).expect("the function's main");
        assert!(
            !text.contains("cfg(feature"),
            "{main} builds without features"
        );
    }
}
