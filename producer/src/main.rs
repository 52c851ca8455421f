use anyhow::Context;
use cartflow_producer::{Config, planted_truth, run};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    cartflow_common::telemetry::init(&config.log);
    if config.print_truth {
        let truth = planted_truth(&config)
            .await
            .context("cartflow-producer --print-truth failed")?;
        #[allow(clippy::print_stdout)] // The truth is the program's output.
        {
            println!("{}", serde_json::to_string_pretty(&truth)?);
        }
        return Ok(());
    }
    let shutdown = cartflow_common::shutdown::on_signals();
    let listener = cartflow_common::ops::bind(config.metrics_addr).await?;
    let report = run(config, listener, shutdown)
        .await
        .context("cartflow-producer failed")?;
    tracing::info!(?report, "Done.");
    Ok(())
}
