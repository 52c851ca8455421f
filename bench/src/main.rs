//! The cartflow benchmark runner.
//!
//! Every stage runs beside its baseline in the same invocation, each in a child process of
//! its own so that its peak RSS is its own, and reports events/s, latency percentiles, peak
//! RSS and the ratio to the baseline. Stages:
//!
//! * `producer`: the backfill path (simulate, encode, publish with acks=all) against a raw
//!   publish of pre-built messages of the same size through the same idempotent producer.
//! * `consumer`: draining events already on the topic into PostgreSQL (one consumer, then
//!   three in a group) against a raw text COPY of the same rows into the same indexed table.
//! * `gateway`: 10,000 WebSocket clients receiving ten broadcasts a second, against a plain
//!   Python `websockets` broadcast server; latency and memory per idle connection.
//! * `projector`: events already in PostgreSQL projected incrementally from scratch, then
//!   rebuilt, against one plain SQL pass (GROUP BY cart) over the same events.
//!
//! Run it with `cargo run --release -p cartflow-bench -- --events 5000000` against a running
//! broker (deploy/local/run.sh or test.sh start one); results go to stdout as a table and as
//! JSON with `--json FILE`.

mod consumer;
mod gateway;
mod gateway_floor;
mod producer;
mod projector;
mod report;
mod ws_client;

use std::process::Command;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use report::StageResult;

#[derive(Debug, Clone, Parser)]
#[command(name = "cartflow-bench", version)]
struct Cli {
    #[command(subcommand)]
    child: Option<Child>,
    /// Stages to run.
    #[arg(
        long,
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
    /// WebSocket clients for the gateway stage.
    #[arg(long, env = "CARTFLOW_BENCH_CLIENTS", default_value_t = 10_000)]
    clients: u64,
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
        default_value = "lean",
        value_parser = ["lean", "tungstenite"]
    )]
    gateway_client: String,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stage {
    Producer,
    Consumer,
    Projector,
    Gateway,
}

