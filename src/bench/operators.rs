//! The operators' legs: `audit export` of seeded rows, and `reconcile` of a participants table.

use super::*;

/// `raffle-outbox reconcile --json` over a seeded participants table and
/// outbox, in a child process whose peak RSS is measured.
#[derive(Debug, Serialize)]
pub struct ReconcileFigures {
    /// Participants seeded, each with its outbox row.
    pub participants: usize,
    /// Participants/s for the whole `reconcile` child process.
    pub reconcile_participants_per_s: f64,
    /// Peak resident memory of the child process, in MB.
    pub reconcile_peak_rss_mb: f64,
    /// Scan segments the command chose for the table.
    pub segments: u64,
    /// Seeding and index backfill, for the record (not in the figure).
    pub seed_s: f64,
    /// Seconds the audit indexes took to backfill, for the record.
    pub index_backfill_s: f64,
}

/// `raffle-outbox audit export --format csv` of a seeded outbox, in a child
/// process whose peak RSS is measured.
#[derive(Debug, Serialize)]
pub struct ExportFigures {
    /// Rows seeded and exported (the leg fails unless the file holds them
    /// all).
    pub rows: usize,
    /// Rows/s for the whole `audit export` child process.
    pub export_rows_per_s: f64,
    /// Peak resident memory of the child process, in MB: flat whatever
    /// `rows` is, if the export streams as it promises.
    pub export_peak_rss_mb: f64,
    /// Seeding (BatchWriteItem) and adding the audit indexes (backfill), for
    /// the record: they are not part of the export's figure.
    pub seed_s: f64,
    /// Seconds the audit indexes took to backfill, for the record (not in
    /// the figure).
    pub index_backfill_s: f64,
}

/// The export leg, on a DynamoDB Local of its own: `rows` outbox rows
/// seeded (98 % DELIVERED, 1 % FAILED, 1 % PENDING, a day's worth), then
/// `audit export --format csv` of all of them to a file, whose record count
/// is checked.
///
/// The rows go into an outbox of version 0002 with its stream turned off
/// (see [`local::disable_stream`]), and the audit indexes are then added by
/// migration, which backfills them, as on a production upgrade.
pub(super) async fn export(
    base: &Config,
    stack: &StackConfig,
    rows: usize,
) -> anyhow::Result<ExportFigures> {
    let leg = DynamoLeg::start_at(base, stack, "export", 2).await?;
    let (config, dynamodb) = (&leg.config, &leg.dynamodb);
    local::disable_stream(dynamodb, &config.outbox_table).await?;
    let t0 = OffsetDateTime::now_utc() - Duration::from_secs(86_400);
    let items = (0..rows)
        .map(|i| serde_json::to_value(export_row(i, t0, &config.kafka_topic)))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    demo::save_all(dynamodb, &config.outbox_table, items).await?;
    let seed_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    migrate::migrate(dynamodb, config).await?;
    let index_backfill_s = started.elapsed().as_secs_f64();

    let file = stack.run_dir().join("bench-export.csv");
    let output = file
        .to_str()
        .context("the run directory is not valid UTF-8")?;
    let command = leg.command(&["audit", "export", "--format", "csv", "--output", output])?;
    let started = Instant::now();
    let child = spawn_measured(command)?;
    let peak_rss_kb = tokio::task::spawn_blocking(move || child.wait())
        .await??
        .peak_rss_kib;
    let elapsed = started.elapsed();
    let records = std::fs::read(&file)?
        .windows(2)
        .filter(|w| w == b"\r\n")
        .count();
    anyhow::ensure!(
        records == rows + 1,
        "the export holds {} of {rows} rows",
        records.saturating_sub(1)
    );
    std::fs::remove_file(&file)?;
    Ok(ExportFigures {
        rows,
        export_rows_per_s: rate(rows, elapsed),
        export_peak_rss_mb: mb(peak_rss_kb),
        seed_s: tenths(seed_s),
        index_backfill_s: tenths(index_backfill_s),
    })
}

/// The reconcile leg, on a DynamoDB Local of its own: `n` participants
/// registered over a day, each with its outbox row as [`export_row`] makes
/// them (98 % DELIVERED, 1 % FAILED, 1 % PENDING), seeded with both streams
/// off and the audit indexes backfilled; then `reconcile --json`, whose
/// counts are checked.
pub(super) async fn reconcile(
    base: &Config,
    stack: &StackConfig,
    n: usize,
) -> anyhow::Result<ReconcileFigures> {
    let leg = DynamoLeg::start_at(base, stack, "reconcile", 2).await?;
    let (config, dynamodb) = (&leg.config, &leg.dynamodb);
    local::disable_stream(dynamodb, &config.participants_table).await?;
    local::disable_stream(dynamodb, &config.outbox_table).await?;
    let t0 = OffsetDateTime::now_utc() - Duration::from_secs(86_400);
    let rows: Vec<OutboxRow> = (0..n)
        .map(|i| export_row(i, t0, &config.kafka_topic))
        .collect();
    let participants = rows
        .iter()
        .map(|row| Ok(serde_json::from_slice(&row.payload_bytes()?)?))
        .collect::<anyhow::Result<Vec<serde_json::Value>>>()?;
    let rows = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    demo::save_all(dynamodb, &config.participants_table, participants).await?;
    demo::save_all(dynamodb, &config.outbox_table, rows).await?;
    let seed_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    migrate::migrate(dynamodb, config).await?;
    let index_backfill_s = started.elapsed().as_secs_f64();

    let command = leg.command(&["reconcile", "--json"])?;
    let started = Instant::now();
    let child = spawn_measured(command)?;
    let finished = tokio::task::spawn_blocking(move || child.wait()).await??;
    let (stdout, peak_rss_kb) = (finished.stdout, finished.peak_rss_kib);
    let elapsed = started.elapsed();
    let report: serde_json::Value = serde_json::from_slice(&stdout)?;
    anyhow::ensure!(
        report["participants"].as_u64() == Some(n as u64)
            && report["classes"]["missing"].as_u64() == Some(0),
        "reconcile saw {report}"
    );
    Ok(ReconcileFigures {
        participants: n,
        reconcile_participants_per_s: rate(n, elapsed),
        reconcile_peak_rss_mb: mb(peak_rss_kb),
        segments: report["segments"].as_u64().unwrap_or(0),
        seed_s: tenths(seed_s),
        index_backfill_s: tenths(index_backfill_s),
    })
}

/// Row `i` of the export leg, created `i` × 0.8 s after `t0`.
pub(super) fn export_row(i: usize, t0: OffsetDateTime, topic: &str) -> OutboxRow {
    let (id, participant) = demo::sample_participant(i);
    let at = t0 + Duration::from_millis(i as u64 * 800);
    let source = Source {
        event_id: format!("bench-export-{i}"),
        sequence_number: Some(i.to_string()),
    };
    let row = OutboxRow::pending(&source, id, participant.to_string(), at).due(at);
    match i % 100 {
        // Out of attempts: ten sends refused for the message's fault.
        0 => OutboxRow {
            attempts: 10,
            ..row
        }
        .into_failed("partition 1: broker error MessageSizeTooLarge"),
        1 => row,
        _ => {
            let stored = Stored {
                topic: topic.to_string(),
                partition: (i % 3) as i32,
                offset: i as i64 / 3,
                timestamp: epoch_ms(at),
            };
            row.into_delivered(&stored, at, None)
        }
    }
}
