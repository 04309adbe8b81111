//! The whole path in one process, for the local stack: poll the participants
//! stream as the event source mapping would and hand each batch to the
//! stream handler; poll the outbox stream and hand its new rows to the relay;
//! sweep the outbox for rows due again (retries, expired leases).

use std::time::{Duration, Instant};

use aws_lambda_events::event::dynamodb::Event;

use crate::config::{aws_clients, Config};
use crate::lambda::stream::outbox_rows;
use crate::relay::{Relay, RelayReport};
use crate::stream::{StreamHandler, StreamPoller};

/// How long the local pipeline waits between rounds when nothing happened.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How often the local pipeline sweeps the outbox for due rows.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How long `run` keeps trying rounds that fail before it gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// The stream handler and the relay wired to both tables' streams, as on
/// AWS but in this process. Holds one Kafka producer and two stream
/// pollers.
pub struct Pipeline {
    /// The participants table's stream, feeding the stream handler.
    participants: StreamPoller,
    handler: StreamHandler,
    /// The outbox table's stream, feeding the relay its new rows.
    outbox: StreamPoller,
    relay: Relay,
    /// When the last sweep ran; none yet: the first round sweeps (rows
    /// an earlier run left).
    last_sweep: Option<Instant>,
}

/// What one [`Pipeline::run`] did, summed over its rounds.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct PipelineReport {
    /// Participants stream records handed to the stream handler.
    pub stream_records: usize,
    /// The relay's counts, from the outbox stream and the sweeps.
    pub relay: RelayReport,
    /// Items this process wrote to the outbox table, and the write capacity
    /// units DynamoDB reported for them.
    pub outbox_writes: u64,
    /// The write capacity units for `outbox_writes`.
    pub outbox_write_units: f64,
}

impl Pipeline {
    /// The pipeline on the AWS SDK's configuration from the environment
    /// (see [`Pipeline::with_clients`]).
    pub async fn connect(config: &Config) -> anyhow::Result<Pipeline> {
        let (dynamodb, streams) = aws_clients().await;
        Pipeline::with_clients(config, dynamodb, streams).await
    }

    /// The pipeline on these clients: logs in to Kafka as `config` says
    /// and connects the producer, and reads each table's latest stream ARN
    /// (one DescribeTable per table). Refused when Kafka cannot be reached
    /// or a table is missing or has no stream (`raffle-outbox migrate`
    /// makes them).
    pub async fn with_clients(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        streams: aws_sdk_dynamodbstreams::Client,
    ) -> anyhow::Result<Pipeline> {
        let relay = Relay::connect(config.clone(), &dynamodb).await?;
        Ok(Pipeline {
            participants: StreamPoller::for_table(
                &dynamodb,
                streams.clone(),
                &config.participants_table,
            )
            .await?,
            // The handler shares the relay's store: the report's write
            // counters are both of theirs.
            handler: StreamHandler::new(relay.outbox().clone(), config),
            outbox: StreamPoller::for_table(&dynamodb, streams, &config.outbox_table).await?,
            relay,
            last_sweep: None,
        })
    }

    /// The outbox the pipeline writes (its stats are the report's).
    pub fn outbox(&self) -> &crate::outbox::OutboxStore {
        self.relay.outbox()
    }

    /// Runs until nothing has happened for `idle` (stream and outbox both
    /// quiet), or forever when `idle` is `None`. A failing round (DynamoDB
    /// restarting, say) is logged and tried again; only a failure that lasts
    /// `GIVE_UP_AFTER` ends the run.
    pub async fn run(&mut self, idle: Option<Duration>) -> anyhow::Result<PipelineReport> {
        let mut report = PipelineReport::default();
        let mut quiet_since = Instant::now();
        let mut failing_since: Option<Instant> = None;
        loop {
            match self.round(&mut report).await {
                Ok(true) => quiet_since = Instant::now(),
                Ok(false) if idle.is_some_and(|idle| quiet_since.elapsed() >= idle) => {
                    let stats = self.relay.outbox().stats();
                    report.outbox_writes = stats.items();
                    report.outbox_write_units = stats.capacity_units();
                    return Ok(report);
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

    /// One round over both streams and the due rows; whether anything
    /// happened. The two stream legs run at once, as their two Lambda
    /// functions do on AWS: the handler fills the outbox while the relay
    /// drains what the previous round wrote.
    async fn round(&mut self, report: &mut PipelineReport) -> anyhow::Result<bool> {
        let Pipeline {
            participants,
            handler,
            outbox,
            relay,
            ..
        } = self;
        let stream_leg = async {
            let events = participants.poll().await?;
            let mut records = 0;
            for event in &events {
                records += event.records.len();
                handle_until_stored(handler, event).await;
            }
            anyhow::Ok(records)
        };
        let relay_leg = async {
            let mut relayed = RelayReport::default();
            let events = outbox.poll().await?;
            let polled = !events.is_empty();
            for event in events {
                relayed += relay.relay_new(outbox_rows(event)).await?;
            }
            anyhow::Ok((relayed, polled))
        };
        // Both legs run to their end even if one fails: dropping the relay
        // between a send and its mark would only make a duplicate.
        let (stream_leg, relay_leg) = tokio::join!(stream_leg, relay_leg);
        if let Ok((relayed, _)) = &relay_leg {
            report.relay += *relayed;
        }
        let records = stream_leg?;
        report.stream_records += records;
        let (_, outbox_moved) = relay_leg?;
        // The sweep finds retries and abandoned rows, all due seconds from
        // now at the earliest: once per SWEEP_EVERY is enough, and leaves
        // DynamoDB to the stream legs.
        let swept = match self.last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
            true => {
                self.last_sweep = Some(Instant::now());
                self.relay.sweep().await?
            }
            false => RelayReport::default(),
        };
        report.relay += swept;
        Ok(records > 0 || outbox_moved || swept.claimed > 0)
    }
}

/// Hands a batch to the handler and, like an event source mapping, hands
/// back the records it reported as failed until they are stored: the poller
/// has moved past them, so giving up would lose them.
async fn handle_until_stored(handler: &StreamHandler, event: &Event) {
    let mut pending = event.clone();
    for attempt in 0u32.. {
        let response = handler.handle(&pending).await;
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

#[cfg(test)]
mod tests {
    /// The local pipeline can run in a spawned task.
    #[allow(dead_code)]
    fn run_is_send(pipeline: &mut super::Pipeline) {
        fn send<T: Send>(_: T) {}
        send(pipeline.run(None));
    }
}
