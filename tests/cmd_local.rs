//! `raffle-outbox local` on a stack of the test's own (its own home and
//! ports; the installs borrowed from the shared home through symlinks), so
//! stopping and resetting it leaves the shared stack alone.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::cli::{assert_status, bin, json};
use raffle_outbox::local::{free_port, StackConfig};

/// A stack home with the shared home's installs linked in, on free ports.
struct OwnStack {
    home: PathBuf,
    dynamodb_port: u16,
    kafka_port: u16,
}

impl OwnStack {
    fn new() -> OwnStack {
        let shared = StackConfig::from_env().home;
        let home =
            std::env::temp_dir().join(format!("raffle-outbox-stack-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&home).unwrap();
        for entry in std::fs::read_dir(&shared).unwrap() {
            let name = entry.unwrap().file_name();
            let name_str = name.to_string_lossy();
            if name_str.starts_with("tansu-") || name_str.starts_with("dynamodb-local-") {
                std::os::unix::fs::symlink(shared.join(&name), home.join(&name)).unwrap();
            }
        }
        OwnStack {
            home,
            dynamodb_port: free_port().unwrap(),
            kafka_port: free_port().unwrap(),
        }
    }

    /// `raffle-outbox local ARGS` on this stack only.
    fn local(&self, args: &[&str]) -> Output {
        bin()
            .arg("local")
            .args(args)
            .env("RAFFLE_OUTBOX_HOME", &self.home)
            .env("DYNAMODB_LOCAL_PORT", self.dynamodb_port.to_string())
            .env("KAFKA_PORT", self.kafka_port.to_string())
            .env(
                "KAFKA_BOOTSTRAP_SERVERS",
                format!("127.0.0.1:{}", self.kafka_port),
            )
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
            .env_remove("AWS_ENDPOINT_URL_DYNAMODB_STREAMS")
            .output()
            .unwrap()
    }

    fn config(&self) -> StackConfig {
        StackConfig {
            home: self.home.clone(),
            dynamodb_port: self.dynamodb_port,
            kafka_port: self.kafka_port,
        }
    }

    fn data(&self) -> PathBuf {
        self.home.join("run").join("tansu")
    }
}

impl Drop for OwnStack {
    fn drop(&mut self) {
        let _ = self.local(&["down"]);
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn running(status: &serde_json::Value) -> Vec<bool> {
    status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["running"].as_bool().unwrap())
        .collect()
}

fn exists(path: &Path) -> bool {
    path.exists()
}

/// `local up`; a topic deleted (`local::delete_topic`, as the demo and the
/// bench delete theirs) leaves the others; then `local reset`: both
/// services stopped, the broker's topics and records deleted (and said
/// so), the installs kept; `status` then shows the stack stopped.
#[tokio::test(flavor = "multi_thread")]
async fn reset_stops_the_stack_and_deletes_its_data() {
    let stack = OwnStack::new();
    let up = stack.local(&["up", "--json"]);
    assert_status(&up, 0);
    assert_eq!(running(&json(&up)), [true, true]);
    assert!(
        exists(&stack.data().join("tansu.db")),
        "the broker stores its topic"
    );

    // tansu 0.6.0's own `topic delete` deleted every topic: ours deletes one.
    let config = stack.config();
    for topic in ["drop-me", "keep-me"] {
        raffle_outbox::local::ensure_topic(&config, topic, 3)
            .await
            .unwrap();
    }
    raffle_outbox::local::delete_topic(&config, "drop-me")
        .await
        .unwrap();
    raffle_outbox::local::delete_topic(&config, "never-was")
        .await
        .unwrap();
    assert_eq!(common::topics::list(&config), ["keep-me", "test-topic"]);

    let reset = stack.local(&["reset", "--json"]);
    assert_status(&reset, 0);
    let report = json(&reset);
    assert_eq!(
        report["stopped"],
        serde_json::json!(["dynamodb-local", "tansu"])
    );
    let deleted: Vec<&str> = report["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["service"].as_str().unwrap())
        .collect();
    assert!(deleted.contains(&"tansu"), "{report}");
    assert!(!exists(&stack.data()), "the broker's data is gone");
    assert!(
        exists(&stack.home.join("tansu-0.6.0")),
        "the install is kept"
    );

    let status = stack.local(&["status", "--json"]);
    assert_eq!(running(&json(&status)), [false, false]);
    // Again: nothing to stop, nothing to delete, said in words.
    let again = stack.local(&["reset"]);
    assert_status(&again, 0);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        text.contains("stopped: nothing") && text.contains("deleted: nothing"),
        "{text}"
    );
}
