//! The consume loop: fill a batch, write it, settle its dead letters, then commit its offsets.
//!
//! Batches are written on tasks of their own while the next ones are fetched and decoded, up
//! to `--max-in-flight` at once; offsets are committed in batch order, each only after its
//! batch and every earlier one are stored. A transient database error is retried; a permanent
//! one (a missing table, a missing privilege) stops the consumer with one line that says what
//! to do.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use cartflow_common::kafka::TopicSpec;
use cartflow_common::ops::{Health, OpsServer};
use cartflow_common::retry::{Backoff, Class};
use cartflow_common::{db, kafka};
use cartflow_schemas::Codec;
use deadpool_postgres::Pool;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::batch::{Batch, Origin, Raw, TopicKind};
use crate::context::Context;
use crate::dlq::{self, Outcome};
use crate::metrics::Metrics;
use crate::store::Written;
use crate::{Config, Error, lag, store};

/// Runs one consumer-group member until `shutdown` is cancelled, serving `/metrics` and
/// `/healthz` on `ops_listener`. The batches in hand when the signal arrives are written and
/// committed before it returns.
pub async fn run(
    config: Config,
    ops_listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let ops = OpsServer::start(ops_listener, &shutdown);
    let metrics = Metrics::new(&ops.registry);
    consume(&config, &metrics, &ops.health, &shutdown).await
}

/// What the loop needs besides the consumer: where dead letters go and how batches are
/// written.
struct Sink<'a> {
    pool: Pool,
    dlq_producer: FutureProducer,
    dlq_topic: &'a str,
    metrics: &'a Metrics,
    database_url: &'a str,
    lanes: usize,
}

