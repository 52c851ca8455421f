//! The dead-letter topic: every message the consumer cannot store is published there with its
//! original key and bytes, and headers that say where it came from and why.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::Error;
use crate::batch::DeadLetter;

/// Header names on dead-letter records.
pub const HEADER_TOPIC: &str = "cartflow.original.topic";
pub const HEADER_PARTITION: &str = "cartflow.original.partition";
pub const HEADER_OFFSET: &str = "cartflow.original.offset";
pub const HEADER_ERROR_CLASS: &str = "cartflow.error.class";
pub const HEADER_ERROR_MESSAGE: &str = "cartflow.error.message";

/// Publishes `letters` to `topic` and waits for every acknowledgement.
pub async fn publish(
    producer: &FutureProducer,
    topic: &str,
    letters: &[&DeadLetter],
) -> Result<(), Error> {
    let mut deliveries = Vec::with_capacity(letters.len());
    for d in letters {
        let partition = d.origin.partition.to_string();
        let offset = d.origin.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: HEADER_TOPIC,
                value: Some(&d.origin.topic),
            })
            .insert(Header {
                key: HEADER_PARTITION,
                value: Some(&partition),
            })
            .insert(Header {
                key: HEADER_OFFSET,
                value: Some(&offset),
            })
            .insert(Header {
                key: HEADER_ERROR_CLASS,
                value: Some(d.reason),
            })
            .insert(Header {
                key: HEADER_ERROR_MESSAGE,
                value: Some(&d.error),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(key) = &d.key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = &d.payload {
            record = record.payload(payload.as_slice());
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(Error::Kafka(e)),
            }
        }
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(Error::Kafka(e)),
            Err(_) => return Err(Error::Kafka(KafkaError::Canceled)),
        }
    }
    Ok(())
}
