//! What an operator watches: alarms, the scheduled reconcile, logs, traces,
//! the dashboard, and the public API's throttling.

use super::template;
use serde_json::{json, Value};

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
