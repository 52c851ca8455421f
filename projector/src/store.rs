//! Writing a [`Delta`] into one generation of the aggregate tables.
//!
//! `schema` is `analytics` for the live projection or the schema a rebuild fills before it
//! swaps it in. Counters are added (`t.x + EXCLUDED.x`), first/last times take the least and
//! greatest, and carts are written whole (their state was merged in memory).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::pin_mut;
use tokio_postgres::types::ToSql;
use tokio_postgres::{CopyInSink, GenericClient, Transaction};

use crate::Error;
use crate::cents::Cents;
use crate::checkpoint::{Advance, FloorMove};
use crate::delta::{Cart, CartOutcomes, Counters, Delta, ItemKey, Map};
use crate::sql::Db;

mod copy_rows;
use copy_rows::CopyRows;

/// Rows per statement: keeps a rebuild's millions of carts in bounded messages.
const ROWS_PER_STATEMENT: usize = 20_000;

/// The stored states of the carts `delta` touches.
pub async fn stored_carts(
    client: &Db<'_, impl GenericClient + Sync>,
    schema: &str,
    delta: &Delta,
) -> Result<Map<String, Cart>, Error> {
    let keys: Vec<&str> = delta.carts.keys().map(String::as_str).collect();
    let mut carts = Map::with_capacity_and_hasher(keys.len(), Default::default());
    for keys in keys.chunks(ROWS_PER_STATEMENT) {
        let rows = client
            .query(
                &format!(
                    // One index probe per key, whatever the statistics say: with
                    // `cart_key = ANY($1)` and thousands of keys the planner chose a scan of
                    // the whole table (105 ms for 6,300 keys against 632,000 carts; the probes
                    // 28 ms), and a plain join with the keys a hash join when the table's
                    // statistics were stale. `OFFSET 0` keeps the subquery a nested loop.
                    "SELECT c.* FROM unnest($1::text[]) AS k(key), LATERAL ( \
                         SELECT cart_key, customer_id, first_at, last_at, {COUNTERS} \
                         FROM {schema}.carts WHERE cart_key = k.key OFFSET 0) AS c"
                ),
                &[&keys],
            )
            .await?;
        for row in rows {
            let cart = Cart {
                customer_id: row.get(1),
                first_at: row.get(2),
                last_at: row.get(3),
                items: Counters {
                    events: row.get(4),
                    adds: row.get(5),
                    removes: row.get(6),
                    purchases: row.get(7),
                    added_value: row.get(8),
                    removed_value: row.get(9),
                    revenue: row.get(10),
                },
                new: false,
            };
            carts.insert(row.get(0), cart);
        }
    }
    Ok(carts)
}

const COUNTERS: &str = "events, adds, removes, purchases, added_value, removed_value, revenue";
const ADD_COUNTERS: &str = "events = t.events + EXCLUDED.events, adds = t.adds + EXCLUDED.adds, \
    removes = t.removes + EXCLUDED.removes, purchases = t.purchases + EXCLUDED.purchases, \
    added_value = t.added_value + EXCLUDED.added_value, \
    removed_value = t.removed_value + EXCLUDED.removed_value, revenue = t.revenue + EXCLUDED.revenue";
const SET_COUNTERS: &str = "events = EXCLUDED.events, adds = EXCLUDED.adds, \
    removes = EXCLUDED.removes, purchases = EXCLUDED.purchases, \
    added_value = EXCLUDED.added_value, removed_value = EXCLUDED.removed_value, \
    revenue = EXCLUDED.revenue";
const COUNTER_ARRAYS: &str =
    "$2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::numeric[], $7::numeric[], $8::numeric[]";

/// Counters as columns: parameters 2 to 8 of every upsert.
#[derive(Default)]
struct CounterColumns {
    events: Vec<i64>,
    adds: Vec<i64>,
    removes: Vec<i64>,
    purchases: Vec<i64>,
    added_value: Vec<Cents>,
    removed_value: Vec<Cents>,
    revenue: Vec<Cents>,
}

impl CounterColumns {
    fn push(&mut self, c: &Counters) {
        self.events.push(c.events);
        self.adds.push(c.adds);
        self.removes.push(c.removes);
        self.purchases.push(c.purchases);
        self.added_value.push(c.added_value);
        self.removed_value.push(c.removed_value);
        self.revenue.push(c.revenue);
    }

