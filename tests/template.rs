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
    for function in ["StreamHandlerFunction", "RelayFunction"] {
        let f = &template["Resources"][function];
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda");
        assert_eq!(template["Globals"]["Function"]["Timeout"], 30);
    }
}
