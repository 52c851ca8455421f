//! The Kafka side: an idempotent producer (acks=all, lz4) with a bounded window of
//! unacknowledged messages.

use std::time::{Duration, Instant};

use cartflow_common::config::KafkaArgs;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tracing::warn;

use crate::Error;
use crate::metrics::Metrics;

/// Unacknowledged messages allowed before sending waits for acknowledgements.
const WINDOW: usize = 20_000;
/// Acknowledgements are recorded at least this often (and every 1024 sends).
const REAP_EVERY: Duration = Duration::from_millis(200);

type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Delivered> + Send>>;

struct Delivered {
    ok: bool,
    action: Option<&'static str>,
    sent_at: Instant,
}

/// A producer and its in-flight deliveries.
pub struct Publisher {
    producer: FutureProducer,
    in_flight: FuturesUnordered<Pending>,
    metrics: Metrics,
    delivered: u64,
    failed: u64,
    sends_since_reap: u32,
    last_reap: Instant,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("in_flight", &self.in_flight.len())
            .field("delivered", &self.delivered)
            .field("failed", &self.failed)
            .finish()
    }
}

impl Publisher {
    pub fn new(kafka: &KafkaArgs, metrics: Metrics) -> Result<Self, Error> {
        let producer: FutureProducer =
            cartflow_common::kafka::client_config(kafka, "cartflow-producer")
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("compression.type", "lz4")
                .set("linger.ms", "5")
                .set("batch.num.messages", "10000")
                .set("message.timeout.ms", "120000")
                .create()?;
        Ok(Publisher {
            producer,
            in_flight: FuturesUnordered::new(),
            metrics,
            delivered: 0,
            failed: 0,
            sends_since_reap: 0,
            last_reap: Instant::now(),
        })
    }

    /// Enqueues one message. Waits for acknowledgements when the window or librdkafka's queue
    /// is full. `action` labels cart events in the metrics.
    pub async fn send(
        &mut self,
        topic: &str,
        key: &str,
        payload: &[u8],
        action: Option<&'static str>,
    ) -> Result<(), Error> {
        // librdkafka's queue and its acknowledgements are not tokio resources: at full speed
        // every await below is ready at once, and a task that never yields starves whatever
        // waits in its worker's LIFO slot (a test's database connection sat 54 minutes there
        // in CI). Spending tokio's budget makes it yield every 128 sends.
        tokio::task::coop::consume_budget().await;
        self.sends_since_reap += 1;
        if self.sends_since_reap >= 1024 || self.last_reap.elapsed() >= REAP_EVERY {
            self.reap_ready();
        }
        while self.in_flight.len() >= WINDOW {
            self.reap_one().await;
        }
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.in_flight.push(track(delivery, action));
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    if !self.reap_one().await {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Records the acknowledgements that have already arrived, so the counters stay current
    /// when the window never fills (a slow live rate).
    fn reap_ready(&mut self) {
        self.sends_since_reap = 0;
        self.last_reap = Instant::now();
        while let Some(Some(d)) = self.in_flight.next().now_or_never() {
            self.record(d);
        }
    }

    /// Waits for one acknowledgement; false when nothing is in flight.
    async fn reap_one(&mut self) -> bool {
        match self.in_flight.next().await {
            Some(d) => {
                self.record(d);
                true
            }
            None => false,
        }
    }

    fn record(&mut self, d: Delivered) {
        if d.ok {
            self.delivered += 1;
            self.metrics
                .send_seconds
                .observe(d.sent_at.elapsed().as_secs_f64());
            if let Some(action) = d.action {
                self.metrics.events.with_label_values(&[action]).inc();
            }
        } else {
            self.failed += 1;
            self.metrics.delivery_errors.inc();
        }
    }

    /// Waits until every enqueued message is acknowledged or `deadline` passes.
    pub async fn flush(&mut self, deadline: Duration) -> Result<(), Error> {
        let until = tokio::time::Instant::now() + deadline;
        while !self.in_flight.is_empty() {
            match tokio::time::timeout_at(until, self.in_flight.next()).await {
                Ok(Some(d)) => self.record(d),
                Ok(None) => break,
                Err(_) => {
                    return Err(Error::Undelivered {
                        undelivered: self.in_flight.len(),
                    });
                }
            }
        }
        // Acknowledged already; this only drains librdkafka's own bookkeeping.
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(1))).await;
        Ok(())
    }

    /// Messages acknowledged by the broker so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Messages the broker refused after the client's retries.
    pub fn failed(&self) -> u64 {
        self.failed
    }
}

fn track(delivery: DeliveryFuture, action: Option<&'static str>) -> Pending {
    let sent_at = Instant::now();
    Box::pin(async move {
        let ok = match delivery.await {
            Ok(Ok(_)) => true,
            Ok(Err((e, _))) => {
                warn!(error = %e, "Delivery failed.");
                false
            }
            Err(_) => false,
        };
        Delivered {
            ok,
            action,
            sent_at,
        }
    })
}