    fn params<'a>(&'a self, key: &'a (dyn ToSql + Sync)) -> Vec<&'a (dyn ToSql + Sync)> {
        vec![
            key,
            &self.events,
            &self.adds,
            &self.removes,
            &self.purchases,
            &self.added_value,
            &self.removed_value,
            &self.revenue,
        ]
    }
}

/// Adds counters keyed by `key_column` (of SQL type `key_type`) to `schema.table`, for the
/// keys that pass `keep`.
async fn add_counters<K: ToSql + Sync + Clone>(
    client: &Db<'_, impl GenericClient + Sync>,
    schema: &str,
    (table, key_column, key_type): (&str, &str, &str),
    rows: &Map<K, Counters>,
    keep: impl Fn(&K) -> bool,
) -> Result<(), Error> {
    let sql = format!(
        "INSERT INTO {schema}.{table} AS t ({key_column}, {COUNTERS}) \
         SELECT * FROM UNNEST($1::{key_type}[], {COUNTER_ARRAYS}) \
             AS x({key_column}, {COUNTERS}) \
         ON CONFLICT ({key_column}) DO UPDATE SET {ADD_COUNTERS}"
    );
    let rows: Vec<(&K, &Counters)> = rows.iter().filter(|(k, _)| keep(k)).collect();
    for part in rows.chunks(ROWS_PER_STATEMENT) {
        let keys: Vec<K> = part.iter().map(|(k, _)| (*k).clone()).collect();
        let mut columns = CounterColumns::default();
        part.iter().for_each(|(_, c)| columns.push(c));
        client.execute(&sql, &columns.params(&keys)).await?;
    }
    Ok(())
}

/// Adds item counters keyed by (time bucket, product, band) to `schema.table`
/// (`item_hourly` or `item_minutely`, whose time column is `bucket`), for the keys that pass
/// `keep`.
async fn add_item_counters(
    client: &Db<'_, impl GenericClient + Sync>,
    schema: &str,
    (table, bucket): (&str, &str),
    rows: &Map<ItemKey, Counters>,
    keep: impl Fn(&ItemKey) -> bool,
) -> Result<(), Error> {
    let sql = format!(
        "INSERT INTO {schema}.{table} AS t ({bucket}, {COUNTERS}, product_id, band_floor) \
         SELECT * FROM UNNEST($1::timestamptz[], {COUNTER_ARRAYS}, $9::int8[], $10::int4[]) \
             AS x({bucket}, {COUNTERS}, product_id, band_floor) \
         ON CONFLICT ({bucket}, product_id, band_floor) DO UPDATE SET {ADD_COUNTERS}"
    );
    let rows: Vec<(&ItemKey, &Counters)> = rows.iter().filter(|(k, _)| keep(k)).collect();
    for part in rows.chunks(ROWS_PER_STATEMENT) {
        let times: Vec<DateTime<Utc>> = part.iter().map(|((t, _, _), _)| *t).collect();
        let products: Vec<i64> = part.iter().map(|((_, p, _), _)| *p).collect();
        let bands: Vec<i32> = part.iter().map(|((_, _, b), _)| *b).collect();
        let mut columns = CounterColumns::default();
        part.iter().for_each(|(_, c)| columns.push(c));
        let mut params = columns.params(&times);
        params.extend([&products as &(dyn ToSql + Sync), &bands]);
        client.execute(&sql, &params).await?;
    }
    Ok(())
}

/// Writes everything in `delta` (whose carts are settled) and moves the checkpoint as
/// `advance` says.
pub async fn write(
    client: &Db<'_, impl GenericClient + Sync>,
    schema: &str,
    delta: &Delta,
    advance: &Advance,
) -> Result<(), Error> {
    // One connection, several tables: tokio-postgres pipelines statements issued together, so
    // the step waits about one round trip for them all instead of one each.
    futures::try_join!(
        write_customers(client, schema, delta),
        write_carts(client, schema, delta),
        write_counters(client, schema, delta, &delta.item_hours, advance),
        write_timeline(client, schema, delta, advance.floor),
    )?;
    Ok(())
}

/// The `COPY` statement [`copy_carts_into_empty`] feeds, one on each of its connections.
pub fn copy_carts_statement(schema: &str) -> String {
    format!(
        "COPY {schema}.carts (cart_key, {COUNTERS}, customer_id, first_at, last_at) \
         FROM STDIN BINARY"
    )
}

