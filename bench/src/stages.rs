//! The parent's side: the stages a run asks for, each its measurements beside their baseline,
//! and the comparison table at the end.

use anyhow::Context;
use clap::ValueEnum;

use crate::gateway::{self, ClientKind};
use crate::measurement::{Args, Measurement as M};
use crate::producer;
use crate::report::{self, Comparison, StageResult};

/// What a benchmark run measures, and against what.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Bench {
    /// Stages to run.
    #[arg(
        long,
        env = "CARTFLOW_BENCH_STAGES",
        value_enum,
        value_delimiter = ',',
        default_value = "producer,consumer,projector"
    )]
    stages: Vec<Stage>,
    /// Events per measurement.
    #[arg(long, env = "CARTFLOW_BENCH_EVENTS", default_value_t = 5_000_000)]
    events: u64,
    /// Events for the consumer stage (drained from the topic).
    #[arg(
        long,
        env = "CARTFLOW_BENCH_CONSUMER_EVENTS",
        default_value_t = 1_000_000
    )]
    consumer_events: u64,
    /// Events for the projector stage (written to PostgreSQL first).
    #[arg(
        long,
        env = "CARTFLOW_BENCH_PROJECTOR_EVENTS",
        default_value_t = 10_000_000
    )]
    projector_events: u64,
    /// Rounds of the projector stage's rebuild comparison: the GROUP BY, the rebuild and the
    /// kept floor alternate this many times after one uncounted warm-up GROUP BY, each reported
    /// by its median round (one round's GROUP BY varied 4.5-8.7 s on a 2-core machine).
    #[arg(
        long,
        env = "CARTFLOW_BENCH_PROJECTOR_ROUNDS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..=20)
    )]
    projector_rounds: u64,
    /// Events for the range stage (written to PostgreSQL and projected first).
    #[arg(
        long,
        env = "CARTFLOW_BENCH_RANGE_EVENTS",
        default_value_t = 10_000_000
    )]
    range_events: u64,
    /// Producer rates of the e2e stage, events per second.
    #[arg(
        long,
        env = "CARTFLOW_BENCH_E2E_RATES",
        value_delimiter = ',',
        default_value = "1000,5000,20000"
    )]
    e2e_rates: Vec<u64>,
    /// Seconds the e2e stage publishes at each rate.
    #[arg(long, env = "CARTFLOW_BENCH_E2E_SECONDS", default_value_t = 60)]
    e2e_seconds: u64,
    /// WebSocket clients for the gateway stage: each number is one run of the three servers.
    #[arg(
        long,
        env = "CARTFLOW_BENCH_CLIENTS",
        value_delimiter = ',',
        default_value = "500,2000,5000,10000"
    )]
    clients: Vec<u64>,
    /// Seconds the gateway stage measures each server, once its clients are connected.
    #[arg(long, env = "CARTFLOW_BENCH_GATEWAY_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    gateway_seconds: u64,
    /// PostgreSQL server for the consumer stage (each run gets a fresh database on it).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = cartflow_common::config::DEFAULT_DATABASE_URL
    )]
    database_url: String,
    /// Kafka bootstrap servers.
    #[arg(
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        default_value = cartflow_common::config::DEFAULT_KAFKA_BROKERS
    )]
    brokers: String,
    /// The gateway stage's measuring clients: `lean` (a minimal RFC 6455 client, so the
    /// clients cost the shared cores as little as they can) or `tungstenite`.
    #[arg(
        long,
        env = "CARTFLOW_BENCH_GATEWAY_CLIENT",
        value_enum,
        default_value_t = ClientKind::Lean
    )]
    gateway_client: ClientKind,
    /// Also write the results as JSON here.
    #[arg(long, env = "CARTFLOW_BENCH_JSON")]
    json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stage {
    Producer,
    Consumer,
    Projector,
    Gateway,
    /// Event to dashboard: every stage's latency at several rates, beside the floor.
    E2e,
    /// `/api/range` on a projected log, beside plain SQL over the log.
    Range,
}

impl Bench {
    /// A child's command line: `what` over `events` with this run's services.
    fn args(&self, what: M, events: u64, prefix: &str) -> Args {
        Args {
            what,
            events,
            brokers: self.brokers.clone(),
            size: 0,
            seconds: self.gateway_seconds,
            database_url: self.database_url.clone(),
            prefix: prefix.to_owned(),
            gateway_client: self.gateway_client,
        }
    }
}

