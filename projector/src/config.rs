//! The projector's flags. Each one also reads the environment variable shown in `--help`.

use std::net::SocketAddr;

use cartflow_common::config::{DatabaseArgs, LogArgs};
use clap::Parser;

/// Keeps the conversion analytics current from the raw event log.
#[derive(Debug, Clone, Parser)]
#[command(name = "cartflow-projector", version)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// How often a standby tries to become the active projector, in milliseconds.
    #[arg(long, env = "CARTFLOW_STANDBY_POLL_MS", default_value_t = 1000)]
    pub standby_poll_ms: u64,
    /// Address of the /metrics and /healthz endpoint (port 0 picks a free port).
    #[arg(long, env = "CARTFLOW_METRICS_ADDR", default_value = "127.0.0.1:9103")]
    pub metrics_addr: SocketAddr,
}
