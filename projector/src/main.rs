use anyhow::Context;
use cartflow_projector::{Cli, Command, Config, RebuildArgs, RelayArgs, rebuild, run};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Rebuild(args)) => rebuild(args).await,
        Some(Command::Run(config)) => serve(config).await,
        Some(Command::Relay(args)) => relay(args).await,
        None => serve(cli.run).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    cartflow_common::telemetry::init(&config.log);
    let shutdown = cartflow_common::shutdown::on_signals();
    let listener = cartflow_common::ops::bind(config.metrics_addr).await?;
    run(config, listener, shutdown)
        .await
        .context("cartflow-projector failed")
}

async fn rebuild(args: RebuildArgs) -> anyhow::Result<()> {
    cartflow_common::telemetry::init(&args.log);
    let shutdown = cartflow_common::shutdown::on_signals();
    let url = &args.database.database_url;
    cartflow_common::db::check_migrated(url).await?;
    let mut client = cartflow_common::db::connect(url).await?;
    let readers =
        (0..rebuild::reader_connections(args.readers)).map(|_| cartflow_common::db::connect(url));
    let readers = futures::future::try_join_all(readers)
        .await
        .context("connecting the rebuild's readers")?;
    rebuild::rebuild_with(&mut client, readers, args.chunk_events, &shutdown)
        .await
        .context("cartflow-projector rebuild failed")?;
    Ok(())
}

async fn relay(args: RelayArgs) -> anyhow::Result<()> {
    cartflow_common::telemetry::init(&args.log);
    let shutdown = cartflow_common::shutdown::on_signals();
    let listener = cartflow_common::ops::bind(args.metrics_addr).await?;
    cartflow_projector::relay::run(args, listener, shutdown)
        .await
        .context("cartflow-projector relay failed")
}
