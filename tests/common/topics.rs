//! The topics on a local stack's broker, as an independent client sees
//! them: `tansu topic list` (not the project's Kafka code).

use raffle_outbox::local::StackConfig;

/// The names of the topics on `stack`'s broker, sorted.
pub fn list(stack: &StackConfig) -> Vec<String> {
    let tansu = stack.home.join("tansu-0.6.0").join("bin").join("tansu");
    let broker = format!("tcp://{}", stack.kafka_bootstrap());
    let output = std::process::Command::new(tansu)
        .args(["topic", "list", "--broker", &broker])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let listing = text.lines().find(|l| l.starts_with('[')).unwrap();
    let listing: Vec<serde_json::Value> = serde_json::from_str(listing).unwrap();
    let mut names: Vec<String> = listing
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}
