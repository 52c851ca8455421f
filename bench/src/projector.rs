//! The projector stage: simulated events already in `events` (in consumer-sized
//! transactions), projected incrementally from an empty checkpoint and then rebuilt, beside one
//! plain SQL pass (GROUP BY cart) over the same events.

use std::time::Instant;

use cartflow_common::db;
use cartflow_producer::catalogue;
use cartflow_projector::apply::{self, Generation};
use cartflow_projector::config::{DEFAULT_REBUILD_READERS, MAX_REBUILD_READERS};
use cartflow_projector::log::binary::BinaryRows;
use cartflow_schemas::CartEvent;
use futures::SinkExt;
use prometheus::{Histogram, HistogramOpts};
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

use crate::consumer::{COPY_EVENTS, copy_text, fresh_database};
use crate::producer::simulator;
use crate::report::{Clock, StageResult, quantile_ms};

/// Rows per transaction, as the consumer writes them.
const TRANSACTION_ROWS: usize = 5_000;
/// Events per incremental step, the projector's default.
const CHUNK_EVENTS: i64 = 20_000;

pub(crate) fn database_name(prefix: &str) -> String {
    format!("cartflow_bench_projector_{}", prefix.replace('-', "_"))
}

/// A connection to the stage's database.
async fn connect(base_url: &str, prefix: &str) -> anyhow::Result<tokio_postgres::Client> {
    let url = crate::consumer::database(base_url, &database_name(prefix))?;
    Ok(db::connect(&url).await?)
}

/// Vacuums and analyses the stage's database before a measurement, then flushes what that
/// dirtied, so that neither autovacuum's pass over what the last run wrote (a rebuild leaves 3
/// million fresh carts rows behind; the first vacuum of the log rewrites every page of it) nor
/// its write-back falls into the next measurement. The first round's GROUP BY had run at 4.6 s
/// against 3.4 s in the others (8.4 against 6.2 busy core-seconds).
async fn settle(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    // Two calls: VACUUM cannot run in the implicit transaction of a multi-statement query.
    client.batch_execute("VACUUM (ANALYZE)").await?;
    client.batch_execute("CHECKPOINT").await?;
    Ok(())
}

