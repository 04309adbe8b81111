//! The whole path in one process, for the local stack: poll the participants
//! stream as the event source mapping would, hand each batch to the stream
//! handler, and sweep the outbox with the relay.

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
/// How often a stream record whose outbox write failed is tried again
/// before `run` gives up (as an event source mapping's retry limit).
const RECORD_RETRIES: u32 = 20;

pub struct Pipeline {
    poller: StreamPoller,
    handler: StreamHandler,
    relay: Relay,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct PipelineReport {
    pub stream_records: usize,
    pub relay: RelayReport,
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
            poller: StreamPoller::for_table(&dynamodb, streams, &config.participants_table).await?,
            handler: StreamHandler::new(outbox.clone(), config.max_message_bytes),
            relay: Relay::new(outbox, Arc::new(producer), config.clone()),
        })
    }

    /// Runs until nothing has happened for `idle` (stream and outbox both
    /// quiet), or forever when `idle` is `None`.
    pub async fn run(&mut self, idle: Option<Duration>) -> anyhow::Result<PipelineReport> {
        let mut report = PipelineReport::default();
        let mut quiet_since = Instant::now();
        loop {
            let events = self.poller.poll().await?;
            for event in &events {
                report.stream_records += event.records.len();
                self.handle_until_stored(event).await?;
            }
            let swept = self.relay.sweep().await?;
            report.relay += swept;
            if events.is_empty() && swept.claimed == 0 {
                if idle.is_some_and(|idle| quiet_since.elapsed() >= idle) {
                    return Ok(report);
                }
                tokio::time::sleep(IDLE_POLL).await;
            } else {
                quiet_since = Instant::now();
            }
        }
    }

    /// Hands a batch to the handler and, like an event source mapping,
    /// hands back the records it reported as failed until they are stored.
    async fn handle_until_stored(&self, event: &Event) -> anyhow::Result<()> {
        let mut pending = event.clone();
        for attempt in 0..RECORD_RETRIES {
            let response = self.handler.handle(&pending).await;
            if response.batch_item_failures.is_empty() {
                return Ok(());
            }
            let failed: Vec<Option<String>> = response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect();
            pending
                .records
                .retain(|r| failed.contains(&r.change.sequence_number));
            tokio::time::sleep(Duration::from_millis(250 << attempt.min(5))).await;
        }
        anyhow::bail!(
            "{} stream records could not be written to the outbox after {RECORD_RETRIES} tries",
            pending.records.len()
        )
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
