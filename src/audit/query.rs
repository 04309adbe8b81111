//! The audit's DynamoDB reads: Queries on the audit indexes, one page at a
//! time, so a caller holds at most one page (≤ 1 MB) of rows whatever the
//! table's size.

use std::collections::HashMap;

use anyhow::Context as _;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use aws_sdk_dynamodb::Client;

use super::TimeRange;
use crate::outbox::schema::{BY_PARTICIPANT_INDEX, BY_STATUS_INDEX, ID};
use crate::outbox::{OutboxRow, Status};

/// A whole outbox item as the SDK returns it, every attribute included.
pub type Item = HashMap<String, AttributeValue>;

/// Reads the outbox table for the audit.
#[derive(Clone)]
pub struct AuditQuery {
    client: Client,
    table: String,
}

impl AuditQuery {
    /// Reads `table` (the outbox table) through `client`. Sends nothing.
    pub fn new(client: Client, table: impl Into<String>) -> AuditQuery {
        AuditQuery {
            client,
            table: table.into(),
        }
    }

    /// The SDK client the audit reads with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The outbox table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The same table as an [`crate::outbox::OutboxStore`], for the
    /// commands that change rows (through its transitions). No request.
    pub fn outbox(&self) -> crate::outbox::OutboxStore {
        crate::outbox::OutboxStore::new(self.client.clone(), &self.table)
    }

    /// Rows in `status` created in `range`, oldest first. `error_contains`
    /// keeps rows whose `last_error` contains the text (a filter on the
    /// server: the pages still cost the whole range's reads).
    pub fn by_status(
        &self,
        status: Status,
        range: TimeRange,
        error_contains: Option<&str>,
    ) -> Pages {
        let (lo, hi) = range.key_bounds();
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_STATUS_INDEX)
            .key_condition_expression("#status = :status AND created_at BETWEEN :lo AND :hi")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", AttributeValue::S(status.to_string()))
            .expression_attribute_values(":lo", AttributeValue::S(lo))
            .expression_attribute_values(":hi", AttributeValue::S(hi));
        if let Some(text) = error_contains {
            request = request
                .filter_expression("contains(last_error, :text)")
                .expression_attribute_values(":text", AttributeValue::S(text.to_string()));
        }
        Pages::new(request, range)
    }

    /// Every row of one participant, oldest first (`by_participant` Query
    /// pages).
    pub fn by_participant(&self, participant_id: &str) -> Pages {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_PARTICIPANT_INDEX)
            .key_condition_expression("participant_id = :p")
            .expression_attribute_values(":p", AttributeValue::S(participant_id.to_string()));
        Pages::new(request, TimeRange::default())
    }

    /// How many rows are in `status` (counted by the index, page by page:
    /// the read cost is the state's whole size, the memory is nothing).
    pub async fn count(&self, status: Status) -> anyhow::Result<u64> {
        let mut pages = self.by_status(status, TimeRange::default(), None);
        pages.request = pages.request.select(Select::Count);
        let mut total = 0;
        while let Some(count) = pages.next_count().await? {
            total += count;
        }
        Ok(total)
    }

    /// The oldest row in `status`, if any: one Query of one item.
    pub async fn oldest(&self, status: Status) -> anyhow::Result<Option<OutboxRow>> {
        let mut pages = self.by_status(status, TimeRange::default(), None);
        pages.request = pages.request.limit(1);
        Ok(pages.next().await?.and_then(|rows| rows.into_iter().next()))
    }

    /// The whole row, from the table: one consistent GetItem. `None` when
    /// there is no such row.
    pub async fn item(&self, id: &str) -> anyhow::Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(DisplayErrorContext(e)))
            .with_context(|| format!("reading row {id} from {}", self.table))?;
        Ok(out.item)
    }
}

/// A Query's result, one page at a time.
pub struct Pages {
    request: QueryFluentBuilder,
    range: TimeRange,
    /// `None` once the last page was read; `Some(None)` before the first.
    start: Option<Option<Item>>,
}

impl Pages {
    fn new(request: QueryFluentBuilder, range: TimeRange) -> Pages {
        Pages {
            request,
            range,
            start: Some(None),
        }
    }

    /// The next page's rows in the time range (possibly none: a page can be
    /// all filtered out), or `None` after the last page. One Query call of
    /// at most 1 MB; refused when DynamoDB fails or a row does not read as
    /// an outbox row.
    pub async fn next(&mut self) -> anyhow::Result<Option<Vec<OutboxRow>>> {
        let Some(items) = self.next_items().await? else {
            return Ok(None);
        };
        let mut rows = Vec::with_capacity(items.len());
        for item in items {
            let row: OutboxRow = serde_dynamo::from_item(item)
                .context("an outbox row in the index is unreadable")?;
            if self.range.contains(&row.created_at) {
                rows.push(row);
            }
        }
        Ok(Some(rows))
    }

    /// The pages on a channel, the next one fetched while the caller works
    /// on the current: at most `PREFETCH` pages are held.
    pub fn prefetched(mut self) -> tokio::sync::mpsc::Receiver<anyhow::Result<Vec<OutboxRow>>> {
        const PREFETCH: usize = 1;
        let (sender, receiver) = tokio::sync::mpsc::channel(PREFETCH);
        tokio::spawn(async move {
            loop {
                let page = match self.next().await {
                    Ok(Some(page)) => Ok(page),
                    Ok(None) => return,
                    Err(e) => Err(e),
                };
                let failed = page.is_err();
                if sender.send(page).await.is_err() || failed {
                    return;
                }
            }
        });
        receiver
    }

    async fn next_items(&mut self) -> anyhow::Result<Option<Vec<Item>>> {
        Ok(self
            .next_output()
            .await?
            .map(|o| o.items.unwrap_or_default()))
    }

    async fn next_count(&mut self) -> anyhow::Result<Option<u64>> {
        Ok(self.next_output().await?.map(|o| o.count as u64))
    }

    async fn next_output(&mut self) -> anyhow::Result<Option<QueryOutput>> {
        let Some(start) = self.start.take() else {
            return Ok(None);
        };
        let out = self
            .request
            .clone()
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(DisplayErrorContext(e)))
            .context("querying the outbox")?;
        self.start = out
            .last_evaluated_key
            .clone()
            .filter(|k| !k.is_empty())
            .map(Some);
        Ok(Some(out))
    }
}
