use anyhow::Context;
use cartflow_consumer::{Cli, Command, Config, MigrateArgs, run};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Migrate(args)) => migrate(*args).await,
        Some(Command::Run(config)) => serve(*config).await,
        None => serve(cli.run).await,
    }
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    cartflow_common::telemetry::init(&args.log);
    let url = &args.database.database_url;
    cartflow_common::db::ensure_database(url).await?;
    let migrated = cartflow_common::db::migrate(url)
        .await
        .context("cartflow-consumer migrate failed")?;
    tracing::info!(
        applied = migrated.applied.len(),
        version = ?migrated.version,
        "The database schema is up to date."
    );
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    cartflow_common::telemetry::init(&config.log);
    let shutdown = cartflow_common::shutdown::on_signals();
    let listener = cartflow_common::ops::bind(config.metrics_addr).await?;
    run(config, listener, shutdown)
        .await
        .context("cartflow-consumer failed")
}
