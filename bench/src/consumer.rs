//! The consumer stage: drain events already on the topic into PostgreSQL, beside a raw text
//! COPY of the same rows into the same indexed table.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use cartflow_common::DatabaseUrl;
use cartflow_common::config::{KafkaArgs, TopicArgs};
use cartflow_common::db;
use cartflow_common::kafka::{self, TopicSpec};
use cartflow_producer::metrics::Metrics as ProducerMetrics;
use cartflow_producer::publish::Publisher;
use cartflow_schemas::{CartEvent, Codec};
use clap::Parser;
use futures::SinkExt;
use tokio_util::sync::CancellationToken;

use crate::producer::simulator;
use crate::report::StageResult;

/// The database `name` on `base_url`'s server.
pub(crate) fn database(base_url: &str, name: &str) -> anyhow::Result<DatabaseUrl> {
    Ok(base_url.parse::<DatabaseUrl>()?.with_dbname(name))
}

/// A fresh, migrated database on `base_url`'s server; returns its URL.
pub(crate) async fn fresh_database(base_url: &str, name: &str) -> anyhow::Result<DatabaseUrl> {
    let url = database(base_url, name)?;
    db::ensure_database(&url).await?;
    db::migrate(&url).await?;
    Ok(url)
}

/// Publishes `events` simulated events to fresh topics named with `prefix`.
pub(crate) async fn prepare(brokers: &str, prefix: &str, events: u64) -> anyhow::Result<()> {
    let args = KafkaArgs {
        brokers: brokers.into(),
    };
    let topics = TopicArgs::with_prefix(prefix);
    kafka::ensure_topics(
        &args,
        &[
            TopicSpec {
                name: topics.cart_events_topic.clone(),
                partitions: 6,
                compacted: false,
            },
            TopicSpec {
                name: topics.customers_topic.clone(),
                partitions: 1,
                compacted: true,
            },
            TopicSpec {
                name: topics.products_topic.clone(),
                partitions: 1,
                compacted: true,
            },
        ],
    )
    .await?;
    let mut publisher = Publisher::new(&args, ProducerMetrics::new(&prometheus::Registry::new()))?;
    let codec = Codec::single_object();
    let mut sim = simulator();
    for _ in 0..events {
        let e = sim.next_event();
        publisher
            .send(
                &topics.cart_events_topic,
                &e.key(),
                &codec.encode(&e)?,
                None,
            )
            .await?;
    }
    publisher.flush(Duration::from_secs(120)).await?;
    Ok(())
}

/// Deletes the prepared topics: the broker keeps them in memory.
pub(crate) async fn cleanup(brokers: &str, prefix: &str) -> anyhow::Result<()> {
    let args = KafkaArgs {
        brokers: brokers.into(),
    };
    let t = TopicArgs::with_prefix(prefix);
    for name in [
        &t.cart_events_topic,
        &t.customers_topic,
        &t.products_topic,
        &t.dlq_topic,
    ] {
        crate::producer::drop_topic(&args, name).await;
    }
    Ok(())
}

