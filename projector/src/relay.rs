//! `cartflow-projector relay`: publishes the outbox (`outcomes.outbox`) to Kafka, each
//! outcome exactly once.
//!
//! One relay is active per database (an advisory lock; others wait as standbys). It produces
//! with a transactional producer whose `transactional.id` is the same for every relay of the
//! outbox: when one starts, the broker aborts a previous relay's unfinished transaction and
//! refuses any late write from it. What a previous relay committed but did not mark (it died
//! between the broker's commit and PostgreSQL's update) is then read back from the end of
//! each partition (`relay/tail.rs`) and marked without publishing it again. From then on, batch by
//! batch in `seq` order: begin a transaction, produce, commit, mark the rows published.
//!
//! Why the tail suffices: batches are taken in `seq` order and each is marked before the next
//! begins, so at most one committed batch is unmarked, and every unmarked row up to the
//! highest `seq` on the topic belongs to it. (The projector writes the outbox one transaction
//! at a time under its schema lock, so a row with a lower `seq` never appears later.)

mod tail;

use std::time::{Duration, Instant};

use cartflow_common::channels::{self, OutcomesDecided};
use cartflow_common::db;
use cartflow_common::kafka::{self, TopicSpec};
use cartflow_common::ops::OpsServer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};
use uuid::Uuid;

use crate::leader;
use crate::metrics::RelayMetrics;
use crate::{Error, RelayArgs};

/// The advisory lock only the active relay holds.
const RELAY_LOCK: i64 = 0x6f75_7462_6f78_2121; // "outbox!!"
/// The header carrying an outcome's outbox `seq`, which recovery reads back.
pub const SEQ_HEADER: &str = "cartflow-outbox-seq";
/// The header carrying the outcome id, for subscribers that de-duplicate by header.
pub const ID_HEADER: &str = "cartflow-outcome-id";
/// Deadline of each blocking transaction call.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the backlog gauges are refreshed while idle.
const GAUGES_EVERY: Duration = Duration::from_secs(2);

/// Runs until `shutdown` is cancelled.
pub async fn run(
    args: RelayArgs,
    ops_listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let ops = OpsServer::start(ops_listener, &shutdown);
    let metrics = RelayMetrics::new(&ops.registry);
    kafka::check_reachable(&args.kafka, Duration::from_secs(10)).await?;
    let topic = TopicSpec {
        name: args.topic.outcomes_topic.clone(),
        partitions: args.outcomes_partitions,
        compacted: false,
    };
    kafka::ensure_topics(&args.kafka, &[topic]).await?;
    db::check_migrated(&args.database.database_url).await?;
    ops.health.set_ready(true);
    leader::serve(
        || lead(&args, &metrics, &shutdown),
        |e| !matches!(e, Error::NotMigrated),
        "Relay failed; starting again.",
        &metrics.active,
        &args.database.database_url,
        &shutdown,
    )
    .await
}

/// One connection's life: standby, then the active relay until shutdown or a failure.
async fn lead(
    args: &RelayArgs,
    metrics: &RelayMetrics,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let (client, mut wakeups) = db::listen(&args.database.database_url, channels::OUTCOMES).await?;
    let poll = Duration::from_millis(args.standby_poll_ms);
    if !leader::acquire(&client, RELAY_LOCK, poll, "relay", shutdown).await? {
        return Ok(());
    }
    let producer = producer(args).await?;
    metrics.active.set(1);
    let recovered = tail::recover(&client, &args.kafka, &args.topic.outcomes_topic).await?;
    metrics.recovered.inc_by(recovered);
    info!(
        recovered,
        topic = %args.topic.outcomes_topic,
        "Active relay."
    );
    let result = publish(&client, &producer, &mut wakeups, args, metrics, shutdown).await;
    metrics.active.set(0);
    result
}

/// A transactional producer, initialised: any earlier relay's transaction is aborted and
/// that relay fenced off.
async fn producer(args: &RelayArgs) -> Result<FutureProducer, Error> {
    let producer: FutureProducer = kafka::client_config(&args.kafka, "cartflow-relay")
        .set("transactional.id", &args.transactional_id)
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .create()?;
    let p = producer.clone();
    tokio::task::spawn_blocking(move || p.init_transactions(TRANSACTION_TIMEOUT))
        .await
        .map_err(|e| Error::Common(std::io::Error::other(e).into()))??;
    Ok(producer)
}

/// One unpublished outbox row.
struct Pending {
    seq: i64,
    outcome_id: Uuid,
    customer_id: i64,
    outcome: String,
    payload: Vec<u8>,
}

