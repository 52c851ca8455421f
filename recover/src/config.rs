//! The subscriber's flags. Each one also reads the environment variable shown in `--help`.

use std::net::SocketAddr;

use cartflow_common::config::{KafkaArgs, LogArgs, OutcomesTopicArgs};
use clap::Parser;
use rust_decimal::Decimal;

/// Sends a recovery message for every abandoned cart worth recovering.
#[derive(Debug, Clone, Parser)]
#[command(name = "cartflow-recover", version)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub topic: OutcomesTopicArgs,
    /// Consumer group: every group gets every outcome once.
    #[arg(
        long,
        env = "CARTFLOW_RECOVER_GROUP",
        default_value = "cartflow-recover"
    )]
    pub group: String,
    /// Smallest value left in an abandoned cart worth a message (for example 50 or 19.99).
    #[arg(long, env = "CARTFLOW_RECOVER_MIN_VALUE", default_value = "50")]
    pub min_value: Decimal,
    /// POST each message here as JSON instead of printing it (for example
    /// http://127.0.0.1:8025/recover).
    #[arg(long, env = "CARTFLOW_RECOVER_WEBHOOK_URL")]
    pub webhook_url: Option<reqwest::Url>,
    /// Address of the /metrics and /healthz endpoint (port 0 picks a free port).
    #[arg(long, env = "CARTFLOW_METRICS_ADDR", default_value = "127.0.0.1:9105")]
    pub metrics_addr: SocketAddr,
}
