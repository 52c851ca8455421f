//! Every metric the projector exports, named in one place.

use cartflow_common::latency::{Latency, Stage};
use cartflow_common::metrics::{Registrar, io_seconds_buckets};
use cartflow_schemas::OutcomeKind;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::outcome::Decided;

#[derive(Debug, Clone)]
pub struct Metrics {
    /// 1 while this instance holds the writer lock, 0 on standby.
    pub active: IntGauge,
    /// Wake-ups received from the consumer's NOTIFY.
    pub wakeups: IntCounter,
    /// Events applied to the analytics.
    pub events: IntCounter,
    /// Transactions that applied a chunk of the log.
    pub steps: IntCounter,
    /// Time to read, aggregate, write and commit one chunk.
    pub step_seconds: Histogram,
    /// Stored events not yet in the analytics.
    pub lag_events: IntGauge,
    /// Age of the oldest stored event not yet in the analytics.
    pub lag_seconds: prometheus::Gauge,
    /// The latest event time in the analytics, as a Unix time.
    pub watermark_seconds: IntGauge,
    /// Publish-to-projected latency of each applied event.
    pub latency: Latency,
    /// Cart outcomes written to the outbox, by outcome.
    pub decided: IntCounterVec,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Self {
        let r = Registrar(registry);
        Metrics {
            active: r.gauge(
                "cartflow_projector_active",
                "1 while this instance is the active projector.",
            ),
            wakeups: r.counter(
                "cartflow_projector_wakeups_total",
                "Wake-ups received from the consumer's NOTIFY.",
            ),
            events: r.counter(
                "cartflow_projector_events_total",
                "Events applied to the analytics.",
            ),
            steps: r.counter(
                "cartflow_projector_steps_total",
                "Transactions that applied a chunk of the log.",
            ),
            step_seconds: r.histogram(
                "cartflow_projector_step_seconds",
                "Time to read, aggregate, write and commit one chunk of the log.",
                io_seconds_buckets(),
            ),
            lag_events: r.gauge(
                "cartflow_projector_lag_events",
                "Stored events not yet in the analytics.",
            ),
            lag_seconds: r.float_gauge(
                "cartflow_projector_lag_seconds",
                "Age of the oldest stored event not yet in the analytics (0 when current).",
            ),
            watermark_seconds: r.gauge(
                "cartflow_projector_watermark_seconds",
                "The latest event time in the analytics, as a Unix time.",
            ),
            latency: Latency::new(registry, Stage::Projected),
            decided: r.counter_vec(
                "cartflow_outcomes_decided_total",
                "Cart outcomes the projector wrote to the outbox, by outcome.",
                "outcome",
                &OutcomeKind::ALL.map(OutcomeKind::as_str),
            ),
        }
    }

    pub fn count_decided(&self, decided: &Decided) {
        for (kind, n) in &decided.0 {
            self.decided.with_label_values(&[kind.as_str()]).inc_by(*n);
        }
    }
}

/// Every metric the relay exports.
#[derive(Debug, Clone)]
pub struct RelayMetrics {
    /// 1 while this instance is the active relay, 0 on standby.
    pub active: IntGauge,
    /// Outcomes the broker acknowledged, by outcome.
    pub published: IntCounterVec,
    /// Outbox rows found already on the topic at start (a relay died between the broker's
    /// commit and marking them) and marked without publishing again.
    pub recovered: IntCounter,
    /// Outcomes in the outbox not yet published.
    pub backlog: IntGauge,
    /// Age of the oldest outcome not yet published (0 when none).
    pub oldest_seconds: prometheus::Gauge,
    /// Time to publish and mark one batch.
    pub batch_seconds: Histogram,
}

impl RelayMetrics {
    pub fn new(registry: &Registry) -> Self {
        let r = Registrar(registry);
        RelayMetrics {
            active: r.gauge(
                "cartflow_relay_active",
                "1 while this instance is the active outbox relay.",
            ),
            published: r.counter_vec(
                "cartflow_outcomes_published_total",
                "Cart outcomes published to Kafka and acknowledged, by outcome.",
                "outcome",
                &OutcomeKind::ALL.map(OutcomeKind::as_str),
            ),
            recovered: r.counter(
                "cartflow_relay_recovered_total",
                "Outbox rows a previous relay had published but not marked, marked at start.",
            ),
            backlog: r.gauge(
                "cartflow_outbox_backlog",
                "Cart outcomes in the outbox not yet published.",
            ),
            oldest_seconds: r.float_gauge(
                "cartflow_outbox_oldest_seconds",
                "Age of the oldest cart outcome not yet published (0 when none).",
            ),
            batch_seconds: r.histogram(
                "cartflow_relay_batch_seconds",
                "Time to publish one batch of outcomes in a Kafka transaction and mark it.",
                io_seconds_buckets(),
            ),
        }
    }
}
