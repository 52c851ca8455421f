//! The producer stage: the backfill path beside a raw publish of same-size messages.

use std::time::{Duration, Instant};

use cartflow_common::config::KafkaArgs;
use cartflow_common::kafka::{self, TopicSpec};
use cartflow_producer::metrics::Metrics;
use cartflow_producer::profile::Profile;
use cartflow_producer::publish::Publisher;
use cartflow_producer::simulate::Simulator;
use cartflow_producer::{catalogue, customers};
use cartflow_schemas::{Codec, SchemaRef};
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

use crate::report::{StageResult, quantile_ms};

const CUSTOMERS: u32 = 100;
const SEED: u64 = 2026;

pub(crate) fn simulator() -> Simulator {
    let people = customers::generate(SEED, CUSTOMERS);
    let start = Utc::now() - chrono::Duration::days(3650);
    Simulator::new(
        SEED,
        SEED,
        Profile::default(),
        people,
        catalogue::fallback(),
        start,
    )
}

/// The mean size of an encoded v2 cart event, so the baseline sends the same bytes.
pub(crate) fn mean_event_size() -> usize {
    let codec = Codec::single_object();
    let mut sim = simulator();
    let n = 10_000;
    let total: usize = (0..n)
        .map(|_| {
            codec
                .encode_as(&sim.next_event(), SchemaRef::CartEventV2)
                .map_or(0, |b| b.len())
        })
        .sum();
    total / n
}

async fn topic(brokers: &str, name: &str) -> anyhow::Result<KafkaArgs> {
    let args = KafkaArgs {
        brokers: brokers.into(),
    };
    kafka::ensure_topics(
        &args,
        &[TopicSpec {
            name: name.into(),
            partitions: 6,
            compacted: false,
        }],
    )
    .await?;
    Ok(args)
}

pub(crate) async fn drop_topic(args: &KafkaArgs, name: &str) {
    // The broker keeps what it holds in memory; free it for the next run.
    if let Ok(admin) =
        kafka::client_config(args, "cartflow-bench").create::<AdminClient<DefaultClientContext>>()
    {
        let _ = admin.delete_topics(&[name], &AdminOptions::new()).await;
    }
}

fn result(name: &str, events: u64, elapsed: Duration, metrics: &Metrics) -> StageResult {
    StageResult::measured(
        name,
        events,
        elapsed,
        (
            quantile_ms(&metrics.send_seconds, 0.50),
            quantile_ms(&metrics.send_seconds, 0.99),
        ),
    )
}

/// Raw publish: pre-built payloads of `size` bytes through the same idempotent producer.
pub(crate) async fn baseline(
    brokers: &str,
    events: u64,
    size: usize,
) -> anyhow::Result<StageResult> {
    let name = format!("bench-raw-{}", uuid::Uuid::new_v4().simple());
    let args = topic(brokers, &name).await?;
    let metrics = Metrics::new(&prometheus::Registry::new());
    let mut publisher = Publisher::new(&args, metrics.clone())?;
    let mut rng = StdRng::seed_from_u64(SEED);
    let payloads: Vec<Vec<u8>> = (0..64)
        .map(|_| (0..size).map(|_| rng.random()).collect())
        .collect();
    let keys: Vec<String> = (1..=CUSTOMERS).map(|c| c.to_string()).collect();
    let started = Instant::now();
    for i in 0..events as usize {
        publisher
            .send(
                &name,
                &keys[i % keys.len()],
                &payloads[i % payloads.len()],
                Some("add_to_cart"),
            )
            .await?;
    }
    publisher.flush(Duration::from_secs(120)).await?;
    let elapsed = started.elapsed();
    drop_topic(&args, &name).await;
    Ok(result(
        "raw produce (baseline)",
        publisher.delivered(),
        elapsed,
        &metrics,
    ))
}

/// The backfill path: simulate, encode v2, publish.
pub(crate) async fn cartflow(brokers: &str, events: u64) -> anyhow::Result<StageResult> {
    let name = format!("bench-cartflow-{}", uuid::Uuid::new_v4().simple());
    let args = topic(brokers, &name).await?;
    let metrics = Metrics::new(&prometheus::Registry::new());
    let mut publisher = Publisher::new(&args, metrics.clone())?;
    let codec = Codec::single_object();
    let mut sim = simulator();
    let started = Instant::now();
    for _ in 0..events {
        let event = sim.next_event();
        let bytes = codec.encode_as(&event, SchemaRef::CartEventV2)?;
        publisher
            .send(&name, &event.key(), &bytes, Some(event.action.as_str()))
            .await?;
    }
    publisher.flush(Duration::from_secs(120)).await?;
    let elapsed = started.elapsed();
    drop_topic(&args, &name).await;
    Ok(result(
        "cartflow backfill",
        publisher.delivered(),
        elapsed,
        &metrics,
    ))
}
