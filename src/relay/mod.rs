//! The relay: due outbox rows out, Kafka messages in, every send response
//! logged and written back to the row.
//!
//! A relay claims rows with a lease before sending (so concurrent relays do
//! not send the same row), produces them in one batch with acks=all, then
//! marks each row DELIVERED with its partition, offset and timestamp. A
//! failed send goes back to PENDING with backoff, or to FAILED when retrying
//! cannot help. Crashing between the broker's ack and the DELIVERED mark
//! leaves the row IN_FLIGHT; once its lease expires another sweep sends it
//! again, with the same key and outbox id header: that is the one place a
//! duplicate can come from (at-least-once).
//!
//! A pass never stops at one row or one batch: a row whose payload cannot be
//! read becomes FAILED and the rest of its batch is sent; a write DynamoDB
//! refuses is logged and counted, and the pass goes on; the errors are
//! returned at its end ([`RelayError`], with everything the pass did). Inside
//! a Lambda invocation a batch is started only while it can end before the
//! invocation's deadline ([`crate::deadline`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use time::OffsetDateTime;

mod deliver;
mod pass;

use pass::Pass;

use crate::config::Config;
use crate::deadline::Budget;
use crate::kafka::{auth::KafkaAuth, Producer};
use crate::outbox::row::epoch_ms;
use crate::outbox::{Holder, OutboxRow, OutboxStore, Status, StoreError, Written};

/// Batches one relay works on at once: while one batch waits for the
/// broker, another's marks are written. Bounded, so a large stream batch
/// never means unbounded requests (4 × `RELAY_BATCH_SIZE` rows, as many
/// produce requests as the producer lets in flight per broker).
pub const BATCHES_IN_FLIGHT: usize = 4;

/// Rows a sweep claims at a time, whatever `RELAY_BATCH_SIZE`: every claim
/// is a conditional write, concurrent sweeps read the same oldest ids (a
/// claim that loses is a billed write), and the lease must outlast claim,
/// send and mark of the whole batch. At 1,000 a batch on a loaded machine
/// outlived its 60 s lease and another relay sent its rows again (CI, four
/// relays on 5,000 rows: 5,488 sends); the stream path claims nothing and
/// keeps `RELAY_BATCH_SIZE`.
pub const SWEEP_BATCH_MAX: usize = 100;

/// Batches in a row that met an error before a sweep gives up: DynamoDB
/// itself is failing, and the next sweep tries again.
pub const FAILED_BATCHES_BEFORE_GIVING_UP: usize = 3;

/// The message envelope's names, defined in [`crate::kafka::envelope`] and
/// re-exported here for the callers that know them as the relay's.
pub use crate::kafka::envelope::{EVENT_TYPE, OUTBOX_ID_HEADER};

/// What one relay pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelayReport {
    /// Rows this relay took a lease on.
    pub claimed: usize,
    /// Rows the broker acknowledged and marked DELIVERED.
    pub delivered: usize,
    /// Rows whose send failed and went back to PENDING, due again after a
    /// backoff.
    pub retrying: usize,
    /// Rows moved to FAILED: attempts used up, a send retrying cannot help,
    /// or a payload that could not be read. They wait for `redrive`.
    pub failed: usize,
    /// Rows whose lease was lost before the mark (another relay took them).
    pub lost_lease: usize,
    /// Errors the pass carried on past (a claim, a mark or a read that
    /// DynamoDB refused or did not answer), each logged where it happened.
    /// Their rows are due again later: a row claimed, when its lease ends; a
    /// new row, for the sweep.
    #[serde(default)]
    pub errors: usize,
    /// Rows left due because the invocation's deadline came first: what a
    /// sweep counted (due index and stale new rows) when it stopped for the
    /// deadline, and the new rows of batches a stream invocation did not
    /// start (the sweep takes them). 0 when the pass ran to its end.
    #[serde(default)]
    pub left_due: usize,
}

