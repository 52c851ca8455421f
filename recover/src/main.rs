use anyhow::Context;
use cartflow_recover::{Config, run};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    cartflow_common::telemetry::init(&config.log);
    let shutdown = cartflow_common::shutdown::on_signals();
    let listener = cartflow_common::ops::bind(config.metrics_addr).await?;
    run(config, listener, shutdown)
        .await
        .context("cartflow-recover failed")
}
