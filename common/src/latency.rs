//! The end-to-end latency histogram: seconds from the moment an event was published (its
//! Kafka message timestamp, stamped by the producer) to the moment a stage is done with it.
//!
//! Every service reports into the same metric, `cartflow_event_latency_seconds`, with a
//! `stage` label, so one PromQL expression shows the whole path (see docs/observability.md).
//! Publish time, not the event's own `timestamp`: a backfill stamps events days in the past,
//! and their latency would say nothing about the pipeline.

use chrono::Utc;
use prometheus::{Histogram, HistogramOpts, HistogramVec, Registry};

use crate::metrics::register;

/// The metric's name.
const EVENT_LATENCY: &str = "cartflow_event_latency_seconds";

/// Where an event's latency is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Its row committed by a consumer.
    Stored,
    /// Its effect on the analytics committed by the projector.
    Projected,
    /// The analytics delta that includes it handed to the WebSocket clients (measured for the
    /// oldest event of each projector step).
    Pushed,
    /// The event itself handed to the WebSocket clients in the live feed.
    Feed,
}

impl Stage {
    pub const fn label(self) -> &'static str {
        match self {
            Stage::Stored => "stored",
            Stage::Projected => "projected",
            Stage::Pushed => "pushed",
            Stage::Feed => "feed",
        }
    }
}

/// One stage's series of the histogram.
#[derive(Debug, Clone)]
pub struct Latency(Histogram);

impl Latency {
    /// Registers the histogram in `registry` and returns `stage`'s series.
    pub fn new(registry: &Registry, stage: Stage) -> Self {
        let [latency] = Self::stages(registry, [stage]);
        latency
    }

    /// Registers the histogram in `registry` and returns the series of each of `stages` (a
    /// registry holds the metric once, so a service with two stages asks for both at once).
    pub fn stages<const N: usize>(registry: &Registry, stages: [Stage; N]) -> [Self; N] {
        let vec = HistogramVec::new(
            HistogramOpts::new(
                EVENT_LATENCY,
                "Seconds from an event's publish time (Kafka timestamp) to the end of a stage.",
            )
            // 1 ms to about 12 minutes, each bound √2 times the last. Doubling buckets from
            // 5 ms put a p99 of 11 ms and one of 19 ms in the same bucket: interpolated inside
            // it, a quantile could be off by up to 2x, too coarse to judge a stage against a
            // floor of 7-14 ms (issue #18's "within 2x").
            .buckets(
                prometheus::exponential_buckets(0.001, std::f64::consts::SQRT_2, 40)
                    .expect("valid buckets"),
            ),
            &["stage"],
        )
        .expect("valid metric");
        let vec = register(registry, vec);
        stages.map(|stage| Latency(vec.with_label_values(&[stage.label()])))
    }

    /// Observes one event published at `published_ms` (milliseconds since the epoch), as of
    /// `now_ms`. Clock skew between hosts can make it negative: counted as zero.
    fn observe(&self, published_ms: i64, now_ms: i64) {
        self.0
            .observe((now_ms.saturating_sub(published_ms)).max(0) as f64 / 1000.0);
    }

    /// Observes every event in `published_ms` as of now.
    pub fn observe_all(&self, published_ms: impl IntoIterator<Item = i64>) {
        let now = Utc::now().timestamp_millis();
        for p in published_ms {
            self.observe(p, now);
        }
    }
}
