//! The Kafka client context: consumer lag from librdkafka's statistics, and rebalances logged.

use std::collections::HashMap;

use prometheus::IntGaugeVec;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Statistics, TopicPartitionList};
use tracing::{info, warn};

#[derive(Debug)]
pub(crate) struct Context {
    lag: IntGaugeVec,
    /// Topic name to its low-cardinality label.
    labels: HashMap<String, &'static str>,
}

impl Context {
    pub(crate) fn new(lag: IntGaugeVec, labels: HashMap<String, &'static str>) -> Self {
        Context { lag, labels }
    }

    fn describe(list: &TopicPartitionList) -> Vec<String> {
        list.elements()
            .iter()
            .map(|e| format!("{}[{}]", e.topic(), e.partition()))
            .collect()
    }
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        for (name, topic) in statistics.topics {
            let Some(label) = self.labels.get(&name) else {
                continue;
            };
            for (partition, p) in topic.partitions {
                // Partition -1 is librdkafka's internal queue; -1 lag means not known yet.
                if partition >= 0 && p.consumer_lag >= 0 {
                    self.lag
                        .with_label_values(&[*label, partition.to_string().as_str()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                info!(partitions = ?Self::describe(list), "Partitions assigned.");
            }
            Rebalance::Revoke(list) => {
                for e in list.elements() {
                    if let Some(label) = self.labels.get(e.topic()) {
                        let _ = self
                            .lag
                            .remove_label_values(&[*label, e.partition().to_string().as_str()]);
                    }
                }
                info!(partitions = ?Self::describe(list), "Partitions revoked.");
            }
            Rebalance::Error(e) => warn!(error = %e, "Rebalance failed."),
        }
    }
}
