//! `reconcile`: every participant accounted for, from the participants table
//! to the outbox (and, with [`Options::verify`], to the topic).
//!
//! The audit and `verify` start at the outbox, so a participant whose stream
//! record never became a row (a skipped stream batch, a table restored from a
//! backup, a record that expired while the handler was down) is invisible to
//! them. Reconcile asks the compliance team's question instead: for every
//! participant we hold, where is its row, and where is its message?
//!
//! How it reads, and what it costs:
//! - the participants table with a parallel Scan ([`segments_for`] segments,
//!   run concurrently). On AWS this is the one place a Scan is right: the
//!   question is about every item, and no index lists them all; it costs one
//!   read unit per 8 KB of participants (eventually consistent), whatever
//!   `--since`/`--until` filter out (the filter only saves transfer);
//! - for each participant, its rows from the outbox's `by_participant`
//!   index: one Query per participant, [`QUERY_CONCURRENCY`] in flight per
//!   segment (a Query cannot take several partition keys, so "batched" here
//!   means a scan page's participants queried concurrently);
//! - memory: a scan page per segment, and with `verify` at most
//!   [`crate::verify::CHUNK`] DELIVERED rows; never the whole table.
//!
//! Classes ([`Class`]): a DELIVERED row wins over a waiting one, which wins
//! over FAILED, then REJECTED; no row at all is `young` while the
//! participant's `registered_at` is within the grace window (its stream record
//! may still be on its way), `missing` after.

use std::time::Duration;

use anyhow::Context as _;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use futures::{stream, StreamExt, TryStreamExt};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::audit::{AuditQuery, AuditRecord, TimeRange};
use crate::outbox::row::reconcile_row_id;
use crate::outbox::{OutboxStore, Source, Status, Written};
use crate::stream::handler::row_for_image;

mod report;

pub use report::{classify, Class, Report};

/// Participants per scan segment: a table of N items is read in
/// `N / SEGMENT_ITEMS` segments (at least 1, at most [`MAX_SEGMENTS`]).
const SEGMENT_ITEMS: u64 = 10_000;
/// Segments read at once at most.
pub const MAX_SEGMENTS: u64 = 16;
/// `by_participant` Queries in flight per segment.
pub const QUERY_CONCURRENCY: usize = 16;
/// The participant attribute the grace window and `--since`/`--until` read
/// (RFC 3339 UTC, written by `register`).
pub const REGISTERED_AT: &str = "registered_at";
/// Missing ids kept for the JSON report (text output prints every one).
pub const MISSING_IDS_KEPT: usize = 10_000;

/// What to reconcile and what to do about it.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Participants whose `registered_at` is in this window (open: all, and
    /// participants without `registered_at` only then).
    pub range: TimeRange,
    /// How long a participant without a row counts as `young`.
    pub grace: Duration,
    /// Write a PENDING row for each missing participant (`--repair --yes`).
    pub repair: bool,
    /// Hand every DELIVERED row found to `verify` (`--verify`).
    pub verify: bool,
}

/// Where reconcile reads and writes.
pub struct Tables {
    /// The participants table's client.
    pub dynamodb: Client,
    /// The participants table.
    pub participants: String,
    /// The outbox, read through its audit index.
    pub query: AuditQuery,
    /// The outbox, written (repairs) through its store: the only writer.
    pub outbox: OutboxStore,
    /// The stream handler's limit, so a repaired row is the row it would make.
    pub max_message_bytes: usize,
}

impl Tables {
    /// The tables `config` names, through `dynamodb`.
    pub fn new(dynamodb: Client, config: &crate::Config) -> Tables {
        Tables {
            query: AuditQuery::new(dynamodb.clone(), &config.outbox_table),
            outbox: OutboxStore::new(dynamodb.clone(), &config.outbox_table),
            dynamodb,
            participants: config.participants_table.clone(),
            max_message_bytes: config.max_message_bytes,
        }
    }
}

