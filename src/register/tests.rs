use super::*;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-11-28 12:00:00.123 UTC);

fn check(body: &str) -> Result<Registration, BadRequest> {
    validate(body, None, 900_000, NOW)
}

#[test]
fn a_good_body_becomes_the_item() {
    let id = "0b6f9a3e-5c1d-4e2f-8a7b-9c0d1e2f3a4b";
    let r = check(&format!(
        r#"{{"id":"{id}","name":"Zoë","email":"zoe@example.com","raffle":"summer","tickets":3}}"#
    ))
    .unwrap();
    assert_eq!(r.id, id);
    assert_eq!(
        r.item,
        json!({"id":id,"name":"Zoë","email":"zoe@example.com","raffle":"summer","tickets":3,
               "registered_at":"2026-11-28T12:00:00.123Z"})
    );
    let generated = check(r#"{"name":"A","email":"a@b.co","raffle":"r"}"#).unwrap();
    assert!(uuid::Uuid::parse_str(&generated.id).is_ok());
    assert_eq!(generated.item["tickets"], 1);
}

#[test]
fn bad_bodies_are_refused_with_the_reason() {
    let ok = r#""name":"A","email":"a@b.co","raffle":"r""#;
    let cases = [
        ("not json", "the body is not JSON"),
        ("[1]", "must be a JSON object"),
        (&format!("{{{ok},\"admin\":true}}"), "unknown field `admin`"),
        (r#"{"email":"a@b.co","raffle":"r"}"#, "`name` is required"),
        (
            r#"{"name":7,"email":"a@b.co","raffle":"r"}"#,
            "`name` must be a string",
        ),
        (
            r#"{"name":"  ","email":"a@b.co","raffle":"r"}"#,
            "`name` must not be empty",
        ),
        (
            r#"{"name":"A","email":"nope","raffle":"r"}"#,
            "`email` is not an email",
        ),
        (
            r#"{"name":"A","email":"a@b","raffle":"r"}"#,
            "`email` is not an email",
        ),
        (
            &format!("{{{ok},\"tickets\":0}}"),
            "`tickets` must be an integer",
        ),
        (
            &format!("{{{ok},\"tickets\":2.5}}"),
            "`tickets` must be an integer",
        ),
        (&format!("{{{ok},\"id\":\"\"}}"), "`id` must be a UUID"),
        (&format!("{{{ok},\"id\":5}}"), "`id` must be a UUID"),
    ];
    for (body, expected) in cases {
        let reason = check(body).unwrap_err().to_string();
        assert!(reason.contains(expected), "{body}: {reason}");
    }
    let long = format!(
        r#"{{"name":"{}","email":"a@b.co","raffle":"r"}}"#,
        "x".repeat(201)
    );
    assert_eq!(
        check(&long).unwrap_err(),
        BadRequest::TooLong {
            field: "name",
            max: 200
        }
    );
}

/// Ids are logged and kept for a year: only a UUID is taken (in its
/// usual 8-4-4-4-12 form, stored in lower case), so no client can put
/// an email or a name there.
#[test]
fn an_id_is_a_uuid_or_made_here() {
    let body = |id: &str| format!(r#"{{"id":{id},"name":"A","email":"a@b.co","raffle":"r"}}"#);
    for id in [
        r#""zoe@example.com""#,
        r#""p-1""#,
        r#""Zoë Example""#,
        r#""0b6f9a3e5c1d4e2f8a7b9c0d1e2f3a4b""#,
        r#""{0b6f9a3e-5c1d-4e2f-8a7b-9c0d1e2f3a4b}""#,
        r#""urn:uuid:0b6f9a3e-5c1d-4e2f-8a7b-9c0d1e2f3a4b""#,
        r#"" 0b6f9a3e-5c1d-4e2f-8a7b-9c0d1e2f3a4b""#,
        r#""0b6f9a3e-5c1d-4e2f-8a7b-9c0d1e2f3a4g""#,
        r#""""#,
        "null",
        "42",
    ] {
        let refused = check(&body(id)).map(|r| r.id).unwrap_err();
        assert_eq!(refused, BadRequest::NotAUuid, "{id}");
        let reason = refused.to_string();
        assert!(
            reason.contains("`id` must be a UUID") && !reason.contains("zoe"),
            "{id}: {reason}"
        );
    }
    let uuid = "0B6F9A3E-5C1D-4E2F-8A7B-9C0D1E2F3A4B";
    assert_eq!(
        check(&body(&format!("\"{uuid}\""))).unwrap().id,
        uuid.to_ascii_lowercase(),
        "one spelling per participant, so a retry is a 409, not a second entry"
    );
}

/// The participant id of a keyed registration is the key's UUID v5:
/// the same key, the same id, so the conditional put finds the retry.
#[test]
fn an_idempotency_key_names_the_participant() {
    let body = r#"{"name":"A","email":"a@b.co","raffle":"r"}"#;
    let keyed = |key: &str| validate(body, Some(key), 900_000, NOW);
    let key = "8e03978e-40d5-43e8-bc93-6894a57f9324";
    let id = keyed(key).unwrap().id;
    assert_eq!(
        id,
        uuid::Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, key.as_bytes()).to_string()
    );
    assert_eq!(keyed(key).unwrap().id, id, "the same key, the same id");
    assert_eq!(
        keyed(&format!("\"{key}\"")).unwrap().id,
        id,
        "the draft's quoted form (a structured-field string) is the same key"
    );
    assert_ne!(keyed("another-key").unwrap().id, id);
    assert_eq!(
        keyed("k").unwrap().item["id"],
        json!(keyed("k").unwrap().id)
    );

    for bad in [
        "",
        "\"\"",
        "a b",
        "a,b",
        "zoë",
        "a\\b",
        "\"abc",
        &"k".repeat(256),
    ] {
        assert_eq!(
            keyed(bad).unwrap_err(),
            BadRequest::IdempotencyKey,
            "{bad:?}"
        );
    }
    assert!(keyed(&"k".repeat(255)).is_ok());
    let reason = BadRequest::IdempotencyKey.to_string();
    assert!(reason.contains("Idempotency-Key"), "{reason}");

    // A keyed request whose body names its own id is refused: the key
    // names the participant.
    let both = format!(r#"{{"id":"{key}","name":"A","email":"a@b.co","raffle":"r"}}"#);
    assert_eq!(
        validate(&both, Some(key), 900_000, NOW).unwrap_err(),
        BadRequest::IdAndKey
    );
}

/// A retry is the same registration when its fields say so: the same
/// name, email, raffle and tickets (tickets left out count as 1),
/// whatever the order, spacing or time.
#[test]
fn same_registration_compares_the_registration_fields() {
    let stored = check(r#"{"name":"A","email":"a@b.co","raffle":"r"}"#).unwrap();
    let stored = serde_dynamo::to_item(&stored.item).unwrap();
    let later = NOW + time::Duration::minutes(5);
    let retry = |body: &str| validate(body, Some("k"), 900_000, later).unwrap();
    assert!(same_registration(
        &stored,
        &retry(r#"{ "raffle":"r", "email":"a@b.co", "name":"A", "tickets": 1 }"#)
    ));
    for other in [
        r#"{"name":"B","email":"a@b.co","raffle":"r"}"#,
        r#"{"name":"A","email":"b@b.co","raffle":"r"}"#,
        r#"{"name":"A","email":"a@b.co","raffle":"s"}"#,
        r#"{"name":"A","email":"a@b.co","raffle":"r","tickets":2}"#,
    ] {
        assert!(!same_registration(&stored, &retry(other)), "{other}");
    }
}

/// Size, nesting and field count are measured before the body is
/// parsed, and each has its own answer.
#[test]
fn bodies_are_measured_before_they_are_parsed() {
    let big = format!(
        r#"{{"name":"A","email":"a@b.co","raffle":"r"}}{}"#,
        " ".repeat(MAX_BODY_BYTES)
    );
    let refused = check(&big).unwrap_err();
    assert_eq!(
        refused,
        BadRequest::BodyTooLarge {
            limit: MAX_BODY_BYTES
        }
    );
    assert_eq!(refused.status(), 413);
    let body = r#"{"name":"A","email":"a@b.co","raffle":"r"}"#;
    let padded = format!("{body:<MAX_BODY_BYTES$}");
    assert!(check(&padded).is_ok(), "exactly the limit is taken");

    let deep = |levels: usize| {
        format!(
            r#"{{"name":{}1{},"email":"a@b.co","raffle":"r"}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        )
    };
    let too_deep = check(&deep(MAX_DEPTH)).unwrap_err();
    assert_eq!(too_deep, BadRequest::TooDeep { limit: MAX_DEPTH });
    assert_eq!(too_deep.status(), 400);
    assert!(too_deep.to_string().contains("nested deeper than"));
    assert_eq!(
        check(&deep(MAX_DEPTH - 1)).unwrap_err(),
        BadRequest::NotAString("name"),
        "within the depth limit the field's own rule answers"
    );
    // Deeper than serde_json's own recursion limit: still our answer.
    assert_eq!(
        check(&"[".repeat(100_000)).unwrap_err().status(),
        413,
        "bigger than the limit"
    );
    assert_eq!(
        check(&"[".repeat(MAX_BODY_BYTES)).unwrap_err(),
        BadRequest::TooDeep { limit: MAX_DEPTH }
    );

    let many = |n: usize| {
        let extra: String = (0..n).map(|i| format!(r#","f{i}":{i}"#)).collect();
        format!(r#"{{"name":"A","email":"a@b.co","raffle":"r"{extra}}}"#)
    };
    let too_many = check(&many(MAX_FIELDS - 2)).unwrap_err();
    assert_eq!(too_many, BadRequest::TooManyFields { limit: MAX_FIELDS });
    assert!(too_many.to_string().contains("more than"));
    assert_eq!(
        check(&many(MAX_FIELDS - 3)).unwrap_err(),
        BadRequest::UnknownField("f0".into())
    );
    let nested = format!(
        r#"{{"name":{{{}}},"email":"a@b.co","raffle":"r"}}"#,
        (0..MAX_FIELDS)
            .map(|i| format!(r#""k{i}":1"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(
        check(&nested).unwrap_err(),
        BadRequest::TooManyFields { limit: MAX_FIELDS },
        "fields count at every depth"
    );

    // Brackets, colons and quotes inside strings are text.
    let name = r#"[[[[{{{{:::: \"[[[[:::: \\"#;
    let r = check(&format!(
        r#"{{"name":"{name}","email":"a@b.co","raffle":"{}"}}"#,
        "[:".repeat(40)
    ))
    .unwrap();
    assert_eq!(r.item["name"], r#"[[[[{{{{:::: "[[[[:::: \"#);
}

#[test]
fn the_stream_handlers_size_rule_applies() {
    let body = r#"{"name":"A","email":"a@b.co","raffle":"r"}"#;
    let err = validate(body, None, 50, NOW).unwrap_err();
    assert!(matches!(
        err,
        BadRequest::Participant(Invalid::TooLarge { limit: 50, .. })
    ));
}
