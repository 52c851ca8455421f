//! Every metric the projector exports, named in one place.

use cartflow_common::latency::{Latency, Stage};
use cartflow_common::metrics::{Registrar, io_seconds_buckets};
use prometheus::{Histogram, IntCounter, IntGauge, Registry};

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
        }
    }
}
