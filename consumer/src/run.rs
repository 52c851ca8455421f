//! The consume loop: fill a batch, write it, then commit its offsets.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use cartflow_common::kafka::TopicSpec;
use cartflow_common::ops::{Health, OpsServer};
use cartflow_common::{db, kafka};
use cartflow_schemas::Codec;
use deadpool_postgres::Pool;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::batch::{Batch, DeadLetter, Origin, TopicKind};
use crate::context::Context;
use crate::metrics::Metrics;
use crate::store::Written;
use crate::{Config, Error, dlq, store};

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs one consumer-group member until `shutdown` is cancelled, serving `/metrics` and
/// `/healthz` on `ops_listener`. The batch in hand when the signal arrives is written and
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
    let pool = db::pool(&config.database).await?;
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
    let labels = kinds
        .iter()
        .map(|(name, kind)| ((*name).to_owned(), kind.label()))
        .collect();
    let consumer: StreamConsumer<Context> =
        kafka::client_config(&config.kafka, "cartflow-consumer")
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            // Offsets are committed explicitly, per stored batch; librdkafka must not also
            // remember the position of every message handed out (a commit of "the consumer's
            // state" would then include messages read but never stored).
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "5000")
            // A fetch waits at most this long for data; tansu holds every fetch this long when
            // there is little to read, which adds it to a quiet stream's latency.
            .set("fetch.wait.max.ms", "100")
            .set("session.timeout.ms", config.session_timeout_ms.to_string())
            .create_with_context(Context::new(
                metrics.lag.clone(),
                labels,
                i64::from(config.rewind_on_assign),
            ))?;
    let topics: Vec<&str> = kinds.keys().copied().collect();
    consumer.subscribe(&topics)?;
    info!(group = %config.group, ?topics, "Consuming.");
    health.set_ready(true);

    let dlq_producer: FutureProducer = kafka::client_config(&config.kafka, "cartflow-consumer-dlq")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let codec = Codec::single_object();
    let batch_timeout = Duration::from_millis(config.batch_timeout_ms);
    let max = config.batch_size as usize;
    // Batches are written on tasks of their own while the next ones are fetched and decoded,
    // up to --max-in-flight at once; offsets are committed in batch order, each only after
    // its batch and every earlier one are stored.
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let depth = config.max_in_flight as usize;
    let mut reap = tokio::time::interval(Duration::from_millis(20));
    let dlq = (&dlq_producer, t.dlq_topic.as_str());
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
                if !reap_finished(&mut in_flight, &consumer, dlq, shutdown).await? {
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
                    let origin = Origin {
                        topic: m.topic().to_owned(),
                        partition: m.partition(),
                        offset: m.offset(),
                    };
                    batch.add(
                        &codec,
                        kind,
                        origin,
                        m.timestamp().to_millis(),
                        m.key(),
                        m.payload(),
                    );
                    deadline.get_or_insert_with(|| Instant::now() + batch_timeout);
                }
                Err(e) => {
                    warn!(error = %e, "Kafka receive error; the client reconnects by itself.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        if !reap_finished(&mut in_flight, &consumer, dlq, shutdown).await? {
            return stopped();
        }
        while in_flight.len() >= depth.max(1) || (batch.is_empty() && !in_flight.is_empty()) {
            let oldest = in_flight.pop_front().expect("not empty");
            if !finish(oldest, &consumer, dlq, shutdown).await? {
                // Stopped while the database or the broker was away: that batch is not
                // committed and will be read again by whoever owns its partitions next.
                return stopped();
            }
        }
        if batch.is_empty() {
            continue;
        }
        let (pool, metrics, stop) = (pool.clone(), metrics.clone(), shutdown.clone());
        let lanes = config.write_lanes as usize;
        in_flight.push_back(tokio::spawn(async move {
            let written = write_lanes(&pool, &mut batch, lanes, &metrics, &stop).await;
            (batch, written)
        }));
    }
    // The last commits are synchronous: they must reach the broker before the member leaves.
    while let Some(oldest) = in_flight.pop_front() {
        if !finish_with(oldest, &consumer, dlq, shutdown, CommitMode::Sync).await? {
            break;
        }
    }
    stopped()
}