async fn consume(
    config: &Config,
    metrics: &Metrics,
    health: &Health,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    if !config.skip_migrations {
        db::ensure_database(&config.database.database_url).await?;
        db::migrate(&config.database.database_url).await?;
    }
    let pool = db::pool(&config.database, config.pool).await?;
    kafka::check_reachable(&config.kafka, Duration::from_secs(10)).await?;
    kafka::ensure_topics(
        &config.kafka,
        &[TopicSpec {
            name: config.topics.dlq_topic.clone(),
            partitions: 1,
            compacted: false,
        }],
    )
    .await?;

    let t = &config.topics;
    let kinds: HashMap<&str, TopicKind> = HashMap::from([
        (t.cart_events_topic.as_str(), TopicKind::CartEvents),
        (t.customers_topic.as_str(), TopicKind::Customers),
        (t.products_topic.as_str(), TopicKind::Products),
    ]);
    let consumer = Arc::new(group_member(config)?);
    let topics: Vec<&str> = kinds.keys().copied().collect();
    consumer.subscribe(&topics)?;
    info!(group = %config.group, ?topics, "Consuming.");
    health.set_ready(true);

    let watcher = tokio::spawn(lag::watch(
        consumer.clone(),
        kinds
            .iter()
            .map(|(name, kind)| ((*name).to_owned(), kind.label()))
            .collect(),
        metrics.clone(),
        health.clone(),
        Duration::from_secs(config.stall_secs),
        Duration::from_millis(config.lag_interval_ms),
        shutdown.child_token(),
    ));
    let _stop_watcher = tokio_util::task::AbortOnDropHandle::new(watcher);

    let sink = Sink {
        pool,
        dlq_producer: kafka::client_config(&config.kafka, "cartflow-consumer-dlq")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                dlq::DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .create()?,
        dlq_topic: t.dlq_topic.as_str(),
        metrics,
        database_url: &config.database.database_url,
        lanes: config.write_lanes as usize,
    };
    let codec = Codec::single_object();
    let batch_timeout = Duration::from_millis(config.batch_timeout_ms);
    let max = config.batch_size as usize;
    let depth = (config.max_in_flight as usize).max(1);
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut reap = tokio::time::interval(Duration::from_millis(20));
    while !shutdown.is_cancelled() {
        let mut batch = Batch::default();
        let mut deadline: Option<Instant> = None;
        while batch.messages < max {
            let wait = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let message = tokio::select! {
                m = consumer.recv() => Some(m),
                () = wait => break,
                // Commit finished writes while no new message arrives.
                _ = reap.tick(), if !in_flight.is_empty() => None,
                () = shutdown.cancelled() => break,
            };
            let Some(message) = message else {
                if !reap_finished(&mut in_flight, &consumer, &sink).await? {
                    return stopped();
                }
                continue;
            };
            match message {
                Ok(m) => {
                    let Some(&kind) = kinds.get(m.topic()) else {
                        continue;
                    };
                    metrics.consumed.with_label_values(&[kind.label()]).inc();
                    batch.add(&codec, kind, raw(&m), m.timestamp().to_millis());
                    deadline.get_or_insert_with(|| Instant::now() + batch_timeout);
                }
                Err(e) => {
                    warn!(error = %e, "Kafka receive error; the client reconnects by itself.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        if !reap_finished(&mut in_flight, &consumer, &sink).await? {
            return stopped();
        }
        while in_flight.len() >= depth || (batch.is_empty() && !in_flight.is_empty()) {
            let oldest = in_flight.pop_front().expect("not empty");
            if !finish(oldest, &consumer, &sink, CommitMode::Async).await? {
                // Stopped while the database was away: that batch is not committed and will
                // be read again by whoever owns its partitions next.
                return stopped();
            }
        }
        if batch.is_empty() {
            continue;
        }
        metrics
            .legacy_fingerprints
            .inc_by(batch.legacy_fingerprints);
        let (pool, metrics, stop) = (sink.pool.clone(), metrics.clone(), shutdown.clone());
        let (lanes, url) = (sink.lanes, config.database.database_url.clone());
        in_flight.push_back(tokio::spawn(async move {
            let written = write_lanes(&pool, &mut batch, lanes, &metrics, &stop)
                .await
                .map_err(|e| e.explained(&url));
            (batch, written)
        }));
    }
    // The last commits are synchronous: they must reach the broker before the member leaves.
    while let Some(oldest) = in_flight.pop_front() {
        if !finish(oldest, &consumer, &sink, CommitMode::Sync).await? {
            break;
        }
    }
    stopped()
}

/// The group member, with offsets stored and committed only by this code.
fn group_member(config: &Config) -> Result<StreamConsumer<Context>, Error> {
    Ok(kafka::client_config(&config.kafka, "cartflow-consumer")
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        // Offsets are committed explicitly, per stored batch; librdkafka must not also
        // remember the position of every message handed out (a commit of "the consumer's
        // state" would then include messages read but never stored).
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // A fetch waits at most this long for data: a quiet stream's latency.
        .set("fetch.wait.max.ms", "100")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .create_with_context(Context::new(i64::from(config.rewind_on_assign)))?)
}

/// The message as it came: origin, key, payload and headers, owned.
fn raw(m: &BorrowedMessage<'_>) -> Raw {
    Raw {
        origin: Origin {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
        },
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        headers: m.headers().map_or_else(Vec::new, |h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        }),
    }
}

/// A batch being written on a task of its own: `Ok(None)` when a shutdown stopped it.
type InFlight = tokio::task::JoinHandle<(Batch, Result<Option<Written>, Error>)>;

/// Finishes the writes at the front of the queue that are done. False when a shutdown
/// stopped one of them (nothing after it is committed).
async fn reap_finished(
    in_flight: &mut VecDeque<InFlight>,
    consumer: &StreamConsumer<Context>,
    sink: &Sink<'_>,
) -> Result<bool, Error> {
    while in_flight.front().is_some_and(|t| t.is_finished()) {
        let done = in_flight.pop_front().expect("not empty");
        if !finish(done, consumer, sink, CommitMode::Async).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Waits for a batch's write, settles its dead letters' copies on the dead-letter topic and
/// commits its offsets. False when a shutdown stopped the write (nothing is committed then);
/// an error when the write failed for good.
async fn finish(
    in_flight: InFlight,
    consumer: &StreamConsumer<Context>,
    sink: &Sink<'_>,
    mode: CommitMode,
) -> Result<bool, Error> {
    let (batch, written) = in_flight.await?;
    let Some(written) = written? else {
        return Ok(false);
    };
    // Before the offsets: a crash here publishes again on redelivery (at least once). The
    // letters are already whole in dead_letters, so the topic's answer never holds us up.
    if !written.to_publish.is_empty() {
        let outcomes = dlq::publish(&sink.dlq_producer, sink.dlq_topic, &written.to_publish).await;
        settle_dead_letters(sink, &outcomes).await;
    }
    commit(consumer, &batch, mode)?;
    Ok(true)
}

/// Counts the dead letters' outcomes and records them in their rows, so a redelivery does not
/// publish them again. A failure to record is only logged: the worst it causes is a second
/// copy on the topic after a redelivery.
async fn settle_dead_letters(sink: &Sink<'_>, outcomes: &[(i64, Outcome)]) {
    for outcome in Outcome::ALL {
        let ids: Vec<i64> = outcomes
            .iter()
            .filter(|(_, o)| *o == outcome)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        sink.metrics
            .dlq_records
            .with_label_values(&[outcome.as_str()])
            .inc_by(ids.len() as u64);
        if let Err(e) = store::mark_dead_letters(&sink.pool, &ids, outcome.as_str()).await {
            warn!(error = %e.explained(sink.database_url), "Could not record the dead-letter topic's answer.");
        }
    }
}

/// Leaves without committing anything more: only stored batches' offsets are ever committed
/// (never the consumer's position, which includes messages read but not stored).
fn stopped() -> Result<(), Error> {
    info!("Consumer stopped.");
    Ok(())
}

/// Writes the batch's rows in `lanes` concurrent transactions (the database then works on
/// more than one core). `Ok(None)` when `shutdown` stopped a lane; nothing is committed to
/// Kafka then, and the lanes that did commit are de-duplicated on redelivery.
async fn write_lanes(
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

/// Commits the batch's offsets for the partitions this member still owns: after a rebalance,
/// a revoked partition's offsets belong to its new owner. Its rows are stored all the same,
/// and the new owner's redelivery of them is de-duplicated.
fn commit(
    consumer: &StreamConsumer<Context>,
    batch: &Batch,
    mode: CommitMode,
) -> Result<(), Error> {
    let owned = consumer.assignment()?;
    let mut list = TopicPartitionList::new();
    for ((topic, partition), next) in &batch.next_offsets {
        if owned.find_partition(topic, *partition).is_some() {
            list.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        } else {
            debug!(topic, partition, "Not committing a revoked partition.");
        }
    }
    if list.count() > 0 {
        consumer.commit(&list, mode)?;
    }
    Ok(())
}
