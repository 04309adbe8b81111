//! `raffle-outbox retention`, and the relay's expiry of DELIVERED rows, on
//! the real local stack.

mod common;

use std::process::Command;

use common::cli::{cli, ok};
use common::rows::{audit, delivered, expiry, failed, pending, relay, relay_with, seed};
use raffle_outbox::retention;
use time::OffsetDateTime;

/// Retention: `expires_at` = delivered_at + RETENTION_DAYS on DELIVERED rows
/// only; without the setting, rows are kept forever (the attribute goes).
#[tokio::test(flavor = "multi_thread")]
async fn retention_sets_and_clears_expiry_on_delivered_rows_only() {
    let env = common::env().await;
    let topic = env.config.kafka_topic.clone();
    let now = OffsetDateTime::now_utc();
    let rows = vec![
        delivered(pending(0, now), &topic, 0, 0),
        delivered(pending(1, now), &topic, 0, 1),
        failed(pending(2, now), "boom"),
    ];
    seed(&env, &rows).await;
    let dry = ok(cli(&env, &["retention", "--days", "30", "--dry-run"]));
    assert!(dry.contains("2 would be given expires_at"), "{dry}");
    let set = ok(cli(&env, &["retention", "--days", "30"]));
    assert!(set.contains("2 were given expires_at"), "{set}");
    for row in &rows {
        let (stored, expected) = expiry(&env, &row.id, 30).await;
        assert_eq!(stored, expected, "{:?}", row.status);
    }
    let again = ok(cli(&env, &["retention", "--days", "30"]));
    assert!(again.contains("2 already right"), "{again}");
    let forever = ok(cli(&env, &["retention"]));
    assert!(
        forever.contains("keep forever") && forever.contains("2 were cleared"),
        "{forever}"
    );
    for row in &rows {
        let item = audit(&env).item(&row.id).await.unwrap().unwrap();
        assert!(!item.contains_key(retention::EXPIRES_AT));
    }
}

/// Retention under 2 days is refused, from `retention --days` and from
/// RETENTION_DAYS (which the relay reads too), with the reason: a DELIVERED
/// row deleted while its participants-stream record can still be replayed
/// (24 h) would be written and sent again. Nothing is touched: the command
/// stops before it reads a table.
#[test]
fn retention_under_two_days_is_refused_with_the_reason() {
    let run = |args: &[&str], retention_days: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_raffle-outbox"));
        command.args(args).env_remove("RETENTION_DAYS");
        if let Some(days) = retention_days {
            command.env("RETENTION_DAYS", days);
        }
        command.output().unwrap()
    };
    for output in [
        run(&["retention", "--days", "1", "--dry-run"], None),
        run(&["retention", "--days", "0", "--dry-run"], None),
        run(&["retention", "--dry-run"], Some("1")),
        run(&["audit", "summary"], Some("0")),
    ] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains("at least 2 days") && stderr.contains("24 h"),
            "{stderr}"
        );
        assert!(output.stdout.is_empty(), "nothing done");
    }
}

/// With RETENTION_DAYS set, the relay writes `expires_at` (delivered_at +
/// N days) in the same write that marks a row DELIVERED. Without the
/// setting, delivered rows get none.
#[tokio::test(flavor = "multi_thread")]
async fn the_relay_gives_delivered_rows_their_expiry_when_retention_is_set() {
    let env = common::env().await;
    let now = OffsetDateTime::now_utc();
    let kept = [pending(0, now), pending(1, now)];
    seed(&env, &kept).await;
    assert_eq!(relay(&env, 10).await.delivered, 2);

    let expiring = [pending(2, now), pending(3, now)];
    seed(&env, &expiring).await;
    let mut config = env.config.clone();
    config.retention_days = Some(30);
    assert_eq!(relay_with(&env, config).await.delivered, 2);

    for row in &kept {
        let (stored, _) = expiry(&env, &row.id, 30).await;
        assert_eq!(
            stored, None,
            "delivered before retention was set: kept forever"
        );
    }
    for row in &expiring {
        let (stored, expected) = expiry(&env, &row.id, 30).await;
        assert!(expected.is_some(), "delivered");
        assert_eq!(stored, expected);
    }
}
