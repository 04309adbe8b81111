//! `verify`: every DELIVERED row's message is on the topic where the row says
//! it is, read back through the project's own Kafka code ([`TopicReader`]).
//!
//! For each row: a message exists at its partition and offset, its key is
//! the row's participant id, its `outbox_id` header is the row id and its
//! timestamp is the row's `kafka_timestamp`. Rows come from the `by_status`
//! index (DELIVERED, oldest first, optionally `--since`/`--until`) in chunks;
//! each chunk is sorted by partition and offset so the topic is read forward,
//! a fetch at a time, and only the chunk is held in memory.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::audit::{AuditQuery, AuditRecord, TimeRange};
use crate::kafka::auth::KafkaAuth;
use crate::kafka::envelope::{self, OUTBOX_ID_HEADER};
use crate::kafka::fetch::{FetchedRecord, TopicReader};
use crate::outbox::Status;

/// Rows sorted and checked together.
pub const CHUNK: usize = 50_000;

/// What is wrong with one DELIVERED row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The row names no partition or offset.
    NoCoordinates,
    /// Nothing at the row's offset.
    Missing(String),
    /// A message is there, but not this row's: what differs.
    Different(Vec<String>),
}

/// One DELIVERED row that does not match the topic; its `Display` is the
/// line `verify` prints (`MISSING` or `DIFFERENT`, the row, the detail).
#[derive(Debug, Clone)]
pub struct Problem {
    /// The row as the index holds it (no payload).
    pub row: AuditRecord,
    /// What is wrong with it.
    pub finding: Finding,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, detail) = match &self.finding {
            Finding::NoCoordinates => ("MISSING", "the row has no partition/offset".to_string()),
            Finding::Missing(reason) => ("MISSING", reason.clone()),
            Finding::Different(what) => ("DIFFERENT", what.join("; ")),
        };
        write!(
            f,
            "{kind:<9} row {} participant {} at {}: {detail}",
            self.row.id,
            self.row.participant_id.as_deref().unwrap_or("-"),
            self.row.coordinates().unwrap_or_else(|| "-".into()),
        )
    }
}

/// How many DELIVERED rows were checked, and how many were wrong.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// DELIVERED rows looked at.
    pub checked: u64,
    /// Rows with no coordinates, or no message at their offset.
    pub missing: u64,
    /// Rows whose offset holds a message with another key, `outbox_id` or
    /// timestamp.
    pub different: u64,
}

impl Report {
    /// True when every row checked matched (nothing missing or different):
    /// `verify` exits 0, otherwise 1.
    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.different == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} DELIVERED rows checked: {} match, {} missing, {} different",
            self.checked,
            self.checked - self.missing - self.different,
            self.missing,
            self.different
        )
    }
}

/// Checks every DELIVERED row created in `range`; each problem is handed to
/// `on_problem` as it is found, `progress` gets the running count.
///
/// Costs the `by_status` Query pages of DELIVERED rows in `range` (one
/// fetched ahead), one topic reader per topic, and one Fetch per run of
/// rows the previous Fetch did not cover; memory holds one chunk of
/// [`CHUNK`] rows. An `Err` means DynamoDB or the broker could not be read
/// (the check is incomplete), never that a row is wrong: that is the
/// report's.
pub async fn verify(
    query: &AuditQuery,
    bootstrap: &str,
    auth: KafkaAuth,
    range: TimeRange,
    on_problem: &mut dyn FnMut(&Problem),
    progress: &dyn Fn(u64),
) -> anyhow::Result<Report> {
    let mut verifier = Verifier::new(bootstrap, auth, on_problem);
    let mut pages = query.by_status(Status::Delivered, range, None).prefetched();
    let mut chunk = Vec::new();
    while let Some(page) = pages.recv().await {
        chunk.extend(page?);
        if chunk.len() >= CHUNK {
            verifier.check(std::mem::take(&mut chunk)).await?;
            progress(verifier.report.checked);
        }
    }
    verifier.check(chunk).await?;
    progress(verifier.report.checked);
    Ok(verifier.report)
}

/// Checks DELIVERED rows against the topic, a chunk at a time: `verify`
/// feeds it from the `by_status` index, `reconcile --verify` from the rows
/// it found per participant. Holds one connection per topic and the chunk
/// it is given; reads each partition forward (one Fetch per window of
/// offsets, not one per row).
pub struct Verifier<'a> {
    bootstrap: &'a str,
    auth: KafkaAuth,
    readers: HashMap<String, TopicReader>,
    report: Report,
    on_problem: &'a mut dyn FnMut(&Problem),
}

