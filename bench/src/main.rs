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
//! * `gateway`: 500 to 10,000 WebSocket clients (`--clients`) receiving ten broadcasts a
//!   second, against a plain Python `websockets` broadcast server and a floor server that only
//!   writes pre-encoded frames; latency (p99 against the floor's) and memory per idle
//!   connection.
//! * `projector`: events already in PostgreSQL projected incrementally from scratch, then
//!   rebuilt, against one plain SQL pass (GROUP BY cart) over the same events; beside the
//!   rebuild two floors: the carts table written by plain SQL (unlogged, no index), and the
//!   log read out of the server as the rebuild reads it, rows dropped.
//! * `e2e`: the producer live at 1,000, 5,000 and 20,000 events/s for 60 s each through the
//!   broker, consumer, projector and gateway to a WebSocket client; each stage's p50/p99 from
//!   the services' latency histogram, against a floor (one produce→consume round trip with the
//!   same settings plus one PostgreSQL commit of one row). Not in the default stages.
//! * `range`: `/api/range` for 15 minutes to all of time on a projected log (`--range-events`,
//!   10 million), against plain SQL answering the same from the log. Not in the default stages.
//!
//! Run it with `cargo run --release -p cartflow-bench -- --events 5000000` against a running
//! broker (deploy/local/run.sh or test.sh start one); results go to stdout as a table and as
//! JSON with `--json FILE`.

mod consumer;
mod e2e;
mod gateway;
mod gateway_floor;
mod measurement;
mod producer;
mod projector;
mod range;
mod report;
mod stages;
mod ws_client;

use clap::{Parser, Subcommand};

#[derive(Debug, Clone, Parser)]
#[command(name = "cartflow-bench", version)]
struct Cli {
    #[command(subcommand)]
    child: Option<Child>,
    #[command(flatten)]
    bench: stages::Bench,
}

#[derive(Debug, Clone, Subcommand)]
enum Child {
    /// One measurement, in a child process of the runner.
    #[command(hide = true)]
    Run(measurement::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.child {
        Some(Child::Run(args)) => measurement::run_in_child(&args),
        None => stages::run_all(&cli.bench),
    }
}