async fn publish(
    client: &Client,
    producer: &FutureProducer,
    wakeups: &mut UnboundedReceiver<Option<OutcomesDecided>>,
    args: &RelayArgs,
    metrics: &RelayMetrics,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let poll = Duration::from_millis(args.poll_ms);
    let mut last_gauges = Instant::now() - GAUGES_EVERY;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let batch = pending(client, args.relay_batch).await?;
        if last_gauges.elapsed() >= GAUGES_EVERY || batch.is_empty() {
            refresh_gauges(client, metrics).await?;
            last_gauges = Instant::now();
        }
        if batch.is_empty() {
            tokio::select! {
                w = wakeups.recv() => {
                    if w.is_none() {
                        return Err(Error::ConnectionLost);
                    }
                    // Wake-ups queued meanwhile are answered by the one read that follows:
                    // taken one by one, each cost an empty read of the outbox.
                    while wakeups.try_recv().is_ok() {}
                }
                () = tokio::time::sleep(poll) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
            continue;
        }
        let started = Instant::now();
        publish_batch(client, producer, &args.topic.outcomes_topic, &batch).await?;
        for row in &batch {
            metrics.published.with_label_values(&[&row.outcome]).inc();
        }
        metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        debug!(outcomes = batch.len(), "Published a batch of outcomes.");
    }
}

async fn pending(client: &Client, limit: i64) -> Result<Vec<Pending>, Error> {
    let rows = client
        .query(
            "SELECT seq, outcome_id, customer_id, outcome, payload FROM outcomes.outbox \
             WHERE published_at IS NULL ORDER BY seq LIMIT $1",
            &[&limit],
        )
        .await
        .map_err(not_migrated)?;
    Ok(rows
        .iter()
        .map(|r| Pending {
            seq: r.get(0),
            outcome_id: r.get(1),
            customer_id: r.get(2),
            outcome: r.get(3),
            payload: r.get(4),
        })
        .collect())
}

/// Produces `batch` in one Kafka transaction, commits it, then marks the rows published
/// with where the broker put them.
async fn publish_batch(
    client: &Client,
    producer: &FutureProducer,
    topic: &str,
    batch: &[Pending],
) -> Result<(), Error> {
    producer.begin_transaction()?;
    let mut deliveries = Vec::with_capacity(batch.len());
    for row in batch {
        let seq = row.seq.to_string();
        let id = row.outcome_id.to_string();
        let key = row.customer_id.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: SEQ_HEADER,
                value: Some(&seq),
            })
            .insert(Header {
                key: ID_HEADER,
                value: Some(&id),
            });
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&row.payload)
            .headers(headers);
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((e, _)) => {
                abort(producer).await;
                return Err(e.into());
            }
        }
    }
    let p = producer.clone();
    let committed = tokio::task::spawn_blocking(move || p.commit_transaction(TRANSACTION_TIMEOUT))
        .await
        .map_err(|e| Error::Common(std::io::Error::other(e).into()))?;
    if let Err(e) = committed {
        abort(producer).await;
        return Err(e.into());
    }
    let (mut seqs, mut partitions, mut offsets) = (vec![], vec![], vec![]);
    for (row, delivery) in batch.iter().zip(deliveries) {
        // Committed, so every delivery succeeded; a report lost with its channel leaves the
        // row's place unknown, not its publication.
        let (partition, offset) = match delivery.await {
            Ok(Ok(d)) => (Some(d.partition), Some(d.offset)),
            _ => (None, None),
        };
        seqs.push(row.seq);
        partitions.push(partition);
        offsets.push(offset);
    }
    client
        .execute(
            "UPDATE outcomes.outbox o SET published_at = now(), kafka_partition = x.p, \
                 kafka_offset = x.o \
             FROM UNNEST($1::int8[], $2::int4[], $3::int8[]) AS x(s, p, o) WHERE o.seq = x.s",
            &[&seqs, &partitions, &offsets],
        )
        .await?;
    Ok(())
}

/// Aborts the open transaction, best effort: a relay that cannot abort starts again, and
/// the next one's initialisation aborts it on the broker.
async fn abort(producer: &FutureProducer) {
    let p = producer.clone();
    let aborted =
        tokio::task::spawn_blocking(move || p.abort_transaction(TRANSACTION_TIMEOUT)).await;
    if let Ok(Err(e)) = aborted {
        debug!(error = %e, "Could not abort the Kafka transaction.");
    }
}

async fn refresh_gauges(client: &Client, metrics: &RelayMetrics) -> Result<(), Error> {
    let row = client
        .query_one(
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 \
             FROM outcomes.outbox WHERE published_at IS NULL",
            &[],
        )
        .await
        .map_err(not_migrated)?;
    metrics.backlog.set(row.get(0));
    metrics.oldest_seconds.set(row.get(1));
    Ok(())
}

fn not_migrated(e: tokio_postgres::Error) -> Error {
    match e.code() {
        Some(c) if *c == tokio_postgres::error::SqlState::UNDEFINED_TABLE => Error::NotMigrated,
        _ => e.into(),
    }
}