/// The carts of a rebuild's bulk pass (`parts`, no cart in two) into the empty carts table,
/// with binary COPY, several times faster than upserts, cut into as many runs as `sinks`
/// ([`copy_carts_statement`] on as many connections: PostgreSQL parses and stores each on a
/// core of its own). They are final as read (no stored state to merge), so this needs no
/// [`Delta::settle_carts`], and [`write_into_empty`] writes the rest.
pub async fn copy_carts_into_empty(
    sinks: Vec<CopyInSink<Bytes>>,
    parts: &[Map<String, Cart>],
) -> Result<(), Error> {
    let started = std::time::Instant::now();
    // In the order they started, as the live projection inserts them: a time range's carts
    // (`/api/range`) then lie on neighbouring pages. In hash order, a week's 110,000 carts of a
    // rebuilt 10-million-event log took 207 ms to fetch, against 27 ms clustered.
    // The start time is copied beside each cart (microseconds, PostgreSQL's precision): read
    // through the reference, every comparison of the sort was a cache miss into the map.
    let mut sorted: Vec<(i64, &String, &Cart)> = parts
        .iter()
        .flatten()
        .map(|(key, cart)| (cart.first_at.timestamp_micros(), key, cart))
        .collect();
    sorted.sort_unstable_by_key(|(started, _, _)| *started);
    let runs = sorted.len().div_ceil(sinks.len().max(1)).max(1);
    futures::future::try_join_all(
        sinks
            .into_iter()
            .zip(sorted.chunks(runs).chain(std::iter::repeat(&[][..])))
            .map(|(sink, run)| copy_carts(sink, run)),
    )
    .await?;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "Copied the carts."
    );
    Ok(())
}

/// [`write()`] into empty tables but for the carts ([`copy_carts_into_empty`]), after
/// [`Delta::count_new_carts`]: the two large ones go in with binary COPY (item_hourly's
/// 342,000 rows of a 10-million-event log: 1.2 s upserted into its index, 0.33 s copied and
/// then indexed).
pub async fn write_into_empty(
    tx: &Transaction<'_>,
    schema: &str,
    delta: &Delta,
    advance: &Advance,
) -> Result<(), Error> {
    let started = std::time::Instant::now();
    copy_customers(tx, schema, delta).await?;
    copy_item_hours(tx, schema, delta).await?;
    let db = Db::new(tx);
    let copied = Map::default();
    futures::try_join!(
        write_counters(&db, schema, delta, &copied, advance),
        write_timeline(&db, schema, delta, advance.floor),
    )?;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "Wrote the customers, the counters and the timeline."
    );
    Ok(())
}

/// Keeps every key.
fn all<K>(_: &K) -> bool {
    true
}

/// The small tables, `item_hours` and the checkpoint.
async fn write_counters(
    client: &Db<'_, impl GenericClient + Sync>,
    schema: &str,
    delta: &Delta,
    item_hours: &Map<ItemKey, Counters>,
    advance: &Advance,
) -> Result<(), Error> {
    let checkpoint = format!(
        "UPDATE {schema}.checkpoint SET next_tx = $1, events = events + $2, watermark = $3, \
         minute_floor = $4, updated_at = now()"
    );
    let checkpoint_params: [&(dyn ToSql + Sync); 4] = [
        &advance.next_tx,
        &delta.events,
        &advance.watermark,
        &advance.floor.new,
    ];
    futures::try_join!(
        add_counters(
            client,
            schema,
            ("product_stats", "product_id", "int8"),
            &delta.products,
            all
        ),
        add_counters(
            client,
            schema,
            ("hourly_stats", "hour", "timestamptz"),
            &delta.hours,
            all
        ),
        add_counters(
            client,
            schema,
            ("price_band_stats", "band_floor", "int4"),
            &delta.price_bands,
            all
        ),
        write_cart_outcomes(
            client,
            schema,
            ("cart_hourly", "hour"),
            &delta.cart_hours,
            all
        ),
        add_item_counters(client, schema, ("item_hourly", "hour"), item_hours, all),
        client.execute(&checkpoint, &checkpoint_params),
    )?;
    Ok(())
}