impl<'a> Verifier<'a> {
    /// A verifier that logs in as `auth`; each problem goes to `on_problem`.
    pub fn new(
        bootstrap: &'a str,
        auth: KafkaAuth,
        on_problem: &'a mut dyn FnMut(&Problem),
    ) -> Verifier<'a> {
        Verifier {
            bootstrap,
            auth,
            readers: HashMap::new(),
            report: Report::default(),
            on_problem,
        }
    }

    /// What was checked so far.
    pub fn report(&self) -> Report {
        self.report
    }

    /// Checks these rows (any order, any topics); an error means the topic
    /// could not be read, not that a row is wrong.
    pub async fn check(&mut self, rows: Vec<AuditRecord>) -> anyhow::Result<()> {
        let mut by_partition: BTreeMap<(String, i32), Vec<(i64, AuditRecord)>> = BTreeMap::new();
        for row in rows {
            self.report.checked += 1;
            match (&row.kafka_topic, row.kafka_partition, row.kafka_offset) {
                (Some(topic), Some(partition), Some(offset)) => by_partition
                    .entry((topic.clone(), partition))
                    .or_default()
                    .push((offset, row)),
                _ => self.found(row, Finding::NoCoordinates),
            }
        }
        for ((topic, partition), mut rows) in by_partition {
            rows.sort_by_key(|(offset, _)| *offset);
            self.check_partition(&topic, partition, rows).await?;
        }
        Ok(())
    }

    /// Reads the partition forward: a fetch whenever the next row's offset
    /// is outside what the last fetch returned.
    async fn check_partition(
        &mut self,
        topic: &str,
        partition: i32,
        rows: Vec<(i64, AuditRecord)>,
    ) -> anyhow::Result<()> {
        if !self.readers.contains_key(topic) {
            let reader =
                TopicReader::connect_with_auth(self.bootstrap, topic, self.auth.clone()).await?;
            self.readers.insert(topic.to_string(), reader);
        }
        let reader = self.readers.get_mut(topic).expect("inserted above");
        let mut window: Vec<FetchedRecord> = Vec::new();
        let mut high_watermark = 0;
        let mut findings = Vec::new();
        for (offset, row) in rows {
            let covered = window.first().is_some_and(|r| r.offset <= offset)
                && window.last().is_some_and(|r| offset <= r.offset);
            if !covered {
                let fetched = reader.fetch(partition, offset).await?;
                window = fetched.records;
                high_watermark = fetched.high_watermark;
            }
            let finding = match window.binary_search_by_key(&offset, |r| r.offset) {
                Ok(i) => compare(&row, &window[i]),
                Err(_) if high_watermark < 0 => Some(Finding::Missing(
                    "the broker says this offset is out of the partition's range".into(),
                )),
                Err(_) if offset >= high_watermark => Some(Finding::Missing(format!(
                    "the partition ends before this offset (next offset {high_watermark})"
                ))),
                Err(_) => Some(Finding::Missing(
                    "no message at this offset (deleted by the topic's retention, or compacted)"
                        .into(),
                )),
            };
            if let Some(finding) = finding {
                findings.push((row, finding));
            }
        }
        for (row, finding) in findings {
            self.found(row, finding);
        }
        Ok(())
    }

    fn found(&mut self, row: AuditRecord, finding: Finding) {
        match finding {
            Finding::Different(_) => self.report.different += 1,
            _ => self.report.missing += 1,
        }
        (self.on_problem)(&Problem { row, finding });
    }
}

/// What differs between the row and the message at its offset, if anything.
fn compare(row: &AuditRecord, message: &FetchedRecord) -> Option<Finding> {
    let text = |b: Option<&[u8]>| match b {
        Some(b) => format!("\"{}\"", String::from_utf8_lossy(b)),
        None => "none".to_string(),
    };
    let mut different = Vec::new();
    let key = message.key.as_deref();
    if key != row.participant_id.as_deref().map(str::as_bytes) {
        different.push(format!(
            "key is {} (participant is {})",
            text(key),
            text(row.participant_id.as_deref().map(str::as_bytes))
        ));
    }
    let outbox_id = envelope::outbox_id(message);
    if outbox_id != Some(row.id.as_bytes()) {
        different.push(format!(
            "{OUTBOX_ID_HEADER} header is {} (row is \"{}\")",
            text(outbox_id),
            row.id
        ));
    }
    if let Some(timestamp) = row.kafka_timestamp {
        if message.timestamp != timestamp {
            different.push(format!(
                "timestamp is {} (row says {timestamp})",
                message.timestamp
            ));
        }
    }
    (!different.is_empty()).then_some(Finding::Different(different))
}
