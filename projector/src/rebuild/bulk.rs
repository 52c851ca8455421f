//! The rebuild's bulk pass: the log up to the horizon summed in memory, by one connection or
//! by several at once.
//!
//! Read by one connection, the pass is bound by one core decoding rows and summing them (the
//! PostgreSQL backend sending them is about 40 % busy). Read by several, the heap of `events`
//! is cut into as many ranges of blocks, each connection sums its own range into a delta of
//! its own, and the deltas are merged: every aggregate is a sum, a minimum or a maximum, and
//! the few carts whose events fall on both sides of a cut are merged like any other. The
//! parts read one snapshot, exported by the rebuild's transaction, so together they are
//! exactly the rows that one connection would have read.

use tokio::task::JoinSet;
use tokio_postgres::{Client, IsolationLevel, Transaction};
use tracing::debug;

use crate::delta::{Cart, Delta, Map, disjoint_carts};
use crate::sql::Db;
use crate::{Error, log};

/// What the bulk pass read.
pub(super) struct Read {
    pub(super) events: u64,
    /// The readers' connections, idle, for the writing.
    pub(super) readers: Vec<Client>,
    /// The carts, a map for each part, no cart in two.
    pub(super) carts: Vec<Map<String, Cart>>,
}

/// Sums the log below `horizon` into `delta` (empty, with its settings made) but for the
/// carts, returned beside it. With no `readers`, `tx` reads it all; otherwise `readers`, each
/// a connection of its own, read a part each while `tx` holds the snapshot they share.
pub(super) async fn read(
    tx: &Transaction<'_>,
    readers: Vec<Client>,
    horizon: i64,
    delta: &mut Delta,
) -> Result<Read, Error> {
    if readers.is_empty() {
        let events = log::read_into(&Db::new(tx), 0, horizon, delta, None).await?;
        let carts = vec![std::mem::take(&mut delta.carts)];
        return Ok(Read {
            events,
            readers,
            carts,
        });
    }
    // The live carts table's row estimate (ANALYZE'd by the last rebuild and by autovacuum)
    // sizes the carts maps, which would otherwise be rehashed at every doubling.
    let row = tx
        .query_one(
            "SELECT pg_export_snapshot(), \
             pg_relation_size('events') / current_setting('block_size')::int8, \
             (SELECT greatest(reltuples, 0)::int8 FROM pg_class \
              WHERE oid = to_regclass('analytics.carts'))",
            &[],
        )
        .await?;
    let snapshot: String = row.get(0);
    let blocks = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
    let carts = usize::try_from(row.get::<_, Option<i64>>(2).unwrap_or(0)).unwrap_or(0);
    let parts = readers.len() as u64;
    let mut tasks = JoinSet::new();
    for (i, reader) in (0u64..).zip(readers) {
        let (first, end) = log::block_part(blocks, parts, i);
        let mut part = Delta {
            minute_retention: delta.minute_retention,
            carts: Map::with_capacity_and_hasher(carts / parts as usize, Default::default()),
            ..Delta::default()
        };
        let snapshot = snapshot.clone();
        // A task each: the parts are decoded and summed on as many cores.
        tasks.spawn(async move {
            let (events, reader) =
                read_part(reader, &snapshot, horizon, first, end, &mut part).await?;
            debug!(first, ?end, events, "Read a part of the log.");
            Ok::<_, Error>((i, events, part, reader))
        });
    }
    let mut done = Vec::with_capacity(parts as usize);
    while let Some(joined) = tasks.join_next().await {
        // A reader that panicked takes the rebuild with it, as one reading alone would.
        done.push(joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?);
    }
    done.sort_unstable_by_key(|(i, _, _, _)| *i);
    let mut read = Read {
        events: 0,
        readers: Vec::with_capacity(done.len()),
        carts: Vec::with_capacity(done.len()),
    };
    for (i, n, mut part, reader) in done {
        read.events += n;
        read.readers.push(reader);
        // The carts stay apart: merged into one map, a 10-million-event log's 1.6 million
        // carts of the second part took 0.47 s to re-insert, on the critical path.
        read.carts.push(std::mem::take(&mut part.carts));
        if i == 0 {
            *delta = part;
        } else {
            delta.absorb(part);
        }
    }
    disjoint_carts(&mut read.carts);
    Ok(read)
}

async fn read_part(
    mut reader: Client,
    snapshot: &str,
    horizon: i64,
    first: u64,
    end: Option<u64>,
    part: &mut Delta,
) -> Result<(u64, Client), Error> {
    let tx = reader
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    // The snapshot's name is PostgreSQL's own (hexadecimal digits and dashes).
    tx.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'"))
        .await?;
    let events = log::read_blocks_into(&tx, horizon, first, end, part).await?;
    tx.commit().await?;
    Ok((events, reader))
}
