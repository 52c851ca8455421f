//! The consume loop: decode, filter, deliver, commit.

use std::sync::Arc;
use std::time::Duration;

use cartflow_common::kafka;
use cartflow_common::metrics::Registrar;
use cartflow_common::ops::OpsServer;
use cartflow_common::retry::Backoff;
use cartflow_schemas::{CartOutcome, Codec};
use prometheus::IntCounterVec;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Config, Error, Recovery};

/// Runs until `shutdown` is cancelled, serving `/metrics` and `/healthz` on `ops_listener`.
pub async fn run(
    config: Config,
    ops_listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let ops = OpsServer::start(ops_listener, &shutdown);
    let r = Registrar(&ops.registry);
    let outcomes = r.counter_vec(
        "cartflow_recover_outcomes_total",
        "Cart outcomes read, by what was done with them.",
        "result",
        &["sent", "ignored", "undecodable"],
    );
    kafka::check_reachable(&config.kafka, Duration::from_secs(10)).await?;
    let consumer: StreamConsumer = kafka::client_config(&config.kafka, "cartflow-recover")
        .set("group.id", &config.group)
        // At least once, committed in bulk: an offset is stored once its message is handled,
        // and librdkafka commits the stored offsets every second and when the consumer
        // closes. A commit per message (23,000 in a week's backfill) flooded the group
        // coordinator: commits timed out, the session expired, and a stop waited on them.
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()?;
    if !topic_exists(&config, &shutdown).await? {
        return Ok(());
    }
    consumer.subscribe(&[&config.topic.outcomes_topic])?;
    ops.health.set_ready(true);
    info!(topic = %config.topic.outcomes_topic, group = %config.group, "Waiting for abandoned carts.");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::Common(std::io::Error::other(e).into()))?;
    let codec = Codec::single_object();
    loop {
        // A backlog keeps recv() ready: yield to the runtime now and then all the same.
        tokio::task::coop::consume_budget().await;
        let received = tokio::select! {
            m = consumer.recv() => m,
            () = shutdown.cancelled() => return Ok(()),
        };
        let message = match received {
            Ok(m) => m,
            // librdkafka retries by itself (a topic the relay has not created yet, a broker
            // away); only a fatal error ends the subscriber.
            Err(e @ KafkaError::MessageConsumptionFatal(_)) => return Err(e.into()),
            Err(e) => {
                warn!(error = %e, "Could not read cart outcomes; retrying.");
                continue;
            }
        };
        let payload = message.payload().unwrap_or_default();
        let result = match codec.decode::<CartOutcome>(payload) {
            Err(e) => {
                warn!(
                    partition = message.partition(),
                    offset = message.offset(),
                    error = %e,
                    "Skipped a message that is not a cart outcome."
                );
                "undecodable"
            }
            Ok(outcome) => match Recovery::of(&outcome, config.min_value) {
                None => "ignored",
                Some(recovery) => {
                    if !deliver(&http, &config, &recovery, &shutdown).await {
                        return Ok(());
                    }
                    "sent"
                }
            },
        };
        count(&outcomes, result);
        consumer.store_offset_from_message(&message)?;
    }
}

/// Waits until `topic` exists: the relay creates it, and may start after the subscriber (a
/// subscription to a missing topic is an error report a minute, not a wait). False when shut
/// down first.
async fn topic_exists(config: &Config, shutdown: &CancellationToken) -> Result<bool, Error> {
    let topic = &config.topic.outcomes_topic;
    let mut announced = false;
    // One client for every look: each would otherwise open its own connections to the brokers.
    let probe: Arc<BaseConsumer> =
        Arc::new(kafka::client_config(&config.kafka, "cartflow-recover").create()?);
    loop {
        let (probe, name) = (probe.clone(), topic.clone());
        let exists = tokio::task::spawn_blocking(move || -> Result<bool, Error> {
            let metadata = probe.fetch_metadata(Some(&name), Duration::from_secs(10))?;
            Ok(metadata
                .topics()
                .iter()
                .any(|t| t.error().is_none() && !t.partitions().is_empty()))
        })
        .await
        .map_err(|e| Error::Common(std::io::Error::other(e).into()))??;
        if exists {
            return Ok(true);
        }
        if !announced {
            info!(%topic, "Waiting for the topic (cartflow-projector relay creates it).");
            announced = true;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return Ok(false),
        }
    }
}

fn count(outcomes: &IntCounterVec, result: &str) {
    outcomes.with_label_values(&[result]).inc();
}

/// Prints the message or POSTs it, retrying a failing webhook until it answers 2xx. False
/// when shut down first (the offset is then not committed, and the message comes again).
async fn deliver(
    http: &reqwest::Client,
    config: &Config,
    recovery: &Recovery,
    shutdown: &CancellationToken,
) -> bool {
    let json = serde_json::to_string(recovery).expect("a recovery message serialises");
    let Some(url) = &config.webhook_url else {
        println!("{json}");
        return true;
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        let sent = http
            .post(url.clone())
            .header("content-type", "application/json")
            .body(json.clone())
            .send()
            .await;
        match sent.map(|r| r.status()) {
            Ok(status) if status.is_success() => return true,
            other => {
                let problem = match other {
                    Ok(status) => format!("answered {status}"),
                    Err(e) => e.to_string(),
                };
                warn!(%url, problem, retry_in = ?backoff.peek(), "The webhook refused a recovery message.");
                if !backoff.wait(shutdown).await {
                    return false;
                }
            }
        }
    }
}
