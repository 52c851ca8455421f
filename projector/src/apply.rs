//! One incremental step: the next settled chunk of the log, applied together with its
//! checkpoint in the caller's transaction, so a crash at any instant applies it once or not
//! at all.

use std::time::Instant;

use cartflow_common::channels;
use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Transaction};
use tracing::debug;

use crate::checkpoint::Checkpoint;
use crate::delta::Delta;
use crate::outcome::{self, Decided};
use crate::sql::{Db, Statements};
use crate::{Error, log, store};

/// Which set of aggregate tables a step writes: the live ones the views read, or the ones a
/// rebuild fills before it swaps them in. Only a live step tells the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    Live,
    Rebuild,
}

impl Generation {
    /// The PostgreSQL schema holding this generation's tables.
    pub const fn schema(self) -> &'static str {
        match self {
            Generation::Live => LIVE_SCHEMA,
            Generation::Rebuild => REBUILD_SCHEMA,
        }
    }
}

/// The schema the analytic views read.
pub const LIVE_SCHEMA: &str = "analytics";
/// The schema a rebuild fills, renamed to [`LIVE_SCHEMA`] when it is done.
pub const REBUILD_SCHEMA: &str = "analytics_rebuild";

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
    /// Cart outcomes the step wrote to the outbox (live steps with outcomes on).
    pub decided: Decided,
}

/// Serialises writers of one schema: the live projector's steps and a rebuild's swap.
pub async fn lock_schema(
    tx: &Db<'_, impl GenericClient + Sync>,
    schema: &str,
) -> Result<(), Error> {
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&schema])
        .await?;
    Ok(())
}

/// Applies the next chunk (up to about `max_events` events) to `generation`'s tables within
/// `tx` (a transaction). The caller commits.
///
/// Statements that do not wait for each other's results go out together (tokio-postgres
/// pipelines them; PostgreSQL runs them in the order sent): a step waits for five round
/// trips or so instead of some twenty. On a machine whose cores are busy every round trip
/// also waits for the projector to be scheduled again, so their number shows in the step's
/// time (#18).
pub async fn step(
    tx: &Db<'_, Transaction<'_>>,
    generation: Generation,
    max_events: i64,
) -> Result<Applied, Error> {
    let schema = generation.schema();
    // The lock first: PostgreSQL runs the reads after it, under it.
    let ((), checkpoint, (horizon, to)) = futures::try_join!(
        lock_schema(tx, schema),
        Checkpoint::read(tx, schema),
        log::horizon_and_chunk_end(tx, schema, max_events),
    )?;
    let from = checkpoint.next_tx;
    let outcomes = checkpoint.outcomes && generation == Generation::Live;
    if horizon <= from {
        return Ok(Applied {
            next_tx: from,
            caught_up: true,
            ..Applied::default()
        });
    }
    let started = Instant::now();
    let mut delta = Delta::default();
    let mut published_ms = Vec::new();
    let events = log::read_into(tx, from, to, &mut delta, Some(&mut published_ms)).await?;
    let (log_end, stored) = futures::try_join!(
        async {
            if to < horizon {
                log::end_time(tx, horizon).await
            } else {
                Ok(None)
            }
        },
        store::stored_carts(tx, schema, &delta),
    )?;
    delta.log_end = log_end;
    let read = started.elapsed();
    delta.settle_carts(stored);
    let advance = checkpoint.advance(&delta, to);
    let changed = channels::AnalyticsChanged {
        events,
        next_tx: to,
        oldest_published_ms: published_ms.iter().min().copied(),
    };
    let tell_gateway = events > 0 && generation == Generation::Live;
    let look_up = outcomes && events > 0;
    let ((), lookup, ()) = futures::try_join!(
        store::write(tx, schema, &delta, &advance),
        async {
            if look_up {
                outcome::look_up(tx, schema, &delta.carts, &advance)
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        },
        async {
            if tell_gateway {
                tx.notify(channels::ANALYTICS, &changed).await
            } else {
                Ok(())
            }
        },
    )?;
    let written = started.elapsed();
    let decided = match lookup {
        Some(lookup) => outcome::after_step(tx, &delta.carts, &advance, lookup).await?,
        None => Decided::default(),
    };
    if events > 0 {
        debug!(
            events,
            carts = delta.carts.len(),
            decided = decided.total(),
            read_ms = read.as_millis(),
            write_ms = (written - read).as_millis(),
            outcomes_ms = (started.elapsed() - written).as_millis(),
            "Step applied; its parts' times."
        );
    }
    Ok(Applied {
        events,
        next_tx: to,
        caught_up: to >= horizon,
        watermark: delta.watermark,
        published_ms,
        decided,
    })
}

/// Applies steps to `generation`'s tables, each in its own transaction, until they are
/// current with the horizon. Returns the events applied.
pub async fn catch_up(
    client: &mut tokio_postgres::Client,
    generation: Generation,
    max_events: i64,
) -> Result<u64, Error> {
    let mut events = 0;
    let statements = Statements::for_connection(client).await?;
    loop {
        let tx = client.transaction().await?;
        let applied = step(&Db::cached(&tx, &statements), generation, max_events).await?;
        tx.commit().await?;
        events += applied.events;
        if applied.caught_up {
            return Ok(events);
        }
    }
}
