//! One measurement, run in a child process of its own so that its peak RSS is its own: what
//! the parent asks for (`cartflow-bench run <measurement> …`), and how the child runs it.

use std::process::{Command, Stdio};

use anyhow::Context;
use clap::ValueEnum;

use crate::gateway::{ClientKind, Server};
use crate::report::{self, StageResult};
use crate::{consumer, e2e, gateway, gateway_floor, producer, projector, range};

/// Every measurement and helper step a child can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Measurement {
    ProducerBaseline,
    ProducerCartflow,
    ConsumerPrepare,
    ConsumerCleanup,
    ConsumerBaseline,
    #[value(name = "consumer-cartflow-1")]
    ConsumerCartflowOne,
    #[value(name = "consumer-cartflow-3")]
    ConsumerCartflowThree,
    GatewayServe,
    GatewayFloorServe,
    GatewayCartflow,
    GatewayFloor,
    GatewayPython,
    ProjectorPrepare,
    ProjectorCleanup,
    ProjectorBaseline,
    ProjectorIncremental,
    ProjectorOutcomes,
    ProjectorRebuild,
    /// The carts table alone, written by plain SQL: the least any rebuild writes.
    ProjectorWriteFloor,
    /// The log read out of PostgreSQL as the rebuild's readers read it, and dropped: the least
    /// a rebuild that sums outside the server reads.
    ProjectorReadFloor,
    /// The baseline's GROUP BY with its result kept in a table with its key: the least any
    /// rebuild keeps.
    ProjectorKeptFloor,
    /// The pipeline at `--events` events/s for `--size` seconds (one result per stage).
    E2e,
    E2eFloor,
    RangePrepare,
    /// `/api/range` for each stated range (one result per range).
    RangeCartflow,
    /// Plain SQL for each stated range (one result per range).
    RangeBaseline,
}

impl Measurement {
    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// A child's command line.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    pub(crate) what: Measurement,
    #[arg(long, default_value_t = 0)]
    pub(crate) events: u64,
    #[arg(long, default_value = "")]
    pub(crate) brokers: String,
    /// Payload size for the producer baseline.
    #[arg(long, default_value_t = 0)]
    pub(crate) size: usize,
    /// Seconds the gateway stage measures.
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
    #[arg(long, default_value = "")]
    pub(crate) database_url: String,
    /// Topic or database prefix of the consumer and projector stages.
    #[arg(long, default_value = "")]
    pub(crate) prefix: String,
    #[arg(long, value_enum, default_value_t = ClientKind::Lean)]
    pub(crate) gateway_client: ClientKind,
}

impl Args {
    /// `what` with the same parameters.
    pub(crate) fn with(&self, what: Measurement) -> Args {
        Args {
            what,
            ..self.clone()
        }
    }

    /// The command that runs this measurement in a child of the current executable.
    pub(crate) fn command(&self) -> anyhow::Result<Command> {
        let mut c = Command::new(std::env::current_exe()?);
        c.args(["run", &self.what.name()])
            .args(["--events", &self.events.to_string()])
            .args(["--brokers", &self.brokers, "--size", &self.size.to_string()])
            .args(["--seconds", &self.seconds.to_string()])
            .args([
                "--database-url",
                &self.database_url,
                "--prefix",
                &self.prefix,
            ])
            .args(["--gateway-client", &self.gateway_client.name()]);
        Ok(c)
    }

    /// Runs the measurement in a child process; returns what it printed.
    pub(crate) fn spawn(&self) -> anyhow::Result<Vec<u8>> {
        let what = self.what.name();
        eprintln!("  running {what} ...");
        let out = self
            .command()?
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("starting {what}"))?;
        anyhow::ensure!(out.status.success(), "{what} failed with {}", out.status);
        Ok(out.stdout)
    }

    /// Runs a measurement that gives several results (one per stage) in a child process.
    pub(crate) fn measure_all(&self) -> anyhow::Result<Vec<StageResult>> {
        let what = self.what.name();
        serde_json::from_slice(&self.spawn()?).with_context(|| format!("reading {what}'s results"))
    }

    /// Runs the measurement in a child process and reads its result.
    pub(crate) fn measure(&self) -> anyhow::Result<StageResult> {
        let what = self.what.name();
        let result: StageResult = serde_json::from_slice(&self.spawn()?)
            .with_context(|| format!("reading {what}'s result"))?;
        eprintln!("  {what}: {:.0} events/s", result.events_per_second);
        Ok(result)
    }
}

