//! Reading the raw log in settled chunks.
//!
//! Every `events` row carries the id of the transaction that wrote it (`tx_id`). A row whose
//! `tx_id` is below the oldest transaction that may still write events (the *horizon*,
//! `cartflow_log_horizon()`, migrations/V13) can no longer appear or change, so the log up to
//! the horizon is final whichever consumer wrote it and in whatever order their transactions
//! committed. Writers of `events` announce themselves before they have a transaction id, so
//! other long transactions on the server (a rebuild's write, another database's bulk load) do
//! not hold the horizon back. The checkpoint is one number: every row with `tx_id` below it has
//! been applied.

use chrono::{DateTime, Utc};
use futures::{StreamExt, pin_mut};
use tokio_postgres::GenericClient;
use tokio_postgres::types::{FromSql, ToSql, Type};

pub mod binary;

use binary::BinaryRows;

use crate::Error;
use crate::cents::Cents;
use crate::delta::{Action, Delta, LogEvent};
use crate::sql::Db;

/// The oldest transaction that may still write events: the log below it is final. Read in a
/// statement of its own, before the statements that read the log (each takes a later snapshot).
pub async fn horizon(client: &Db<'_, impl GenericClient + Sync>) -> Result<i64, Error> {
    let row = client
        .query_one("SELECT cartflow_log_horizon()", &[])
        .await?;
    Ok(row.get(0))
}

/// The horizon, and where the next chunk of `schema`'s projection ends (exclusive): after
/// about `max_events` rows from its checkpoint's `next_tx`, at a transaction boundary (a
/// consumer's batch is never split), and never beyond the horizon. One statement: the
/// horizon is computed from the statement's own snapshot, which therefore sees every row
/// below it; the rows themselves are read by later statements.
pub async fn horizon_and_chunk_end(
    client: &Db<'_, impl GenericClient + Sync>,
    schema: &str,
    max_events: i64,
) -> Result<(i64, i64), Error> {
    let row = client
        .query_one(
            &format!(
                "SELECT h, k.next_tx, (SELECT tx_id FROM events \
                     WHERE tx_id >= k.next_tx AND tx_id < h ORDER BY tx_id OFFSET $1 LIMIT 1) \
                 FROM cartflow_log_horizon() h, {schema}.checkpoint k"
            ),
            &[&max_events.max(1)],
        )
        .await?;
    let (horizon, from): (i64, i64) = (row.get(0), row.get(1));
    let end = match row.get::<_, Option<i64>>(2) {
        // One transaction larger than a chunk is taken whole.
        Some(tx) if tx == from => from + 1,
        Some(tx) => tx,
        None => horizon,
    };
    Ok((horizon, end))
}

/// The latest event time in the newest settled transaction (below `horizon`): where the log
/// has got to, as far as one index probe and one transaction's rows can tell. Events are
/// mostly written in time order, so it is close to the latest event time of the whole log and
/// never beyond it.
pub async fn end_time(
    client: &Db<'_, impl GenericClient + Sync>,
    horizon: i64,
) -> Result<Option<DateTime<Utc>>, Error> {
    let row = client
        .query_one(
            "SELECT max(\"timestamp\") FROM events \
             WHERE tx_id = (SELECT max(tx_id) FROM events WHERE tx_id < $1)",
            &[&horizon],
        )
        .await?;
    Ok(row.get(0))
}

/// The columns every read of the log takes, in the order its reader decodes them (public
/// for the bench's read floor, which reads what a rebuild reads).
pub const COLUMNS: &str = "SELECT customer_id, product_id, product_price, action, \"timestamp\", \
     session_id, published_at FROM events";

/// Adds every event with `from <= tx_id < to` to `delta`, streaming. Returns how many. With
/// `published`, also collects each event's publish time (milliseconds since the epoch) for
/// the latency metric; a rebuild's bulk pass over the whole log leaves it out.
pub async fn read_into(
    client: &Db<'_, impl GenericClient + Sync>,
    from: i64,
    to: i64,
    delta: &mut Delta,
    published: Option<&mut Vec<i64>>,
) -> Result<u64, Error> {
    let sql = format!("{COLUMNS} WHERE tx_id >= $1 AND tx_id < $2");
    stream_into(client, &sql, from, to, delta, published).await
}

