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

/// The participants stream is retried until the stream handler succeeds: its
/// records are the only copy of a registration the outbox does not have yet,
/// and DynamoDB Streams drops them after 24 h, so no retry limit, no record
/// age limit and no destination that would take their place (bad records
/// become REJECTED rows; only transient failures come back). The lag alarm
/// watches that mapping, well inside the stream's 24 h.
#[test]
fn the_participants_stream_is_retried_until_it_succeeds() {
    let template = template();
    let p = &template["Resources"]["StreamHandlerFunction"]["Properties"]["Events"]
        ["ParticipantsStream"]["Properties"];
    assert_eq!(
        p["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(p["BisectBatchOnFunctionError"], true);
    assert_eq!(p["MaximumRetryAttempts"], -1, "retried until it succeeds");
    assert_eq!(p["MaximumRecordAgeInSeconds"], -1, "kept until it succeeds");
    assert!(
        p.get("DestinationConfig").is_none(),
        "no on-failure destination: nothing ever reaches one"
    );

    let lag = &template["Resources"]["StreamLagAlarm"]["Properties"];
    assert_eq!(lag["Namespace"], "AWS/Lambda");
    assert_eq!(lag["MetricName"], "IteratorAge");
    assert_eq!(lag["Statistic"], "Maximum");
    assert_eq!(
        lag["Dimensions"],
        json!([{"Name": "FunctionName", "Value": {"Ref": "StreamHandlerFunction"}}]),
        "the stream handler's only mapping is the participants stream"
    );
    let threshold_ms = lag["Threshold"].as_i64().expect("a number");
    assert!(
        (5 * 60_000..=15 * 60_000).contains(&threshold_ms),
        "{threshold_ms} ms: minutes, not hours, before the stream's 24 h end"
    );
    let detection_s = lag["Period"].as_i64().unwrap() * lag["EvaluationPeriods"].as_i64().unwrap();
    assert!(detection_s <= 15 * 60, "raised within {detection_s} s");
    assert_eq!(lag["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(lag["AlarmActions"], json!([{"Ref": "AlarmTopic"}]));

    // Nothing is left that only a failure destination would need.
    for (name, resource) in template["Resources"].as_object().unwrap() {
        assert_ne!(
            resource["Type"], "AWS::SQS::Queue",
            "{name}: nothing reads it"
        );
    }
    assert!(
        !template.to_string().contains("sqs:"),
        "no role sends to a queue"
    );
}

/// The relay's outbox-stream mapping only wakes the relay early (the
/// scheduled sweep finds every due row in the `due` index whatever happens
/// to a stream batch), so its retries are bounded.
#[test]
fn the_outbox_stream_only_wakes_the_relay_and_the_sweep_is_scheduled() {
    let template = template();
    let p = &template["Resources"]["RelayFunction"]["Properties"]["Events"]["OutboxStream"]
        ["Properties"];
    assert_eq!(
        p["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(p["BisectBatchOnFunctionError"], true);
    let retries = p["MaximumRetryAttempts"].as_i64().expect("bounded retries");
    assert!((0..=10).contains(&retries));
    let sweep = &template["Resources"]["RelayFunction"]["Properties"]["Events"]["Sweep"];
    assert_eq!(sweep["Type"], "ScheduleV2");
    assert_eq!(
        sweep["Properties"]["Input"], r#"{"sweep": "schedule"}"#,
        "src/bin/relay.rs recognises it"
    );
    assert_eq!(sweep["Properties"]["ScheduleExpression"], "rate(1 minute)");
}

/// CloudWatch can publish to the alarm topic: it is encrypted with a
/// customer managed key (rotated) whose policy lets CloudWatch make and use
/// data keys (the AWS managed `alias/aws/sns` key cannot grant that, so every
/// alarm notification would fail), and every alarm notifies that topic.
#[test]
fn alarms_can_publish_to_their_encrypted_topic() {
    let template = template();
    let resources = &template["Resources"];
    assert_eq!(
        resources["AlarmTopic"]["Properties"]["KmsMasterKeyId"],
        json!({"Ref": "AlarmKey"})
    );
    let key = &resources["AlarmKey"];
    assert_eq!(key["Type"], "AWS::KMS::Key");
    assert_eq!(key["Properties"]["EnableKeyRotation"], true);
    let statements = key["Properties"]["KeyPolicy"]["Statement"]
        .as_array()
        .unwrap();
    let actions = |s: &Value| -> Vec<String> {
        match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
            other => panic!("Action {other}"),
        }
    };
    let cloudwatch = statements
        .iter()
        .find(|s| s["Principal"]["Service"] == "cloudwatch.amazonaws.com")
        .expect("a statement for CloudWatch");
    assert_eq!(cloudwatch["Effect"], "Allow");
    let granted = actions(cloudwatch);
    assert!(
        granted.contains(&"kms:GenerateDataKey*".to_string()),
        "{granted:?}"
    );
    assert!(granted.contains(&"kms:Decrypt".to_string()), "{granted:?}");
    let admin = statements
        .iter()
        .find(|s| actions(s) == ["kms:*"])
        .expect("the account administers its key");
    assert_eq!(admin["Effect"], "Allow");
    assert_eq!(
        admin["Principal"]["AWS"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"})
    );

    let mut alarms = 0;
    for (name, resource) in resources.as_object().unwrap() {
        if resource["Type"] == "AWS::CloudWatch::Alarm" {
            alarms += 1;
            assert_eq!(
                resource["Properties"]["AlarmActions"],
                json!([{"Ref": "AlarmTopic"}]),
                "{name}"
            );
        }
    }
    assert!(alarms >= 3);
}

/// What CloudFormation makes of the template's `Rules` for these parameter
/// values (defaults for the rest): the description of every assertion that
/// fails, so an empty list means the stack may be deployed.
fn refused_by_rules(template: &Value, values: &[(&str, &str)]) -> Vec<String> {
    fn eval(f: &Value, params: &serde_json::Map<String, Value>) -> Value {
        let object = f.as_object().expect("a rule function");
        let (name, args) = object.iter().next().unwrap();
        let boolean = |v: Value| v.as_bool().expect("a condition");
        match name.as_str() {
            "Ref" => params[args.as_str().unwrap()].clone(),
            "Fn::Equals" => json!(eval_arg(&args[0], params) == eval_arg(&args[1], params)),
            "Fn::And" => json!(args
                .as_array()
                .unwrap()
                .iter()
                .all(|a| boolean(eval(a, params)))),
            "Fn::Or" => json!(args
                .as_array()
                .unwrap()
                .iter()
                .any(|a| boolean(eval(a, params)))),
            "Fn::Not" => json!(!boolean(eval(&args[0], params))),
            other => panic!("rule function {other} is not evaluated here"),
        }
    }
    fn eval_arg(a: &Value, params: &serde_json::Map<String, Value>) -> Value {
        if a.is_object() {
            eval(a, params)
        } else {
            a.clone()
        }
    }
    let mut params = serde_json::Map::new();
    for (name, p) in template["Parameters"].as_object().unwrap() {
        params.insert(name.clone(), p.get("Default").cloned().unwrap_or(json!("")));
    }
    for (name, value) in values {
        assert!(params.contains_key(*name), "parameter {name}");
        params.insert(name.to_string(), json!(value));
    }
    let mut refused = Vec::new();
    for rule in template["Rules"].as_object().expect("Rules").values() {
        if let Some(condition) = rule.get("RuleCondition") {
            if !eval(condition, &params).as_bool().unwrap() {
                continue;
            }
        }
        for assertion in rule["Assertions"].as_array().unwrap() {
            if !eval(&assertion["Assert"], &params).as_bool().unwrap() {
                refused.push(assertion["AssertDescription"].as_str().unwrap().to_string());
            }
        }
    }
    refused
}

/// An existing cluster is reached without TLS (`KafkaAuth=none`) or without
/// client authentication (`tls`) only when the operator says so explicitly;
/// serverless always uses IAM, and scram and iam need no consent.
#[test]
fn plaintext_or_unauthenticated_kafka_needs_an_explicit_parameter() {
    let template = template();
    for (name, default) in [
        ("AllowPlaintextKafka", "false"),
        ("AllowUnauthenticatedKafka", "false"),
    ] {
        let p = &template["Parameters"][name];
        assert_eq!(p["Default"], default, "{name}");
        assert_eq!(p["AllowedValues"], json!(["false", "true"]), "{name}");
    }
    let refused = |values: &[(&str, &str)]| refused_by_rules(&template, values);

    assert_eq!(refused(&[]), Vec::<String>::new(), "the defaults deploy");
    for auth in ["iam", "scram"] {
        assert!(refused(&[("KafkaAuth", auth)]).is_empty(), "{auth}");
    }
    let plaintext = refused(&[("KafkaAuth", "none")]);
    assert_eq!(plaintext.len(), 1, "{plaintext:?}");
    assert!(
        plaintext[0].contains("AllowPlaintextKafka") && plaintext[0].contains("clear"),
        "{plaintext:?}"
    );
    assert!(refused(&[("KafkaAuth", "none"), ("AllowPlaintextKafka", "true")]).is_empty());
    assert_eq!(
        refused(&[("KafkaAuth", "none"), ("AllowUnauthenticatedKafka", "true")]).len(),
        1,
        "consent to unauthenticated TLS is not consent to clear text"
    );

    let unauthenticated = refused(&[("KafkaAuth", "tls")]);
    assert_eq!(unauthenticated.len(), 1, "{unauthenticated:?}");
    assert!(
        unauthenticated[0].contains("AllowUnauthenticatedKafka"),
        "{unauthenticated:?}"
    );
    assert!(refused(&[("KafkaAuth", "tls"), ("AllowUnauthenticatedKafka", "true")]).is_empty());

    // Serverless ignores KafkaAuth (always IAM).
    assert!(refused(&[("MskMode", "serverless"), ("KafkaAuth", "none")]).is_empty());
}

/// Every IAM statement that lets a function decrypt with a KMS key does so
/// only through the service that holds the data (`kms:ViaService`).
#[test]
fn kms_decrypt_grants_are_scoped_to_the_service_that_needs_them() {
    let template = template();
    let mut grants = 0;
    for (name, statement) in role_statements(&template) {
        if !statement.to_string().contains("kms:") {
            continue;
        }
        grants += 1;
        let via = &statement["Condition"]["StringEquals"]["kms:ViaService"];
        assert_eq!(
            via,
            &json!({"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}),
            "{name}: {statement}"
        );
    }
    assert_eq!(grants, 1, "the SCRAM secret's key");
}

/// `RetentionDays` (the relay's RETENTION_DAYS) is empty (keep forever) or at
/// least 2 days: a DELIVERED row must outlive the participants-stream record
/// it came from, which can be replayed for 24 h.
#[test]
fn retention_days_is_empty_or_at_least_two() {
    let template = template();
    let p = &template["Parameters"]["RetentionDays"];
    assert_eq!(p["Default"], "");
    let pattern = regex_lite::Regex::new(p["AllowedPattern"].as_str().unwrap()).unwrap();
    for ok in ["", "2", "3", "9", "10", "30", "365", "3650"] {
        assert!(pattern.is_match(ok), "{ok:?} is allowed");
    }
    for refused in ["0", "1", "01", "-1", "1.5", "x", " 2", "2 "] {
        assert!(!pattern.is_match(refused), "{refused:?} is refused");
    }
    let why = p["ConstraintDescription"].as_str().unwrap();
    assert!(why.contains("at least 2") && why.contains("24 h"), "{why}");
}

/// Every statement of every IAM role, with its role's name; a conditional
/// statement (`Fn::If: [condition, statement, AWS::NoValue]`) as the
/// statement it adds.
fn role_statements(template: &Value) -> Vec<(String, Value)> {
    let mut statements = Vec::new();
    for (name, resource) in template["Resources"].as_object().unwrap() {
        if resource["Type"] != "AWS::IAM::Role" {
            continue;
        }
        for policy in resource["Properties"]["Policies"].as_array().unwrap() {
            for statement in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
                let statement = statement.get("Fn::If").map(|f| &f[1]).unwrap_or(statement);
                statements.push((name.clone(), statement.clone()));
            }
        }
    }
    statements
}

/// No IAM statement on Resource "*" except Lambda's VPC networking, whose EC2
/// actions have no resource to name.
#[test]
fn iam_statements_name_their_resources() {
    let template = template();
    let statements = role_statements(&template);
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

/// The scheduled reconcile is optional: without `ReconcileSchedule` neither
/// the function nor its alarm exists; with it, the function scans the
/// participants table and queries the outbox's `by_participant` index, and
/// nothing else, and the alarm fires on one missing participant.
#[test]
fn the_scheduled_reconcile_is_optional_read_only_and_alarmed() {
    let template = template();
    let resources = &template["Resources"];
    assert_eq!(template["Parameters"]["ReconcileSchedule"]["Default"], "");
    for name in [
        "ReconcileFunction",
        "ReconcileRole",
        "ReconcileLogs",
        "MissingParticipantsAlarm",
    ] {
        assert_eq!(
            resources[name]["Condition"], "ReconcileScheduled",
            "{name} exists only when scheduled"
        );
    }
    let f = &resources["ReconcileFunction"];
    assert_eq!(f["Metadata"]["BuildProperties"]["Binary"], "reconcile");
    let main = concat!(env!("CARGO_MANIFEST_DIR"), "/src/bin/reconcile.rs");
    assert!(std::path::Path::new(main).exists());
    assert_eq!(f["Properties"]["Timeout"], 900);
    assert_eq!(
        f["Properties"]["Events"]["Schedule"]["Properties"]["Schedule"],
        json!({"Ref": "ReconcileSchedule"})
    );
    let statements =
        &resources["ReconcileRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
    let actions: Vec<String> = statements
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
            _ => vec![],
        })
        .collect();
    assert!(
        actions.iter().all(|a| a.starts_with("logs:")
            || ["dynamodb:DescribeTable", "dynamodb:Scan", "dynamodb:Query"].contains(&a.as_str())),
        "read only: {actions:?}"
    );
    let alarm = &resources["MissingParticipantsAlarm"]["Properties"];
    assert_eq!(alarm["MetricName"], "MissingParticipants");
    assert_eq!(alarm["Namespace"], raffle_outbox::metrics::NAMESPACE);
    assert_eq!(alarm["Threshold"], 0);
    assert_eq!(alarm["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(alarm["AlarmActions"], json!([{"Ref": "AlarmTopic"}]));
}

/// Lambda's conventions: JSON logs at a set level, active tracing (with the
/// roles allowed to write traces), the participants mapping filtered to
/// INSERTs, and a dashboard of the pipeline whose metrics exist.
#[test]
fn functions_log_json_trace_and_have_a_dashboard() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["LoggingConfig"]["LogFormat"], "JSON");
    assert!(globals["LoggingConfig"]["ApplicationLogLevel"].is_string());
    assert!(globals["LoggingConfig"]["SystemLogLevel"].is_string());
    assert!(
        globals["Environment"]["Variables"]
            .get("RUST_LOG")
            .is_none(),
        "RUST_LOG would override ApplicationLogLevel"
    );
    assert_eq!(globals["Tracing"], "Active");
    let resources = &template["Resources"];
    for role in [
        "StreamHandlerRole",
        "RelayRole",
        "RegisterRole",
        "ReconcileRole",
    ] {
        let managed = resources[role]["Properties"]["ManagedPolicyArns"].to_string();
        assert!(
            managed.contains("AWSXrayWriteOnlyAccess"),
            "{role}: {managed}"
        );
    }
    let mapping = &resources["StreamHandlerFunction"]["Properties"]["Events"]["ParticipantsStream"]
        ["Properties"];
    assert_eq!(
        mapping["FilterCriteria"],
        json!({"Filters": [{"Pattern": "{\"eventName\": [\"INSERT\"]}"}]})
    );
    let body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
        .as_str()
        .unwrap();
    let dashboard: Value = serde_json::from_str(body).expect("the dashboard body is JSON");
    let widgets = dashboard["widgets"].as_array().unwrap();
    let shown: Vec<String> = widgets
        .iter()
        .flat_map(|w| w["properties"]["metrics"].as_array().unwrap().clone())
        .map(|m| m[1].as_str().unwrap().to_string())
        .collect();
    for metric in [
        "Captured",
        "Rejected",
        "Delivered",
        "Failed",
        "FailedRows",
        "OldestPendingAgeSeconds",
        "IteratorAge",
        "Errors",
        "Duration",
    ] {
        assert!(
            shown.iter().any(|m| m == metric),
            "{metric} on the dashboard"
        );
    }
}

/// The public API's shared budget is the operator's to set: the stage's
/// rate and burst are parameters (whole numbers, at least 1), and the
/// register function has reserved concurrency, a small parameter of its
/// own, so a flood of sign-ups can take neither the account's concurrency
/// from the stream handler and relay nor more than its share; empty opts
/// out, for accounts whose quota cannot spare it.
#[test]
fn the_public_api_is_throttled_and_register_has_reserved_concurrency() {
    let template = template();
    let parameters = &template["Parameters"];
    for (name, default) in [
        ("ApiThrottlingRateLimit", 100),
        ("ApiThrottlingBurstLimit", 200),
    ] {
        let p = &parameters[name];
        assert_eq!(p["Type"], "Number", "{name}");
        assert_eq!(p["Default"], default, "{name}");
        assert_eq!(p["MinValue"], 1, "{name}");
    }
    let routes = &template["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"];
    assert_eq!(
        routes["ThrottlingRateLimit"],
        json!({"Ref": "ApiThrottlingRateLimit"})
    );
    assert_eq!(
        routes["ThrottlingBurstLimit"],
        json!({"Ref": "ApiThrottlingBurstLimit"})
    );

    let p = &parameters["RegisterReservedConcurrency"];
    let default: u32 = p["Default"]
        .as_str()
        .unwrap()
        .parse()
        .expect("reserved by default");
    assert!((5..=50).contains(&default), "a small default: {default}");
    let pattern = regex_lite::Regex::new(p["AllowedPattern"].as_str().unwrap()).unwrap();
    for ok in ["", "1", "10", "20", "999"] {
        assert!(pattern.is_match(ok), "{ok:?} is allowed");
    }
    for refused in ["0", "01", "-1", "1.5", "x", " 2", "10000"] {
        assert!(!pattern.is_match(refused), "{refused:?} is refused");
    }
    assert_eq!(
        template["Conditions"]["ReservesRegisterConcurrency"],
        json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "RegisterReservedConcurrency"}, ""]}]})
    );
    let register = &template["Resources"]["RegisterFunction"];
    assert_eq!(
        register["Properties"]["ReservedConcurrentExecutions"],
        json!({"Fn::If": [
            "ReservesRegisterConcurrency",
            {"Ref": "RegisterReservedConcurrency"},
            {"Ref": "AWS::NoValue"}
        ]})
    );
    let skipped: Vec<&str> = register["Metadata"]["checkov"]["skip"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(
        !skipped.contains(&"CKV_AWS_115"),
        "checkov's reserved-concurrency check is met, not skipped"
    );
    let events = &register["Properties"]["Events"]["Register"];
    assert_eq!(events["Type"], "HttpApi");
    assert_eq!(events["Properties"]["Method"], "POST");
    assert_eq!(events["Properties"]["Path"], "/participants");
    assert_eq!(events["Properties"]["PayloadFormatVersion"], "2.0");
}
