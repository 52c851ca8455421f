//! Results: what each child measures, and the comparison table.

use prometheus::Histogram;
use prometheus::core::Metric;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StageResult {
    pub(crate) name: String,
    pub(crate) events: u64,
    pub(crate) seconds: f64,
    pub(crate) events_per_second: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub(crate) peak_rss_mib: f64,
    /// The gateway stage's server memory per idle connection, KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kib_per_connection: Option<f64>,
    /// The gateway stage's share of broadcasts received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) delivered: Option<f64>,
    /// CPU time the whole machine spent busy during the measurement (PostgreSQL's processes
    /// too), core-seconds: on 2 cores, a run that keeps both busy for 4 s shows 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) busy_core_seconds: Option<f64>,
}

impl StageResult {
    /// `events` in `elapsed`, with latency percentiles in ms, and this process's peak RSS.
    pub(crate) fn measured(
        name: impl Into<String>,
        events: u64,
        elapsed: std::time::Duration,
        (latency_p50_ms, latency_p99_ms): (f64, f64),
    ) -> StageResult {
        StageResult {
            name: name.into(),
            events,
            seconds: elapsed.as_secs_f64(),
            events_per_second: events as f64 / elapsed.as_secs_f64(),
            latency_p50_ms,
            latency_p99_ms,
            peak_rss_mib: peak_rss_mib(),
            kib_per_connection: None,
            delivered: None,
            busy_core_seconds: None,
        }
    }

    /// With the machine's busy CPU time of the measurement ([`Clock`]).
    pub(crate) fn with_busy(mut self, busy_core_seconds: Option<f64>) -> StageResult {
        self.busy_core_seconds = busy_core_seconds;
        self
    }
}

/// A measured section's wall time and the machine's busy CPU time over it.
pub(crate) struct Clock {
    started: std::time::Instant,
    busy: Option<f64>,
}

impl Clock {
    pub(crate) fn start() -> Clock {
        Clock {
            busy: machine_busy_seconds(),
            started: std::time::Instant::now(),
        }
    }

    /// The wall time since [`Clock::start`], and the core-seconds the machine was busy.
    pub(crate) fn stop(&self) -> (std::time::Duration, Option<f64>) {
        let elapsed = self.started.elapsed();
        let busy = self.busy.zip(machine_busy_seconds()).map(|(a, b)| b - a);
        (elapsed, busy)
    }
}

/// Every core's non-idle time since boot, in seconds, from `/proc/stat` (user, nice, system,
/// irq, softirq and steal; in USER_HZ, 100 a second on Linux); none elsewhere.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    Some(busy / 100.0)
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Comparison {
    pub(crate) stage: String,
    pub(crate) cartflow: StageResult,
    pub(crate) baseline: StageResult,
    /// cartflow events/s ÷ baseline events/s.
    pub(crate) ratio: f64,
}

pub(crate) fn compare(stage: &str, cartflow: &StageResult, baseline: &StageResult) -> Comparison {
    Comparison {
        stage: stage.into(),
        ratio: cartflow.events_per_second / baseline.events_per_second,
        cartflow: cartflow.clone(),
        baseline: baseline.clone(),
    }
}

/// The child's result on stdout, for the parent to read.
#[allow(clippy::print_stdout)]
pub(crate) fn print_child(result: &StageResult) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(result)?);
    Ok(())
}

/// A child's several results (the e2e stage's, one per pipeline stage) on stdout.
#[allow(clippy::print_stdout)]
pub(crate) fn print_children(results: &[StageResult]) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(results)?);
    Ok(())
}

#[allow(clippy::print_stdout)]
pub(crate) fn print_table(results: &[Comparison]) {
    println!(
        "| stage | run | events | seconds | events/s | p50 ms | p99 ms | peak RSS MiB | ratio |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    // A baseline shared by several rows (the e2e stage's floor) is printed once.
    let mut last_baseline: Option<(&str, f64)> = None;
    for c in results {
        let shown = Some((c.baseline.name.as_str(), c.baseline.seconds));
        let baseline = (last_baseline != shown).then_some((&c.baseline, "1.00".to_owned()));
        last_baseline = shown;
        for (r, ratio) in std::iter::once((&c.cartflow, format!("{:.2}", c.ratio))).chain(baseline)
        {
            println!(
                "| {} | {} | {} | {:.2} | {:.0} | {:.1} | {:.1} | {:.0} | {} |",
                c.stage,
                r.name,
                r.events,
                r.seconds,
                r.events_per_second,
                r.latency_p50_ms,
                r.latency_p99_ms,
                r.peak_rss_mib,
                ratio
            );
        }
    }
}

/// Peak resident set size of this process, from /proc/self/status (VmHWM).
pub(crate) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A quantile of a histogram, interpolated linearly within its bucket.
pub(crate) fn quantile_ms(h: &Histogram, q: f64) -> f64 {
    let m = h.metric();
    let hist = m.get_histogram();
    let total = hist.get_sample_count() as f64;
    if total == 0.0 {
        return 0.0;
    }
    let target = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for b in hist.get_bucket() {
        let count = b.cumulative_count() as f64;
        let upper = b.upper_bound();
        if count >= target {
            let within = (target - below) / (count - below).max(1.0);
            return (lower + within * (upper - lower)) * 1000.0;
        }
        lower = upper;
        below = count;
    }
    lower * 1000.0
}
