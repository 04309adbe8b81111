//! Reads a table's DynamoDB stream the way a Lambda event source mapping
//! does, and hands out the same `DynamoDbEvent` batches.
//!
//! Only the local pipeline needs it: in AWS the event source mapping does
//! this. Shards are read parent before child, so a participant's records
//! keep their order, and from the start of the stream (TRIM_HORIZON): the
//! handler is idempotent, so reading a record again costs a conditional put
//! and makes no second row.

use std::collections::BTreeMap;

use aws_lambda_events::event::dynamodb::{Event, EventRecord, StreamRecord};
use aws_sdk_dynamodbstreams::error::ProvideErrorMetadata;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use aws_sdk_dynamodbstreams::Client as StreamsClient;

/// Records per GetRecords call (the service maximum is 1,000; Lambda's
/// default batch size is 100).
const BATCH_SIZE: i32 = 1000;

enum Shard {
    /// Not started yet: waiting for its parent to close.
    Waiting {
        parent: Option<String>,
    },
    /// `last` is the sequence number of the last record read, to start
    /// again after it when the iterator goes bad.
    Reading {
        iterator: String,
        last: Option<String>,
    },
    Closed,
}

/// One table's stream, read shard by shard from the start, remembering
/// where each shard is so every poll returns only new records.
pub struct StreamPoller {
    client: StreamsClient,
    stream_arn: String,
    region: String,
    shards: BTreeMap<String, Shard>,
}

impl StreamPoller {
    /// A poller for the latest stream of `table`: one DescribeTable.
    /// Refused when the table is missing or has no stream.
    pub async fn for_table(
        dynamodb: &aws_sdk_dynamodb::Client,
        client: StreamsClient,
        table: &str,
    ) -> anyhow::Result<StreamPoller> {
        let described = dynamodb.describe_table().table_name(table).send().await?;
        let stream_arn = described
            .table
            .and_then(|t| t.latest_stream_arn)
            .ok_or_else(|| {
                anyhow::anyhow!("table {table} has no stream; run `raffle-outbox migrate`")
            })?;
        let region = client
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default();
        Ok(StreamPoller {
            client,
            stream_arn,
            region,
            shards: BTreeMap::new(),
        })
    }

    /// One round over every readable shard; an empty list means nothing new.
    ///
    /// Costs DescribeStream (a call per page of shards), then per readable
    /// shard one GetRecords of up to 1,000 records (plus a GetShardIterator
    /// when the shard starts or its iterator is renewed). Stops at the first
    /// error, and then the records already read from other shards in this
    /// round are not returned, now or later: their shards have moved past
    /// them.
    pub async fn poll(&mut self) -> anyhow::Result<Vec<Event>> {
        self.discover_shards().await?;
        let mut events = Vec::new();
        let ids: Vec<String> = self.shards.keys().cloned().collect();
        for id in ids {
            if let Some(event) = self.read_shard(&id).await? {
                events.push(event);
            }
        }
        Ok(events)
    }

    async fn discover_shards(&mut self) -> anyhow::Result<()> {
        let mut start: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await?;
            let Some(description) = out.stream_description else {
                return Ok(());
            };
            for shard in description.shards.unwrap_or_default() {
                if let Some(id) = shard.shard_id {
                    self.shards.entry(id).or_insert(Shard::Waiting {
                        parent: shard.parent_shard_id,
                    });
                }
            }
            start = description.last_evaluated_shard_id;
            if start.is_none() {
                return Ok(());
            }
        }
    }

    async fn read_shard(&mut self, id: &str) -> anyhow::Result<Option<Event>> {
        let (iterator, last) = match self.shards.get(id) {
            Some(Shard::Reading { iterator, last }) => (iterator.clone(), last.clone()),
            Some(Shard::Waiting { parent }) => {
                let parent_open = parent.as_ref().is_some_and(|p| {
                    matches!(
                        self.shards.get(p),
                        Some(Shard::Waiting { .. } | Shard::Reading { .. })
                    )
                });
                if parent_open {
                    return Ok(None);
                }
                match self.iterator(id, None).await? {
                    Some(iterator) => (iterator, None),
                    None => {
                        self.shards.insert(id.to_string(), Shard::Closed);
                        return Ok(None);
                    }
                }
            }
            Some(Shard::Closed) | None => return Ok(None),
        };
        let out = match self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(BATCH_SIZE)
            .send()
            .await
        {
            Ok(out) => out,
            // DynamoDB Local numbers the records of all streams with one
            // counter, so an iterator taken on an empty shard can point at a
            // number another stream has used by now: it answers "trimmed"
            // forever. An iterator also expires after 15 minutes. Either way,
            // start again after the last record read.
            Err(e)
                if matches!(
                    e.code(),
                    Some("TrimmedDataAccessException" | "ExpiredIteratorException")
                ) =>
            {
                tracing::debug!(shard = id, code = e.code(), "stream iterator renewed");
                let Some(iterator) = self.iterator(id, last.as_deref()).await? else {
                    self.shards.insert(id.to_string(), Shard::Closed);
                    return Ok(None);
                };
                self.client
                    .get_records()
                    .shard_iterator(iterator)
                    .limit(BATCH_SIZE)
                    .send()
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        let records: Vec<Record> = out.records.unwrap_or_default();
        let last = records
            .last()
            .and_then(|r| r.dynamodb.as_ref())
            .and_then(|c| c.sequence_number.clone())
            .or(last);
        let next = match out.next_shard_iterator {
            Some(iterator) => Shard::Reading { iterator, last },
            None => Shard::Closed,
        };
        self.shards.insert(id.to_string(), next);
        if records.is_empty() {
            return Ok(None);
        }
        let mut event = Event::default();
        event.records = records
            .into_iter()
            .map(|r| self.to_event_record(r))
            .collect();
        Ok(Some(event))
    }

    /// An iterator at the start of the shard, or just after `last`.
    async fn iterator(&self, id: &str, last: Option<&str>) -> anyhow::Result<Option<String>> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(id);
        let request = match last {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(sequence),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        Ok(request.send().await?.shard_iterator)
    }

    /// The record as Lambda would deliver it.
    fn to_event_record(&self, record: Record) -> EventRecord {
        let change = record
            .dynamodb
            .unwrap_or_else(|| aws_sdk_dynamodbstreams::types::StreamRecord::builder().build());
        let mut stream_record = StreamRecord::default();
        stream_record.keys = change.keys.unwrap_or_default().into();
        stream_record.new_image = change.new_image.unwrap_or_default().into();
        stream_record.old_image = change.old_image.unwrap_or_default().into();
        stream_record.sequence_number = change.sequence_number;
        stream_record.size_bytes = change.size_bytes.unwrap_or_default();
        let mut event_record = EventRecord::default();
        event_record.aws_region = self.region.clone();
        event_record.change = stream_record;
        event_record.event_id = record.event_id.unwrap_or_default();
        event_record.event_name = record
            .event_name
            .map(|n| n.as_str().to_string())
            .unwrap_or_default();
        event_record.event_source = Some("aws:dynamodb".to_string());
        event_record.event_version = record.event_version;
        event_record.event_source_arn = Some(self.stream_arn.clone());
        event_record
    }
}
