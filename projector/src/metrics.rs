//! Every metric the projector exports, named in one place.

use cartflow_common::latency::{Latency, Stage};
use cartflow_common::ops::register;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry};

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
    pub fn new(r: &Registry) -> Self {
        let gauge =
            |name: &str, help: &str| register(r, IntGauge::new(name, help).expect("valid metric"));
        let counter = |name: &str, help: &str| {
            register(r, IntCounter::new(name, help).expect("valid metric"))
        };
        Metrics {
            active: gauge(
                "cartflow_projector_active",
                "1 while this instance is the active projector.",
            ),
            wakeups: counter(
                "cartflow_projector_wakeups_total",
                "Wake-ups received from the consumer's NOTIFY.",
            ),
            events: counter(
                "cartflow_projector_events_total",
                "Events applied to the analytics.",
            ),
            steps: counter(
                "cartflow_projector_steps_total",
                "Transactions that applied a chunk of the log.",
            ),
            step_seconds: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "cartflow_projector_step_seconds",
                        "Time to read, aggregate, write and commit one chunk of the log.",
                    )
                    .buckets(
                        prometheus::exponential_buckets(0.001, 2.0, 14).expect("valid buckets"),
                    ),
                )
                .expect("valid metric"),
            ),
            lag_events: gauge(
                "cartflow_projector_lag_events",
                "Stored events not yet in the analytics.",
            ),
            lag_seconds: register(
                r,
                prometheus::Gauge::with_opts(Opts::new(
                    "cartflow_projector_lag_seconds",
                    "Age of the oldest stored event not yet in the analytics (0 when current).",
                ))
                .expect("valid metric"),
            ),
            watermark_seconds: gauge(
                "cartflow_projector_watermark_seconds",
                "The latest event time in the analytics, as a Unix time.",
            ),
            latency: Latency::new(r, Stage::Projected),
        }
    }
}
