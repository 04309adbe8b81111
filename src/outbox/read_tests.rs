//! How the due ids are shared between the shards.

use super::*;

/// `counts[s]` due ids in shard `s`, named `s.n`.
fn pages(counts: &[usize]) -> Vec<Vec<String>> {
    counts
        .iter()
        .enumerate()
        .map(|(s, &n)| (0..n).map(|i| format!("{s}.{i}")).collect())
        .collect()
}

/// Shards that have ids in `ids`.
fn shards(ids: &[String]) -> Vec<usize> {
    let mut shards: Vec<usize> = ids
        .iter()
        .map(|id| id.split('.').next().unwrap().parse().unwrap())
        .collect();
    shards.dedup();
    shards
}

#[test]
fn every_shard_with_work_is_served_when_the_batch_is_smaller_than_the_shard_count() {
    // A backlog in all 16 shards, batches of 2: successive calls go round
    // the shards instead of serving the first ones until they are empty.
    let due = pages(&[1; DUE_SHARDS as usize]);
    let mut start = 0;
    let mut served = Vec::new();
    for _ in 0..DUE_SHARDS / 2 {
        let (ids, next) = pick_due(&due, start, 2);
        assert_eq!(ids.len(), 2);
        served.extend(shards(&ids));
        start = next;
    }
    served.sort();
    assert_eq!(served, (0..DUE_SHARDS as usize).collect::<Vec<_>>());
}

#[test]
fn a_batch_takes_from_each_shard_in_turn_from_the_start_shard() {
    let due = pages(&[3, 0, 2, 1]);
    let (ids, next) = pick_due(&due, 2, 5);
    assert_eq!(ids, ["2.0", "3.0", "0.0", "2.1", "0.1"]);
    assert_eq!(next, 1, "the shard after the last one taken");
    let (ids, next) = pick_due(&due, next, 100);
    assert_eq!(ids, ["2.0", "3.0", "0.0", "2.1", "0.1", "0.2"]);
    assert_eq!(next, 1);
    let (ids, next) = pick_due(&pages(&[0, 0]), 1, 5);
    assert!(ids.is_empty());
    assert_eq!(next, 1, "nothing taken: the same start next time");
}
