//! Every metric the projector exports, named in one place.

use cartflow_common::ops::register;
use prometheus::{IntCounter, IntGauge, Registry};

#[derive(Debug, Clone)]
pub struct Metrics {
    /// 1 while this instance holds the writer lock, 0 on standby.
    pub active: IntGauge,
    /// Wake-ups received from the consumer's NOTIFY.
    pub wakeups: IntCounter,
}

impl Metrics {
    pub fn new(r: &Registry) -> Self {
        Metrics {
            active: register(
                r,
                IntGauge::new(
                    "cartflow_projector_active",
                    "1 while this instance is the active projector.",
                )
                .expect("valid metric"),
            ),
            wakeups: register(
                r,
                IntCounter::new(
                    "cartflow_projector_wakeups_total",
                    "Wake-ups received from the consumer's NOTIFY.",
                )
                .expect("valid metric"),
            ),
        }
    }
}