/// How many segments a table of `items` participants is scanned in.
pub fn segments_for(items: u64) -> u64 {
    (items / SEGMENT_ITEMS).clamp(1, MAX_SEGMENTS)
}

/// One participant's verdict, sent from a segment to the collector.
struct Verdict {
    id: String,
    class: Class,
    repair: Option<Written>,
    delivered: Vec<AuditRecord>,
}

/// Reconciles every participant in `options.range`. Missing ids go to
/// `on_missing` as they are found; `progress` gets the running count of
/// participants and the table's item count (the total to expect);
/// `verifier`, when given, checks every DELIVERED row found.
pub async fn reconcile(
    tables: &Tables,
    options: &Options,
    verifier: Option<&mut crate::verify::Verifier<'_>>,
    on_missing: &mut dyn FnMut(&str),
    progress: &dyn Fn(u64, u64),
) -> anyhow::Result<Report> {
    let started = std::time::Instant::now();
    let now = OffsetDateTime::now_utc();
    let items = item_count(&tables.dynamodb, &tables.participants).await?;
    progress(0, items);
    let segments = segments_for(items);
    let (sender, mut verdicts) = mpsc::channel::<Verdict>(4 * QUERY_CONCURRENCY);
    let scans: Vec<_> = (0..segments)
        .map(|segment| scan_segment(tables, options, now, segment, segments, sender.clone()))
        .collect();
    drop(sender);
    let scanning = stream::iter(scans)
        .buffer_unordered(segments as usize)
        .try_collect::<Vec<()>>();

    let mut report = Report {
        segments,
        classes: Class::ALL.iter().map(|c| (*c, 0)).collect(),
        ..Report::default()
    };
    let mut verifier = verifier;
    let mut chunk: Vec<AuditRecord> = Vec::new();
    let collecting = async {
        while let Some(verdict) = verdicts.recv().await {
            report.participants += 1;
            *report.classes.entry(verdict.class).or_default() += 1;
            match verdict.repair {
                Some(Written::Yes) => report.repaired += 1,
                Some(Written::ConditionFailed) => report.repair_already_there += 1,
                None => {}
            }
            if verdict.class == Class::Missing {
                on_missing(&verdict.id);
                if report.missing_ids.len() < MISSING_IDS_KEPT {
                    report.missing_ids.push(verdict.id);
                } else {
                    report.missing_ids_truncated = true;
                }
            }
            if let Some(v) = verifier.as_deref_mut() {
                chunk.extend(verdict.delivered);
                if chunk.len() >= crate::verify::CHUNK {
                    v.check(std::mem::take(&mut chunk)).await?;
                }
            }
            if report.participants.is_multiple_of(1_000) {
                progress(report.participants, items);
            }
        }
        anyhow::Ok(())
    };
    let (scanned, collected) = tokio::join!(scanning, collecting);
    scanned?;
    collected?;
    if let Some(v) = verifier {
        v.check(chunk).await?;
        report.verify = Some(v.report());
    }
    progress(report.participants, items);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The participants table's item count (DynamoDB refreshes it about every
/// six hours: a size hint for the segments and the progress bar, not a count).
async fn item_count(dynamodb: &Client, table: &str) -> anyhow::Result<u64> {
    let out = dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(DisplayErrorContext(e)))
        .with_context(|| format!("describing {table}"))?;
    Ok(out.table.and_then(|t| t.item_count).unwrap_or(0).max(0) as u64)
}

