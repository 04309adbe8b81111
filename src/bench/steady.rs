//! The steady-load leg: participants registered at a fixed rate, as
//! `POST /participants` saves them, while the whole pipeline runs in this
//! process on a metered DynamoDB client ([`CapacityMeter`]). Measures what
//! AWS bills and what a consumer waits for: request units per participant,
//! by table and index (the participant's own save included), their price,
//! and the delay from each save to its message's timestamp on the broker.

use std::collections::{BTreeMap, HashMap};

use super::register::registration_body;
use super::*;
use crate::capacity::{CapacityMeter, USD_PER_MILLION_RRU, USD_PER_MILLION_WRU};
use crate::pipeline::Pipeline;
use crate::register::Registrar;

/// What the steady leg measured.
#[derive(Debug, Serialize)]
pub struct SteadyFigures {
    /// The offered load: registrations started per second.
    pub rate_per_s: u32,
    /// For how long the load was offered.
    pub seconds: u32,
    /// Participants registered (all delivered, or the leg fails).
    pub participants: usize,
    /// Write request units per participant, every table and index.
    pub wru_per_participant: f64,
    /// Read request units per participant, every table and index.
    pub rru_per_participant: f64,
    /// Units per participant by place: `table` or `table/index` (the
    /// leg's table names without their random suffix).
    pub units_by_place: BTreeMap<String, PlaceUnits>,
    /// What those units cost per million participants at the on-demand
    /// list prices ([`USD_PER_MILLION_WRU`], [`USD_PER_MILLION_RRU`]).
    pub ddb_usd_per_million: f64,
    /// Median of (message timestamp − save), ms.
    pub latency_p50_ms: i64,
    /// 99th percentile of the same, ms.
    pub latency_p99_ms: i64,
    /// Largest of the same, ms.
    pub latency_max_ms: i64,
}

/// Units per participant at one table or index.
#[derive(Debug, Serialize)]
pub struct PlaceUnits {
    /// Write request units per participant.
    pub wru: f64,
    /// Read request units per participant.
    pub rru: f64,
}

/// Offers `rate` registrations a second for `seconds` while the pipeline
/// (stream handler and relay, polling both streams) runs; waits until all
/// are delivered. Fails if one is not.
pub(super) async fn steady(
    base: &Config,
    stack: &StackConfig,
    rate: u32,
    seconds: u32,
) -> anyhow::Result<SteadyFigures> {
    let leg = DynamoLeg::start(base, stack, "steady").await?;
    let config = &leg.config;
    let meter = CapacityMeter::new();
    let dynamodb = leg.instance.metered_dynamodb(&meter).await;
    let (_, streams) = leg.instance.clients().await;
    let mut pipeline = Pipeline::with_clients(config, dynamodb.clone(), streams).await?;
    // DynamoDB Local reports no units for the PartiQL marks: they are
    // computed from the rows' sizes and added to what the meter counted.
    let outbox = pipeline.outbox().clone();
    outbox.stats().compute_statement_units();
    let runner = tokio::spawn(async move { pipeline.run(Some(Duration::from_secs(5))).await });

    let registrar = Registrar::new(
        dynamodb,
        &config.participants_table,
        config.max_message_bytes,
    );
    let n = rate as usize * seconds as usize;
    let started = Instant::now();
    let mut registrations = tokio::task::JoinSet::new();
    for i in 0..n {
        // Each registration starts on time whatever the ones before it are
        // doing: the load is offered, not closed-loop.
        tokio::time::sleep_until(
            (started + Duration::from_secs_f64(i as f64 / rate as f64)).into(),
        )
        .await;
        let registrar = registrar.clone();
        let body = registration_body(i);
        registrations.spawn(async move {
            let registered = registrar.register(&body, None).await?;
            anyhow::Ok((registered.id, epoch_ms(OffsetDateTime::now_utc())))
        });
    }
    let mut saved_at = HashMap::with_capacity(n);
    while let Some(joined) = registrations.join_next().await {
        let (id, at) = joined??;
        saved_at.insert(id, at);
    }
    let report = runner.await??;
    let mut consumed = meter.consumed();
    consumed.merge(&outbox.stats().computed_units());

    let rows = leg.outbox().scan_all().await?;
    let mut latencies: Vec<i64> = rows
        .iter()
        .filter(|row| row.status == Status::Delivered)
        .filter_map(|row| {
            let saved = saved_at.get(row.participant_id.as_deref()?)?;
            Some(row.kafka_timestamp? - saved)
        })
        .collect();
    anyhow::ensure!(
        latencies.len() == n,
        "{} of {n} participants delivered ({report:?})",
        latencies.len()
    );
    latencies.sort_unstable();
    let percentile = |p: usize| latencies[(n * p / 100).min(n - 1)];

    let per = |units: f64| (units / n as f64 * 100.0).round() / 100.0;
    let total = consumed.total();
    let units_by_place = consumed
        .by_place
        .iter()
        .map(|(place, units)| {
            let table = place
                .table
                .rsplit_once('_')
                .map_or(&*place.table, |(t, _)| t);
            let name = match &place.index {
                Some(index) => format!("{table}/{index}"),
                None => table.to_string(),
            };
            let units = PlaceUnits {
                wru: per(units.write),
                rru: per(units.read),
            };
            (name, units)
        })
        .collect();
    let usd = (total.write * USD_PER_MILLION_WRU + total.read * USD_PER_MILLION_RRU) / n as f64;
    Ok(SteadyFigures {
        rate_per_s: rate,
        seconds,
        participants: n,
        wru_per_participant: per(total.write),
        rru_per_participant: per(total.read),
        units_by_place,
        ddb_usd_per_million: (usd * 100.0).round() / 100.0,
        latency_p50_ms: percentile(50),
        latency_p99_ms: percentile(99),
        latency_max_ms: latencies[n - 1],
    })
}
