//! The producer service from start to clean stop.

use std::time::Duration;

use cartflow_common::kafka::{self, TopicSpec};
use cartflow_common::ops::{Health, OpsServer};
use cartflow_schemas::{CartEvent, Codec, SchemaRef};
use chrono::Utc;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::simulate::Simulator;
use crate::{Config, Error, catalogue, customers};

/// How long a stop waits for the broker to acknowledge what was sent.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// What a run published, all acknowledged by the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub products: usize,
    pub customers: usize,
    pub events: u64,
    pub catalogue: catalogue::Source,
}

/// Runs the producer until `count` events are delivered or `shutdown` is cancelled, serving
/// `/metrics` and `/healthz` on `ops_listener`.
pub async fn run(
    config: Config,
    ops_listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Report, Error> {
    let ops = OpsServer::start(ops_listener, &shutdown);
    let metrics = Metrics::new(&ops.registry);
    produce(&config, &metrics, &ops.health, &shutdown).await
}

async fn produce(
    config: &Config,
    metrics: &Metrics,
    health: &Health,
    shutdown: &CancellationToken,
) -> Result<Report, Error> {
    kafka::check_reachable(&config.kafka, Duration::from_secs(10)).await?;
    let t = &config.topics;
    kafka::ensure_topics(
        &config.kafka,
        &[
            TopicSpec {
                name: t.products_topic.clone(),
                partitions: 1,
                compacted: true,
            },
            TopicSpec {
                name: t.customers_topic.clone(),
                partitions: 1,
                compacted: true,
            },
            TopicSpec {
                name: t.cart_events_topic.clone(),
                partitions: config.partitions,
                compacted: false,
            },
        ],
    )
    .await?;

    let seed = config.seed.unwrap_or_else(rand::random);
    info!(seed, "Simulation seed (pass --seed to repeat this run).");
    let timeout = Duration::from_secs(config.catalogue_timeout_secs.max(1));
    let (products, source) = catalogue::load(&config.catalogue_url, timeout, metrics).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let customers = customers::generate(&mut rng, config.customers, Utc::now());

    let codec = Codec::single_object();
    let mut publisher = Publisher::new(&config.kafka, metrics.clone())?;
    for p in &products {
        let bytes = codec.encode(p).map_err(|source| Error::Encode {
            what: "product",
            source,
        })?;
        publisher
            .send(&t.products_topic, &p.product_id.to_string(), &bytes, None)
            .await?;
    }
    for c in &customers {
        let bytes = codec.encode(c).map_err(|source| Error::Encode {
            what: "customer",
            source,
        })?;
        publisher
            .send(&t.customers_topic, &c.customer_id.to_string(), &bytes, None)
            .await?;
    }
    // Every event names a product and a customer that is already on the broker.
    publisher.flush(DRAIN_DEADLINE).await?;
    info!(
        products = products.len(),
        customers = customers.len(),
        "Published the catalogue and customers."
    );
    health.set_ready(true);
    let catalogue_delivered = publisher.delivered();

    let schema = if config.schema_version == 1 {
        SchemaRef::CartEventV1
    } else {
        SchemaRef::CartEventV2
    };
    let (n_products, n_customers) = (products.len(), customers.len());
    let mut sim = Simulator::new(seed, customers, products);
    let started = tokio::time::Instant::now();
    let mut sent: u64 = 0;
    let mut last_progress = started;
    while config.count.is_none_or(|n| sent < n) && !shutdown.is_cancelled() {
        if config.rate > 0.0 {
            let due = started + Duration::from_secs_f64(sent as f64 / config.rate);
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        let event: CartEvent = sim.next_event(Utc::now());
        let bytes = codec
            .encode_as(&event, schema)
            .map_err(|source| Error::Encode {
                what: "cart event",
                source,
            })?;
        publisher
            .send(
                &t.cart_events_topic,
                &event.key(),
                &bytes,
                Some(event.action.as_str()),
            )
            .await?;
        sent += 1;
        if last_progress.elapsed() >= Duration::from_secs(10) {
            last_progress = tokio::time::Instant::now();
            info!(
                sent,
                delivered = publisher.delivered(),
                "Publishing cart events."
            );
        }
    }
    info!(sent, "Flushing before exit.");
    publisher.flush(DRAIN_DEADLINE).await?;
    let events = publisher.delivered() - catalogue_delivered;
    info!(events, failed = publisher.failed(), "Producer stopped.");
    Ok(Report {
        seed,
        products: n_products,
        customers: n_customers,
        events,
        catalogue: source,
    })
}