/// Fills a fresh database with `events` simulated events, the catalogue and the customers.
pub(crate) async fn prepare(base_url: &str, prefix: &str, events: u64) -> anyhow::Result<()> {
    let url = fresh_database(base_url, &database_name(prefix)).await?;
    let client = db::connect(&url).await?;
    for p in catalogue::fallback() {
        client
            .execute(
                "INSERT INTO products (product_id, title, price, category) VALUES ($1, $2, $3, $4)",
                &[
                    &p.product_id,
                    &p.title,
                    &Decimal::from(p.price),
                    &p.category,
                ],
            )
            .await?;
    }
    let mut sim = simulator();
    let started = Instant::now();
    let mut batch: Vec<CartEvent> = Vec::with_capacity(TRANSACTION_ROWS);
    let mut written = 0usize;
    while (written as u64) < events {
        batch.clear();
        let n = TRANSACTION_ROWS.min(events as usize - written);
        batch.extend((0..n).map(|_| sim.next_event()));
        let sink = client.copy_in(COPY_EVENTS).await?;
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(copy_text(&batch, written)))
            .await?;
        sink.finish().await?;
        written += n;
        if written % 1_000_000 < TRANSACTION_ROWS {
            eprintln!(
                "    {written} events stored ({:.0}/s)",
                written as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    client.batch_execute("VACUUM ANALYZE events").await?;
    Ok(())
}

pub(crate) async fn cleanup(base_url: &str, prefix: &str) -> anyhow::Result<()> {
    db::drop_database(&crate::consumer::database(
        base_url,
        &database_name(prefix),
    )?)
    .await?;
    Ok(())
}

/// Incremental steps from an empty checkpoint until the whole log is applied.
pub(crate) async fn incremental(
    base_url: &str,
    prefix: &str,
    events: u64,
) -> anyhow::Result<StageResult> {
    let mut client = connect(base_url, prefix).await?;
    let steps = Histogram::with_opts(
        HistogramOpts::new("step", "step")
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 20)?),
    )?;
    let started = Instant::now();
    let mut applied = 0;
    let statements = cartflow_projector::sql::Statements::for_connection(&client).await?;
    loop {
        let step_started = Instant::now();
        let tx = client.transaction().await?;
        let db = cartflow_projector::sql::Db::cached(&tx, &statements);
        let step = apply::step(&db, Generation::Live, CHUNK_EVENTS).await?;
        tx.commit().await?;
        steps.observe(step_started.elapsed().as_secs_f64());
        applied += step.events;
        if step.caught_up {
            break;
        }
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(applied == events, "applied {applied} of {events}");
    Ok(StageResult::measured(
        format!("incremental, {CHUNK_EVENTS}-event steps"),
        events,
        elapsed,
        (quantile_ms(&steps, 0.5), quantile_ms(&steps, 0.99)),
    ))
}

/// [`incremental`] again from an empty projection, now deciding cart outcomes into the outbox
/// as the live projector does (`--outcomes`, on by default).
pub(crate) async fn incremental_with_outcomes(
    base_url: &str,
    prefix: &str,
    events: u64,
) -> anyhow::Result<StageResult> {
    let url = crate::consumer::database(base_url, &database_name(prefix))?;
    let client = db::connect(&url).await?;
    let tables: Vec<String> = client
        .query(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables \
             WHERE schemaname IN ('analytics', 'outcomes') AND tablename <> 'checkpoint'",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    client
        .batch_execute(&format!(
            "TRUNCATE {}; UPDATE analytics.checkpoint SET next_tx = 0, events = 0, \
             watermark = NULL, outcomes = true",
            tables.join(", ")
        ))
        .await?;
    let mut result = incremental(base_url, prefix, events).await?;
    let decided: i64 = client
        .query_one("SELECT count(*) FROM outcomes.outbox", &[])
        .await?
        .get(0);
    anyhow::ensure!(decided > 0, "no cart outcome was decided");
    result.name = format!(
        "{} + cart outcomes ({decided} into the outbox)",
        result.name
    );
    Ok(result)
}

/// `cartflow-projector rebuild` over the whole log.
pub(crate) async fn rebuild(
    base_url: &str,
    prefix: &str,
    events: u64,
) -> anyhow::Result<StageResult> {
    let mut client = connect(base_url, prefix).await?;
    let readers = rebuild_readers()?;
    let mut reader_clients = Vec::new();
    for _ in 0..cartflow_projector::rebuild::reader_connections(readers) {
        reader_clients.push(connect(base_url, prefix).await?);
    }
    settle(&client).await?;
    let clock = Clock::start();
    let rebuilt = cartflow_projector::rebuild::rebuild_with(
        &mut client,
        reader_clients,
        CHUNK_EVENTS,
        &CancellationToken::new(),
    )
    .await?;
    let (elapsed, busy) = clock.stop();
    anyhow::ensure!(
        rebuilt.bulk_events + rebuilt.caught_up_events == events,
        "rebuilt {rebuilt:?} of {events}"
    );
    Ok(StageResult::measured(
        format!(
            "rebuild ({readers} reader{})",
            if readers == 1 { "" } else { "s" }
        ),
        events,
        elapsed,
        (0.0, 0.0),
    )
    .with_busy(busy))
}

/// How many connections the rebuild reads the log with: `CARTFLOW_REBUILD_READERS`, as for
/// `cartflow-projector rebuild`, or its default.
fn rebuild_readers() -> anyhow::Result<u16> {
    match std::env::var("CARTFLOW_REBUILD_READERS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=MAX_REBUILD_READERS).contains(n))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "CARTFLOW_REBUILD_READERS={v:?}: expected 1 to {MAX_REBUILD_READERS}"
                )
            }),
        Err(_) => Ok(DEFAULT_REBUILD_READERS),
    }
}

/// The baseline's pass: the events grouped by cart, with a count, the revenue and the first
/// and last time, which every carts row of the analytics holds too.
const BASELINE_CARTS: &str = "SELECT coalesce(session_id, customer_id::text) AS cart, \
     count(*) AS n, sum(product_price) FILTER (WHERE action = 'purchase_cart') AS revenue, \
     min(\"timestamp\") AS first_at, max(\"timestamp\") AS last_at FROM events GROUP BY 1";

/// One plain SQL pass: the events grouped by cart, the largest of the aggregates.
pub(crate) async fn baseline(
    base_url: &str,
    prefix: &str,
    events: u64,
) -> anyhow::Result<StageResult> {
    let client = connect(base_url, prefix).await?;
    settle(&client).await?;
    let clock = Clock::start();
    let row = client
        .query_one(
            &format!("SELECT count(*), sum(n)::int8 FROM ({BASELINE_CARTS}) carts"),
            &[],
        )
        .await?;
    let (elapsed, busy) = clock.stop();
    anyhow::ensure!(
        row.get::<_, i64>(1) as u64 == events,
        "counted the wrong events"
    );
    Ok(StageResult::measured(
        "plain SQL GROUP BY cart (baseline)",
        events,
        elapsed,
        (0.0, 0.0),
    )
    .with_busy(busy))
}

