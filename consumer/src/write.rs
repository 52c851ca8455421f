//! Storing one batch: its rows split by partition into concurrent transactions ("lanes"),
//! each retried with the shared backoff while the database is away, and stopped for good
//! when the database refuses the work permanently.

use cartflow_common::retry::{Backoff, Class};
use deadpool_postgres::Pool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::Error;
use crate::batch::Batch;
use crate::metrics::Metrics;
use crate::store::{self, Written};

/// Writes the batch's rows in `lanes` concurrent transactions (the database then works on
/// more than one core). `Ok(None)` when `shutdown` stopped a lane; nothing is committed to
/// Kafka then, and the lanes that did commit are de-duplicated on redelivery.
pub(crate) async fn write_lanes(
    pool: &Pool,
    batch: &mut Batch,
    lanes: usize,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<Option<Written>, Error> {
    let parts = batch.split_rows(lanes);
    let writes = parts
        .iter()
        .map(|part| write_with_retry(pool, part, metrics, shutdown));
    let mut total = Written::default();
    for w in futures::future::join_all(writes).await {
        let Some(w) = w? else {
            return Ok(None);
        };
        total.stored += w.stored;
        total.duplicates += w.duplicates;
        total.new_dead_letters.extend(w.new_dead_letters);
        total.to_publish.extend(w.to_publish);
    }
    Ok(Some(total))
}

/// Writes the batch, retrying with backoff while the database is away. `Ok(None)` when
/// `shutdown` came first; an error when the database refuses for good.
async fn write_with_retry(
    pool: &Pool,
    batch: &Batch,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<Option<Written>, Error> {
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        match store::write(pool, batch).await {
            Ok(w) => {
                record(metrics, batch, &w, started);
                return Ok(Some(w));
            }
            Err(e) if e.class() == Class::Permanent => return Err(e),
            Err(e) => {
                metrics.write_retries.inc();
                warn!(error = %e, retry_in = ?backoff.peek(), "Batch write failed; retrying.");
            }
        }
        if !backoff.wait(shutdown).await {
            return Ok(None);
        }
    }
}

fn record(metrics: &Metrics, batch: &Batch, w: &Written, started: Instant) {
    metrics
        .write_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.batch_size.observe(batch.messages as f64);
    metrics.stored.inc_by(w.stored);
    metrics
        .latency
        .observe_all(batch.events.iter().filter_map(|e| e.published_ms));
    metrics.duplicates.inc_by(w.duplicates);
    for reason in &w.new_dead_letters {
        metrics.dead_letters.with_label_values(&[reason]).inc();
    }
    debug!(
        messages = batch.messages,
        stored = w.stored,
        "Wrote a batch."
    );
}
