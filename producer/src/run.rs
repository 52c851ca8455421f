//! The producer service from start to clean stop.

use std::time::Duration;

use cartflow_common::kafka::{self, TopicSpec};
use cartflow_common::ops::{Health, OpsServer};
use cartflow_common::registry::{self, Compatibility, Registry};
use cartflow_common::retry::transient_retried;
use cartflow_schemas::{CartEvent, Codec, ConfluentIds, Customer, Product, SchemaRef};
use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{Mode, Pace};
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::simulate::Simulator;
use crate::truth::Truth;
use crate::{Config, Error, catalogue, customers};

/// How long a stop waits for the broker to acknowledge what was sent.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What a run published, all acknowledged by the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub products: usize,
    pub customers: usize,
    /// Cart events acknowledged by the broker.
    pub events: u64,
    pub catalogue: catalogue::Source,
}

/// Runs the producer until its mode is done, `count` events are delivered or `shutdown` is
/// cancelled, serving `/metrics` and `/healthz` on `ops_listener`.
pub async fn run(
    config: Config,
    ops_listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Report, Error> {
    let ops = OpsServer::start(ops_listener, &shutdown);
    let metrics = Metrics::new(&ops.registry);
    produce(&config, &metrics, &ops.health, &shutdown).await
}

/// The truth of the backfill `config` describes: the same seed, window, population and
/// profile, read as the analytics would. Needs no broker.
pub async fn planted_truth(config: &Config) -> Result<Truth, Error> {
    let Mode::Backfill { .. } = config.mode() else {
        return Err(Error::Truth(
            "--print-truth describes a backfill: run `cartflow-producer backfill --days N \
             [--until TIME] --seed S --print-truth`"
                .into(),
        ));
    };
    let profile = config.load_profile()?;
    let metrics = Metrics::new(&prometheus::Registry::new());
    let (seed, products, customers, _) = world(config, &metrics).await;
    let plan = Plan::of(config.mode(), Utc::now());
    let run = crate::truth::Run {
        seed,
        population_seed: config.population_seed,
        profile,
        customers,
        products,
        start: plan.start,
        until: plan.live_from(),
        abandon_after: chrono::Duration::from_std(config.abandon_after)
            .map_err(|e| Error::Truth(format!("--abandon-after: {e}")))?,
    };
    Ok(crate::truth::compute(&run, config.truth_replicas))
}

/// The seed, catalogue and customers of a run.
async fn world(
    config: &Config,
    metrics: &Metrics,
) -> (u64, Vec<Product>, Vec<Customer>, catalogue::Source) {
    let seed = config.seed.unwrap_or_else(rand::random);
    let timeout = Duration::from_secs(config.catalogue_timeout_secs.max(1));
    let (products, source) = catalogue::load(&config.catalogue_url, timeout, metrics).await;
    let customers = customers::generate(config.population_seed, config.customers);
    (seed, products, customers, source)
}

async fn produce(
    config: &Config,
    metrics: &Metrics,
    health: &Health,
    shutdown: &CancellationToken,
) -> Result<Report, Error> {
    let profile = config.load_profile()?;
    kafka::check_reachable(&config.kafka, Duration::from_secs(10)).await?;
    ensure_topics(config).await?;

    let (seed, products, customers, source) = world(config, metrics).await;
    info!(seed, "Simulation seed (pass --seed to repeat this run).");
    let codec = match &config.registry.schema_registry_url {
        None => Codec::single_object(),
        Some(url) => register_schemas(&Registry::new(url)?, config, shutdown).await?,
    };
    let mut publisher = Publisher::new(&config.kafka, metrics.clone())?;
    publish_world(&mut publisher, &codec, config, &products, &customers).await?;
    health.set_ready(true);
    let catalogue_delivered = publisher.delivered();

    let (n_products, n_customers) = (products.len(), customers.len());
    let plan = Plan::of(config.mode(), Utc::now());
    let pace = config.pace(|| {
        crate::simulate::events_per_second(
            config.population_seed,
            &profile,
            &customers,
            &products,
            plan.live_from(),
            chrono::Duration::days(7),
        )
    });
    let mut sim = Simulator::new(
        seed,
        config.population_seed,
        profile,
        customers,
        products,
        plan.start,
    );
    let mut out = Output::new(&mut publisher, &codec, config);
    simulate(&mut sim, &mut out, &plan, pace, shutdown).await?;
    let sent = out.sent;
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

/// Creates the three topics if they are missing: products and customers compacted (the latest
/// record per key is the current one), cart events with the configured partitions.
async fn ensure_topics(config: &Config) -> Result<(), Error> {
    let t = &config.topics;
    let topic = |name: &str, partitions: i32, compacted: bool| TopicSpec {
        name: name.to_owned(),
        partitions,
        compacted,
    };
    kafka::ensure_topics(
        &config.kafka,
        &[
            topic(&t.products_topic, 1, true),
            topic(&t.customers_topic, 1, true),
            topic(&t.cart_events_topic, config.partitions, false),
        ],
    )
    .await?;
    Ok(())
}

/// Registers the schema each topic is written with under the topic's value subject, with
/// BACKWARD compatibility, and returns a codec that frames messages with the ids the registry
/// assigned (Confluent framing).
async fn register_schemas(
    registry: &Registry,
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<Codec, Error> {
    // A registry that is starting, or busy (Apicurio's in-memory store times out on a
    // contended lock), answers 5xx for a while: worth waiting for at start.
    const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
    let t = &config.topics;
    let mut ids = ConfluentIds::default();
    for (topic, schema) in [
        (&t.products_topic, SchemaRef::Product),
        (&t.customers_topic, SchemaRef::Customer),
        (&t.cart_events_topic, config.cart_event_schema()),
    ] {
        let subject = registry::value_subject(topic);
        transient_retried(
            "Setting the subject's compatibility",
            GIVE_UP_AFTER,
            shutdown,
            || registry.set_compatibility(&subject, Compatibility::Backward),
        )
        .await?;
        let id = transient_retried("Registering the schema", GIVE_UP_AFTER, shutdown, || {
            registry.register(&subject, schema.avsc())
        })
        .await?;
        info!(%subject, id, %schema, registry = registry.url(), "Registered the schema.");
        ids.insert(id, schema);
    }
    Ok(Codec::confluent(ids))
}

/// Publishes the catalogue and the customers and waits until the broker has them all, so that
/// every event names a product and a customer that is already on the broker.
async fn publish_world(
    publisher: &mut Publisher,
    codec: &Codec,
    config: &Config,
    products: &[Product],
    customers: &[Customer],
) -> Result<(), Error> {
    let t = &config.topics;
    for p in products {
        let bytes = codec.encode(p).map_err(|source| Error::Encode {
            what: "product",
            source,
        })?;
        publisher
            .send(&t.products_topic, &p.product_id.to_string(), &bytes, None)
            .await?;
    }
    for c in customers {
        let bytes = codec.encode(c).map_err(|source| Error::Encode {
            what: "customer",
            source,
        })?;
        publisher
            .send(&t.customers_topic, &c.customer_id.to_string(), &bytes, None)
            .await?;
    }
    publisher.flush(DRAIN_DEADLINE).await?;
    info!(
        products = products.len(),
        customers = customers.len(),
        "Published the catalogue and customers."
    );
    Ok(())
}

/// When the simulated clock starts, and what the run does from there.
struct Plan {
    start: DateTime<Utc>,
    /// History to publish as fast as the broker takes it, up to this instant.
    backfill_until: Option<DateTime<Utc>>,
    /// Whether events stamped with the wall clock follow.
    then_live: bool,
}

impl Plan {
    /// Where the live phase's simulated clock starts: the end of the backfill, or now.
    fn live_from(&self) -> DateTime<Utc> {
        self.backfill_until.unwrap_or(self.start)
    }

    fn of(mode: Mode, now: DateTime<Utc>) -> Plan {
        match mode {
            Mode::Live => Plan {
                start: now,
                backfill_until: None,
                then_live: true,
            },
            Mode::Backfill {
                days,
                then_live,
                until,
            } => {
                let until = until.unwrap_or(now);
                Plan {
                    start: until - chrono::Duration::days(i64::from(days)),
                    backfill_until: Some(until),
                    then_live,
                }
            }
        }
    }
}

/// Runs the plan: the backfill, then the live phase, until done or stopped.
async fn simulate(
    sim: &mut Simulator,
    out: &mut Output<'_>,
    plan: &Plan,
    pace: Pace,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let mut carry = None;
    if let Some(until) = plan.backfill_until {
        carry = backfill(sim, out, until, shutdown).await?;
    }
    if plan.then_live && !out.done() && !shutdown.is_cancelled() {
        live(sim, out, carry, plan.live_from(), pace, shutdown).await?;
    }
    Ok(())
}

/// Where cart events go, and how many may.
struct Output<'a> {
    publisher: &'a mut Publisher,
    codec: &'a Codec,
    topic: &'a str,
    schema: SchemaRef,
    sent: u64,
    limit: Option<u64>,
}

impl<'a> Output<'a> {
    fn new(publisher: &'a mut Publisher, codec: &'a Codec, config: &'a Config) -> Output<'a> {
        Output {
            publisher,
            codec,
            topic: &config.topics.cart_events_topic,
            schema: config.cart_event_schema(),
            sent: 0,
            limit: config.count,
        }
    }

    fn done(&self) -> bool {
        self.limit.is_some_and(|n| self.sent >= n)
    }

    async fn send(&mut self, event: &CartEvent) -> Result<(), Error> {
        let bytes = self
            .codec
            .encode_as(event, self.schema)
            .map_err(|source| Error::Encode {
                what: "cart event",
                source,
            })?;
        self.publisher
            .send(
                self.topic,
                &event.key(),
                &bytes,
                Some(event.action.as_str()),
            )
            .await?;
        self.sent += 1;
        Ok(())
    }
}

/// Publishes history up to `until` as fast as the broker takes it. Returns the first event
/// past `until`, which a following live phase sends first.
async fn backfill(
    sim: &mut Simulator,
    out: &mut Output<'_>,
    until: DateTime<Utc>,
    shutdown: &CancellationToken,
) -> Result<Option<CartEvent>, Error> {
    info!(%until, "Backfilling history.");
    let started = Instant::now();
    let mut progress = started;
    while !out.done() && !shutdown.is_cancelled() {
        let event = sim.next_event();
        if event.timestamp > until {
            info!(
                events = out.sent,
                seconds = started.elapsed().as_secs_f64(),
                "Backfill reached now."
            );
            return Ok(Some(event));
        }
        out.send(&event).await?;
        if progress.elapsed() >= PROGRESS_EVERY {
            progress = Instant::now();
            let rate = out.sent as f64 / started.elapsed().as_secs_f64();
            info!(sent = out.sent, event_time = %event.timestamp, events_per_second = rate as u64, "Backfilling.");
        }
    }
    Ok(None)
}

/// Continues the simulated world from `from`, publishing each event when the wall clock
/// reaches its simulated time (run `pace` times faster), until stopped. Events keep their
/// simulated timestamps: the hour, weekday and month shape of the backfill goes on.
async fn live(
    sim: &mut Simulator,
    out: &mut Output<'_>,
    mut carry: Option<CartEvent>,
    from: DateTime<Utc>,
    pace: Pace,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    match pace {
        Pace::Speedup(speedup) => info!(speedup, "Publishing live events."),
        Pace::Unthrottled => info!("Publishing live events as fast as the broker takes them."),
    }
    let started = Instant::now();
    let mut progress = started;
    while !out.done() && !shutdown.is_cancelled() {
        let event = carry.take().unwrap_or_else(|| sim.next_event());
        if let Pace::Speedup(speedup) = pace {
            let ahead = (event.timestamp - from).to_std().unwrap_or_default();
            let due = started + ahead.div_f64(speedup);
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = shutdown.cancelled() => break,
            }
        }
        out.send(&event).await?;
        if progress.elapsed() >= Duration::from_secs(60) {
            progress = Instant::now();
            info!(sent = out.sent, event_time = %event.timestamp, "Publishing live events.");
        }
    }
    Ok(())
}