/// One measurement, run in a child process.
#[derive(Debug, Clone, Subcommand)]
enum Child {
    #[command(hide = true)]
    Run {
        /// `producer-baseline` or `producer-cartflow`.
        what: String,
        #[arg(long)]
        events: u64,
        #[arg(long)]
        brokers: String,
        /// Payload size for the baseline.
        #[arg(long, default_value_t = 0)]
        size: usize,
        #[arg(long, default_value = "")]
        database_url: String,
        /// Topic prefix of the consumer stage.
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Child::Run {
        what,
        events,
        brokers,
        size,
        database_url,
        prefix,
    }) = cli.child
    {
        // Children log what the measured code logs (progress of long runs) to stderr.
        cartflow_common::telemetry::init(&cartflow_common::config::LogArgs {
            filter: std::env::var("RUST_LOG")
                .unwrap_or_else(|_| "warn,cartflow_projector=info".into()),
            log_format: cartflow_common::config::LogFormat::Text,
        });
        let runtime = tokio::runtime::Runtime::new()?;
        let result = runtime.block_on(async {
            let (b, url, p) = (brokers.as_str(), database_url.as_str(), prefix.as_str());
            match what.as_str() {
                "producer-baseline" => producer::baseline(b, events, size).await.map(Some),
                "producer-cartflow" => producer::cartflow(b, events).await.map(Some),
                "consumer-prepare" => consumer::prepare(b, p, events).await.map(|()| None),
                "consumer-cleanup" => consumer::cleanup(b, p).await.map(|()| None),
                "consumer-baseline" => consumer::baseline(url, events).await.map(Some),
                "consumer-cartflow-1" => consumer::cartflow(b, url, p, events, 1).await.map(Some),
                "consumer-cartflow-3" => consumer::cartflow(b, url, p, events, 3).await.map(Some),
                "gateway-serve" => gateway::serve(url).await.map(|()| None),
                "gateway-cartflow" => gateway::measure("cartflow", url, events).await.map(Some),
                "gateway-floor-serve" => gateway_floor::serve().await.map(|()| None),
                "gateway-floor" => gateway::measure("floor", url, events).await.map(Some),
                "gateway-python" => gateway::measure("python", url, events).await.map(Some),
                "projector-prepare" => projector::prepare(url, p, events).await.map(|()| None),
                "projector-cleanup" => projector::cleanup(url, p).await.map(|()| None),
                "projector-baseline" => projector::baseline(url, p, events).await.map(Some),
                "projector-incremental" => projector::incremental(url, p, events).await.map(Some),
                "projector-rebuild" => projector::rebuild(url, p, events).await.map(Some),
                other => bail!("unknown measurement {other}"),
            }
        })?;
        if let Some(result) = result {
            report::print_child(&result)?;
        }
        return Ok(());
    }
    let mut results = Vec::new();
    for stage in &cli.stages {
        match stage {
            Stage::Producer => {
                let size = producer::mean_event_size();
                eprintln!(
                    "producer: mean encoded event {size} bytes; {} events per run",
                    cli.events
                );
                let base = child("producer-baseline", &cli, size)?;
                let ours = child("producer-cartflow", &cli, size)?;
                results.push(report::compare("producer backfill", &ours, &base));
            }
            Stage::Consumer => {
                let prefix = format!("bench-{}-", uuid::Uuid::new_v4().simple());
                let cli = Cli {
                    events: cli.consumer_events,
                    ..cli.clone()
                };
                eprintln!("consumer: {} events on the topic first", cli.events);
                run_child("consumer-prepare", &cli, 0, &prefix)?;
                let base = child_in("consumer-baseline", &cli, &prefix)?;
                let one = child_in("consumer-cartflow-1", &cli, &prefix)?;
                let three = child_in("consumer-cartflow-3", &cli, &prefix)?;
                run_child("consumer-cleanup", &cli, 0, &prefix)?;
                results.push(report::compare("consumer drain", &one, &base));
                results.push(report::compare(
                    "consumer drain, 3 in a group",
                    &three,
                    &base,
                ));
            }
            Stage::Gateway => {
                let cli = Cli {
                    events: cli.clients,
                    ..cli.clone()
                };
                eprintln!("gateway: {} WebSocket clients, 10 broadcasts/s", cli.events);
                let base = child_in("gateway-python", &cli, "")?;
                let ours = child_in("gateway-cartflow", &cli, "")?;
                let floor = child_in("gateway-floor", &cli, "")?;
                results.push(report::compare("gateway fan-out", &ours, &base));
                results.push(report::compare("gateway floor", &floor, &base));
            }
            Stage::Projector => {
                let prefix = uuid::Uuid::new_v4().simple().to_string();
                let cli = Cli {
                    events: cli.projector_events,
                    ..cli.clone()
                };
                eprintln!("projector: {} events into PostgreSQL first", cli.events);
                run_child("projector-prepare", &cli, 0, &prefix)?;
                let base = child_in("projector-baseline", &cli, &prefix)?;
                let incremental = child_in("projector-incremental", &cli, &prefix)?;
                let rebuild = child_in("projector-rebuild", &cli, &prefix)?;
                run_child("projector-cleanup", &cli, 0, &prefix)?;
                results.push(report::compare(
                    "projector incremental",
                    &incremental,
                    &base,
                ));
                results.push(report::compare("projector rebuild", &rebuild, &base));
            }
        }
    }
    report::print_table(&results);
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn child(what: &str, cli: &Cli, size: usize) -> anyhow::Result<StageResult> {
    parse(what, &run_child(what, cli, size, "")?)
}

fn child_in(what: &str, cli: &Cli, prefix: &str) -> anyhow::Result<StageResult> {
    parse(what, &run_child(what, cli, 0, prefix)?)
}

/// Runs one measurement in a child process of its own; returns what it printed.
fn run_child(what: &str, cli: &Cli, size: usize, prefix: &str) -> anyhow::Result<Vec<u8>> {
    eprintln!("  running {what} ...");
    let out = Command::new(std::env::current_exe()?)
        .args([
            "run",
            what,
            "--events",
            &cli.events.to_string(),
            "--brokers",
            &cli.brokers,
        ])
        .args([
            "--size",
            &size.to_string(),
            "--database-url",
            &cli.database_url,
            "--prefix",
            prefix,
        ])
        .env(gateway::CLIENT_ENV, &cli.gateway_client)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!("{what} failed with {}", out.status);
    }
    Ok(out.stdout)
}

fn parse(what: &str, stdout: &[u8]) -> anyhow::Result<StageResult> {
    let result: StageResult =
        serde_json::from_slice(stdout).with_context(|| format!("reading {what}'s result"))?;
    eprintln!("  {what}: {:.0} events/s", result.events_per_second);
    Ok(result)
}
