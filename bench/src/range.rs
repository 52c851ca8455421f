//! The range stage: `/api/range`'s query (issue #16) over simulated events already projected,
//! for each stated range, beside plain SQL answering the same from the log
//! (`cartflow_tests::analytics::range_sql`, what the range test checks against).
//!
//! Each result's `events` are the events the range covers and its `seconds` the mean time of
//! one answer, so the ratio (events/s ÷ the baseline's) is how many times faster the
//! aggregates answer than the log.

use std::time::{Duration, Instant};

use cartflow_common::db;
use cartflow_gateway::range::{self, Spec};
use chrono::TimeDelta;
use prometheus::{Histogram, HistogramOpts};
use tokio_util::sync::CancellationToken;

use crate::projector::database_name;
use crate::report::{StageResult, quantile_ms};

/// The ranges measured, as the dashboard offers them.
const RANGES: [(&str, Option<TimeDelta>); 6] = [
    ("15m", Some(TimeDelta::minutes(15))),
    ("1h", Some(TimeDelta::hours(1))),
    ("24h", Some(TimeDelta::hours(24))),
    ("7d", Some(TimeDelta::days(7))),
    ("30d", Some(TimeDelta::days(30))),
    ("all", None),
];
/// Timed answers per range, after one untimed.
const REQUESTS: usize = 30;
/// Runs of the plain SQL per range (each reads the whole log).
const BASELINE_RUNS: usize = 2;

fn spec(span: Option<TimeDelta>) -> Spec {
    span.map_or(Spec::All, Spec::Last)
}

/// The projector's events, rebuilt into the analytics (what `cartflow-projector rebuild`
/// does), so the range stage reads a database as the live projection leaves it.
pub(crate) async fn prepare(base_url: &str, prefix: &str, events: u64) -> anyhow::Result<()> {
    crate::projector::prepare(base_url, prefix, events).await?;
    let url = crate::consumer::database(base_url, &database_name(prefix))?;
    let mut client = db::connect(&url).await?;
    let started = Instant::now();
    cartflow_projector::rebuild::rebuild(&mut client, 20_000, &CancellationToken::new()).await?;
    eprintln!(
        "    projected {events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn histogram() -> anyhow::Result<Histogram> {
    Ok(Histogram::with_opts(
        HistogramOpts::new("range_seconds", "one answer").buckets(prometheus::exponential_buckets(
            0.000_5,
            std::f64::consts::SQRT_2,
            50,
        )?),
    )?)
}

fn result(name: String, covered: u64, times: &Histogram, total: Duration, n: usize) -> StageResult {
    let p = (quantile_ms(times, 0.5), quantile_ms(times, 0.99));
    StageResult::measured(name, covered, total / n as u32, p)
}

/// `/api/range`'s statement, as the gateway runs it, for each range.
pub(crate) async fn cartflow(base_url: &str, prefix: &str) -> anyhow::Result<Vec<StageResult>> {
    let url = crate::consumer::database(base_url, &database_name(prefix))?;
    let mut client = db::connect(&url).await?;
    let mut results = Vec::new();
    for (name, span) in RANGES {
        let first = range::load(&mut client, spec(span)).await?;
        let covered = first["kpis"]["events"].as_u64().unwrap_or(0);
        let times = histogram()?;
        let mut total = Duration::ZERO;
        for _ in 0..REQUESTS {
            let started = Instant::now();
            range::load(&mut client, spec(span)).await?;
            let took = started.elapsed();
            times.observe(took.as_secs_f64());
            total += took;
        }
        eprintln!(
            "    last={name}: {covered} events, p99 {:.1} ms ({} grain)",
            quantile_ms(&times, 0.99),
            first["range"]["grain"]
        );
        results.push(result(
            format!("/api/range last={name}"),
            covered,
            &times,
            total,
            REQUESTS,
        ));
    }
    Ok(results)
}

/// Plain SQL over `events` for the bounds `/api/range` answers each range for.
pub(crate) async fn baseline(base_url: &str, prefix: &str) -> anyhow::Result<Vec<StageResult>> {
    let url = crate::consumer::database(base_url, &database_name(prefix))?;
    let mut client = db::connect(&url).await?;
    let sql = cartflow_tests::analytics::range_sql();
    let statement = client.prepare(&sql).await?;
    let mut results = Vec::new();
    for (name, span) in RANGES {
        let answer = range::load(&mut client, spec(span)).await?;
        let bound = |k: &str| {
            chrono::DateTime::parse_from_rfc3339(answer["range"][k].as_str().unwrap_or_default())
                .map(|t| t.to_utc())
        };
        let (from, to) = (bound("from")?, bound("to")?);
        let bucket = answer["range"]["bucket_seconds"].as_i64().unwrap_or(60);
        let times = histogram()?;
        let mut total = Duration::ZERO;
        let mut covered = 0;
        for _ in 0..BASELINE_RUNS {
            let started = Instant::now();
            let text: String = client
                .query_one(&statement, &[&from, &to, &bucket])
                .await?
                .get(0);
            let took = started.elapsed();
            times.observe(took.as_secs_f64());
            total += took;
            let v: serde_json::Value = serde_json::from_str(&text)?;
            covered = v["kpis"]["events"].as_u64().unwrap_or(0);
        }
        anyhow::ensure!(
            Some(covered) == answer["kpis"]["events"].as_u64(),
            "last={name}: plain SQL counts {covered} events, /api/range {}",
            answer["kpis"]["events"]
        );
        results.push(result(
            format!("plain SQL over events, last={name}"),
            covered,
            &times,
            total,
            BASELINE_RUNS,
        ));
    }
    Ok(results)
}
