//! The demo: sample participants saved the way the raffle saves them, then
//! followed to Kafka and reported.

use std::collections::{BTreeMap, HashSet};

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use futures::{stream, StreamExt, TryStreamExt};

use crate::outbox::{OutboxRow, Status};

/// BatchWriteItem's limit.
const BATCH: usize = 25;

/// A sample participant, as the raffle's registration would save it.
pub fn sample_participant(n: usize) -> (String, serde_json::Value) {
    let id = uuid::Uuid::new_v4().to_string();
    let participant = serde_json::json!({
        "id": id,
        "name": format!("Participant {n:05}"),
        "email": format!("participant{n:05}@example.com"),
        "raffle": "summer-2026",
        "tickets": (n % 5) + 1,
        "registered_at": crate::outbox::row::rfc3339(time::OffsetDateTime::now_utc()),
    });
    (id, participant)
}

/// Saves the items into `table` with BatchWriteItem, retrying what DynamoDB
/// leaves unprocessed. Returns how many were written.
pub async fn save_all(
    client: &Client,
    table: &str,
    items: Vec<serde_json::Value>,
) -> anyhow::Result<usize> {
    let total = items.len();
    let chunks: Vec<Vec<serde_json::Value>> = items.chunks(BATCH).map(<[_]>::to_vec).collect();
    stream::iter(chunks)
        .map(|chunk| async move {
            let mut requests = chunk
                .into_iter()
                .map(|value| {
                    let item = serde_dynamo::to_item(value)?;
                    Ok(WriteRequest::builder()
                        .put_request(PutRequest::builder().set_item(Some(item)).build()?)
                        .build())
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            while !requests.is_empty() {
                let out = client
                    .batch_write_item()
                    .request_items(table, requests)
                    .send()
                    .await?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(table))
                    .unwrap_or_default();
            }
            anyhow::Ok(())
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(total)
}

/// The outbox rows of the given participants, with counts per status.
pub struct Summary {
    /// The rows whose `participant_id` is one of the demo's participants.
    pub rows: Vec<OutboxRow>,
    /// Those rows per state, every state present (0 included).
    pub counts: BTreeMap<String, usize>,
}

impl Summary {
    /// Keeps the `rows` that belong to `participant_ids` (rows without a
    /// participant id are dropped) and counts them per state. Pure: reads
    /// nothing.
    pub fn of(rows: Vec<OutboxRow>, participant_ids: &HashSet<String>) -> Summary {
        let rows: Vec<OutboxRow> = rows
            .into_iter()
            .filter(|r| {
                r.participant_id
                    .as_ref()
                    .is_some_and(|p| participant_ids.contains(p))
            })
            .collect();
        let mut counts: BTreeMap<String, usize> =
            Status::ALL.iter().map(|s| (s.to_string(), 0)).collect();
        for row in &rows {
            *counts.entry(row.status.to_string()).or_default() += 1;
        }
        Summary { rows, counts }
    }

    /// How many of the rows are DELIVERED.
    pub fn delivered(&self) -> usize {
        self.counts
            .get(Status::Delivered.as_str())
            .copied()
            .unwrap_or(0)
    }
}