/// Scans one segment, a page at a time; each page's participants are
/// classified concurrently and their verdicts sent to the collector.
async fn scan_segment(
    tables: &Tables,
    options: &Options,
    now: OffsetDateTime,
    segment: u64,
    segments: u64,
    verdicts: mpsc::Sender<Verdict>,
) -> anyhow::Result<()> {
    let mut request = tables
        .dynamodb
        .scan()
        .table_name(&tables.participants)
        .segment(segment as i32)
        .total_segments(segments as i32)
        .projection_expression("#id, #at")
        .expression_attribute_names("#id", "id")
        .expression_attribute_names("#at", REGISTERED_AT);
    let bounded = options.range.since.is_some() || options.range.until.is_some();
    if bounded {
        let (lo, hi) = options.range.key_bounds();
        request = request
            .filter_expression("#at BETWEEN :lo AND :hi")
            .expression_attribute_values(":lo", AttributeValue::S(lo))
            .expression_attribute_values(":hi", AttributeValue::S(hi));
    }
    let mut pages = request.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page
            .map_err(|e| anyhow::anyhow!(DisplayErrorContext(e)))
            .with_context(|| format!("scanning {} (segment {segment})", tables.participants))?;
        let participants: Vec<(String, Option<OffsetDateTime>)> = page
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| {
                let id = item.get("id")?.as_s().ok()?.clone();
                let at = item.get(REGISTERED_AT).and_then(|v| v.as_s().ok());
                if bounded && !at.is_some_and(|t| options.range.contains(t)) {
                    return None;
                }
                Some((id, at.and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())))
            })
            .collect();
        let judged = participants
            .into_iter()
            .map(|(id, at)| judge(tables, options, now, id, at));
        let mut judged = stream::iter(judged).buffer_unordered(QUERY_CONCURRENCY);
        while let Some(verdict) = judged.next().await {
            if verdicts.send(verdict?).await.is_err() {
                return Ok(()); // the collector stopped on an error of its own
            }
        }
    }
    Ok(())
}

/// One participant: its rows, its class, its repair.
async fn judge(
    tables: &Tables,
    options: &Options,
    now: OffsetDateTime,
    id: String,
    registered_at: Option<OffsetDateTime>,
) -> anyhow::Result<Verdict> {
    let mut rows = Vec::new();
    let mut pages = tables.query.by_participant(&id);
    while let Some(page) = pages.next().await? {
        rows.extend(page);
    }
    let statuses: Vec<Status> = rows.iter().map(|r| r.status).collect();
    let class = classify(&statuses, registered_at, now, options.grace);
    let repair = if class == Class::Missing && options.repair {
        repair(tables, &id, now).await?
    } else {
        None
    };
    let delivered = if options.verify {
        rows.into_iter()
            .filter(|r| r.status == Status::Delivered)
            .collect()
    } else {
        Vec::new()
    };
    Ok(Verdict {
        id,
        class,
        repair,
        delivered,
    })
}

/// Writes the row the stream handler would have made from the participant's
/// current item, under the participant's reconcile id, with a conditional
/// put. `None` when the participant is gone (deleted since the scan).
async fn repair(
    tables: &Tables,
    participant_id: &str,
    now: OffsetDateTime,
) -> anyhow::Result<Option<Written>> {
    let out = tables
        .dynamodb
        .get_item()
        .table_name(&tables.participants)
        .key("id", AttributeValue::S(participant_id.to_string()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(DisplayErrorContext(e)))
        .with_context(|| format!("reading participant {participant_id}"))?;
    let Some(item) = out.item else {
        return Ok(None);
    };
    let image = serde_dynamo::Item::from(item);
    let source = Source {
        event_id: format!("reconcile:{participant_id}"),
        sequence_number: None,
    };
    let row = row_for_image(&image, &source, tables.max_message_bytes, now)
        .with_id(reconcile_row_id(participant_id));
    let written = tables
        .outbox
        .insert(&row)
        .await
        .with_context(|| format!("writing the repair row of participant {participant_id}"))?;
    tracing::info!(
        participant_id,
        outbox_id = %row.id,
        status = %row.status,
        written = ?written,
        "reconcile repaired a missing participant"
    );
    Ok(Some(written))
}

#[cfg(test)]
mod tests;
