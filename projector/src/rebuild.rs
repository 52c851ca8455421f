//! `cartflow-projector rebuild`: every aggregate recomputed from the whole log into a fresh
//! schema, then swapped in atomically while the live projection goes on.
//!
//! 1. Fresh tables in `analytics_rebuild`, shaped like the live ones.
//! 2. One streaming pass over the log up to the horizon, summed in memory (by several
//!    connections at once, a part each: `rebuild/bulk.rs`), written once (`rebuild/write.rs`);
//!    the tables written by COPY get their indexes after their rows.
//! 3. Catch-up steps, as the live projector takes them, until the rebuild is current.
//! 4. The swap, in one transaction holding the live schema's writer lock: the last steps,
//!    the schemas renamed, the views pointed at the new tables, the old generation dropped.
//!    Readers see the old analytics or the new, never a mix; the rebuilt checkpoint goes
//!    with its tables, so the live projector continues from where the rebuild stopped and no
//!    event is lost or counted twice.

use std::time::Instant;

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::apply::{self, Generation, LIVE_SCHEMA, REBUILD_SCHEMA};
use crate::checkpoint::Checkpoint;
use crate::delta::Delta;
use crate::sql::{Db, Statements};
use crate::{Error, log, outcome};

mod bulk;
mod write;

const RETIRED_SCHEMA: &str = "analytics_retired";
/// The tables the bulk pass writes with COPY: created without indexes, which are built once
/// the rows are in. Maintained row by row, the carts' three indexes took 2.7 s of a 3.3 s COPY
/// of 631,000 carts; built after it, 0.9 s.
pub(super) const COPIED: [&str; 3] = ["carts", "customer_stats", "item_hourly"];
/// Held for the whole rebuild: one at a time.
const REBUILD_LOCK: i64 = 0x7265_6275_696c_6421; // "rebuild!"

/// What a rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct Rebuilt {
    /// Events summed by the bulk pass.
    pub bulk_events: u64,
    /// Events applied by catch-up steps after it.
    pub caught_up_events: u64,
    pub seconds: f64,
}

/// Rebuilds the analytics. `client` must be a connection of its own (the rebuild holds a
/// session lock on it); `max_events` sizes the catch-up steps.
pub async fn rebuild(
    client: &mut Client,
    max_events: i64,
    shutdown: &CancellationToken,
) -> Result<Rebuilt, Error> {
    rebuild_with(client, Vec::new(), max_events, shutdown).await
}

/// How many connections of their own [`rebuild_with`] takes for `--readers`: none for one
/// reader (the rebuild's own connection reads), else one each.
pub fn reader_connections(readers: u16) -> u16 {
    if readers > 1 { readers } else { 0 }
}

/// [`rebuild`], its bulk pass read by `readers` (connections of their own to the same
/// database, closed when it is done) at once, a part each; with none, by `client` alone.
pub async fn rebuild_with(
    client: &mut Client,
    readers: Vec<Client>,
    max_events: i64,
    shutdown: &CancellationToken,
) -> Result<Rebuilt, Error> {
    let started = Instant::now();
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&REBUILD_LOCK])
        .await?
        .get(0);
    if !locked {
        return Err(Error::RebuildRunning);
    }
    let result = build_and_swap(client, readers, max_events, shutdown, started).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&REBUILD_LOCK])
        .await?;
    result
}

