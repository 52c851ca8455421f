//! Keeps the hub's snapshot current: woken by the projector's NOTIFY, read at once when the
//! last read is a spacing old (the tick, four times what the last broadcast took the writers
//! (`pace.rs`), or `--read-spacing` times what the last read took, whichever is most), else
//! coalesced until it is.

use std::sync::Arc;
use std::time::Duration;

use cartflow_common::channels;
use cartflow_common::retry::Backoff;
use cartflow_common::{DatabaseUrl, db};
use deadpool_postgres::Pool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::changes::Changes;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::pace::Pace;
use crate::{Error, snapshot};

/// Read the analytics this often even without a NOTIFY (a missed one, or the abandonment
/// clock of the views, which moves without new events).
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// How often the analytics may be read.
#[derive(Debug, Clone, Copy)]
pub struct ReadPace {
    /// The least time between two broadcasts (`--tick-ms`).
    pub tick: Duration,
    /// Reads start at least this many times what the last one took after it began
    /// (`--read-spacing`): 1 reads again as soon as a read ends, 2 keeps the reading backend
    /// at most half busy.
    pub spacing: f64,
}

/// Runs until `shutdown`; reconnects when PostgreSQL goes away.
pub async fn run(
    url: DatabaseUrl,
    pool: Pool,
    hub: Arc<Hub>,
    metrics: Metrics,
    pace: ReadPace,
    changes: Changes,
    shutdown: CancellationToken,
) {
    let mut changes = changes;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while !shutdown.is_cancelled() {
        match follow(&url, &pool, &hub, &metrics, pace, &mut changes, &shutdown).await {
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
    read_pace: ReadPace,
    changes: &mut Changes,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let (_client, mut notifications) = db::listen(url, channels::ANALYTICS).await?;
    let mut dirty = true;
    // The oldest publish time among the projector steps not yet pushed.
    let mut oldest: Option<i64> = None;
    let mut pace = Pace::new(read_pace.tick);
    // What the last read and publish took: reading is the analytics' own cost, on PostgreSQL
    // (tens of milliseconds on a large database), so it spaces the reads as a broadcast does.
    let mut read_cost = Duration::ZERO;
    loop {
        // Without a change, the analytics are read again after REFRESH_EVERY all the same.
        let wait = if dirty {
            pace.spacing(hub.broadcast_cost())
                .max(read_cost.mul_f64(read_pace.spacing))
        } else {
            REFRESH_EVERY
        };
        let due = pace.after(wait);
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
            () = tokio::time::sleep_until(due) => {
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
                pace.sent(started);
                read_cost = started.elapsed();
            }
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}