/// Adds the events below `horizon` stored in heap blocks `first..end` of `events` (`end`
/// open for the part that reaches the table's end, where rows written since are appended):
/// one part of a rebuild's bulk pass read by several connections at once. Rows below the
/// horizon are never updated, so they stay in the block they were written to.
/// Read as a binary `COPY` walked in place ([`binary`]): no `Row` per event.
pub async fn read_blocks_into(
    tx: &tokio_postgres::Transaction<'_>,
    horizon: i64,
    first: u64,
    end: Option<u64>,
    delta: &mut Delta,
) -> Result<u64, Error> {
    // COPY takes no parameters; the horizon is a number this process read.
    let sql = format!(
        "COPY ({COLUMNS} WHERE {} AND tx_id < {horizon}) TO STDOUT (FORMAT binary)",
        block_range(first, end)
    );
    let stream = tx.copy_out(&sql).await?;
    pin_mut!(stream);
    let mut rows = BinaryRows::default();
    let mut n = 0;
    while let Some(chunk) = stream.next().await {
        rows.feed(&chunk?, |fields| {
            delta.add(&copied_event(fields)?);
            n += 1;
            Ok(())
        })?;
    }
    rows.finish()?;
    Ok(n)
}

/// An event from the binary fields of a [`COLUMNS`] row (`published_at` is not needed here).
fn copied_event<'a>(f: &[Option<&'a [u8]>; 7]) -> Result<LogEvent<'a>, Error> {
    let field = |i: usize| f[i].ok_or_else(|| binary::malformed(&format!("column {i} is NULL")));
    let bad = |what: &str, e: &dyn std::fmt::Display| binary::malformed(&format!("{what}: {e}"));
    let int8 = |i: usize| -> Result<i64, Error> {
        let bytes: [u8; 8] = field(i)?
            .try_into()
            .map_err(|_| binary::malformed("an int8 that is not 8 bytes"))?;
        Ok(i64::from_be_bytes(bytes))
    };
    let text = |bytes: &'a [u8]| std::str::from_utf8(bytes).map_err(|e| bad("text", &e));
    let action = text(field(3)?)?;
    Ok(LogEvent {
        customer_id: int8(0)?,
        product_id: int8(1)?,
        price: Cents::from_sql(&Type::NUMERIC, field(2)?).map_err(|e| bad("price", &e))?,
        action: Action::from_db(action).ok_or_else(|| Error::UnknownAction(action.into()))?,
        timestamp: DateTime::<Utc>::from_sql(&Type::TIMESTAMPTZ, field(4)?)
            .map_err(|e| bad("timestamp", &e))?,
        session_id: f[5].map(text).transpose()?,
    })
}

/// Part `i` of `parts` of a heap of `blocks` blocks, as `(first, end)` for [`block_range`]:
/// the last part runs to the table's end, where rows written since are appended.
pub fn block_part(blocks: u64, parts: u64, i: u64) -> (u64, Option<u64>) {
    (
        blocks * i / parts,
        (i + 1 < parts).then(|| blocks * (i + 1) / parts),
    )
}

/// The condition for the rows in heap blocks `first` up to `end` (to the table's end
/// without one), which PostgreSQL 14+ reads by a TID Range Scan: these blocks only.
pub fn block_range(first: u64, end: Option<u64>) -> String {
    let until = end
        .map(|e| format!(" AND ctid < '({e},0)'::tid"))
        .unwrap_or_default();
    format!("ctid >= '({first},0)'::tid{until}")
}

async fn stream_into(
    client: &Db<'_, impl GenericClient + Sync>,
    sql: &str,
    from: i64,
    to: i64,
    delta: &mut Delta,
    mut published: Option<&mut Vec<i64>>,
) -> Result<u64, Error> {
    let params: [&(dyn ToSql + Sync); 2] = [&from, &to];
    let rows = client.query_raw(sql, params).await?;
    pin_mut!(rows);
    let mut n = 0;
    while let Some(row) = rows.next().await {
        let row = row?;
        let action: &str = row.get(3);
        let action = Action::from_db(action).ok_or_else(|| Error::UnknownAction(action.into()))?;
        delta.add(&LogEvent {
            customer_id: row.get(0),
            product_id: row.get(1),
            price: row.get::<_, Cents>(2),
            action,
            timestamp: row.get(4),
            session_id: row.get(5),
        });
        if let Some(p) = published.as_deref_mut()
            && let Some(at) = row.get::<_, Option<DateTime<Utc>>>(6)
        {
            p.push(at.timestamp_millis());
        }
        n += 1;
    }
    Ok(n)
}
