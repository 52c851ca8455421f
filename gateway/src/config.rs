//! The gateway's flags. Each one also reads the environment variable shown in `--help`.

use std::net::SocketAddr;

use cartflow_common::config::{
    DatabaseArgs, KafkaArgs, LogArgs, PoolArgs, RegistryArgs, TopicArgs,
};
use clap::Parser;

/// Serves the dashboard, the snapshot API, the WebSocket feed, /healthz and /metrics on one
/// port. It only reads PostgreSQL (a read-only role is enough) and the cart-events topic.
#[derive(Debug, Clone, Parser)]
#[command(name = "cartflow-gateway", version)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// Address the dashboard, API, WebSocket and ops endpoints listen on (port 0 picks a
    /// free port).
    #[arg(long, env = "CARTFLOW_GATEWAY_ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Require this token on /ws and /api/snapshot: `?token=…`, or for browsers the
    /// WebSocket subprotocol `cartflow.token.…`, or the header `Authorization: Bearer …`.
    /// Unset: no token needed.
    #[arg(long, env = "CARTFLOW_GATEWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Origins allowed to open /ws, comma-separated (`https://shop.example`). Without it,
    /// only pages served by this gateway (Origin matching Host) and clients that send no
    /// Origin (not browsers) are let in.
    #[arg(long, env = "CARTFLOW_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Most WebSocket clients at once; more are refused with 503 before the upgrade.
    #[arg(long, env = "CARTFLOW_MAX_CLIENTS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_clients: u32,
    /// Most open TCP connections (WebSocket clients, HTTP requests and connections that have
    /// not said what they are yet); more are closed at accept.
    #[arg(long, env = "CARTFLOW_MAX_CONNECTIONS", default_value_t = 20_480, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Most open connections from one address (0: no limit, the default, as behind a proxy
    /// every client has the proxy's address); more are closed at accept.
    #[arg(long, env = "CARTFLOW_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: u32,
    /// Seconds a connection may take to upgrade to a WebSocket or to send a whole request,
    /// from its accept or its last request; then it is closed.
    #[arg(long, env = "CARTFLOW_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub handshake_timeout_secs: u64,
    /// Messages a client may have waiting beyond what its socket took before it is cut (close
    /// code 4001).
    #[arg(long, env = "CARTFLOW_CLIENT_QUEUE", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub client_queue: u32,
    /// Analytics updates and feed messages go out at once when the last went out at least a
    /// tick ago, else coalesced until it did: at most one per tick, in milliseconds. A large
    /// audience spaces them further: four times what the last broadcast took the writers.
    /// On two cores, 2 against 10 took the feed's p99 from 21.6 to 11.3 ms at 20 events/s
    /// and from 22.6 to 16.1 ms at 1,000 (a coalesced event waits up to a tick) and left the
    /// analytics' latency as it was; the analytics' reads are spaced by their own cost
    /// (docs/benchmarks.md).
    #[arg(long, env = "CARTFLOW_TICK_MS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub tick_ms: u64,
    /// While the projector commits, a read of the analytics starts at least this many times the
    /// last read's duration after that one began: 1 reads again as soon as a read ends (the
    /// freshest dashboard; one PostgreSQL backend busy while events flow), 2 keeps that backend
    /// at most half busy. At 5,000 events/s on two cores, pushed p99 was 170-307 ms (mean 247)
    /// with 1 and 243-357 ms (mean 307) with 2, four runs each (docs/benchmarks.md).
    #[arg(long, env = "CARTFLOW_READ_SPACING", default_value_t = 1.0, value_parser = parse_spacing)]
    pub read_spacing: f64,
    /// Largest message a client may send, in bytes; larger ones close the connection (1009).
    #[arg(long, env = "CARTFLOW_MAX_MESSAGE_BYTES", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub max_message_bytes: u32,
    /// Seconds between pings; a client that answers none for two intervals is closed.
    #[arg(long, env = "CARTFLOW_PING_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub ping_secs: u64,
    /// Bytes of recent analytics deltas kept for clients that reconnect with `?since=SEQ`.
    #[arg(long, env = "CARTFLOW_RESUME_HISTORY_BYTES", default_value_t = 8 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(0..=1 << 34))]
    pub resume_history_bytes: u64,
    /// Seconds a delta stays in that history; a client away longer gets a new snapshot.
    #[arg(long, env = "CARTFLOW_RESUME_MAX_AGE_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub resume_max_age_secs: u64,
    /// Do not read the cart-events topic (no live event feed; analytics only).
    #[arg(long, env = "CARTFLOW_NO_FEED")]
    pub no_feed: bool,
    /// Mark a minute on the timeline when the cart abandonment rate of the 15 minutes ending
    /// there differs from its hour's usual rate by more than this share (0.2 = 20%).
    #[arg(long, env = "CARTFLOW_CHANGE_SHARE", default_value_t = 0.2, value_parser = parse_share)]
    pub change_share: f64,
}

/// A read spacing factor from 1 to 100.
fn parse_spacing(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number (for example 1, or 2 for half busy)"))?;
    if (1.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is not from 1 to 100 (1 reads again when a read ends)"
        ))
    }
}

/// A share between 0 (exclusive) and 10.
fn parse_share(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number (for example 0.2 for 20%)"))?;
    if v > 0.0 && v <= 10.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not above 0 and at most 10 (0.2 means 20%)"))
    }
}