/// Runs every stage asked for, prints the table and writes the JSON.
pub(crate) fn run_all(bench: &Bench) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for stage in &bench.stages {
        results.extend(match stage {
            Stage::Producer => producer_stage(bench)?,
            Stage::Consumer => consumer_stage(bench)?,
            Stage::Gateway => gateway_stage(bench)?,
            Stage::Projector => projector_stage(bench)?,
            Stage::E2e => e2e_stage(bench)?,
            Stage::Range => range_stage(bench)?,
        });
    }
    report::print_table(&results);
    if let Some(path) = &bench.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn producer_stage(bench: &Bench) -> anyhow::Result<Vec<Comparison>> {
    let size = producer::mean_event_size();
    eprintln!(
        "producer: mean encoded event {size} bytes; {} events per run",
        bench.events
    );
    let args = Args {
        size,
        ..bench.args(M::ProducerBaseline, bench.events, "")
    };
    let base = args.measure()?;
    let ours = args.with(M::ProducerCartflow).measure()?;
    Ok(vec![report::compare("producer backfill", &ours, &base)])
}

fn consumer_stage(bench: &Bench) -> anyhow::Result<Vec<Comparison>> {
    let prefix = format!("bench-{}-", uuid::Uuid::new_v4().simple());
    let args = bench.args(M::ConsumerPrepare, bench.consumer_events, &prefix);
    eprintln!("consumer: {} events on the topic first", args.events);
    args.spawn()?;
    let base = args.with(M::ConsumerBaseline).measure()?;
    let one = args.with(M::ConsumerCartflowOne).measure()?;
    let three = args.with(M::ConsumerCartflowThree).measure()?;
    args.with(M::ConsumerCleanup).spawn()?;
    Ok(vec![
        report::compare("consumer drain", &one, &base),
        report::compare("consumer drain, 3 in a group", &three, &base),
    ])
}

/// The gateway stage: for each client count, the Python baseline, cartflow and the floor, one
/// after the other. A count this machine cannot hold is skipped and a server that fails is
/// reported, without losing the other results.
fn gateway_stage(bench: &Bench) -> anyhow::Result<Vec<Comparison>> {
    let mut comparisons = Vec::new();
    let mut rows = Vec::new();
    let descriptors = gateway::descriptor_limit();
    for &clients in &bench.clients {
        // The server and the measuring process each hold every connection, plus their own
        // files (the database pool, the runtime, pipes).
        if let Some(limit) = descriptors.filter(|&l| clients + gateway::OWN_FILES > l) {
            eprintln!(
                "gateway: {clients} clients skipped: each process needs about {} descriptors \
                 and may open {limit} here (`ulimit -n`; raise it, up to `ulimit -Hn`)",
                clients + gateway::OWN_FILES
            );
            continue;
        }
        eprintln!(
            "gateway: {clients} WebSocket clients, 10 broadcasts/s for {} s",
            bench.gateway_seconds
        );
        let args = bench.args(M::GatewayPython, clients, "");
        let measured = |what: M| match args.with(what).measure() {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("  {clients} clients, {what:?}: failed: {e:#}");
                None
            }
        };
        let base = measured(M::GatewayPython);
        let ours = measured(M::GatewayCartflow);
        let floor = measured(M::GatewayFloor);
        if let (Some(base), Some(ours), Some(floor)) = (&base, &ours, &floor) {
            comparisons.push(report::compare("gateway fan-out", ours, base));
            comparisons.push(report::compare("gateway floor", floor, base));
        }
        rows.push(gateway::Row {
            clients,
            cartflow: ours,
            floor,
            python: base,
        });
    }
    gateway::print_rows(&rows);
    Ok(comparisons)
}

