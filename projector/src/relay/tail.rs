//! Recovery: which outbox rows are already on the topic. Reads the end of every partition
//! with `read_committed` (aborted writes of a fenced relay are invisible) for the highest
//! outbox `seq` in the message headers, and marks every unpublished row up to it.

use std::collections::HashMap;
use std::time::Duration;

use cartflow_common::config::KafkaArgs;
use cartflow_common::kafka::{self, EndOfPartitionExpected};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_postgres::Client;

use super::SEQ_HEADER;
use crate::Error;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Messages read back from each partition's end at first; doubled while only aborted
/// messages and transaction markers are found.
const FIRST_WINDOW: i64 = 64;

type Reader = BaseConsumer<EndOfPartitionExpected>;

/// Marks the rows a previous relay published but did not mark. Returns how many.
pub(super) async fn recover(client: &Client, args: &KafkaArgs, topic: &str) -> Result<u64, Error> {
    let config = kafka::client_config(args, "cartflow-relay-recovery");
    let topic = topic.to_owned();
    let highest = tokio::task::spawn_blocking(move || highest_seq(config, &topic))
        .await
        .map_err(|e| Error::Common(std::io::Error::other(e).into()))??;
    let Some(highest) = highest else {
        return Ok(0);
    };
    let marked = client
        .execute(
            "UPDATE outcomes.outbox SET published_at = now() \
             WHERE published_at IS NULL AND seq <= $1",
            &[&highest],
        )
        .await?;
    Ok(marked)
}

/// The highest outbox `seq` among the committed messages of `topic`.
fn highest_seq(mut config: rdkafka::ClientConfig, topic: &str) -> Result<Option<i64>, Error> {
    let consumer: Reader = config
        .set("group.id", "cartflow-relay-recovery")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create_with_context(EndOfPartitionExpected)?;
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    // Each partition's (low watermark, high watermark, current window).
    let mut todo: HashMap<i32, (i64, i64, i64)> = HashMap::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), TIMEOUT)?;
        todo.insert(p.id(), (low, high, FIRST_WINDOW));
    }
    let mut highest = None;
    while !todo.is_empty() {
        let starts: HashMap<i32, i64> = todo
            .iter()
            .map(|(p, (low, high, window))| (*p, (high - window).max(*low)))
            .collect();
        let found = read_from(&consumer, topic, &starts)?;
        // Done with a partition once a committed message was found or its start reached.
        todo.retain(|p, (low, _, window)| {
            let seq = found.get(p).copied().flatten();
            highest = highest.max(seq);
            *window *= 2;
            seq.is_none() && starts[p] > *low
        });
    }
    Ok(highest)
}

/// The highest `seq` in each partition's committed messages from its start offset to its end.
fn read_from(
    consumer: &Reader,
    topic: &str,
    starts: &HashMap<i32, i64>,
) -> Result<HashMap<i32, Option<i64>>, Error> {
    let mut list = TopicPartitionList::new();
    for (p, start) in starts {
        list.add_partition_offset(topic, *p, Offset::Offset(*start))?;
    }
    consumer.assign(&list)?;
    let mut highest: HashMap<i32, Option<i64>> = HashMap::new();
    let mut open: Vec<i32> = starts.keys().copied().collect();
    while !open.is_empty() {
        match consumer.poll(TIMEOUT) {
            None => {
                return Err(Error::Common(
                    std::io::Error::other(format!(
                        "reading the end of {topic} timed out after {TIMEOUT:?}"
                    ))
                    .into(),
                ));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => open.retain(|o| *o != p),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                let seq = m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == SEQ_HEADER)
                        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<i64>().ok())
                });
                let entry = highest.entry(m.partition()).or_default();
                *entry = (*entry).max(seq);
            }
        }
    }
    Ok(highest)
}
