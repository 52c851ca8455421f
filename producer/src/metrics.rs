//! Every metric the producer exports, named in one place.

use cartflow_common::metrics::Registrar;
use prometheus::{Histogram, IntCounter, IntCounterVec, Registry};

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
        let r = Registrar(registry);
        Metrics {
            events: r.counter_vec(
                "cartflow_producer_events_total",
                "Cart events delivered, by action.",
                "action",
                &[],
            ),
            delivery_errors: r.counter(
                "cartflow_producer_delivery_errors_total",
                "Messages the broker did not acknowledge.",
            ),
            send_seconds: r.histogram(
                "cartflow_producer_send_seconds",
                "Time from enqueue to broker acknowledgement.",
                prometheus::exponential_buckets(0.0005, 2.0, 14).expect("valid buckets"),
            ),
            catalogue_fetch: r.counter_vec(
                "cartflow_producer_catalogue_fetch_total",
                "Catalogue loads, by outcome.",
                "outcome",
                &[],
            ),
            catalogue_skipped: r.counter(
                "cartflow_producer_catalogue_skipped_total",
                "Catalogue entries skipped as invalid.",
            ),
        }
    }
}
