//! The end-to-end stage: the producer live at a rate through the real broker, consumer,
//! projector and gateway to a WebSocket client, each stage's latency read from the services'
//! own histogram (`cartflow_event_latency_seconds`, publish time to the end of the stage);
//! and the floor beside it, measured in the same run: one message's produce→consume round trip
//! on the same broker with the producer's own settings (acks=all, idempotent, linger 5 ms)
//! plus one PostgreSQL commit of one row. The same round trip is also sampled while the
//! pipeline runs (ten a second, on a topic and database of its own): what the machine's load
//! costs a raw round trip, beside what the pipeline's stages take under it.

use std::time::{Duration, Instant};

use anyhow::Context;
use cartflow_common::config::{KafkaArgs, TopicArgs};
use cartflow_common::db;
use cartflow_common::kafka::{self, TopicSpec};
use cartflow_producer::metrics::Metrics as ProducerMetrics;
use cartflow_producer::publish::Publisher;
use clap::Parser;
use futures::StreamExt;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::consumer::fresh_database;
use crate::report::StageResult;

fn unused_database_name() -> String {
    format!("cartflow_bench_{}", uuid::Uuid::new_v4().simple())
}

/// The stages of the histogram, in the order an event passes them.
pub(crate) const STAGES: [&str; 4] = ["stored", "projected", "pushed", "feed"];

/// One histogram series read from a `/metrics` page: (upper bound, cumulative count).
type Buckets = Vec<(f64, f64)>;

/// The buckets of `cartflow_event_latency_seconds{stage}` on the page at `url`.
async fn scrape(url: &str, stage: &str) -> anyhow::Result<Buckets> {
    scrape_histogram(
        url,
        "cartflow_event_latency_seconds",
        &format!("stage=\"{stage}\""),
    )
    .await
}

/// The buckets of histogram `metric` on the page at `url`, of the series whose labels contain
/// `label` (any series when it is empty).
async fn scrape_histogram(url: &str, metric: &str, label: &str) -> anyhow::Result<Buckets> {
    let text = reqwest::get(url).await?.text().await?;
    let prefix = format!("{metric}_bucket{{");
    let mut buckets = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        if !line.contains(label) {
            continue;
        }
        let le = line
            .split("le=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .context("a bucket without le")?;
        let count: f64 = line.rsplit(' ').next().unwrap_or("0").parse()?;
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse()?
        };
        buckets.push((bound, count));
    }
    Ok(buckets)
}

/// The `q` quantile in ms of the observations between two scrapes, interpolated linearly
/// within its bucket (as Prometheus's `histogram_quantile` does).
fn quantile_ms(before: &Buckets, after: &Buckets, q: f64) -> f64 {
    let counts: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before
                .iter()
                .find(|(b, _)| b == le)
                .map_or(0.0, |(_, n)| *n);
            (*le, n - was)
        })
        .collect();
    let total = counts.last().map_or(0.0, |(_, n)| *n);
    if total == 0.0 {
        return f64::NAN;
    }
    let target = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (upper, count) in counts {
        if count >= target {
            if upper.is_infinite() {
                return lower * 1000.0;
            }
            let within = (target - below) / (count - below).max(1.0);
            return (lower + within * (upper - lower)) * 1000.0;
        }
        (lower, below) = (upper, count);
    }
    lower * 1000.0
}

/// The pipeline for one rate: fresh topics and database, the four services in this process.
struct Pipeline {
    stop: CancellationToken,
    /// Each stage's `/metrics` page.
    pages: [String; 4],
    topics: TopicArgs,
    database: String,
}

/// Runs one service in the background and says so when it fails: the run then ends with its
/// metrics page gone, and without this the reason would be lost.
fn watch<E: std::fmt::Display>(
    name: &'static str,
    service: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
) {
    tokio::spawn(async move {
        if let Err(e) = service.await {
            eprintln!("  the {name} failed: {e}");
        }
    });
}

async fn ops() -> anyhow::Result<(TcpListener, String)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/metrics", listener.local_addr()?);
    Ok((listener, url))
}

