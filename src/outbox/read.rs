//! The outbox table's reads: one row, the rows still new, the rows the
//! sweep claims (the due index and the stale new rows: which, how many)
//! and, for tests, every row. Reads only: the writes are in
//! [`super::write`] and [`super::claim`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use futures::{stream, StreamExt, TryStreamExt};
use time::OffsetDateTime;

use super::row::{epoch_ms, rfc3339, Status, DUE_SHARDS};
use super::schema::{BY_STATUS_INDEX, DUE_INDEX, ID};
use super::store::{n, parse_row, s, BATCH_CONCURRENCY};
use super::{OutboxRow, OutboxStore, StoreError};

/// Index entries a page of [`OutboxStore::stale_new_ids`] reads.
const STALE_PAGE: i32 = 1_000;

/// Pages [`OutboxStore::stale_new_ids`] reads at most a call.
const STALE_PAGES: usize = 4;

impl OutboxStore {
    /// The row with `id`, read consistently: one GetItem (a read unit per
    /// 4 KB of the row). `None` if there is none; [`StoreError::Corrupt`] if
    /// the item is not a readable row.
    pub async fn get(&self, id: &str) -> Result<Option<OutboxRow>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(ID, s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        out.item.map(parse_row).transpose()
    }

    /// Which of these rows are still new (PENDING, never attempted, never
    /// waited), read consistently. The relay checks this before sending
    /// rows from the outbox stream, whose images may be old: a redelivered
    /// stream batch must not send again what was delivered (or what failed
    /// and is the sweep's now). Reads, not writes: one consistent
    /// BatchGetItem per 100 ids (a read unit per 4 KB of each row: only
    /// the state is projected, but DynamoDB bills the item's size).
    pub async fn still_new(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let reads: Vec<_> = ids.chunks(100).map(|c| self.still_new_of(c)).collect();
        let chunks: Vec<_> = stream::iter(reads)
            .buffer_unordered(BATCH_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(chunks.into_iter().flatten().collect())
    }

    /// [`still_new`](Self::still_new) for at most 100 ids: one BatchGetItem
    /// (and more for keys DynamoDB left unprocessed).
    async fn still_new_of(&self, ids: &[&str]) -> Result<Vec<String>, StoreError> {
        let keys: Vec<HashMap<String, AttributeValue>> = ids
            .iter()
            .map(|id| HashMap::from([(ID.to_string(), s(*id))]))
            .collect();
        let mut request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .projection_expression("id, #status, attempts, waits")
            .expression_attribute_names("#status", "status")
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut new = Vec::new();
        loop {
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for item in out
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default()
            {
                let status = item.get("status").and_then(|v| v.as_s().ok());
                let attempts = item.get("attempts").and_then(|v| v.as_n().ok());
                let waits = item.get("waits").and_then(|v| v.as_n().ok());
                if status.map(String::as_str) == Some(Status::Pending.as_str())
                    && attempts.map(String::as_str) == Some("0")
                    && waits.is_none_or(|w| w == "0")
                {
                    if let Some(AttributeValue::S(id)) = item.get(ID) {
                        new.push(id.clone());
                    }
                }
            }
            match out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                Some(rest) if !rest.keys.is_empty() => request = rest,
                _ => return Ok(new),
            }
        }
    }

    /// Ids of rows the sweep should claim at `now`, at most `limit`: first
    /// the new rows older than `sweep_delay` ([`stale_new_ids`]: their
    /// stream record was lost or not handled), then the due index's rows
    /// (PENDING past their backoff, or IN_FLIGHT with an expired lease),
    /// oldest first per shard and shared fairly between the shards
    /// (`pick_due`): the shard served first moves round with each call, so
    /// every shard with work is served within ⌈`DUE_SHARDS` / `limit`⌉
    /// calls however small `limit` is. Costs one Query of `by_status` and
    /// one per due-index shard (16). The indexes are eventually consistent:
    /// an id may be due no longer (the claim's condition decides).
    ///
    /// [`stale_new_ids`]: Self::stale_new_ids
    pub async fn due_ids(
        &self,
        now: OffsetDateTime,
        sweep_delay: Duration,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut ids = self.stale_new_ids(now - sweep_delay, limit).await?;
        let limit = limit - ids.len();
        if limit == 0 {
            return Ok(ids);
        }
        let per_shard = (limit as u32).div_ceil(DUE_SHARDS).max(1) as i32;
        let now = epoch_ms(now);
        let queries =
            (0..DUE_SHARDS).map(|shard| self.due_query(shard, now).limit(per_shard).send());
        let mut pages = Vec::new();
        for page in futures::future::join_all(queries).await {
            let page = page.map_err(StoreError::from_sdk)?;
            let ids = page.items.unwrap_or_default().into_iter();
            pages.push(
                ids.filter_map(|mut item| match item.remove(ID) {
                    Some(AttributeValue::S(id)) => Some(id),
                    _ => None,
                })
                .collect(),
            );
        }
        let start = self.next_shard.load(Ordering::Relaxed);
        let (due, next) = pick_due(&pages, start, limit);
        self.next_shard.store(next, Ordering::Relaxed);
        ids.extend(due);
        Ok(ids)
    }