/// The carts table alone, every counter of it, written by the tests' plain SQL statement into an
/// unlogged table without indexes (`CREATE UNLOGGED TABLE AS`, which may run in parallel):
/// no rebuild writes less, so its ratio to the GROUP BY pass bounds what a rebuild can reach
/// on this machine (issue #18 asks for 1.5x, a ratio of 0.67 in the table).
pub(crate) async fn write_floor(
    base_url: &str,
    prefix: &str,
    events: u64,
) -> anyhow::Result<StageResult> {
    let carts = cartflow_tests::analytics::carts_sql();
    let client = connect(base_url, prefix).await?;
    let (elapsed, busy) = unlogged_table(&client, &carts, None, "events", events).await?;
    Ok(StageResult::measured(
        "plain SQL carts table written (unlogged, no index)",
        events,
        elapsed,
        (0.0, 0.0),
    )
    .with_busy(busy))
}

/// The baseline's own result kept: the same GROUP BY written into an unlogged table and given
/// its primary key, the least any rebuild keeps (a carts row holds these columns and more, and
/// the live projector updates it by that key). Summed in the server it costs the GROUP BY
/// plus the write; summed outside, the read (the read floor) plus the same write.
pub(crate) async fn kept_floor(
    base_url: &str,
    prefix: &str,
    events: u64,
) -> anyhow::Result<StageResult> {
    let client = connect(base_url, prefix).await?;
    let (elapsed, busy) =
        unlogged_table(&client, BASELINE_CARTS, Some("cart"), "n", events).await?;
    Ok(StageResult::measured(
        "the GROUP BY's result kept (unlogged, its key)",
        events,
        elapsed,
        (0.0, 0.0),
    )
    .with_busy(busy))
}

/// How long `CREATE UNLOGGED TABLE AS query` (then its primary key on `key`, with one) takes;
/// checks that `count` of the table sums to `events` and drops it.
async fn unlogged_table(
    client: &tokio_postgres::Client,
    query: &str,
    key: Option<&str>,
    count: &str,
    events: u64,
) -> anyhow::Result<(std::time::Duration, Option<f64>)> {
    client
        .batch_execute("DROP TABLE IF EXISTS bench_floor")
        .await?;
    settle(client).await?;
    let key = key
        .map(|k| format!("ALTER TABLE bench_floor ADD PRIMARY KEY ({k});"))
        .unwrap_or_default();
    let clock = Clock::start();
    client
        .batch_execute(&format!(
            "CREATE UNLOGGED TABLE bench_floor AS {query}; {key}"
        ))
        .await?;
    let measured = clock.stop();
    let summed: i64 = client
        .query_one(&format!("SELECT sum({count})::int8 FROM bench_floor"), &[])
        .await?
        .get(0);
    client.batch_execute("DROP TABLE bench_floor").await?;
    anyhow::ensure!(summed as u64 == events, "counted the wrong events");
    Ok(measured)
}

/// The log read out of PostgreSQL as the rebuild's bulk pass reads it (its columns, the heap
/// cut into as many block ranges as it has readers, each read by a connection of its own at
/// once), as binary `COPY` whose rows are counted and dropped: no rebuild that sums the events
/// outside the server reads for less, and it must still write the carts after the last event.
pub(crate) async fn read_floor(
    base_url: &str,
    prefix: &str,
    events: u64,
) -> anyhow::Result<StageResult> {
    let readers = u64::from(rebuild_readers()?);
    let client = connect(base_url, prefix).await?;
    let blocks: i64 = client
        .query_one(
            "SELECT pg_relation_size('events') / current_setting('block_size')::int8",
            &[],
        )
        .await?
        .get(0);
    let blocks = u64::try_from(blocks)?;
    let mut parts = Vec::new();
    for i in 0..readers {
        // The rebuild's own cut.
        let (first, end) = cartflow_projector::log::block_part(blocks, readers, i);
        let sql = format!(
            "COPY ({} WHERE {}) TO STDOUT (FORMAT binary)",
            cartflow_projector::log::COLUMNS,
            cartflow_projector::log::block_range(first, end)
        );
        parts.push((connect(base_url, prefix).await?, sql));
    }
    settle(&client).await?;
    let clock = Clock::start();
    let reads = parts.into_iter().map(|(client, sql)| {
        tokio::spawn(async move {
            let stream = client.copy_out(sql.as_str()).await?;
            futures::pin_mut!(stream);
            // The projector's own walker, each row's seven fields found and dropped.
            let mut rows = BinaryRows::default();
            let mut count = 0u64;
            while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
                rows.feed(&chunk?, |_: &[Option<&[u8]>; 7]| {
                    count += 1;
                    Ok(())
                })?;
            }
            rows.finish()?;
            anyhow::Ok(count)
        })
    });
    let mut read = 0;
    for part in futures::future::try_join_all(reads).await? {
        read += part?;
    }
    let (elapsed, busy) = clock.stop();
    anyhow::ensure!(read == events, "read {read} rows, expected {events}");
    Ok(StageResult::measured(
        "the log read out of PostgreSQL as the rebuild reads it (rows dropped)",
        events,
        elapsed,
        (0.0, 0.0),
    )
    .with_busy(busy))
}
