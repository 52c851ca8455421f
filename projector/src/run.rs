//! Leadership and the wake-up loop.

use std::time::Duration;

use cartflow_common::db;
use cartflow_common::ops::{Health, OpsServer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::metrics::Metrics;
use crate::{Config, Error};

/// The advisory lock only the active projector holds.
const WRITER_LOCK: i64 = 0x7072_6f6a_6563_7472; // "projectr"

/// Runs until `shutdown` is cancelled: waits as a standby until it holds the writer lock,
/// then follows the consumer's notifications.
pub async fn run(
    config: Config,
    ops_listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let ops = OpsServer::start(ops_listener, &shutdown);
    let metrics = Metrics::new(&ops.registry);
    project(&config, &metrics, &ops.health, &shutdown).await
}

async fn project(
    config: &Config,
    metrics: &Metrics,
    health: &Health,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let url = &config.database.database_url;
    // The lock lives as long as this session: if the process dies, PostgreSQL frees it and
    // the standby takes over.
    let (leader, mut wakeups) = db::listen(url, db::EVENTS_CHANNEL).await?;
    health.set_ready(true);
    let poll = Duration::from_millis(config.standby_poll_ms.max(10));
    let mut announced = false;
    loop {
        let row = leader
            .query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK])
            .await?;
        if row.get::<_, bool>(0) {
            break;
        }
        if !announced {
            info!("Another projector is active; waiting as standby.");
            announced = true;
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
    metrics.active.set(1);
    info!("Active projector.");
    loop {
        tokio::select! {
            w = wakeups.recv() => match w {
                Some(_) => metrics.wakeups.inc(),
                None => break,
            },
            () = shutdown.cancelled() => break,
        }
    }
    metrics.active.set(0);
    info!("Projector stopped.");
    Ok(())
}
