//! The consumer's flags. Each one also reads the environment variable shown in `--help`.

use std::net::SocketAddr;

use cartflow_common::config::{
    DatabaseArgs, KafkaArgs, LogArgs, PoolArgs, RegistryArgs, TopicArgs,
};
use clap::{Args, Parser, Subcommand};

/// Consumer-group member that writes the raw event log to PostgreSQL.
///
/// Without a subcommand it runs (`run`); `migrate` creates the database if needed, applies
/// the schema migrations and exits.
#[derive(Debug, Parser)]
#[command(
    name = "cartflow-consumer",
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
    /// Consume and store (the default).
    Run(Box<Config>),
    /// Create the database if it is missing, apply pending migrations, exit.
    Migrate(Box<MigrateArgs>),
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[command(flatten)]
    pub log: LogArgs,

    /// Consumer group; instances in the same group share the partitions.
    #[arg(long, env = "CARTFLOW_GROUP", default_value = "cartflow-consumer")]
    pub group: String,
    /// Most messages written in one transaction.
    #[arg(long, env = "CARTFLOW_BATCH_SIZE", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,
    /// Concurrent transactions a batch is written in, split by partition (1 to 16).
    #[arg(long, env = "CARTFLOW_WRITE_LANES", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub write_lanes: u32,
    /// Batches written at once while the next is fetched (1 to 8); offsets are committed in
    /// order regardless.
    #[arg(long, env = "CARTFLOW_MAX_IN_FLIGHT", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub max_in_flight: u32,
    /// Longest a batch waits to fill before it is written, in milliseconds.
    #[arg(long, env = "CARTFLOW_BATCH_TIMEOUT_MS", default_value_t = 50)]
    pub batch_timeout_ms: u64,
    /// How long the group waits for a member that stopped answering (a crash, a kill) before
    /// giving its partitions to the others, in milliseconds.
    #[arg(long, env = "CARTFLOW_SESSION_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1_000..=300_000))]
    pub session_timeout_ms: u32,
    /// After each partition assignment, start this many messages before the committed offset
    /// (duplicates are skipped by event_id). Only for brokers that cannot fetch from inside a
    /// record batch, such as tansu 0.6 (deploy/local sets 10000 with CARTFLOW_BROKER=tansu);
    /// Kafka and Redpanda need 0. It must be at least the largest producer batch, or a member
    /// that takes over mid-batch on such a broker skips the rest of that batch.
    #[arg(long, env = "CARTFLOW_REWIND_ON_ASSIGN", default_value_t = 0)]
    pub rewind_on_assign: u32,
    /// A partition with lag whose committed offset has not moved for this many seconds makes
    /// /healthz answer 503 with the reason (and counts in cartflow_consumer_stalled_partitions).
    #[arg(long, env = "CARTFLOW_STALL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_secs: u64,
    /// How often the group's committed offsets and the broker's high watermarks are read for
    /// the lag gauge and the stall check, in milliseconds.
    #[arg(long, env = "CARTFLOW_LAG_INTERVAL_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..))]
    pub lag_interval_ms: u64,
    /// Do not apply migrations at start (run `cartflow-consumer migrate` yourself).
    #[arg(long, env = "CARTFLOW_SKIP_MIGRATIONS")]
    pub skip_migrations: bool,
    /// Address of the /metrics and /healthz endpoint (port 0 picks a free port).
    #[arg(long, env = "CARTFLOW_METRICS_ADDR", default_value = "127.0.0.1:9102")]
    pub metrics_addr: SocketAddr,
}
