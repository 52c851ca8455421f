//! The projector's flags. Each one also reads the environment variable shown in `--help`.

use std::net::SocketAddr;
use std::time::Duration;

use cartflow_common::config::{
    DatabaseArgs, KafkaArgs, LogArgs, OutcomesTopicArgs, parse_duration,
};
use clap::{Args, Parser, Subcommand};

/// Keeps the conversion analytics current from the raw event log.
///
/// Without a subcommand it runs (`run`): one active projector per database, others wait as
/// hot standbys. `rebuild` recomputes every aggregate from the whole log and swaps the result
/// in atomically, while a running projector carries on.
#[derive(Debug, Parser)]
#[command(
    name = "cartflow-projector",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Keep the analytics current (the default).
    Run(Config),
    /// Recompute the analytics from the whole log and swap them in; then exit.
    Rebuild(RebuildArgs),
    /// Publish the cart outcomes the projector decides (the outbox) to Kafka, each exactly
    /// once.
    Relay(RelayArgs),
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// A cart with items and no purchase is abandoned once this much event time has passed
    /// since its last event (for example 30m, 2h, 90s).
    #[arg(long, env = "CARTFLOW_ABANDON_AFTER", default_value = "30m", value_parser = parse_duration)]
    pub abandon_after: Duration,
    /// How much event time the per-minute timeline keeps before the latest event (for
    /// example 48h); older minutes are dropped (the hourly timeline keeps all of time).
    #[arg(long, env = "CARTFLOW_MINUTE_RETENTION", default_value = "48h", value_parser = parse_duration)]
    pub minute_retention: Duration,
    /// Most events applied in one transaction (a consumer's batch is never split).
    #[arg(long, env = "CARTFLOW_CHUNK_EVENTS", default_value_t = 20_000, value_parser = clap::value_parser!(i64).range(1..=10_000_000))]
    pub chunk_events: i64,
    /// Decide each cart's outcome (purchased, abandoned, emptied, reopened) and write it to
    /// the outbox that `cartflow-projector relay` publishes (true or false).
    #[arg(long, env = "CARTFLOW_OUTCOMES", default_value_t = true, action = clap::ArgAction::Set)]
    pub outcomes: bool,
    /// Look for settled events this often even without a NOTIFY, in milliseconds.
    #[arg(long, env = "CARTFLOW_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub poll_ms: u64,
    /// How often a standby tries to become the active projector, in milliseconds.
    #[arg(long, env = "CARTFLOW_STANDBY_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub standby_poll_ms: u64,
    /// Do not apply migrations at start (run `cartflow-consumer migrate` yourself).
    #[arg(long, env = "CARTFLOW_SKIP_MIGRATIONS")]
    pub skip_migrations: bool,
    /// Address of the /metrics and /healthz endpoint (port 0 picks a free port).
    #[arg(long, env = "CARTFLOW_METRICS_ADDR", default_value = "127.0.0.1:9103")]
    pub metrics_addr: SocketAddr,
}

#[derive(Debug, Clone, Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// Most events applied in one catch-up transaction after the bulk pass.
    #[arg(long, env = "CARTFLOW_CHUNK_EVENTS", default_value_t = 20_000, value_parser = clap::value_parser!(i64).range(1..=10_000_000))]
    pub chunk_events: i64,
    /// Connections that read the log at once in the bulk pass, each summing a part of it on
    /// a core of its own; 1 reads it on the rebuild's own connection.
    #[arg(long, env = "CARTFLOW_REBUILD_READERS", default_value_t = DEFAULT_REBUILD_READERS, value_parser = clap::value_parser!(u16).range(1..=MAX_REBUILD_READERS as i64))]
    pub readers: u16,
}

/// The default of `cartflow-projector rebuild --readers`, and the most it takes.
pub const DEFAULT_REBUILD_READERS: u16 = 2;
pub const MAX_REBUILD_READERS: u16 = 64;

#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// The topic is created when missing.
    #[command(flatten)]
    pub topic: OutcomesTopicArgs,
    /// Partitions of the outcomes topic when the relay creates it.
    #[arg(long, env = "CARTFLOW_OUTCOMES_PARTITIONS", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub outcomes_partitions: i32,
    /// Most outcomes published in one Kafka transaction.
    #[arg(long, env = "CARTFLOW_RELAY_BATCH", default_value_t = 1_000, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub relay_batch: i64,
    /// Look for new outcomes this often even without a NOTIFY, in milliseconds.
    #[arg(long, env = "CARTFLOW_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub poll_ms: u64,
    /// How often a standby relay tries to become the active one, in milliseconds.
    #[arg(long, env = "CARTFLOW_STANDBY_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub standby_poll_ms: u64,
    /// The Kafka transactional id: the same for every relay of one outbox, so a new relay
    /// fences off a previous one that may still have writes in flight.
    #[arg(
        long,
        env = "CARTFLOW_TRANSACTIONAL_ID",
        default_value = "cartflow-relay"
    )]
    pub transactional_id: String,
    /// Address of the /metrics and /healthz endpoint (port 0 picks a free port).
    #[arg(long, env = "CARTFLOW_METRICS_ADDR", default_value = "127.0.0.1:9104")]
    pub metrics_addr: SocketAddr,
}