async fn build_and_swap(
    client: &mut Client,
    readers: Vec<Client>,
    max_events: i64,
    shutdown: &CancellationToken,
    started: Instant,
) -> Result<Rebuilt, Error> {
    let tables = create_tables(client).await?;

    let tx = client.transaction().await?;
    let horizon = log::horizon(&Db::new(&tx)).await?;
    let checkpoint = Checkpoint::read(&Db::new(&tx), REBUILD_SCHEMA).await?;
    let mut delta = Delta {
        minute_retention: Some(checkpoint.minute_retention),
        ..Delta::default()
    };
    info!(
        horizon,
        readers = readers.len().max(1),
        "Rebuilding the analytics from the whole log."
    );
    let read = bulk::read(&tx, readers, horizon, &mut delta).await?;
    let bulk_events = read.events;
    info!(
        events = bulk_events,
        carts = read.carts.iter().map(|part| part.len()).sum::<usize>(),
        seconds = started.elapsed().as_secs_f64(),
        "Read the log; writing the rebuilt tables."
    );
    // Boxed: the writing's state machine is large, and the rebuild's future holds it.
    Box::pin(write::write(
        &tx,
        read.readers,
        delta,
        read.carts,
        &checkpoint,
        horizon,
        started,
    ))
    .await?;
    tx.commit().await?;
    info!(
        seconds = started.elapsed().as_secs_f64(),
        "Wrote the rebuilt tables; catching up."
    );
    // Fresh tables have no statistics until autovacuum gets to them, and the planner then
    // guesses (a one-row checkpoint was estimated at 1,060 rows): give the swapped-in tables
    // true ones before anyone reads them.
    let tables: Vec<String> = tables
        .iter()
        .map(|t| format!("{REBUILD_SCHEMA}.{t}"))
        .collect();
    client
        .batch_execute(&format!("ANALYZE {}", tables.join(", ")))
        .await?;

    let mut caught_up_events = 0;
    let statements = Statements::for_connection(client).await?;
    loop {
        if shutdown.is_cancelled() {
            return Err(Error::Interrupted);
        }
        let tx = client.transaction().await?;
        let step = apply::step(
            &Db::cached(&tx, &statements),
            Generation::Rebuild,
            max_events,
        )
        .await?;
        tx.commit().await?;
        caught_up_events += step.events;
        if step.caught_up {
            break;
        }
    }

    let tx = client.transaction().await?;
    let db = Db::cached(&tx, &statements);
    apply::lock_schema(&db, LIVE_SCHEMA).await?;
    loop {
        let step = apply::step(&db, Generation::Rebuild, max_events).await?;
        caught_up_events += step.events;
        if step.caught_up {
            break;
        }
    }
    tx.batch_execute(&format!(
        "ALTER SCHEMA {LIVE_SCHEMA} RENAME TO {RETIRED_SCHEMA};
         ALTER SCHEMA {REBUILD_SCHEMA} RENAME TO {LIVE_SCHEMA};
         SELECT public.cartflow_create_views();
         DROP SCHEMA {RETIRED_SCHEMA} CASCADE;"
    ))
    .await?;
    // Outcomes live outside the swapped schema: whatever was declared stays declared, and
    // only a difference between the rebuilt carts and the declared verdicts (none when the
    // live projection was current) is declared now.
    let outcomes: bool = tx
        .query_one(
            &format!("SELECT outcomes FROM {LIVE_SCHEMA}.checkpoint"),
            &[],
        )
        .await?
        .get(0);
    if outcomes {
        let decided = outcome::reconcile(&Db::new(&tx), LIVE_SCHEMA).await?;
        if decided.total() > 0 {
            info!(
                outcomes = decided.total(),
                "The rebuild declared cart outcomes."
            );
        }
    }
    tx.commit().await?;
    let rebuilt = Rebuilt {
        bulk_events,
        caught_up_events,
        seconds: started.elapsed().as_secs_f64(),
    };
    info!(
        bulk_events,
        caught_up_events,
        seconds = rebuilt.seconds,
        "Swapped in the rebuilt analytics."
    );
    Ok(rebuilt)
}

/// An empty `analytics_rebuild` with every table of `analytics` (columns, defaults,
/// constraints, indexes) and a fresh checkpoint that keeps the live abandonment setting (the
/// defaults when the live checkpoint row is gone: the rebuild is how that is repaired).
/// Returns the tables' names, quoted.
async fn create_tables(client: &Client) -> Result<Vec<String>, Error> {
    let tables = tables_of(client, LIVE_SCHEMA).await?;
    let mut ddl =
        format!("DROP SCHEMA IF EXISTS {REBUILD_SCHEMA} CASCADE; CREATE SCHEMA {REBUILD_SCHEMA};");
    for table in &tables {
        let copied = COPIED
            .iter()
            .any(|c| &cartflow_common::db::quote_ident(c) == table);
        let indexes = if copied { "EXCLUDING INDEXES" } else { "" };
        ddl.push_str(&format!(
            "CREATE TABLE {REBUILD_SCHEMA}.{table} \
             (LIKE {LIVE_SCHEMA}.{table} INCLUDING ALL {indexes});"
        ));
    }
    ddl.push_str(&format!(
        "INSERT INTO {REBUILD_SCHEMA}.checkpoint (abandon_after, minute_retention, outcomes) \
         SELECT abandon_after, minute_retention, outcomes FROM {LIVE_SCHEMA}.checkpoint;
         INSERT INTO {REBUILD_SCHEMA}.checkpoint DEFAULT VALUES ON CONFLICT DO NOTHING;"
    ));
    client.batch_execute(&ddl).await?;
    Ok(tables)
}

/// The tables of `schema`, as quoted identifiers.
async fn tables_of(client: &Client, schema: &str) -> Result<Vec<String>, Error> {
    Ok(client
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename",
            &[&schema],
        )
        .await?
        .iter()
        .map(|r| cartflow_common::db::quote_ident(r.get(0)))
        .collect())
}
