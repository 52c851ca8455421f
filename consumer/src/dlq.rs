//! The dead-letter topic: every message the consumer cannot store is published there with its
//! original key, bytes and headers, plus headers that say where it came from and why.
//!
//! The topic is a copy for other systems to read; the message itself is already kept whole in
//! `dead_letters`, in the same transaction as the batch. So nothing the topic refuses may stop
//! the partition: a record too large for it is published trimmed (header `cartflow.trimmed`
//! gives the original sizes), and one it refuses outright is not published, counted and
//! recorded as such. Each letter is sent once per batch; its row says when it is settled, so a
//! redelivery does not publish it twice.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tracing::warn;

use crate::batch::DeadLetter;

/// Header names on dead-letter records.
pub const HEADER_TOPIC: &str = "cartflow.original.topic";
pub const HEADER_PARTITION: &str = "cartflow.original.partition";
pub const HEADER_OFFSET: &str = "cartflow.original.offset";
pub const HEADER_ERROR_CLASS: &str = "cartflow.error.class";
pub const HEADER_ERROR_MESSAGE: &str = "cartflow.error.message";
/// On a trimmed record: "key=N,payload=M", the original sizes in bytes.
pub const HEADER_TRIMMED: &str = "cartflow.trimmed";

/// How much of a key or payload a trimmed record keeps: well inside Kafka's 1 MiB default
/// record limit, with room for the headers.
pub const TRIM_TO_BYTES: usize = 64 * 1024;
/// The error message header is cut to this many bytes on every record.
const MAX_ERROR_HEADER: usize = 4096;

/// How long the dead-letter producer tries to deliver one record (librdkafka retries
/// transient failures within it) before the letter counts as not published.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// What became of one letter's copy on the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Published,
    Trimmed,
    NotPublished,
}

impl Outcome {
    /// The `dead_letters.dlq_status` value and the metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Published => "published",
            Outcome::Trimmed => "trimmed",
            Outcome::NotPublished => "not_published",
        }
    }

    pub const ALL: [Outcome; 3] = [Outcome::Published, Outcome::Trimmed, Outcome::NotPublished];
}

/// Publishes each letter once and waits for the broker's answers. Never fails: a letter the
/// topic will not take comes back `NotPublished`.
pub async fn publish(
    producer: &FutureProducer,
    topic: &str,
    letters: &[(i64, DeadLetter)],
) -> Vec<(i64, Outcome)> {
    let mut sent = Vec::with_capacity(letters.len());
    for (id, letter) in letters {
        sent.push((*id, letter, send(producer, topic, letter, false).await));
    }
    let mut outcomes = Vec::with_capacity(letters.len());
    for (id, letter, delivery) in sent {
        let outcome = match settle(delivery).await {
            Ok(()) => Outcome::Published,
            Err(e) if too_large(&e) => {
                match settle(send(producer, topic, letter, true).await).await {
                    Ok(()) => Outcome::Trimmed,
                    Err(e) => refused(letter, topic, &e),
                }
            }
            Err(e) => refused(letter, topic, &e),
        };
        outcomes.push((id, outcome));
    }
    outcomes
}

fn refused(letter: &DeadLetter, topic: &str, e: &KafkaError) -> Outcome {
    let o = &letter.raw.origin;
    warn!(
        error = %e, dlq_topic = topic, topic = %o.topic, partition = o.partition, offset = o.offset,
        "The dead-letter topic refused a record; the message is kept whole in dead_letters only."
    );
    Outcome::NotPublished
}

fn too_large(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize)
    )
}

async fn settle(delivery: Result<DeliveryFuture, KafkaError>) -> Result<(), KafkaError> {
    match delivery?.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}

/// Enqueues one record, waiting while the producer's queue is full. An error here (a record
/// over the client's own size limit, say) is the record's, not the producer's.
async fn send(
    producer: &FutureProducer,
    topic: &str,
    d: &DeadLetter,
    trim: bool,
) -> Result<DeliveryFuture, KafkaError> {
    let raw = &d.raw;
    // Borrowed, not copied: librdkafka copies the bytes into its own queue anyway.
    let limit = if trim { TRIM_TO_BYTES } else { usize::MAX };
    let (key, payload) = (
        cut(raw.key.as_deref(), limit),
        cut(raw.payload.as_deref(), limit),
    );
    let partition = raw.origin.partition.to_string();
    let offset = raw.origin.offset.to_string();
    let error = truncate(&d.error, MAX_ERROR_HEADER);
    let sizes = format!(
        "key={},payload={}",
        raw.key.as_ref().map_or(0, Vec::len),
        raw.payload.as_ref().map_or(0, Vec::len)
    );
    let mut headers = OwnedHeaders::new();
    if !trim {
        for (name, value) in &raw.headers {
            headers = headers.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
    }
    for (name, value) in [
        (HEADER_TOPIC, raw.origin.topic.as_str()),
        (HEADER_PARTITION, &partition),
        (HEADER_OFFSET, &offset),
        (HEADER_ERROR_CLASS, d.reason),
        (HEADER_ERROR_MESSAGE, error),
    ] {
        headers = headers.insert(Header {
            key: name,
            value: Some(value),
        });
    }
    if trim {
        headers = headers.insert(Header {
            key: HEADER_TRIMMED,
            value: Some(&sizes),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(payload) = payload {
        record = record.payload(payload);
    }
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// At most `limit` bytes of `bytes`, borrowed: librdkafka copies them into its own queue.
fn cut(bytes: Option<&[u8]>, limit: usize) -> Option<&[u8]> {
    bytes.map(|v| &v[..v.len().min(limit)])
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