/// The minute buckets at or after the minute floor as the step moves it (`minute_retention`
/// before the watermark, or before the log's end when the step knows the log goes on), and
/// the end of those that fell out of it.
async fn write_timeline(
    client: &Db<'_, impl GenericClient + Sync>,
    schema: &str,
    delta: &Delta,
    floor: FloorMove,
) -> Result<(), Error> {
    // Nothing is kept while there is no floor (no event time known), as `minute >= NULL`.
    let recent = |m: &DateTime<Utc>| floor.new.is_some_and(|f| *m >= f);
    let minutes = ("minute_stats", "minute", "timestamptz");
    let cart_minutes = ("cart_minutely", "minute");
    let item_minutes = ("item_minutely", "minute");
    // Nothing lies below the old floor, so only the minutes the floor passed are deleted,
    // and only when it moved. An open-ended `minute < floor` walked every index entry the
    // earlier deletes left dead until vacuum came: 5 ms a step at 5,000 events/s, a sixth of
    // the projector's time (pg_stat_statements, #18). The buckets written are at or after the
    // new floor and those deleted below it, so the two may go out together.
    let passed = floor
        .new
        .filter(|new| floor.old.is_none_or(|old| old < *new));
    futures::try_join!(
        add_counters(client, schema, minutes, &delta.minutes, recent),
        write_cart_outcomes(client, schema, cart_minutes, &delta.cart_minutes, recent),
        add_item_counters(
            client,
            schema,
            item_minutes,
            &delta.item_minutes,
            |(m, _, _)| recent(m)
        ),
        delete_minutes(client, schema, "minute_stats", floor.old, passed),
        delete_minutes(client, schema, "cart_minutely", floor.old, passed),
        delete_minutes(client, schema, "item_minutely", floor.old, passed),
    )?;
    Ok(())
}