impl Pipeline {
    async fn start(brokers: &str, base_url: &str, prefix: &str) -> anyhow::Result<Pipeline> {
        let name = unused_database_name();
        let database = fresh_database(base_url, &name).await?.connection_string();
        let topics = TopicArgs::with_prefix(prefix);
        let stop = CancellationToken::new();
        let topic_flags = [
            "--cart-events-topic".to_owned(),
            topics.cart_events_topic.clone(),
            "--customers-topic".into(),
            topics.customers_topic.clone(),
            "--products-topic".into(),
            topics.products_topic.clone(),
        ];
        let mut consumer_args: Vec<String> = ["cartflow-consumer", "--kafka-brokers", brokers]
            .map(String::from)
            .to_vec();
        consumer_args.extend(topic_flags.iter().cloned());
        consumer_args.extend(
            [
                "--database-url",
                &database,
                "--group",
                &name,
                "--skip-migrations",
                "--log",
                "warn",
            ]
            .map(String::from),
        );
        consumer_args.extend(["--dlq-topic".into(), topics.dlq_topic.clone()]);
        let consumer = cartflow_consumer::Cli::try_parse_from(consumer_args)?.run;
        let (listener, stored) = ops().await?;
        watch(
            "consumer",
            cartflow_consumer::run(consumer, listener, stop.clone()),
        );

        let projector = cartflow_projector::Cli::try_parse_from([
            "cartflow-projector",
            "--database-url",
            &database,
            "--skip-migrations",
        ])?
        .run;
        let (listener, projected) = ops().await?;
        watch(
            "projector",
            cartflow_projector::run(projector, listener, stop.clone()),
        );

        let mut gateway_args: Vec<String> = [
            "cartflow-gateway",
            "--kafka-brokers",
            brokers,
            "--database-url",
            &database,
            "--listen",
            "127.0.0.1:0",
        ]
        .map(String::from)
        .to_vec();
        gateway_args.extend(topic_flags.iter().cloned());
        let gateway = cartflow_gateway::Config::try_parse_from(gateway_args)?;
        let (listener, pushed) = ops().await?;
        let gateway = cartflow_gateway::Gateway::start(gateway, listener, stop.clone()).await?;
        let ws = format!("ws://{}/ws", gateway.addr);
        // One client that reads everything, so the gateway has somebody to push to.
        let (mut socket, _) = tokio_tungstenite::connect_async(ws).await?;
        tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} });
        Ok(Pipeline {
            stop,
            pages: [stored, projected, pushed.clone(), pushed],
            topics,
            database,
        })
    }

    async fn scrape_all(&self) -> anyhow::Result<Vec<Buckets>> {
        let mut all = Vec::new();
        for (page, stage) in self.pages.iter().zip(STAGES) {
            all.push(scrape(page, stage).await?);
        }
        Ok(all)
    }

    /// The gateway's analytics reads (`cartflow_gateway_snapshot_seconds`).
    async fn scrape_reads(&self) -> anyhow::Result<Buckets> {
        scrape_histogram(&self.pages[2], "cartflow_gateway_snapshot_seconds", "").await
    }

    /// Waits until every stage has seen `events` events (or `within` passes).
    async fn settle(&self, events: f64, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let all = self.scrape_all().await?;
            // "pushed" counts one observation per delta, not per event.
            let behind = [0, 1, 3]
                .iter()
                .any(|i| all[*i].last().map_or(0.0, |(_, n)| *n) < events);
            if !behind || Instant::now() > deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(self, brokers: &str) {
        self.stop.cancel();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let args = KafkaArgs {
            brokers: brokers.to_owned(),
        };
        for t in [
            &self.topics.cart_events_topic,
            &self.topics.customers_topic,
            &self.topics.products_topic,
            &self.topics.dlq_topic,
        ] {
            crate::producer::drop_topic(&args, t).await;
        }
        if let Ok(url) = self.database.parse() {
            let _ = db::drop_database(&url).await;
        }
    }
}

