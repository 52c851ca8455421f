//! The cartflow benchmark runner.
//!
//! Every stage runs beside its baseline in the same invocation, each in a child process of
//! its own so that its peak RSS is its own, and reports events/s, latency percentiles, peak
//! RSS and the ratio to the baseline. Stages:
//!
//! * `producer`: the backfill path (simulate, encode, publish with acks=all) against a raw
//!   publish of pre-built messages of the same size through the same idempotent producer.
//!
//! Run it with `cargo run --release -p cartflow-bench -- --events 5000000` against a running
//! broker (deploy/local/run.sh or test.sh start one); results go to stdout as a table and as
//! JSON with `--json FILE`.

mod producer;
mod report;

use std::process::Command;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use report::StageResult;

#[derive(Debug, Parser)]
#[command(name = "cartflow-bench", version)]
struct Cli {
    #[command(subcommand)]
    child: Option<Child>,
    /// Stages to run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "producer")]
    stages: Vec<Stage>,
    /// Events per measurement.
    #[arg(long, env = "CARTFLOW_BENCH_EVENTS", default_value_t = 5_000_000)]
    events: u64,
    /// Kafka bootstrap servers.
    #[arg(
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: String,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stage {
    Producer,
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
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Child::Run {
        what,
        events,
        brokers,
        size,
    }) = cli.child
    {
        let runtime = tokio::runtime::Runtime::new()?;
        let result = runtime.block_on(async {
            match what.as_str() {
                "producer-baseline" => producer::baseline(&brokers, events, size).await,
                "producer-cartflow" => producer::cartflow(&brokers, events).await,
                other => bail!("unknown measurement {other}"),
            }
        })?;
        report::print_child(&result)?;
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
        .args(["--size", &size.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!("{what} failed with {}", out.status);
    }
    let result: StageResult =
        serde_json::from_slice(&out.stdout).with_context(|| format!("reading {what}'s result"))?;
    eprintln!("  {what}: {:.0} events/s", result.events_per_second);
    Ok(result)
}
