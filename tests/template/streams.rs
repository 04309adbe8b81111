//! The two streams: the participants stream is retried until it succeeds,
//! the outbox stream only wakes the relay, and the sweep is scheduled.

use super::template;
use serde_json::json;

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
