//! The live projector: leadership, the apply loop and its wake-ups.

use std::time::{Duration, Instant};

use cartflow_common::channels::{EventsStored, OutcomesDecided};
use cartflow_common::db;
use cartflow_common::ops::OpsServer;
use cartflow_common::retry::Class;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::apply::{self, Generation, LIVE_SCHEMA};
use crate::leader;
use crate::metrics::Metrics;
use crate::outcome;
use crate::sql::{Db, Statements};
use crate::statistics::Analyser;
use crate::{Config, Error};

/// The advisory lock only the active projector holds.
const WRITER_LOCK: i64 = 0x7072_6f6a_6563_7472; // "projectr"
/// How often the lag gauges are refreshed.
const LAG_EVERY: Duration = Duration::from_secs(2);

/// Runs until `shutdown` is cancelled: waits as a standby until it holds the writer lock,
/// then keeps the analytics current.
pub async fn run(
    config: Config,
    ops_listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let ops = OpsServer::start(ops_listener, &shutdown);
    let metrics = Metrics::new(&ops.registry);
    let url = &config.database.database_url;
    db::prepare_schema(url, config.skip_migrations).await?;
    ops.health.set_ready(true);
    leader::serve(
        || lead(&config, &metrics, &shutdown),
        |e| e.class() == Class::Transient,
        "Lost PostgreSQL; reconnecting.",
        &metrics.active,
        url,
        &shutdown,
    )
    .await
}

/// One connection's life: standby, then active until shutdown or until the connection fails.
async fn lead(
    config: &Config,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    // One connection does everything: the writer lock lives as long as this session, so if
    // the process or the connection dies PostgreSQL frees it, the standby takes over, and
    // this instance can no longer write.
    let url = &config.database.database_url;
    let (mut client, mut wakeups) = db::listen(url, cartflow_common::channels::EVENTS).await?;
    // Small, frequent statements: with the planner's estimates off (a one-row checkpoint
    // estimated at 1,060 rows), PostgreSQL JIT-compiled the lag query every 2 s, 107 ms
    // where 0.1 ms does. A rebuild's bulk read keeps JIT on its own connection.
    client.batch_execute("SET jit = off").await?;
    let poll = Duration::from_millis(config.standby_poll_ms);
    if !leader::acquire(&client, WRITER_LOCK, poll, "projector", shutdown).await? {
        return Ok(());
    }
    metrics.active.set(1);
    info!("Active projector.");
    let result = project(&mut client, &mut wakeups, config, metrics, shutdown).await;
    metrics.active.set(0);
    if result.is_ok() {
        info!("Projector stopped.");
    }
    result
}

async fn project(
    client: &mut Client,
    wakeups: &mut UnboundedReceiver<Option<EventsStored>>,
    config: &Config,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let abandon_after = format!("{} seconds", config.abandon_after.as_secs_f64());
    let minute_retention = format!("{} seconds", config.minute_retention.as_secs_f64());
    // How the last run decided outcomes. Every step compares the carts it could have changed,
    // so all carts need comparing only when that changed: outcomes were off (or never on), or
    // the abandonment clock is another. Comparing them at every start took seconds on a
    // large database for nothing.
    let last = client
        .query_opt(
            &format!(
                "SELECT outcomes, abandon_after = $1::text::interval FROM {LIVE_SCHEMA}.checkpoint"
            ),
            &[&abandon_after],
        )
        .await
        .map_err(|e| match e.code() {
            Some(c) if *c == tokio_postgres::error::SqlState::UNDEFINED_TABLE => Error::NotMigrated,
            _ => e.into(),
        })?
        .ok_or_else(|| Error::NoCheckpoint {
            schema: LIVE_SCHEMA.to_owned(),
        })?;
    let (had_outcomes, same_clock): (bool, bool) = (last.get(0), last.get(1));
    client
        .execute(
            &format!(
                "UPDATE {LIVE_SCHEMA}.checkpoint SET abandon_after = $1::text::interval, \
                 minute_retention = $2::text::interval, outcomes = $3"
            ),
            &[&abandon_after, &minute_retention, &config.outcomes],
        )
        .await?;
    if config.outcomes && !(had_outcomes && same_clock) {
        reconcile_outcomes(client, metrics).await?;
    }
    let poll = Duration::from_millis(config.poll_ms);
    let mut last_lag = Instant::now() - LAG_EVERY;
    let mut analyser = Analyser::new(config.database.database_url.clone());
    // This connection's prepared statements; a new connection starts a new set.
    let statements = Statements::for_connection(client).await?;
    loop {
        // Apply until current; a shutdown waits for the step in hand to commit.
        loop {
            let started = Instant::now();
            let tx = client.transaction().await?;
            let db = Db::cached(&tx, &statements);
            let step = apply::step(&db, Generation::Live, config.chunk_events).await?;
            tx.commit().await?;
            if step.events > 0 {
                metrics
                    .latency
                    .observe_all(step.published_ms.iter().copied());
                metrics.events.inc_by(step.events);
                metrics.count_decided(&step.decided);
                metrics.steps.inc();
                metrics
                    .step_seconds
                    .observe(started.elapsed().as_secs_f64());
                debug!(
                    events = step.events,
                    next_tx = step.next_tx,
                    "Applied a chunk."
                );
                analyser.applied(step.events);
            }
            if let Some(w) = step.watermark {
                metrics
                    .watermark_seconds
                    .set(metrics.watermark_seconds.get().max(w.timestamp()));
            }
            if step.caught_up || shutdown.is_cancelled() {
                break;
            }
        }
        if last_lag.elapsed() >= LAG_EVERY {
            refresh_lag(client, metrics).await?;
            last_lag = Instant::now();
        }
        tokio::select! {
            w = wakeups.recv() => match w {
                Some(_) => {
                    metrics.wakeups.inc();
                    // The next step applies whatever the wake-ups queued meanwhile announced:
                    // one step for them all, not one more (empty) step each.
                    while wakeups.try_recv().is_ok() {
                        metrics.wakeups.inc();
                    }
                }
                None => return Err(Error::ConnectionLost),
            },
            () = tokio::time::sleep(poll) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// Declares whatever the outbox lacks for the carts as they stand (the first start with
/// outcomes on, or with another `--abandon-after`), holding the schema lock like a step.
async fn reconcile_outcomes(client: &mut Client, metrics: &Metrics) -> Result<(), Error> {
    let tx = client.transaction().await?;
    let db = Db::new(&tx);
    apply::lock_schema(&db, LIVE_SCHEMA).await?;
    let decided = outcome::reconcile(&db, LIVE_SCHEMA).await?;
    if decided.total() > 0 {
        let message = OutcomesDecided {
            decided: decided.total(),
        };
        db::notify(
            &tx,
            db::NOTIFY_SQL,
            cartflow_common::channels::OUTCOMES,
            &message,
        )
        .await?;
    }
    tx.commit().await?;
    metrics.count_decided(&decided);
    if decided.total() > 0 {
        info!(
            outcomes = decided.total(),
            "Declared the outcomes of carts decided before this start."
        );
    }
    Ok(())
}

async fn refresh_lag(client: &Client, metrics: &Metrics) -> Result<(), Error> {
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), coalesce(extract(epoch FROM now() - min(e.stored_at)), 0)::float8 \
                 FROM events e, {LIVE_SCHEMA}.checkpoint k WHERE e.tx_id >= k.next_tx"
            ),
            &[],
        )
        .await?;
    metrics.lag_events.set(row.get(0));
    metrics.lag_seconds.set(row.get(1));
    Ok(())
}
