//! The consume loop, top to bottom: prepare the database and the topics, join the group, then
//! fill a batch, hand it to the [`Committer`] (which writes it, settles its dead letters and
//! commits its offsets in order), and again, until the shutdown signal; then drain.
//!
//! A transient database error is retried; a permanent one (a missing table, a missing
//! privilege) stops the consumer with one line that says what to do.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cartflow_common::kafka::TopicSpec;
use cartflow_common::ops::{Health, OpsServer};
use cartflow_common::registry::{Lookup, SchemaLookup};
use cartflow_common::{db, kafka};
use cartflow_schemas::Codec;
use futures::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::batch::{Batch, Origin, Raw, TopicKind};
use crate::committer::{Committer, Sink};
use crate::context::Context;
use crate::metrics::Metrics;
use crate::{Config, Error, dlq, lag};

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

async fn consume(
    config: &Config,
    metrics: &Metrics,
    health: &Health,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let sink = prepare(config, metrics).await?;
    let kinds = topic_kinds(config);
    let consumer = Arc::new(group_member(config)?);
    let topics: Vec<&str> = kinds.keys().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    info!(group = %config.group, ?topics, "Consuming.");
    health.set_ready(true);
    let _watcher = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(lag::watch(
        consumer.clone(),
        kinds.iter().map(|(n, k)| (n.clone(), k.label())).collect(),
        metrics.clone(),
        health.clone(),
        Duration::from_secs(config.stall_secs),
        Duration::from_millis(config.lag_interval_ms),
        shutdown.child_token(),
    )));

    let mut committer = Committer::new(consumer.clone(), sink, config.max_in_flight as usize);
    let lookup = match &config.registry.schema_registry_url {
        Some(url) => Some(SchemaLookup::new(url)?),
        None => None,
    };
    let reader = Reader {
        consumer: &consumer,
        kinds: &kinds,
        codec: Codec::single_object(),
        lookup: lookup.as_ref(),
        metrics,
        max: config.batch_size as usize,
        timeout: Duration::from_millis(config.batch_timeout_ms),
    };
    while !shutdown.is_cancelled() {
        let Some(batch) = reader.fill(&mut committer, shutdown).await? else {
            return stopped();
        };
        if !committer.reap().await? || !committer.make_room(batch.is_empty()).await? {
            return stopped();
        }
        if !batch.is_empty() {
            metrics
                .legacy_fingerprints
                .inc_by(batch.legacy_fingerprints);
            committer.start(batch, shutdown);
        }
    }
    committer.drain().await?;
    stopped()
}

/// Migrates (unless told not to), opens the pool, checks the broker and creates the
/// dead-letter topic: where batches will go.
async fn prepare(config: &Config, metrics: &Metrics) -> Result<Sink, Error> {
    let url = &config.database.database_url;
    db::prepare_schema(url, config.skip_migrations).await?;
    let pool = db::pool(url, config.pool).await?;
    kafka::check_reachable(&config.kafka, Duration::from_secs(10)).await?;
    let dlq_topic = config.topics.dlq_topic.clone();
    kafka::ensure_topics(
        &config.kafka,
        &[TopicSpec {
            name: dlq_topic.clone(),
            partitions: 1,
            compacted: false,
        }],
    )
    .await?;
    Ok(Sink {
        pool,
        dlq_producer: kafka::client_config(&config.kafka, "cartflow-consumer-dlq")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                dlq::DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .create()?,
        dlq_topic,
        metrics: metrics.clone(),
        database_url: url.clone(),
        lanes: config.write_lanes as usize,
    })
}

/// The topics read, by name.
fn topic_kinds(config: &Config) -> HashMap<String, TopicKind> {
    let t = &config.topics;
    HashMap::from([
        (t.cart_events_topic.clone(), TopicKind::CartEvents),
        (t.customers_topic.clone(), TopicKind::Customers),
        (t.products_topic.clone(), TopicKind::Products),
    ])
}

/// Fills batches from the group member.
struct Reader<'a> {
    consumer: &'a StreamConsumer<Context>,
    kinds: &'a HashMap<String, TopicKind>,
    codec: Codec,
    /// Where unknown schema ids are looked up, with `--schema-registry-url`.
    lookup: Option<&'a SchemaLookup>,
    metrics: &'a Metrics,
    max: usize,
    timeout: Duration,
}

impl Reader<'_> {
    /// The next batch: what has arrived when a write could start and no more is waiting, or
    /// up to `max` messages, or what arrived within `timeout` of the first one while every
    /// write slot is busy, or what is in hand when the shutdown signal comes. While it waits
    /// it lets the committer finish writes that are done. `None` when a write stopped by a
    /// shutdown means nothing more may be committed.
    async fn fill(
        &self,
        committer: &mut Committer,
        shutdown: &CancellationToken,
    ) -> Result<Option<Batch>, Error> {
        let mut batch = Batch::default();
        let mut deadline: Option<Instant> = None;
        let mut reap = tokio::time::interval(Duration::from_millis(20));
        while batch.messages < self.max {
            // With a backlog every receive is ready at once and nothing here yields: spend
            // tokio's budget so the batch writers and the health server get their turn.
            tokio::task::coop::consume_budget().await;
            // A batch closes as soon as nothing more is waiting and a write can start: at low
            // load each message is stored at once, under load batches grow while the writes
            // in flight finish (up to `max`, or `timeout` after their first message).
            let ready = match !batch.is_empty() && committer.has_room() {
                true => match self.consumer.recv().now_or_never() {
                    Some(m) => Some(m),
                    None => break,
                },
                false => None,
            };
            let message = if let Some(m) = ready {
                m
            } else {
                let wait = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    m = self.consumer.recv() => m,
                    () = wait => break,
                    // Commit finished writes while no new message arrives.
                    _ = reap.tick(), if !committer.is_idle() => {
                        if !committer.reap().await? {
                            return Ok(None);
                        }
                        continue;
                    }
                    () = shutdown.cancelled() => break,
                }
            };
            match message {
                Ok(m) => {
                    let Some(&kind) = self.kinds.get(m.topic()) else {
                        continue;
                    };
                    if let Some(lookup) = self.lookup
                        && !self.learn_schema(lookup, m.payload(), shutdown).await?
                    {
                        break;
                    }
                    self.metrics
                        .consumed
                        .with_label_values(&[kind.label()])
                        .inc();
                    batch.add(&self.codec, kind, raw(&m), m.timestamp().to_millis());
                    deadline.get_or_insert_with(|| Instant::now() + self.timeout);
                }
                Err(e) => {
                    warn!(error = %e, "Kafka receive error; the client reconnects by itself.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Ok(Some(batch))
    }
}

impl Reader<'_> {
    /// Makes sure the codec knows `payload`'s schema id if the registry does. False when the
    /// shutdown came while the registry was unreachable: the message is left unread.
    async fn learn_schema(
        &self,
        lookup: &SchemaLookup,
        payload: Option<&[u8]>,
        shutdown: &CancellationToken,
    ) -> Result<bool, Error> {
        let Some(id) = payload.and_then(|p| self.codec.unknown_schema_id(p)) else {
            return Ok(true);
        };
        let learn = |schema: &str| self.codec.learn_family(id, schema);
        Ok(lookup.learn(id, learn, shutdown).await? == Lookup::Decode)
    }
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

/// Leaves without committing anything more: only stored batches' offsets are ever committed
/// (never the consumer's position, which includes messages read but not stored).
fn stopped() -> Result<(), Error> {
    info!("Consumer stopped.");
    Ok(())
}