impl std::ops::AddAssign for RelayReport {
    fn add_assign(&mut self, other: RelayReport) {
        self.claimed += other.claimed;
        self.delivered += other.delivered;
        self.retrying += other.retrying;
        self.failed += other.failed;
        self.lost_lease += other.lost_lease;
        self.errors += other.errors;
        self.left_due += other.left_due;
    }
}

/// A relay pass that met errors. It carried on past each one (each is
/// logged where it happened): `report` counts everything it did, errors
/// included, and `first` is the first of them.
#[derive(Debug, thiserror::Error)]
#[error("{} error(s) in a relay pass; the first: {first}", report.errors)]
pub struct RelayError {
    /// Everything the pass did, its errors counted in `report.errors`.
    pub report: RelayReport,
    /// The first DynamoDB error the pass met.
    pub first: StoreError,
}

/// Moves outbox rows to Kafka: claims them with a lease, produces them with
/// acks=all, and writes each send's outcome back to its row. Safe to run
/// several at once, in one process or many: the leases keep them off each
/// other's rows.
pub struct Relay {
    outbox: OutboxStore,
    producer: Arc<Producer>,
    config: Config,
    /// This relay's lease owner id: unique per process.
    owner: String,
}

impl Relay {
    /// A relay over `outbox` and `producer`, with `config`'s batch size,
    /// attempts, lease, send timeout, retention and event source, and a
    /// lease owner id of its own. Sends nothing.
    pub fn new(outbox: OutboxStore, producer: Arc<Producer>, config: Config) -> Relay {
        let owner = format!("relay-{}", uuid::Uuid::new_v4());
        Relay {
            outbox,
            producer,
            config,
            owner,
        }
    }

    /// The relay as `config` deploys it: connected to the cluster with the
    /// configured authentication (a Secrets Manager read for SCRAM), writing
    /// the outbox table through `dynamodb`. Used by the relay Lambda, the
    /// local pipeline and the bench's relay child alike. Refused when the
    /// credentials cannot be read or Kafka cannot be reached.
    pub async fn connect(
        config: Config,
        dynamodb: &aws_sdk_dynamodb::Client,
    ) -> anyhow::Result<Relay> {
        let auth = KafkaAuth::from_config(&config).await?;
        let producer =
            Producer::connect_with_auth(&config.kafka_bootstrap_servers, &config.kafka_topic, auth)
                .await
                .map_err(|e| anyhow::anyhow!("kafka at {}: {e}", config.kafka_bootstrap_servers))?;
        let outbox = OutboxStore::new(dynamodb.clone(), &config.outbox_table);
        Ok(Relay::new(outbox, Arc::new(producer), config))
    }

    /// The outbox the relay reads and marks (and whose write counters
    /// [`OutboxStore::stats`] reads).
    pub fn outbox(&self) -> &OutboxStore {
        &self.outbox
    }

    /// Claims and sends due rows, one batch at a time, until none is due.
    ///
    /// Rows another relay claimed first drop out of the due set (their
    /// `due_at` moves to the end of that relay's lease), so concurrent relays
    /// share the work and each stops when nothing is left. A batch that met
    /// an error does not stop the sweep; [`FAILED_BATCHES_BEFORE_GIVING_UP`]
    /// in a row do.
    pub async fn sweep(&self) -> Result<RelayReport, RelayError> {
        self.sweep_within(Budget::UNLIMITED).await
    }

    /// [`sweep`](Self::sweep) inside an invocation that ends at `deadline`:
    /// a batch is claimed only while `RELAY_SEND_TIMEOUT_MS` plus
    /// `DEADLINE_MARGIN_MS` are left, its send is given up when only the
    /// margin is left, and the rows still due then are counted in
    /// `left_due`. Its rows are marked before it returns, inside the margin.
    pub async fn sweep_before(&self, deadline: Instant) -> Result<RelayReport, RelayError> {
        self.sweep_within(self.budget(deadline)).await
    }

