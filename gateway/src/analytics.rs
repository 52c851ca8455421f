//! Keeps the hub's snapshot current: woken by the projector's NOTIFY, coalesced per tick.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cartflow_common::channels;
use cartflow_common::retry::Backoff;
use cartflow_common::{DatabaseUrl, db};
use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::changes::Changes;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::{Error, snapshot};

/// Read the analytics this often even without a NOTIFY (a missed one, or the abandonment
/// clock of the views, which moves without new events).
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Runs until `shutdown`; reconnects when PostgreSQL goes away.
pub async fn run(
    url: DatabaseUrl,
    pool: Pool,
    hub: Arc<Hub>,
    metrics: Metrics,
    tick: Duration,
    changes: Changes,
    shutdown: CancellationToken,
) {
    let mut changes = changes;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while !shutdown.is_cancelled() {
        match follow(&url, &pool, &hub, &metrics, tick, &mut changes, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                warn!(error = %e, retry_in = ?backoff.peek(), "Analytics refresh failed; retrying.");
                if !backoff.wait(&shutdown).await {
                    return;
                }
            }
        }
    }
}

async fn follow(
    url: &DatabaseUrl,
    pool: &Pool,
    hub: &Hub,
    metrics: &Metrics,
    tick: Duration,
    changes: &mut Changes,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let (_client, mut notifications) = db::listen(url, channels::ANALYTICS).await?;
    let mut dirty = true;
    // The oldest publish time among the projector steps not yet pushed.
    let mut oldest: Option<i64> = None;
    let mut last = Instant::now();
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            n = notifications.recv() => match n {
                Some(changed) => {
                    dirty = true;
                    // The oldest publish time of the events the projector applied.
                    if let Some(p) = changed.and_then(|c| c.oldest_published_ms) {
                        oldest = Some(oldest.map_or(p, |o| o.min(p)));
                    }
                }
                None => return Err(Error::Snapshot("the LISTEN connection closed".into())),
            },
            _ = ticker.tick() => {
                if dirty || last.elapsed() >= REFRESH_EVERY {
                    let started = Instant::now();
                    let mut data = snapshot::load(pool).await?;
                    changes.mark(&mut data, metrics);
                    metrics.snapshot_seconds.observe(started.elapsed().as_secs_f64());
                    let changed = hub.publish_snapshot(data);
                    if changed > 0 {
                        metrics.broadcasts.with_label_values(&["analytics"]).inc();
                        metrics.pushed_latency.observe_all(oldest.take());
                        debug!(changed, "Broadcast an analytics delta.");
                    }
                    dirty = false;
                    last = Instant::now();
                }
            }
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}
