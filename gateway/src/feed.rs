//! The live event feed: every partition of the cart-events topic, from the end, without a
//! consumer group (each gateway instance sees every event). An event goes out at once when the
//! last message is a spacing old (the tick, or more for a large audience: `pace.rs`),
//! else coalesced with the others until it is.

use std::sync::Arc;
use std::time::Duration;

use cartflow_common::config::{KafkaArgs, TopicArgs};
use cartflow_common::kafka;
use cartflow_common::registry::SchemaLookup;
use cartflow_common::retry::Backoff;
use cartflow_schemas::{CartEvent, Codec};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::hub::{Channel, Hub};
use crate::metrics::Metrics;
use crate::pace::Pace;

/// Events listed in one feed message; the rest of those coalesced are only counted.
const EVENTS_PER_MESSAGE: usize = 25;

/// Runs until `shutdown`; waits for the broker and the topic when they are not there yet.
pub async fn run(
    kafka_args: KafkaArgs,
    topics: TopicArgs,
    lookup: Option<SchemaLookup>,
    hub: Arc<Hub>,
    metrics: Metrics,
    tick: Duration,
    shutdown: CancellationToken,
) {
    let topic = topics.cart_events_topic;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
    loop {
        match assign(&kafka_args, &topic) {
            Ok(consumer) => {
                info!(topic = %topic, "Feeding live events.");
                let follower = Follower {
                    consumer: &consumer,
                    lookup: lookup.as_ref(),
                    hub: &hub,
                    metrics: &metrics,
                };
                follower.follow(tick, &shutdown).await;
                return;
            }
            Err(e) => {
                warn!(error = %e, topic = %topic, retry_in = ?backoff.peek(), "No live feed yet; retrying.");
            }
        }
        if !backoff.wait(&shutdown).await {
            return;
        }
    }
}

fn assign(args: &KafkaArgs, topic: &str) -> Result<StreamConsumer, String> {
    let consumer: StreamConsumer = kafka::client_config(args, "cartflow-gateway")
        // Never joins: partitions are assigned directly and nothing is committed.
        .set("group.id", "cartflow-gateway")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // A fetch returns with the first byte that arrives; this only bounds an idle one.
        .set("fetch.wait.max.ms", "50")
        .create()
        .map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if partitions == 0 {
        return Err("the topic does not exist yet".into());
    }
    let mut list = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        list.add_partition_offset(topic, p, Offset::End)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&list).map_err(|e| e.to_string())?;
    Ok(consumer)
}

/// What following the topic needs.
struct Follower<'a> {
    consumer: &'a StreamConsumer,
    /// Where unknown schema ids are looked up, with `--schema-registry-url`.
    lookup: Option<&'a SchemaLookup>,
    hub: &'a Hub,
    metrics: &'a Metrics,
}

impl Follower<'_> {
    async fn follow(&self, tick: Duration, shutdown: &CancellationToken) {
        let (consumer, hub, metrics) = (self.consumer, self.hub, self.metrics);
        let codec = Codec::single_object();
        let mut pending: Vec<Value> = Vec::new();
        let mut count = 0u64;
        // Numbers the feed's messages, as the analytics' are numbered.
        let mut seq = crate::hub::first_seq();
        // Publish times of the tick's events, for the latency metric.
        let mut published: Vec<i64> = Vec::new();
        let mut pace = Pace::new(tick);
        loop {
            // Under load the topic always has a message ready and no await below waits:
            // spending tokio's budget lets the writers and the analytics run (see
            // cartflow_producer's publisher for what a task that never yields does).
            tokio::task::coop::consume_budget().await;
            let due = (count > 0).then(|| pace.next(hub.broadcast_cost()));
            let send = async {
                match due {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                m = consumer.recv() => match m {
                    Ok(m) => {
                        let payload = m.payload().unwrap_or_default();
                        self.learn_schema(&codec, payload, shutdown).await;
                        // Undecodable messages are the consumer's to dead-letter; the feed skips them.
                        if let Ok(e) = codec.decode::<CartEvent>(payload) {
                            metrics.feed_events.inc();
                            count += 1;
                            published.extend(m.timestamp().to_millis());
                            if pending.len() == EVENTS_PER_MESSAGE {
                                pending.remove(0);
                            }
                            pending.push(event(&e));
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "Feed receive error; the client reconnects by itself.");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                () = send => {
                    let events = std::mem::take(&mut pending);
                    seq += 1;
                    hub.broadcast(Channel::Feed, &json!({"type": "feed", "seq": seq, "count": count, "events": events}));
                    metrics.broadcasts.with_label_values(&["feed"]).inc();
                    metrics.feed_latency.observe_all(published.drain(..));
                    count = 0;
                    pace.sent(Instant::now());
                }
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Makes sure `codec` knows `payload`'s schema id if the registry does. A registry that
    /// refuses only costs the message its place in the feed (the consumer reports it).
    async fn learn_schema(&self, codec: &Codec, payload: &[u8], shutdown: &CancellationToken) {
        let (Some(lookup), Some(id)) = (self.lookup, codec.unknown_schema_id(payload)) else {
            return;
        };
        if let Err(e) = lookup
            .learn(id, |schema| codec.learn_family(id, schema), shutdown)
            .await
        {
            warn!(id, error = %e, "Cannot look up a schema id; the feed skips its messages.");
        }
    }
}

fn event(e: &CartEvent) -> Value {
    json!({
        "event_id": e.event_id,
        "customer_id": e.customer_id,
        "product_id": e.product_id,
        "product_title": e.product_title,
        "product_price": e.product_price.to_string(),
        "action": e.action.as_str(),
        "timestamp": e.timestamp,
        "session_id": e.session_id,
    })
}