/// The child's side: runs `args.what` and prints its result, if it has one, as JSON.
pub(crate) fn run_in_child(args: &Args) -> anyhow::Result<()> {
    // Children log what the measured code logs (progress of long runs) to stderr.
    cartflow_common::telemetry::init(&cartflow_common::config::LogArgs {
        filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,cartflow_projector=info".into()),
        log_format: cartflow_common::config::LogFormat::Text,
    });
    let runtime = tokio::runtime::Runtime::new()?;
    if args.what == Measurement::E2e {
        let (b, url, p) = (&args.brokers, &args.database_url, &args.prefix);
        let results = runtime.block_on(e2e::run(b, url, p, args.events, args.size as u64))?;
        return report::print_children(&results);
    }
    let (url, p) = (&args.database_url, &args.prefix);
    match args.what {
        Measurement::RangeCartflow => {
            return report::print_children(&runtime.block_on(range::cartflow(url, p))?);
        }
        Measurement::RangeBaseline => {
            return report::print_children(&runtime.block_on(range::baseline(url, p))?);
        }
        _ => {}
    }
    if let Some(result) = runtime.block_on(run(args))? {
        report::print_child(&result)?;
    }
    Ok(())
}

async fn run(a: &Args) -> anyhow::Result<Option<StageResult>> {
    use Measurement as M;
    let (b, url, p, n) = (
        a.brokers.as_str(),
        a.database_url.as_str(),
        a.prefix.as_str(),
        a.events,
    );
    let measured = match a.what {
        M::ProducerBaseline => producer::baseline(b, n, a.size).await?,
        M::ProducerCartflow => producer::cartflow(b, n).await?,
        M::ConsumerBaseline => consumer::baseline(url, n).await?,
        M::ConsumerCartflowOne => consumer::cartflow(b, url, p, n, 1).await?,
        M::ConsumerCartflowThree => consumer::cartflow(b, url, p, n, 3).await?,
        M::GatewayCartflow => gateway::measure(Server::Cartflow, a).await?,
        M::GatewayFloor => gateway::measure(Server::Floor, a).await?,
        M::GatewayPython => gateway::measure(Server::Python, a).await?,
        M::ProjectorBaseline => projector::baseline(url, p, n).await?,
        M::ProjectorIncremental => projector::incremental(url, p, n).await?,
        M::ProjectorOutcomes => projector::incremental_with_outcomes(url, p, n).await?,
        M::ProjectorRebuild => projector::rebuild(url, p, n).await?,
        M::ProjectorWriteFloor => projector::write_floor(url, p, n).await?,
        M::ProjectorReadFloor => projector::read_floor(url, p, n).await?,
        M::ProjectorKeptFloor => projector::kept_floor(url, p, n).await?,
        M::E2eFloor => e2e::floor(b, url, n).await?,
        M::E2e | M::RangeCartflow | M::RangeBaseline => {
            anyhow::bail!("{:?} gives several results: run_in_child runs it", a.what)
        }
        // Steps that measure nothing.
        M::ConsumerPrepare => return consumer::prepare(b, p, n).await.map(|()| None),
        M::ConsumerCleanup => return consumer::cleanup(b, p).await.map(|()| None),
        M::GatewayServe => return gateway::serve(url, p, n).await.map(|()| None),
        M::GatewayFloorServe => return gateway_floor::serve().await.map(|()| None),
        M::ProjectorPrepare => return projector::prepare(url, p, n).await.map(|()| None),
        M::ProjectorCleanup => return projector::cleanup(url, p).await.map(|()| None),
        M::RangePrepare => return range::prepare(url, p, n).await.map(|()| None),
    };
    Ok(Some(measured))
}
