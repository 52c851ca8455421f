//! The Kafka client context: rebalances, logged, with an optional rewind on assignment.
//!
//! The rewind is off by default (Kafka and Redpanda need none). tansu 0.6 answers a fetch from an offset inside a record batch with the *next* batch, so a
//! member that takes over a partition from a committed offset in mid-batch would skip the rest
//! of that batch. Starting each assigned partition up to `rewind` messages before its committed
//! offset lands on or before the batch's start (producer batches hold at most 10,000
//! messages); what is read twice is skipped by `event_id`.

use std::time::Duration;

use rdkafka::bindings::rd_kafka_resp_err_t as RDKafkaRespErr;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{info, warn};

#[derive(Debug)]
pub(crate) struct Context {
    rewind: i64,
}

impl Context {
    pub(crate) fn new(rewind: i64) -> Self {
        Context { rewind }
    }

    /// `assigned` with each committed offset moved back by `rewind`.
    fn rewound(
        &self,
        consumer: &BaseConsumer<Self>,
        assigned: &TopicPartitionList,
    ) -> TopicPartitionList {
        let committed = match consumer.committed_offsets(assigned.clone(), Duration::from_secs(10))
        {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "Could not read committed offsets; starting where the group left off.");
                return assigned.clone();
            }
        };
        let mut out = TopicPartitionList::new();
        for e in committed.elements() {
            let offset = match e.offset() {
                Offset::Offset(o) => Offset::Offset((o - self.rewind).max(0)),
                other => other,
            };
            if let Err(err) = out.add_partition_offset(e.topic(), e.partition(), offset) {
                warn!(error = %err, "Could not rewind a partition.");
                out.add_partition(e.topic(), e.partition());
            }
        }
        out
    }

    fn describe(list: &TopicPartitionList) -> Vec<String> {
        list.elements()
            .iter()
            .map(|e| format!("{}[{}]", e.topic(), e.partition()))
            .collect()
    }
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    /// librdkafka's eager rebalance, with the rewind applied to what is assigned.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let list = if self.rewind > 0 {
                    self.rewound(consumer, tpl)
                } else {
                    tpl.clone()
                };
                let r = consumer.assign(&list);
                self.post_rebalance(consumer, &Rebalance::Assign(&list));
                r
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let r = consumer.unassign();
                self.post_rebalance(consumer, &Rebalance::Revoke(tpl));
                r
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                self.post_rebalance(consumer, &Rebalance::Error(KafkaError::Rebalance(code)));
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            warn!(error = %e, "Applying a rebalance failed.");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                info!(partitions = ?Self::describe(list), "Partitions assigned.");
            }
            Rebalance::Revoke(list) => {
                info!(partitions = ?Self::describe(list), "Partitions revoked.");
            }
            Rebalance::Error(e) => warn!(error = %e, "Rebalance failed."),
        }
    }
}