fn projector_stage(bench: &Bench) -> anyhow::Result<Vec<Comparison>> {
    let prefix = uuid::Uuid::new_v4().simple().to_string();
    let args = bench.args(M::ProjectorPrepare, bench.projector_events, &prefix);
    eprintln!("projector: {} events into PostgreSQL first", args.events);
    args.spawn()?;
    // Not counted: the first pass may read the log from disk (7.8 s against 3.5 s warm after
    // a restart, 14.3 against 6.2 busy core-seconds), which would flatter every ratio of the
    // round it fell in. Each measurement vacuums the database first (`projector::settle`).
    let warm_up = args.with(M::ProjectorBaseline).measure()?;
    eprintln!(
        "projector: warm-up GROUP BY {:.2} s, busy core-seconds {} (not counted)",
        warm_up.seconds,
        busy(&[Some(&warm_up)])
    );
    let incremental = args.with(M::ProjectorIncremental).measure()?;
    let (mut bases, mut rebuilds, mut kept) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=bench.projector_rounds {
        bases.push(args.with(M::ProjectorBaseline).measure()?);
        rebuilds.push(args.with(M::ProjectorRebuild).measure()?);
        kept.push(args.with(M::ProjectorKeptFloor).measure()?);
        let last = |r: &[StageResult]| r.last().map_or(0.0, |r| r.seconds);
        let (b, r, k) = (last(&bases), last(&rebuilds), last(&kept));
        eprintln!(
            "projector: round {round}: GROUP BY {b:.2} s, rebuild {r:.2} s ({:.2}x), \
             kept floor {k:.2} s ({:.2}x); busy core-seconds {}",
            r / b,
            k / b,
            busy(&[&bases, &rebuilds, &kept].map(|r| r.last()))
        );
    }
    eprintln!(
        "projector: ratios to each round's GROUP BY, lowest-highest: rebuild {}, kept floor {}",
        ratio_range(&rebuilds, &bases),
        ratio_range(&kept, &bases)
    );
    let (base, rebuild, kept_floor) = (median(bases), median(rebuilds), median(kept));
    let write_floor = args.with(M::ProjectorWriteFloor).measure()?;
    let read_floor = args.with(M::ProjectorReadFloor).measure()?;
    eprintln!(
        "projector: busy core-seconds of the GROUP BY, rebuild, kept, write and read floors: {}",
        busy(&[&base, &rebuild, &kept_floor, &write_floor, &read_floor].map(Some))
    );
    // After the rebuild, which it would otherwise slow by its final comparison of every cart
    // with the declared outcomes; its baseline is the incremental run without outcomes.
    let outcomes = args.with(M::ProjectorOutcomes).measure()?;
    args.with(M::ProjectorCleanup).spawn()?;
    Ok(vec![
        report::compare("projector incremental", &incremental, &base),
        report::compare("projector rebuild", &rebuild, &base),
        report::compare("projector rebuild floor", &write_floor, &base),
        report::compare("projector rebuild read floor", &read_floor, &base),
        report::compare("projector rebuild kept floor", &kept_floor, &base),
        report::compare("projector + outcomes", &outcomes, &incremental),
    ])
}

/// The machine's busy CPU time of each of `results`, core-seconds ("?" where unknown).
fn busy(results: &[Option<&StageResult>]) -> String {
    let each: Vec<String> = results
        .iter()
        .map(|r| match r.and_then(|r| r.busy_core_seconds) {
            Some(b) => format!("{b:.1}"),
            None => "?".into(),
        })
        .collect();
    each.join(" / ")
}

/// The lowest and highest ratio of `results` to the baseline of the same round, as "1.23x-1.45x":
/// a floor proves a goal out of reach only if it stays above it in every round.
fn ratio_range(results: &[StageResult], bases: &[StageResult]) -> String {
    let ratios: Vec<f64> = results
        .iter()
        .zip(bases)
        .map(|(r, b)| r.seconds / b.seconds)
        .collect();
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(0.0, f64::max);
    format!("{low:.2}x-{high:.2}x")
}

/// The result of the median time (the lower of the middle two for an even count).
fn median(mut results: Vec<StageResult>) -> StageResult {
    results.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    results.swap_remove((results.len() - 1) / 2)
}

/// The e2e stage: the floor, then each rate; every pipeline stage's p99 against the floor's
/// (the ratio column is p99 ÷ floor p99 here, not a throughput ratio).
fn e2e_stage(bench: &Bench) -> anyhow::Result<Vec<Comparison>> {
    let floor = bench.args(M::E2eFloor, 500, "").measure()?;
    let mut comparisons = Vec::new();
    for rate in &bench.e2e_rates {
        let prefix = format!("bench-e2e-{}-", uuid::Uuid::new_v4().simple());
        eprintln!("e2e: {rate} events/s for {} s", bench.e2e_seconds);
        let args = Args {
            size: bench.e2e_seconds as usize,
            ..bench.args(M::E2e, *rate, &prefix)
        };
        for result in args.measure_all()? {
            comparisons.push(Comparison {
                stage: "e2e latency".into(),
                ratio: result.latency_p99_ms / floor.latency_p99_ms,
                cartflow: result,
                baseline: floor.clone(),
            });
        }
    }
    Ok(comparisons)
}

/// The range stage: each stated range through `/api/range`'s statement and through plain SQL
/// over the log, on one projected database.
fn range_stage(bench: &Bench) -> anyhow::Result<Vec<Comparison>> {
    let prefix = uuid::Uuid::new_v4().simple().to_string();
    let args = bench.args(M::RangePrepare, bench.range_events, &prefix);
    eprintln!(
        "range: {} events into PostgreSQL and projected first",
        args.events
    );
    args.spawn()?;
    let ours = args.with(M::RangeCartflow).measure_all();
    let base = args.with(M::RangeBaseline).measure_all();
    args.with(M::ProjectorCleanup).spawn()?;
    Ok(ours?
        .iter()
        .zip(&base?)
        .map(|(ours, base)| report::compare("range query", ours, base))
        .collect())
}
