//! Kafka client settings, a reachability check with a useful error, and topic creation.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tracing::info;

use crate::Error;
use crate::config::KafkaArgs;

/// The settings every client shares.
pub fn client_config(args: &KafkaArgs, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.brokers)
        .set("client.id", client_id)
        // Keep librdkafka's own log lines quiet; failures reach us as errors.
        .set("log_level", "3");
    config
}

/// A client context for readers that ask for `enable.partition.eof`: librdkafka also reports
/// each end of partition as a client error, which the default context logs at ERROR; this one
/// drops those and logs every other client error as the default does.
#[derive(Debug, Clone, Copy, Default)]
pub struct EndOfPartitionExpected;

impl ClientContext for EndOfPartitionExpected {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!(target: "librdkafka", "librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for EndOfPartitionExpected {}

/// Fails with instructions when no broker answers within `timeout`.
pub async fn check_reachable(args: &KafkaArgs, timeout: Duration) -> Result<(), Error> {
    let config = client_config(args, "cartflow-probe");
    let brokers = args.brokers.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create()?;
        consumer
            .fetch_metadata(None, timeout)
            .map(|_| ())
            .map_err(|e| Error::KafkaUnreachable {
                brokers,
                reason: e.to_string(),
            })
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(e)))?
}

/// A topic cartflow needs.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Compacted topics keep the latest record per key (products, customers).
    pub compacted: bool,
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn ensure_topics(args: &KafkaArgs, topics: &[TopicSpec]) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(args, "cartflow-admin").create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let topic = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(1));
            if t.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(name) => info!(topic = %name, "Created topic."),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::CreateTopic {
                    topic: name,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}