    /// Ids of new rows (PENDING, never attempted, never failed: outside the
    /// due index) created before `before`, oldest first, at most `limit`:
    /// rows the outbox stream should have handed to a relay by now. Read
    /// from `by_status` (PENDING, `created_at` ≤ `before`), which does not
    /// project `due_at`: the filter keeps the entries without `last_error`
    /// and with no attempt, which every failed send, wait or redrive sets
    /// or leaves. At most [`STALE_PAGES`] pages of [`STALE_PAGE`] entries
    /// are read a call, so a backlog of rows backing off (a broker outage)
    /// bounds the read; the rows behind it are found once it drains.
    pub async fn stale_new_ids(
        &self,
        before: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut pages = self
            .stale_new_query(before)
            .into_paginator()
            .page_size(STALE_PAGE)
            .send();
        let mut ids = Vec::new();
        for _ in 0..STALE_PAGES {
            let Some(page) = pages.next().await else {
                break;
            };
            let page = page.map_err(StoreError::from_sdk)?;
            for mut item in page.items.unwrap_or_default() {
                if let Some(AttributeValue::S(id)) = item.remove(ID) {
                    ids.push(id);
                }
            }
            if ids.len() >= limit {
                ids.truncate(limit);
                break;
            }
        }
        Ok(ids)
    }

    /// How many rows the sweep would claim at `now` (see
    /// [`due_ids`](Self::due_ids)): a Count query on each shard of the due
    /// index, all pages, so exact whatever the backlog (the index holds
    /// keys only: a page counts thousands of rows), and one of `by_status`
    /// for the new rows older than `sweep_delay`. At least 17 Queries.
    pub async fn count_due(
        &self,
        now: OffsetDateTime,
        sweep_delay: Duration,
    ) -> Result<usize, StoreError> {
        let now_ms = epoch_ms(now);
        let shards = (0..DUE_SHARDS).map(|shard| count(self.due_query(shard, now_ms)));
        let (stale, shards) = futures::future::try_join(
            count(self.stale_new_query(now - sweep_delay)),
            futures::future::try_join_all(shards),
        )
        .await?;
        Ok(stale + shards.into_iter().sum::<usize>())
    }

    /// The new rows created before `before`, on `by_status`, oldest first.
    fn stale_new_query(&self, before: OffsetDateTime) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(BY_STATUS_INDEX)
            .key_condition_expression("#status = :pending AND created_at <= :before")
            .filter_expression("attempts = :zero AND attribute_not_exists(last_error)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(Status::Pending.as_str()))
            .expression_attribute_values(":before", s(rfc3339(before)))
            .expression_attribute_values(":zero", n(0))
    }

    /// The rows of due-index shard `shard` due at `now` (epoch ms).
    fn due_query(&self, shard: u32, now: i64) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("due_shard = :shard AND due_at <= :now")
            .expression_attribute_values(":shard", s(shard.to_string()))
            .expression_attribute_values(":now", n(now))
    }

    /// Every row, by a paginated Scan (tests and the demo's report: its
    /// cost is the whole table's size in read units; tables of millions use
    /// the audit's indexes). [`StoreError::Corrupt`] if any item is not a
    /// readable row.
    pub async fn scan_all(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let pages: Vec<_> = self
            .client
            .scan()
            .table_name(&self.table)
            .select(Select::AllAttributes)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(StoreError::from_sdk)?;
        pages
            .into_iter()
            .flat_map(|p| p.items.unwrap_or_default())
            .map(parse_row)
            .collect()
    }
}

/// How many items `query` matches: a Count query, all pages.
async fn count(query: QueryFluentBuilder) -> Result<usize, StoreError> {
    let pages: Vec<_> = query
        .select(Select::Count)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(StoreError::from_sdk)?;
    Ok(pages.iter().map(|p| p.count as usize).sum())
}

/// The ids a due query returns, from each shard's oldest-first page
/// (`pages[shard]`): at most `limit`, taken round-robin from shard `start`
/// (each shard's oldest in turn, then each one's second, …), so no shard
/// waits behind another's backlog. Also returns the shard the next call
/// starts with: the one after the last taken, so that successive calls go
/// round the shards even when `limit` is smaller than their number.
pub(super) fn pick_due(pages: &[Vec<String>], start: usize, limit: usize) -> (Vec<String>, usize) {
    let shards = pages.len().max(1);
    let deepest = pages.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::new();
    let mut next = start % shards;
    for depth in 0..deepest {
        for shard in (0..shards).map(|k| (start + k) % shards) {
            if ids.len() == limit {
                return (ids, next);
            }
            if let Some(id) = pages[shard].get(depth) {
                ids.push(id.clone());
                next = (shard + 1) % shards;
            }
        }
    }
    (ids, next)
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