/// The shipped shopper profile with the same traffic at every hour and on every weekday,
/// written to a file for the producer's `--profile`. The producer's `--rate` is the average over
/// a week, and a minute of the shipped profile at night runs at a fifth of it: the 20/s rate
/// published 4-16 events/s depending on the hour of the run. Flat, each rate is what it says.
fn flat_profile() -> anyhow::Result<std::path::PathBuf> {
    let shipped = include_str!("../../producer/profiles/default.toml");
    let flat = flatten(&flatten(shipped, "hour_weights", 24)?, "weekday_weights", 7)?;
    cartflow_producer::profile::Profile::parse(&flat)
        .context("the flattened profile no longer parses")?;
    let path =
        std::env::temp_dir().join(format!("cartflow-bench-flat-{}.toml", std::process::id()));
    std::fs::write(&path, flat)?;
    Ok(path)
}

/// `text` with the array `key = [...]` replaced by `n` ones.
fn flatten(text: &str, key: &str, n: usize) -> anyhow::Result<String> {
    let start = text
        .find(&format!("\n{key} = ["))
        .with_context(|| format!("{key} in the shipped profile"))?
        + 1;
    let end = start + text[start..].find(']').context("the end of the array")? + 1;
    let ones = vec!["1.0"; n].join(", ");
    Ok(format!(
        "{}{key} = [{ones}]{}",
        &text[..start],
        &text[end..]
    ))
}

