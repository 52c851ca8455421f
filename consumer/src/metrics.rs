//! Every metric the consumer exports, named in one place.

use cartflow_common::latency::{Latency, Stage};
use cartflow_common::metrics::{Registrar, io_seconds_buckets};
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

#[derive(Debug, Clone)]
pub struct Metrics {
    /// Messages read from Kafka, by topic kind (`cart_events`, `customers`, `products`).
    pub consumed: IntCounterVec,
    /// Events newly stored.
    pub stored: IntCounter,
    /// Events skipped because their event_id was already stored.
    pub duplicates: IntCounter,
    /// Messages dead-lettered, by reason.
    pub dead_letters: IntCounterVec,
    /// Messages per written batch.
    pub batch_size: Histogram,
    /// Time to write and commit one batch.
    pub write_seconds: Histogram,
    /// Batch writes that failed and were retried.
    pub write_retries: IntCounter,
    /// The broker's high watermark minus the group's committed offset, by topic kind and
    /// partition (read from the broker, see `lag.rs`).
    pub lag: IntGaugeVec,
    /// Assigned partitions with lag whose committed offset has not moved for --stall-secs.
    pub stalled_partitions: IntGauge,
    /// Dead letters' copies on the dead-letter topic, by outcome (`published`, `trimmed`,
    /// `not_published`).
    pub dlq_records: IntCounterVec,
    /// Messages whose single-object header carries a legacy fingerprint (apache-avro 0.21's,
    /// written by cartflow before it used the specification's); they are read as usual.
    pub legacy_fingerprints: IntCounter,
    /// Publish-to-stored latency of each stored event.
    pub latency: Latency,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Self {
        let r = Registrar(registry);
        let outcomes = crate::dlq::Outcome::ALL.map(crate::dlq::Outcome::as_str);
        Metrics {
            consumed: r.counter_vec(
                "cartflow_consumer_consumed_total",
                "Messages read from Kafka.",
                "topic",
                &[],
            ),
            stored: r.counter("cartflow_consumer_stored_total", "Events newly stored."),
            duplicates: r.counter(
                "cartflow_consumer_duplicates_total",
                "Events skipped because their event_id was already stored.",
            ),
            dead_letters: r.counter_vec(
                "cartflow_consumer_dead_letters_total",
                "Messages dead-lettered.",
                "reason",
                &[],
            ),
            batch_size: r.histogram(
                "cartflow_consumer_batch_size",
                "Messages per written batch.",
                prometheus::exponential_buckets(1.0, 4.0, 9).expect("valid buckets"),
            ),
            write_seconds: r.histogram(
                "cartflow_consumer_write_seconds",
                "Time to write and commit one batch.",
                io_seconds_buckets(),
            ),
            write_retries: r.counter(
                "cartflow_consumer_write_retries_total",
                "Batch writes that failed and were retried.",
            ),
            lag: r.gauge_vec(
                "cartflow_consumer_lag_messages",
                "The broker's high watermark minus the group's committed offset.",
                &["topic", "partition"],
            ),
            stalled_partitions: r.gauge(
                "cartflow_consumer_stalled_partitions",
                "Assigned partitions with lag whose committed offset has not moved for --stall-secs.",
            ),
            dlq_records: r.counter_vec(
                "cartflow_consumer_dlq_records_total",
                "Dead letters' copies on the dead-letter topic, by outcome.",
                "outcome",
                &outcomes,
            ),
            legacy_fingerprints: r.counter(
                "cartflow_consumer_legacy_fingerprints_total",
                "Messages read whose single-object header carries a legacy fingerprint.",
            ),
            latency: Latency::new(registry, Stage::Stored),
        }
    }
}
