//! One incremental step: the next settled chunk of the log, applied together with its
//! checkpoint in the caller's transaction, so a crash at any instant applies it once or not
//! at all.

use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;

use crate::delta::Delta;
use crate::{Error, log, store};

/// The schema the analytic views read.
pub const LIVE_SCHEMA: &str = "analytics";

/// PostgreSQL channel the projector NOTIFYs after each commit that changed the analytics.
pub const ANALYTICS_CHANNEL: &str = "cartflow_analytics";

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub events: u64,
    /// The checkpoint after the step.
    pub next_tx: i64,
    /// Whether the log is applied up to the horizon.
    pub caught_up: bool,
    pub watermark: Option<DateTime<Utc>>,
    /// Publish times (ms since the epoch) of the events applied, for the latency metric.
    pub published_ms: Vec<i64>,
}

/// Serialises writers of one schema: the live projector's steps and a rebuild's swap.
pub async fn lock_schema(tx: &Transaction<'_>, schema: &str) -> Result<(), Error> {
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&schema])
        .await?;
    Ok(())
}

/// Applies the next chunk (up to about `max_events` events) to `schema` within `tx`.
/// The caller commits.
pub async fn step(tx: &Transaction<'_>, schema: &str, max_events: i64) -> Result<Applied, Error> {
    lock_schema(tx, schema).await?;
    let from: i64 = tx
        .query_one(&format!("SELECT next_tx FROM {schema}.checkpoint"), &[])
        .await?
        .get(0);
    let horizon = log::horizon(tx).await?;
    if horizon <= from {
        return Ok(Applied {
            next_tx: from,
            caught_up: true,
            ..Applied::default()
        });
    }
    let to = log::chunk_end(tx, from, horizon, max_events).await?;
    let mut delta = Delta::default();
    let mut published_ms = Vec::new();
    let events = log::read_into(tx, from, to, &mut delta, Some(&mut published_ms)).await?;
    let stored = store::stored_carts(tx, schema, &delta).await?;
    delta.settle_carts(stored);
    store::write(tx, schema, &delta, to).await?;
    if events > 0 && schema == LIVE_SCHEMA {
        // The oldest publish time lets the gateway measure publish-to-pushed latency.
        let oldest = published_ms
            .iter()
            .min()
            .map_or("null".into(), i64::to_string);
        let payload =
            format!(r#"{{"events":{events},"next_tx":{to},"oldest_published_ms":{oldest}}}"#);
        tx.execute("SELECT pg_notify($1, $2)", &[&ANALYTICS_CHANNEL, &payload])
            .await?;
    }
    Ok(Applied {
        events,
        next_tx: to,
        caught_up: to >= horizon,
        watermark: delta.watermark,
        published_ms,
    })
}

/// Applies steps to `schema`, each in its own transaction, until it is current with the
/// horizon. Returns the events applied.
pub async fn catch_up(
    client: &mut tokio_postgres::Client,
    schema: &str,
    max_events: i64,
) -> Result<u64, Error> {
    let mut events = 0;
    loop {
        let tx = client.transaction().await?;
        let applied = step(&tx, schema, max_events).await?;
        tx.commit().await?;
        events += applied.events;
        if applied.caught_up {
            return Ok(events);
        }
    }
}
