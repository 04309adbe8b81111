use super::*;

#[test]
fn finds_partition_count_in_topic_listing() {
    // Captured from `tansu topic list` 0.6.0 (one partition entry trimmed).
    let text = r#"[{"error_code":0,"name":"other","topic_id":[1],"is_internal":false,"partitions":[],"topic_authorized_operations":-2147483648},{"error_code":0,"name":"local-proof-topic","topic_id":[206,95],"is_internal":false,"partitions":[{"error_code":0,"partition_index":0,"leader_id":111,"leader_epoch":0,"replica_nodes":[111],"isr_nodes":[111],"offline_replicas":[]},{"error_code":0,"partition_index":1,"leader_id":111,"leader_epoch":0,"replica_nodes":[111],"isr_nodes":[111],"offline_replicas":[]}],"topic_authorized_operations":-2147483648}]
"#;
    assert_eq!(
        partitions_in_listing(text, "local-proof-topic").unwrap(),
        Some(2)
    );
    assert_eq!(partitions_in_listing(text, "other").unwrap(), Some(0));
    assert_eq!(partitions_in_listing(text, "missing").unwrap(), None);
    assert_eq!(partitions_in_listing("[]\n", "missing").unwrap(), None);
    assert!(partitions_in_listing("ERROR tansu: boom", "x").is_err());
}

#[test]
fn paths_follow_cargo_install_layout() {
    assert_eq!(
        binary(Path::new("/h")),
        PathBuf::from("/h/tansu-0.6.0/bin/tansu")
    );
    let cfg = StackConfig {
        home: "/h".into(),
        dynamodb_port: 8000,
        kafka_port: 9092,
    };
    assert_eq!(work_dir(&cfg), PathBuf::from("/h/run/tansu"));
    assert_eq!(broker_url(&cfg), "tcp://127.0.0.1:9092");
}
