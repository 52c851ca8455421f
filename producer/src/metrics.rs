//! Every metric the producer exports, named in one place.

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
        let m = Metrics {
            events: IntCounterVec::new(
                Opts::new(
                    "cartflow_producer_events_total",
                    "Cart events delivered, by action.",
                ),
                &["action"],
            )
            .expect("valid metric"),
            delivery_errors: IntCounter::new(
                "cartflow_producer_delivery_errors_total",
                "Messages the broker did not acknowledge.",
            )
            .expect("valid metric"),
            send_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "cartflow_producer_send_seconds",
                    "Time from enqueue to broker acknowledgement.",
                )
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14).expect("valid buckets")),
            )
            .expect("valid metric"),
            catalogue_fetch: IntCounterVec::new(
                Opts::new(
                    "cartflow_producer_catalogue_fetch_total",
                    "Catalogue loads, by outcome.",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            catalogue_skipped: IntCounter::new(
                "cartflow_producer_catalogue_skipped_total",
                "Catalogue entries skipped as invalid.",
            )
            .expect("valid metric"),
        };
        for c in [
            Box::new(m.events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.delivery_errors.clone()),
            Box::new(m.send_seconds.clone()),
            Box::new(m.catalogue_fetch.clone()),
            Box::new(m.catalogue_skipped.clone()),
        ] {
            // Registering twice (two producers in one test process) is harmless.
            let _ = registry.register(c);
        }
        m
    }
}