async fn delete_minutes(
    client: &Db<'_, impl GenericClient + Sync>,
    schema: &str,
    table: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<(), Error> {
    let Some(to) = to else {
        return Ok(());
    };
    client
        .execute(
            &format!(
                "DELETE FROM {schema}.{table} \
                 WHERE minute >= coalesce($1::timestamptz, '-infinity') AND minute < $2"
            ),
            &[&from, &to],
        )
        .await?;
    Ok(())
}

async fn write_customers(
    client: &Db<'_, impl GenericClient + Sync>,
    schema: &str,
    delta: &Delta,
) -> Result<(), Error> {
    let sql = format!(
        "INSERT INTO {schema}.customer_stats AS t (customer_id, {COUNTERS}, carts, \
             purchased_carts, first_seen, last_seen, last_purchase_at) \
         SELECT * FROM UNNEST($1::int8[], {COUNTER_ARRAYS}, $9::int8[], $10::int8[], \
             $11::timestamptz[], $12::timestamptz[], $13::timestamptz[]) \
         ON CONFLICT (customer_id) DO UPDATE SET {ADD_COUNTERS}, \
             carts = t.carts + EXCLUDED.carts, \
             purchased_carts = t.purchased_carts + EXCLUDED.purchased_carts, \
             first_seen = LEAST(t.first_seen, EXCLUDED.first_seen), \
             last_seen = GREATEST(t.last_seen, EXCLUDED.last_seen), \
             last_purchase_at = GREATEST(t.last_purchase_at, EXCLUDED.last_purchase_at)"
    );
    let rows: Vec<_> = delta.customers.iter().collect();
    for part in rows.chunks(ROWS_PER_STATEMENT) {
        let ids: Vec<i64> = part.iter().map(|(id, _)| **id).collect();
        let mut columns = CounterColumns::default();
        let (mut carts, mut purchased) = (Vec::new(), Vec::new());
        let (mut first, mut last, mut bought): (Vec<_>, Vec<_>, Vec<_>) = Default::default();
        for (_, c) in part {
            columns.push(&c.items);
            carts.push(c.carts);
            purchased.push(c.purchased_carts);
            first.push(c.first_seen);
            last.push(c.last_seen);
            bought.push(c.last_purchase_at);
        }
        let mut params = columns.params(&ids);
        params.extend([
            &carts as &(dyn ToSql + Sync),
            &purchased,
            &first,
            &last,
            &bought,
        ]);
        client.execute(&sql, &params).await?;
    }
    Ok(())
}

/// The carts, whole. New ones (the step holds the schema's lock, so nothing else can have
/// written them since they were looked up) are plainly inserted, which takes PostgreSQL
/// half the time of an upsert (6,300 carts: 40 against 77 ms); the others are upserted.
async fn write_carts(
    client: &Db<'_, impl GenericClient + Sync>,
    schema: &str,
    delta: &Delta,
) -> Result<(), Error> {
    let insert = format!(
        "INSERT INTO {schema}.carts (cart_key, {COUNTERS}, customer_id, first_at, last_at) \
         SELECT * FROM UNNEST($1::text[], {COUNTER_ARRAYS}, $9::int8[], $10::timestamptz[], \
             $11::timestamptz[])"
    );
    let upsert = format!(
        "{insert} ON CONFLICT (cart_key) DO UPDATE SET {SET_COUNTERS}, \
             customer_id = EXCLUDED.customer_id, first_at = EXCLUDED.first_at, \
             last_at = EXCLUDED.last_at"
    );
    let (new, old): (Vec<_>, Vec<_>) = delta.carts.iter().partition(|(_, c)| c.new);
    futures::try_join!(
        insert_carts(client, &insert, &new),
        insert_carts(client, &upsert, &old),
    )?;
    Ok(())
}

/// Runs `sql`, an insert of carts from the arrays of their columns, over `rows`.
async fn insert_carts(
    client: &Db<'_, impl GenericClient + Sync>,
    sql: &str,
    rows: &[(&String, &Cart)],
) -> Result<(), Error> {
    for part in rows.chunks(ROWS_PER_STATEMENT) {
        let keys: Vec<&str> = part.iter().map(|(k, _)| k.as_str()).collect();
        let mut columns = CounterColumns::default();
        let mut customer: Vec<i64> = Vec::with_capacity(part.len());
        let (mut first, mut last): (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) = Default::default();
        for (_, c) in part {
            columns.push(&c.items);
            customer.push(c.customer_id);
            first.push(c.first_at);
            last.push(c.last_at);
        }
        let mut params = columns.params(&keys);
        params.extend([&customer as &(dyn ToSql + Sync), &first, &last]);
        client.execute(sql, &params).await?;
    }
    Ok(())
}

/// Adds cart outcome changes to `table` (`cart_hourly` or `cart_minutely`), keyed by the
/// time column `key`, for the keys that pass `keep`.
async fn write_cart_outcomes(
    client: &Db<'_, impl GenericClient + Sync>,
    schema: &str,
    (table, key): (&str, &str),
    rows: &Map<DateTime<Utc>, CartOutcomes>,
    keep: impl Fn(&DateTime<Utc>) -> bool,
) -> Result<(), Error> {
    let rows: Vec<(&DateTime<Utc>, &CartOutcomes)> = rows.iter().filter(|(k, _)| keep(k)).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let columns = "carts, purchased_carts, purchased_value, unpurchased_carts, \
                   unpurchased_items, unpurchased_value, emptied_carts";
    let sql = format!(
        "INSERT INTO {schema}.{table} AS t ({key}, {columns}) \
         SELECT * FROM UNNEST($1::timestamptz[], $2::int8[], $3::int8[], $4::numeric[], \
             $5::int8[], $6::int8[], $7::numeric[], $8::int8[]) AS x({key}, {columns}) \
         ON CONFLICT ({key}) DO UPDATE SET carts = t.carts + EXCLUDED.carts, \
             purchased_carts = t.purchased_carts + EXCLUDED.purchased_carts, \
             purchased_value = t.purchased_value + EXCLUDED.purchased_value, \
             unpurchased_carts = t.unpurchased_carts + EXCLUDED.unpurchased_carts, \
             unpurchased_items = t.unpurchased_items + EXCLUDED.unpurchased_items, \
             unpurchased_value = t.unpurchased_value + EXCLUDED.unpurchased_value, \
             emptied_carts = t.emptied_carts + EXCLUDED.emptied_carts"
    );
    let n = rows.len();
    let mut hour = Vec::with_capacity(n);
    let mut carts: Vec<i64> = Vec::with_capacity(n);
    let mut purchased: Vec<i64> = Vec::with_capacity(n);
    let mut unpurchased: Vec<i64> = Vec::with_capacity(n);
    let mut items: Vec<i64> = Vec::with_capacity(n);
    let mut emptied: Vec<i64> = Vec::with_capacity(n);
    let mut purchased_value: Vec<Cents> = Vec::with_capacity(n);
    let mut unpurchased_value: Vec<Cents> = Vec::with_capacity(n);
    for (h, o) in &rows {
        hour.push(**h);
        carts.push(o.carts);
        purchased.push(o.purchased_carts);
        purchased_value.push(o.purchased_value);
        unpurchased.push(o.unpurchased_carts);
        items.push(o.unpurchased_items);
        unpurchased_value.push(o.unpurchased_value);
        emptied.push(o.emptied_carts);
    }
    client
        .execute(
            &sql,
            &[
                &hour,
                &carts,
                &purchased,
                &purchased_value,
                &unpurchased,
                &items,
                &unpurchased_value,
                &emptied,
            ],
        )
        .await?;
    // A bucket whose only cart moved away (a late, earlier event) is gone, as in a rebuild.
    // Only a bucket that lost carts can have none left: the others need no statement.
    let emptied: Vec<DateTime<Utc>> = rows
        .iter()
        .filter(|(_, o)| o.carts < 0)
        .map(|(h, _)| **h)
        .collect();
    if !emptied.is_empty() {
        client
            .execute(
                &format!("DELETE FROM {schema}.{table} WHERE {key} = ANY($1) AND carts = 0"),
                &[&emptied],
            )
            .await?;
    }
    Ok(())
}

async fn copy_carts(sink: CopyInSink<Bytes>, carts: &[(i64, &String, &Cart)]) -> Result<(), Error> {
    pin_mut!(sink);
    let mut rows = CopyRows::new();
    for (_, key, cart) in carts {
        rows.row(11);
        rows.text(key);
        counters(&mut rows, &cart.items);
        rows.int8(cart.customer_id);
        rows.timestamptz(cart.first_at);
        rows.timestamptz(cart.last_at);
        rows.flush_if_full(&mut sink).await?;
    }
    rows.finish(sink).await?;
    Ok(())
}

/// The seven [`COUNTERS`] columns of a row.
fn counters(rows: &mut CopyRows, c: &Counters) {
    rows.int8(c.events);
    rows.int8(c.adds);
    rows.int8(c.removes);
    rows.int8(c.purchases);
    rows.numeric(c.added_value);
    rows.numeric(c.removed_value);
    rows.numeric(c.revenue);
}

async fn copy_item_hours(tx: &Transaction<'_>, schema: &str, delta: &Delta) -> Result<(), Error> {
    let sink = tx
        .copy_in::<_, Bytes>(&format!(
            "COPY {schema}.item_hourly (hour, product_id, band_floor, {COUNTERS}) \
             FROM STDIN BINARY"
        ))
        .await?;
    pin_mut!(sink);
    // In key order: the primary key is then built from rows already sorted, and a range's
    // hours lie on neighbouring pages.
    let mut keyed: Vec<(&ItemKey, &Counters)> = delta.item_hours.iter().collect();
    keyed.sort_unstable_by_key(|(k, _)| **k);
    let mut rows = CopyRows::new();
    for ((hour, product, band), c) in keyed {
        rows.row(10);
        rows.timestamptz(*hour);
        rows.int8(*product);
        rows.int4(*band);
        counters(&mut rows, c);
        rows.flush_if_full(&mut sink).await?;
    }
    rows.finish(sink).await?;
    Ok(())
}

async fn copy_customers(tx: &Transaction<'_>, schema: &str, delta: &Delta) -> Result<(), Error> {
    let sink = tx
        .copy_in::<_, Bytes>(&format!(
            "COPY {schema}.customer_stats (customer_id, {COUNTERS}, carts, purchased_carts, \
                 first_seen, last_seen, last_purchase_at) FROM STDIN BINARY"
        ))
        .await?;
    pin_mut!(sink);
    let mut rows = CopyRows::new();
    for (id, c) in &delta.customers {
        rows.row(13);
        rows.int8(*id);
        counters(&mut rows, &c.items);
        rows.int8(c.carts);
        rows.int8(c.purchased_carts);
        rows.opt_timestamptz(c.first_seen);
        rows.opt_timestamptz(c.last_seen);
        rows.opt_timestamptz(c.last_purchase_at);
        rows.flush_if_full(&mut sink).await?;
    }
    rows.finish(sink).await?;
    Ok(())
}
