//! Building a service's metrics: one call per metric, so each service's `metrics.rs` reads as
//! the list of its names and help texts. Names carry their full `cartflow_…` prefix there.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Registers `metric` in `registry` and hands it back. A name registered twice keeps the first
/// (harmless: it only happens when tests start two services on one registry).
pub fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> M {
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

/// Histogram buckets from 1 ms to about 16 s, doubling: the time of one database or broker
/// round trip.
pub fn io_seconds_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 2.0, 14).expect("valid buckets")
}

/// Makes and registers metrics in one registry. A metric's name and labels are constants in
/// the code, so a bad one is a programming error and panics at start-up, in every test.
#[derive(Debug, Clone, Copy)]
pub struct Registrar<'a>(pub &'a Registry);

impl Registrar<'_> {
    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        register(self.0, IntCounter::new(name, help).expect("valid metric"))
    }

    /// A counter with one series per value of `label`; `values` are exported at zero from the
    /// start, so a dashboard shows 0 rather than no data.
    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        label: &str,
        values: &[&str],
    ) -> IntCounterVec {
        let vec = register(
            self.0,
            IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric"),
        );
        for value in values {
            vec.with_label_values(&[value]);
        }
        vec
    }

    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        register(self.0, IntGauge::new(name, help).expect("valid metric"))
    }

    pub fn float_gauge(&self, name: &str, help: &str) -> Gauge {
        register(self.0, Gauge::new(name, help).expect("valid metric"))
    }

    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        register(
            self.0,
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
        )
    }

    pub fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
        register(
            self.0,
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_counters_are_exported_at_zero_and_a_second_registration_keeps_the_first() {
        let registry = Registry::new();
        let r = Registrar(&registry);
        let first = r.counter_vec("cartflow_test_total", "Test.", "reason", &["a", "b"]);
        first.with_label_values(&["a"]).inc();
        let _second = r.counter_vec("cartflow_test_total", "Test.", "reason", &[]);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("encode");
        assert!(
            text.contains("cartflow_test_total{reason=\"a\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cartflow_test_total{reason=\"b\"} 0"),
            "{text}"
        );
    }
}
