//! Every metric the producer exports, named in one place.

use cartflow_common::ops::register;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Debug, Clone)]
pub struct Metrics {
    /// Cart events delivered, by action.
    pub events: IntCounterVec,
    /// Messages the broker did not acknowledge (after the client's own retries).
    pub delivery_errors: IntCounter,
    /// Enqueue-to-acknowledgement time.
    pub send_seconds: Histogram,
    /// Catalogue loads, by outcome (`fetched`, `fallback`).
    pub catalogue_fetch: IntCounterVec,
    /// Catalogue entries skipped as invalid.
    pub catalogue_skipped: IntCounter,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Self {
        let r = registry;
        Metrics {
            events: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "cartflow_producer_events_total",
                        "Cart events delivered, by action.",
                    ),
                    &["action"],
                )
                .expect("valid metric"),
            ),
            delivery_errors: register(
                r,
                IntCounter::new(
                    "cartflow_producer_delivery_errors_total",
                    "Messages the broker did not acknowledge.",
                )
                .expect("valid metric"),
            ),
            send_seconds: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "cartflow_producer_send_seconds",
                        "Time from enqueue to broker acknowledgement.",
                    )
                    .buckets(
                        prometheus::exponential_buckets(0.0005, 2.0, 14).expect("valid buckets"),
                    ),
                )
                .expect("valid metric"),
            ),
            catalogue_fetch: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "cartflow_producer_catalogue_fetch_total",
                        "Catalogue loads, by outcome.",
                    ),
                    &["outcome"],
                )
                .expect("valid metric"),
            ),
            catalogue_skipped: register(
                r,
                IntCounter::new(
                    "cartflow_producer_catalogue_skipped_total",
                    "Catalogue entries skipped as invalid.",
                )
                .expect("valid metric"),
            ),
        }
    }
}
