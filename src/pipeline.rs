//! The whole path in one process, for the local stack: poll the participants
//! stream as the event source mapping would and hand each batch to the
//! stream handler; poll the outbox stream and hand its new rows to the relay;
//! sweep the outbox for rows due again (retries, expired leases).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::dynamodb::Event;

use crate::config::{aws_clients, Config};
use crate::kafka::{auth::KafkaAuth, Producer};
use crate::outbox::OutboxStore;
use crate::relay::{Relay, RelayReport};
use crate::stream::{StreamHandler, StreamPoller};

/// How long the local pipeline waits between rounds when nothing happened.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How long `run` keeps trying rounds that fail before it gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

pub struct Pipeline {
    /// The participants table's stream, feeding the stream handler.
    participants: StreamPoller,
    handler: StreamHandler,
    /// The outbox table's stream, feeding the relay its new rows.
    outbox: StreamPoller,
    relay: Relay,
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct PipelineReport {
    pub stream_records: usize,
    pub relay: RelayReport,
    /// Items this process wrote to the outbox table, and the write capacity
    /// units DynamoDB reported for them.
    pub outbox_writes: u64,
    pub outbox_write_units: f64,
}

impl Pipeline {
    /// The pipeline on the AWS SDK's configuration from the environment.
    pub async fn connect(config: &Config) -> anyhow::Result<Pipeline> {
        let (dynamodb, streams) = aws_clients().await;
        Pipeline::with_clients(config, dynamodb, streams).await
    }

    pub async fn with_clients(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        streams: aws_sdk_dynamodbstreams::Client,
    ) -> anyhow::Result<Pipeline> {
        let outbox = OutboxStore::new(dynamodb.clone(), &config.outbox_table);
        let auth = KafkaAuth::from_config(config).await?;
        let producer =
            Producer::connect_with_auth(&config.kafka_bootstrap_servers, &config.kafka_topic, auth)
                .await
                .map_err(|e| anyhow::anyhow!("kafka at {}: {e}", config.kafka_bootstrap_servers))?;
        Ok(Pipeline {
            participants: StreamPoller::for_table(
                &dynamodb,
                streams.clone(),
                &config.participants_table,
            )
            .await?,
            handler: StreamHandler::new(outbox.clone(), config),
            outbox: StreamPoller::for_table(&dynamodb, streams, &config.outbox_table).await?,
            relay: Relay::new(outbox, Arc::new(producer), config.clone()),
        })
    }

    /// Runs until nothing has happened for `idle` (stream and outbox both
    /// quiet), or forever when `idle` is `None`. A failing round (DynamoDB
    /// restarting, say) is logged and tried again; only a failure that lasts
    /// [`GIVE_UP_AFTER`] ends the run.
    pub async fn run(&mut self, idle: Option<Duration>) -> anyhow::Result<PipelineReport> {
        let mut report = PipelineReport::default();
        let mut quiet_since = Instant::now();
        let mut failing_since: Option<Instant> = None;
        loop {
            match self.round(&mut report).await {
                Ok(true) => quiet_since = Instant::now(),
                Ok(false) if idle.is_some_and(|idle| quiet_since.elapsed() >= idle) => {
                    return Ok(report)
                }
                Ok(false) => tokio::time::sleep(IDLE_POLL).await,
                Err(error) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > GIVE_UP_AFTER {
                        return Err(error);
                    }
                    tracing::warn!(error = %format!("{error:#}"), "pipeline round failed; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    quiet_since = Instant::now();
                    continue;
                }
            }
            failing_since = None;
        }
    }

    /// One round over both streams and the due rows; whether anything happened.
    async fn round(&mut self, report: &mut PipelineReport) -> anyhow::Result<bool> {
        let stats = self.relay.outbox().stats();
        (report.outbox_writes, report.outbox_write_units) = (stats.items(), stats.capacity_units());
        let events = self.participants.poll().await?;
        for event in &events {
            report.stream_records += event.records.len();
            self.handle_until_stored(event).await;
        }
        let new_rows = self.outbox.poll().await?;
        for event in &new_rows {
            report.relay += self.relay.relay_new(Relay::new_rows(event)).await?;
        }
        let swept = self.relay.sweep().await?;
        report.relay += swept;
        Ok(!events.is_empty() || !new_rows.is_empty() || swept.claimed > 0)
    }

    /// Hands a batch to the handler and, like an event source mapping,
    /// hands back the records it reported as failed until they are stored:
    /// the poller has moved past them, so giving up would lose them.
    async fn handle_until_stored(&self, event: &Event) {
        let mut pending = event.clone();
        for attempt in 0u32.. {
            let response = self.handler.handle(&pending).await;
            if response.batch_item_failures.is_empty() {
                return;
            }
            let failed: Vec<Option<String>> = response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect();
            pending
                .records
                .retain(|r| failed.contains(&r.change.sequence_number));
            tracing::warn!(
                records = pending.records.len(),
                attempt,
                "stream records not stored yet; retrying"
            );
            tokio::time::sleep(Duration::from_millis(250 << attempt.min(4))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    /// The local pipeline can run in a spawned task.
    #[allow(dead_code)]
    fn run_is_send(pipeline: &mut super::Pipeline) {
        fn send<T: Send>(_: T) {}
        send(pipeline.run(None));
    }
}
