//! The gateway's flags. Each one also reads the environment variable shown in `--help`.

use std::net::SocketAddr;

use cartflow_common::config::{DatabaseArgs, LogArgs};
use clap::Parser;

/// Serves the dashboard, the snapshot API, /healthz and /metrics on one port.
#[derive(Debug, Clone, Parser)]
#[command(name = "cartflow-gateway", version)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// Address the dashboard, API and ops endpoints listen on (port 0 picks a free port).
    #[arg(long, env = "CARTFLOW_GATEWAY_ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}