/// The pipeline at `rate` events/s for `seconds`: one result per stage, each named
/// `"{rate}/s {stage}"`, with the stage's p50 and p99.
pub(crate) async fn run(
    brokers: &str,
    base_url: &str,
    prefix: &str,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Vec<StageResult>> {
    let pipeline = Pipeline::start(brokers, base_url, prefix).await?;
    let before = pipeline.scrape_all().await?;
    let reads_before = pipeline.scrape_reads().await?;
    let events = rate * seconds;
    let t = &pipeline.topics;
    let profile = flat_profile()?;
    let producer = cartflow_producer::Config::try_parse_from([
        "cartflow-producer",
        "--kafka-brokers",
        brokers,
        "--cart-events-topic",
        &t.cart_events_topic,
        "--customers-topic",
        &t.customers_topic,
        "--products-topic",
        &t.products_topic,
        "--catalogue-url",
        "http://127.0.0.1:9/",
        "--catalogue-timeout-secs",
        "1",
        "--seed",
        "1",
        "--rate",
        &rate.to_string(),
        "--count",
        &events.to_string(),
        "--profile",
        &profile.to_string_lossy(),
        "live",
    ])?;
    let started = Instant::now();
    let (listener, _) = ops().await?;
    let sampling = CancellationToken::new();
    let loaded = tokio::spawn(sample(
        brokers.to_owned(),
        base_url.to_owned(),
        LOADED_GAP,
        sampling.clone(),
    ));
    let report = cartflow_producer::run(producer, listener, CancellationToken::new()).await;
    sampling.cancel();
    let _ = std::fs::remove_file(&profile);
    let report = report?;
    let elapsed = started.elapsed();
    let mut loaded = loaded.await??;
    loaded.name = format!("{rate}/s floor under load");
    pipeline
        .settle(report.events as f64, Duration::from_secs(60))
        .await?;
    let after = pipeline.scrape_all().await?;
    // Not a stage of its own: what `pushed` waits for beyond `projected` is about two of these.
    // On stderr: a stage's stdout is its results, read by the runner.
    let reads = pipeline.scrape_reads().await?;
    eprintln!(
        "  {rate}/s: the gateway read the analytics {:.0} times, p50 {:.1} ms, p99 {:.1} ms",
        reads.last().map_or(0.0, |(_, n)| *n) - reads_before.last().map_or(0.0, |(_, n)| *n),
        quantile_ms(&reads_before, &reads, 0.50),
        quantile_ms(&reads_before, &reads, 0.99),
    );
    let mut results: Vec<StageResult> = STAGES
        .iter()
        .enumerate()
        .map(|(i, stage)| StageResult {
            name: format!("{rate}/s {stage}"),
            events: report.events,
            seconds: elapsed.as_secs_f64(),
            events_per_second: report.events as f64 / elapsed.as_secs_f64(),
            latency_p50_ms: quantile_ms(&before[i], &after[i], 0.50),
            latency_p99_ms: quantile_ms(&before[i], &after[i], 0.99),
            peak_rss_mib: crate::report::peak_rss_mib(),
            kib_per_connection: None,
            delivered: None,
            busy_core_seconds: None,
        })
        .collect();
    results.push(loaded);
    pipeline.stop(brokers).await;
    Ok(results)
}

/// Between two round trips of the floor sampled under load: ten a second, a load of its own
/// too small to count.
const LOADED_GAP: Duration = Duration::from_millis(100);

/// The floor: `samples` one-message produce→consume round trips through the producer's own
/// publisher and a plain consumer, each followed by one one-row commit; their sums.
pub(crate) async fn floor(
    brokers: &str,
    base_url: &str,
    samples: u64,
) -> anyhow::Result<StageResult> {
    let until = CancellationToken::new();
    round_trips(brokers, base_url, samples, Duration::ZERO, &until).await
}

/// The floor's round trips `gap` apart until `until` is cancelled.
async fn sample(
    brokers: String,
    base_url: String,
    gap: Duration,
    until: CancellationToken,
) -> anyhow::Result<StageResult> {
    round_trips(&brokers, &base_url, u64::MAX, gap, &until).await
}

/// At most `samples` round trips, `gap` apart, until `until` is cancelled.
async fn round_trips(
    brokers: &str,
    base_url: &str,
    samples: u64,
    gap: Duration,
    until: &CancellationToken,
) -> anyhow::Result<StageResult> {
    let name = format!("bench-floor-{}", uuid::Uuid::new_v4().simple());
    let args = KafkaArgs {
        brokers: brokers.to_owned(),
    };
    let topic = TopicSpec {
        name: name.clone(),
        partitions: 1,
        compacted: false,
    };
    kafka::ensure_topics(&args, &[topic]).await?;
    let consumer: StreamConsumer = kafka::client_config(&args, "cartflow-bench-floor")
        .set("group.id", &name)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()?;
    consumer.subscribe(&[&name])?;
    let mut publisher = Publisher::new(&args, ProducerMetrics::new(&prometheus::Registry::new()))?;
    let db_name = unused_database_name();
    let url = fresh_database(base_url, &db_name).await?;
    let client = db::connect(&url).await?;
    client
        .batch_execute("CREATE TABLE floor (id BIGINT PRIMARY KEY, at TIMESTAMPTZ)")
        .await?;
    let mut stream = consumer.stream();
    let mut floors = Vec::new();
    let started = Instant::now();
    for i in 0..samples {
        if until.is_cancelled() {
            break;
        }
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        let sent = Instant::now();
        publisher
            .send(&name, &i.to_string(), i.to_string().as_bytes(), None)
            .await?;
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), stream.next())
                .await
                .context("a round trip within 30 s")?
                .context("the consumer stream ended")??;
            if m.payload() == Some(i.to_string().as_bytes()) {
                break;
            }
        }
        client
            .execute("INSERT INTO floor VALUES ($1, now())", &[&(i as i64)])
            .await?;
        floors.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    let elapsed = started.elapsed();
    // The clients go before their topic does: a client left alive logs the topic's deletion
    // at ERROR ("desired partition is no longer available"), which is no fault.
    drop(stream);
    drop(consumer);
    drop(publisher);
    drop(client);
    let _ = db::drop_database(&url).await;
    crate::producer::drop_topic(&args, &name).await;
    anyhow::ensure!(
        !floors.is_empty(),
        "no round trip of the floor was measured"
    );
    floors.sort_by(f64::total_cmp);
    let at = |q: f64| floors[((floors.len() - 1) as f64 * q).round() as usize];
    Ok(StageResult {
        name: "floor: produce→consume + one commit".into(),
        events: floors.len() as u64,
        seconds: elapsed.as_secs_f64(),
        events_per_second: floors.len() as f64 / elapsed.as_secs_f64(),
        latency_p50_ms: at(0.5),
        latency_p99_ms: at(0.99),
        peak_rss_mib: crate::report::peak_rss_mib(),
        kib_per_connection: None,
        delivered: None,
        busy_core_seconds: None,
    })
}
