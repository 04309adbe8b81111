//! Encryption, parameters that must be explicit, and least-privilege IAM.

use super::template;
use serde_json::{json, Value};

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
