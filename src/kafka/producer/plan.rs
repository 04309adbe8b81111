//! How one send is cut into requests: per partition batches under the
//! broker's size limit, in rounds that keep each partition's order.

use crate::kafka::message::Message;
use crate::kafka::partitioner;

/// Splits the messages at `indexes` (in order) into rounds of per-partition
/// batches: indexes grouped by partition in their order, each batch under
/// `max_batch_bytes` (a single larger message still travels alone, and the
/// broker's answer decides; 0 puts every message in a batch of its own).
/// Round `n` carries the `n`-th batch of every partition, so a partition's
/// batches go out in order.
pub(super) fn plan(
    messages: &[Message],
    indexes: &[usize],
    partitions: i32,
    max_batch_bytes: usize,
) -> Vec<Vec<(i32, Vec<usize>)>> {
    let mut per_partition: Vec<Vec<Vec<usize>>> = vec![Vec::new(); partitions as usize];
    let mut sizes: Vec<usize> = vec![0; partitions as usize];
    for &index in indexes {
        let message = &messages[index];
        let p = partitioner::partition_for(message.key.as_bytes(), partitions) as usize;
        let size = message.size();
        let batches = &mut per_partition[p];
        if batches.is_empty() || sizes[p] + size > max_batch_bytes && sizes[p] > 0 {
            batches.push(Vec::new());
            sizes[p] = 0;
        }
        batches.last_mut().expect("pushed above").push(index);
        sizes[p] += size;
    }
    let rounds = per_partition.iter().map(Vec::len).max().unwrap_or(0);
    (0..rounds)
        .map(|n| {
            per_partition
                .iter()
                .enumerate()
                .filter_map(|(p, batches)| batches.get(n).map(|b| (p as i32, b.clone())))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn all(messages: &[Message]) -> Vec<usize> {
        (0..messages.len()).collect()
    }

    fn message(key: &str, size: usize) -> Message {
        Message {
            key: key.to_string(),
            value: Bytes::from(vec![b'x'; size]),
            headers: vec![],
        }
    }

    #[test]
    fn plan_groups_by_partition_in_order() {
        let keys = ["a", "b", "c", "d", "e", "f", "a", "b"];
        let messages: Vec<_> = keys.iter().map(|k| message(k, 10)).collect();
        let rounds = plan(&messages, &all(&messages), 3, 1 << 20);
        assert_eq!(rounds.len(), 1);
        let mut seen = vec![];
        for (p, indexes) in &rounds[0] {
            assert!(
                indexes.windows(2).all(|w| w[0] < w[1]),
                "order kept within a partition"
            );
            for &i in indexes {
                assert_eq!(partitioner::partition_for(keys[i].as_bytes(), 3), *p);
                seen.push(i);
            }
        }
        seen.sort();
        assert_eq!(seen, (0..keys.len()).collect::<Vec<_>>());
    }

    #[test]
    fn plan_splits_batches_over_the_size_limit() {
        let messages: Vec<_> = (0..5).map(|_| message("same-key", 400)).collect();
        let rounds = plan(&messages, &all(&messages), 3, 1000);
        let batches: Vec<Vec<usize>> = rounds
            .iter()
            .flat_map(|r| r.iter().map(|(_, b)| b.clone()))
            .collect();
        assert_eq!(batches, vec![vec![0, 1], vec![2, 3], vec![4]]);
        let oversized = plan(&[message("k", 5000)], &[0], 3, 1000);
        assert_eq!(
            oversized.len(),
            1,
            "a lone large message still goes, the broker decides"
        );
        let alone = plan(&messages, &[1, 3, 4], 3, 0);
        assert_eq!(
            alone,
            vec![
                vec![(alone[0][0].0, vec![1])],
                vec![(alone[0][0].0, vec![3])],
                vec![(alone[0][0].0, vec![4])]
            ],
            "with no room, each message goes in a batch of its own, in order"
        );
    }
}
