use anyhow::Context;
use cartflow_gateway::{Config, run};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    cartflow_common::telemetry::init(&config.log);
    let shutdown = cartflow_common::shutdown::on_signals();
    let listener = cartflow_common::ops::bind(config.listen).await?;
    run(config, listener, shutdown)
        .await
        .context("cartflow-gateway failed")
}