/// Finishes the writes at the front of the queue that are done. False when a shutdown
/// stopped one of them (nothing after it is committed).
async fn reap_finished(
    in_flight: &mut VecDeque<InFlight>,
    consumer: &StreamConsumer<Context>,
    dlq: (&FutureProducer, &str),
    shutdown: &CancellationToken,
) -> Result<bool, Error> {
    while in_flight.front().is_some_and(|t| t.is_finished()) {
        let done = in_flight.pop_front().expect("not empty");
        if !finish(done, consumer, dlq, shutdown).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A batch being written on a task of its own.
type InFlight = tokio::task::JoinHandle<(Batch, Option<Written>)>;

/// Waits for a batch's write, publishes its dead letters and commits its offsets. False when
/// a shutdown stopped the write or the publishing first (nothing is committed then).
async fn finish(
    in_flight: InFlight,
    consumer: &StreamConsumer<Context>,
    dlq: (&FutureProducer, &str),
    shutdown: &CancellationToken,
) -> Result<bool, Error> {
    finish_with(in_flight, consumer, dlq, shutdown, CommitMode::Async).await
}

async fn finish_with(
    in_flight: InFlight,
    consumer: &StreamConsumer<Context>,
    (dlq_producer, dlq_topic): (&FutureProducer, &str),
    shutdown: &CancellationToken,
    mode: CommitMode,
) -> Result<bool, Error> {
    let (batch, written) = in_flight.await.map_err(|e| Error::Task(e.to_string()))?;
    let Some(written) = written else {
        return Ok(false);
    };
    let letters: Vec<_> = batch.dead_letters.iter().chain(&written.refused).collect();
    // Before the offsets: a crash here republishes (at least once), never loses.
    if !letters.is_empty() && !publish_with_retry(dlq_producer, dlq_topic, &letters, shutdown).await
    {
        return Ok(false);
    }
    commit(consumer, &batch, mode)?;
    Ok(true)
}

/// Leaves without committing anything more: only stored batches' offsets are ever committed
/// (never the consumer's position, which includes messages read but not stored).
fn stopped() -> Result<(), Error> {
    info!("Consumer stopped.");
    Ok(())
}

/// Writes the batch's rows in `lanes` concurrent transactions (the database then works on
/// more than one core). Returns `None` when `shutdown` stopped a lane; nothing is committed
/// to Kafka then, and the lanes that did commit are de-duplicated on redelivery.
async fn write_lanes(
    pool: &Pool,
    batch: &mut Batch,
    lanes: usize,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Option<Written> {
    let parts = batch.split_rows(lanes);
    let writes = parts
        .iter()
        .map(|part| write_with_retry(pool, part, metrics, shutdown));
    let mut total = Written::default();
    for w in futures::future::join_all(writes).await {
        let w = w?;
        total.stored += w.stored;
        total.duplicates += w.duplicates;
        total.refused.extend(w.refused);
    }
    Some(total)
}

/// Writes the batch, retrying with backoff while the database is away. Returns `None` when
/// `shutdown` came first.
async fn write_with_retry(
    pool: &Pool,
    batch: &Batch,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Option<Written> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        match store::write(pool, batch).await {
            Ok(w) => {
                metrics
                    .write_seconds
                    .observe(started.elapsed().as_secs_f64());
                metrics.batch_size.observe(batch.messages as f64);
                metrics.stored.inc_by(w.stored);
                metrics
                    .latency
                    .observe_all(batch.events.iter().filter_map(|e| e.published_ms));
                metrics.duplicates.inc_by(w.duplicates);
                for d in batch.dead_letters.iter().chain(&w.refused) {
                    metrics.dead_letters.with_label_values(&[d.reason]).inc();
                }
                debug!(
                    messages = batch.messages,
                    stored = w.stored,
                    "Wrote a batch."
                );
                return Some(w);
            }
            Err(e) => {
                metrics.write_retries.inc();
                warn!(error = %e, transient = e.is_transient(), retry_in = ?backoff, "Batch write failed; retrying.");
            }
        }
        if !back_off(&mut backoff, shutdown).await {
            return None;
        }
    }
}

/// Publishes dead letters, retrying with backoff while the broker refuses. Returns false when
/// `shutdown` came first (the batch's offsets are then not committed).
async fn publish_with_retry(
    producer: &FutureProducer,
    topic: &str,
    letters: &[&DeadLetter],
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        match dlq::publish(producer, topic, letters).await {
            Ok(()) => return true,
            Err(e) => {
                warn!(error = %e, topic, retry_in = ?backoff, "Dead-letter publish failed; retrying.")
            }
        }
        if !back_off(&mut backoff, shutdown).await {
            return false;
        }
    }
}

/// Sleeps for `backoff`, then doubles it up to [`MAX_BACKOFF`]. False when `shutdown` came
/// first.
async fn back_off(backoff: &mut Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(*backoff) => {}
        () = shutdown.cancelled() => return false,
    }
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    true
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