/// `members` consumers of one group drain the prepared topic into a fresh database.
pub(crate) async fn cartflow(
    brokers: &str,
    base_url: &str,
    prefix: &str,
    events: u64,
    members: u32,
) -> anyhow::Result<StageResult> {
    let name = format!("cartflow_bench_{}", uuid::Uuid::new_v4().simple());
    let url = fresh_database(base_url, &name).await?;
    let connection = url.connection_string();
    // Counted from the consumers' NOTIFY payloads (rows stored per batch): polling
    // count(*) would take a core from the database being measured.
    let (client, mut stored_batches) = db::listen(&url, cartflow_common::channels::EVENTS).await?;
    let stop = CancellationToken::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..members {
        let t = TopicArgs::with_prefix(prefix);
        let cli = cartflow_consumer::Cli::try_parse_from([
            "cartflow-consumer",
            "--kafka-brokers",
            brokers,
            "--database-url",
            &connection,
            "--cart-events-topic",
            &t.cart_events_topic,
            "--customers-topic",
            &t.customers_topic,
            "--products-topic",
            &t.products_topic,
            "--dlq-topic",
            &t.dlq_topic,
            "--group",
            &name,
            "--skip-migrations",
            "--log",
            "warn",
        ])?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        tasks.push(tokio::spawn(cartflow_consumer::run(
            cli.run,
            listener,
            stop.clone(),
        )));
    }
    let mut latency = Vec::new();
    let mut stored = 0u64;
    let deadline = tokio::time::sleep(Duration::from_secs(900));
    tokio::pin!(deadline);
    while stored < events {
        tokio::select! {
            n = stored_batches.recv() => {
                let n = n.ok_or_else(|| anyhow::anyhow!("the LISTEN connection closed"))?;
                stored += n.map_or(0, |n| n.stored);
            }
            () = &mut deadline => anyhow::bail!("not drained after 15 minutes ({stored} stored)"),
        }
    }
    let elapsed = started.elapsed();
    // Time from the start of the drain to each row's commit, as a latency profile.
    for q in [0.5, 0.99] {
        let row = client
            .query_one(
                "SELECT ((percentile_cont($1) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at))) \
                 - extract(epoch FROM min(stored_at)))::float8 * 1000 FROM events",
                &[&q],
            )
            .await?;
        latency.push(row.get::<_, Option<f64>>(0).unwrap_or_default());
    }
    stop.cancel();
    for t in tasks {
        t.await??;
    }
    drop(client);
    let _ = db::drop_database(&url).await;
    Ok(StageResult::measured(
        format!("cartflow consumer × {members}"),
        events,
        elapsed,
        (latency[0], latency[1]),
    ))
}

/// A raw text COPY of the same rows into the same indexed table.
pub(crate) async fn baseline(base_url: &str, events: u64) -> anyhow::Result<StageResult> {
    let name = format!("cartflow_bench_{}", uuid::Uuid::new_v4().simple());
    let url = fresh_database(base_url, &name).await?;
    let mut sim = simulator();
    let rows: Vec<CartEvent> = (0..events).map(|_| sim.next_event()).collect();
    let text = copy_text(&rows, 0);
    let client = db::connect(&url).await?;
    let started = Instant::now();
    let sink = client.copy_in(COPY_EVENTS).await?;
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from(text)).await?;
    let copied = sink.finish().await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(copied == events, "copied {copied} of {events}");
    drop(client);
    let _ = db::drop_database(&url).await;
    Ok(StageResult::measured(
        "raw text COPY (baseline)",
        events,
        elapsed,
        (0.0, 0.0),
    ))
}

/// The COPY statement [`copy_text`] rows are for.
pub(crate) const COPY_EVENTS: &str = "COPY events (event_id, customer_id, product_id, \
    product_title, product_price, product_image, action, description, \"timestamp\", session_id, \
    user_agent, ip_address, kafka_partition, kafka_offset) FROM STDIN";

/// `events` as COPY text rows, spread over six partitions from offset `first`.
pub(crate) fn copy_text(events: &[CartEvent], first: usize) -> String {
    let mut text = String::with_capacity(events.len() * 400);
    for (i, e) in events.iter().enumerate() {
        let i = first + i;
        let opt = |v: Option<&str>| v.map_or("\\N".to_owned(), escape);
        let _ = writeln!(
            text,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            e.event_id,
            e.customer_id,
            e.product_id,
            escape(&e.product_title),
            e.product_price,
            escape(&e.product_image),
            e.action,
            escape(&e.description),
            e.timestamp.to_rfc3339(),
            opt(e.session_id.as_deref()),
            opt(e.user_agent.as_deref()),
            e.ip_address.map_or("\\N".to_owned(), |ip| ip.to_string()),
            i % 6,
            i / 6,
        );
    }
    text
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}