    async fn sweep_within(&self, budget: Budget) -> Result<RelayReport, RelayError> {
        let mut pass = Pass::default();
        let mut failed_in_a_row = 0;
        loop {
            if !budget.allows(self.config.relay_send_timeout()) {
                self.count_left(budget, &mut pass).await;
                break;
            }
            let now = OffsetDateTime::now_utc();
            let ids = match self
                .outbox
                .due_ids(now, self.sweep_delay(), self.sweep_batch())
                .await
            {
                Ok(ids) => ids,
                Err(error) => {
                    tracing::error!(%error, "due rows not read; the next sweep looks again");
                    pass.error(error);
                    break;
                }
            };
            if ids.is_empty() {
                break;
            }
            let batch = self.relay_within(&ids, budget).await;
            let (claimed, failed) = (batch.report.claimed, batch.report.errors > 0);
            pass += batch;
            failed_in_a_row = if failed { failed_in_a_row + 1 } else { 0 };
            if failed_in_a_row == FAILED_BATCHES_BEFORE_GIVING_UP {
                tracing::error!(
                    batches = failed_in_a_row,
                    "sweep stopped: every batch fails; the next sweep tries again"
                );
                break;
            }
            if claimed == 0 {
                // Claimed by someone else between our query and our claim
                // (or an index not caught up yet): look again shortly.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        pass.finish()
    }

    /// Counts the rows a sweep leaves due at its deadline, within half the
    /// time left (the rest is the metrics line's).
    async fn count_left(&self, budget: Budget, pass: &mut Pass) {
        let time = budget.left().unwrap_or_default() / 2;
        let count = self
            .outbox
            .count_due(OffsetDateTime::now_utc(), self.sweep_delay());
        let counted = match tokio::time::timeout(time, count).await {
            Ok(counted) => counted,
            Err(_) => Err(StoreError::Transient(
                "rows left due not counted before the deadline".into(),
            )),
        };
        match counted {
            Ok(left) => {
                tracing::info!(left_due = left, "deadline near: the sweep stops here");
                pass.report.left_due = left;
            }
            Err(error) => {
                tracing::error!(%error, "deadline near: the sweep stops here");
                pass.error(error);
            }
        }
    }

    /// Claims the given rows (those still due) and sends them. A row whose
    /// `MAX_ATTEMPTS` earlier claims all ended without an outcome (every
    /// relay that took it crashed, timed out or was killed mid-send) is
    /// FAILED ("no outcome after N claims") instead of being sent again.
    pub async fn relay(&self, ids: &[String]) -> Result<RelayReport, RelayError> {
        self.relay_within(ids, Budget::UNLIMITED).await.finish()
    }

    async fn relay_within(&self, ids: &[String], budget: Budget) -> Pass {
        let now = OffsetDateTime::now_utc();
        let lease_until = epoch_ms(now) + self.config.lease().as_millis() as i64;
        let claimed = self
            .outbox
            .claim(ids, &self.owner, now, self.sweep_delay(), lease_until)
            .await;
        let mut pass = Pass::default();
        for error in claimed.errors {
            tracing::error!(%error, "claim failed; the row is due again later");
            pass.error(error);
        }
        for (id, why) in &claimed.unreadable {
            self.fail_unsent(&mut pass, id, &format!("corrupt row: {why}"))
                .await;
        }
        // A claim counts an attempt before the send: past the limit, the
        // earlier claims spent them all without an outcome.
        let (exhausted, rows): (Vec<OutboxRow>, Vec<OutboxRow>) = claimed
            .rows
            .into_iter()
            .partition(|row| row.attempts > self.config.max_attempts);
        for row in &exhausted {
            let claims = row.attempts - 1;
            self.fail_unsent(
                &mut pass,
                &row.id,
                &format!("no outcome after {claims} claims"),
            )
            .await;
        }
        pass += self
            .deliver(&rows, Holder::Lease(&self.owner), budget)
            .await;
        pass
    }

    /// Makes a row this relay just claimed FAILED with `reason`, unsent; an
    /// unwritten mark leaves it to be claimed again once its lease ends.
    async fn fail_unsent(&self, pass: &mut Pass, id: &str, reason: &str) {
        tracing::error!(outbox_id = %id, %reason, "claimed row is FAILED, not sent");
        pass.report.claimed += 1;
        let written = self
            .outbox
            .mark_failed_unsent(id, &self.owner, reason)
            .await;
        if matches!(written, Ok(Written::Yes)) {
            pass.report.failed += 1;
        }
        pass.outcome(id, written);
    }

    /// Sends rows the outbox stream handed to this relay, without a claim:
    /// a stream shard is read by one relay at a time, so each new row comes
    /// to exactly one relay, and the sweep leaves new rows alone for
    /// `SWEEP_DELAY_SECONDS`. That saves one write per participant. Stream
    /// images can be old (a redelivered batch, a replayed shard), so the rows'
    /// current state is read first and only rows still new are sent. Every
    /// batch runs to its end, errors or not.
    pub async fn relay_new(&self, rows: Vec<OutboxRow>) -> Result<RelayReport, RelayError> {
        self.relay_new_within(rows, Budget::UNLIMITED).await
    }

    /// [`relay_new`](Self::relay_new) inside an invocation that ends at
    /// `deadline`: a batch is started only while `RELAY_SEND_TIMEOUT_MS`
    /// plus `DEADLINE_MARGIN_MS` are left, and the rows of batches not
    /// started are counted in `left_due`. They stay new, for the sweep.
    pub async fn relay_new_before(
        &self,
        rows: Vec<OutboxRow>,
        deadline: Instant,
    ) -> Result<RelayReport, RelayError> {
        self.relay_new_within(rows, self.budget(deadline)).await
    }

    async fn relay_new_within(
        &self,
        rows: Vec<OutboxRow>,
        budget: Budget,
    ) -> Result<RelayReport, RelayError> {
        let ids: Vec<&str> = rows
            .iter()
            .filter(|r| r.status == Status::Pending)
            .map(|r| r.id.as_str())
            .collect();
        let still_new = match self.outbox.still_new(&ids).await {
            Ok(still_new) => still_new,
            Err(error) => {
                tracing::error!(rows = ids.len(), %error, "new rows' state not read; the sweep takes them");
                return Pass::failed(error).finish();
            }
        };
        let fresh: Vec<OutboxRow> = rows
            .into_iter()
            .filter(|r| still_new.contains(&r.id))
            .collect();
        let send_timeout = self.config.relay_send_timeout();
        let batches: Vec<_> = fresh
            .chunks(self.config.relay_batch_size.max(1))
            .map(|batch| async move {
                if budget.allows(send_timeout) {
                    self.deliver(batch, Holder::Fresh, budget).await
                } else {
                    Pass::left(batch.len())
                }
            })
            .collect();
        // Every batch runs to its end: a batch dropped between its send and
        // its marks would only make duplicates.
        let passes: Vec<Pass> = stream::iter(batches)
            .buffer_unordered(BATCHES_IN_FLIGHT)
            .collect()
            .await;
        let mut pass = Pass::default();
        for batch in passes {
            pass += batch;
        }
        pass.finish()
    }

    /// Rows a sweep claims at a time: `RELAY_BATCH_SIZE`, at most
    /// [`SWEEP_BATCH_MAX`].
    fn sweep_batch(&self) -> usize {
        self.config.relay_batch_size.min(SWEEP_BATCH_MAX)
    }

    /// How long a new row is the outbox stream's before the sweep takes it.
    fn sweep_delay(&self) -> Duration {
        Duration::from_secs(self.config.sweep_delay_seconds)
    }

    fn budget(&self, deadline: Instant) -> Budget {
        Budget::new(deadline, self.config.deadline_margin())
    }
}
