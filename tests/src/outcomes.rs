//! Helpers for the cart-outcome tests: carts of every fate written straight into the log,
//! and the outcomes topic read back to its end.

use std::collections::HashSet;
use std::time::Duration;

use cartflow_common::config::KafkaArgs;
use cartflow_common::kafka::{self, EndOfPartitionExpected};
use cartflow_schemas::{CartOutcome, Codec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::TestEnv;

/// Inserts carts `first..first + n` in one transaction: cart i starts at minute i after
/// 2026-10-01 and its events are one minute apart. By `i % 5`: bought (add, add, purchase),
/// abandoned with one item left (add, add, remove), emptied (add, remove), abandoned with
/// one item (add), and left with two items (add, add). Sessions are `c{i}`, customers
/// `i % 97 + 1`, prices 9.99 to 695.00.
pub async fn insert_carts(client: &Client, first: i64, n: i64) {
    client
        .execute(
            "INSERT INTO events (event_id, customer_id, product_id, product_title, \
                 product_price, action, \"timestamp\", session_id, kafka_partition, kafka_offset) \
             SELECT gen_random_uuid(), i % 97 + 1, (i + j) % 20 + 1, 'product', \
                 (ARRAY[9.99, 24.99, 109.95, 695.00])[(i + j) % 4 + 1], a, \
                 timestamptz '2026-10-01' + (i + j) * interval '1 minute', 'c' || i, 0, i * 10 + j \
             FROM generate_series($1::int8, $1::int8 + $2::int8 - 1) i, \
                 LATERAL unnest(CASE i % 5 \
                     WHEN 0 THEN ARRAY['add_to_cart', 'add_to_cart', 'purchase_cart'] \
                     WHEN 1 THEN ARRAY['add_to_cart', 'add_to_cart', 'remove_from_cart'] \
                     WHEN 2 THEN ARRAY['add_to_cart', 'remove_from_cart'] \
                     WHEN 3 THEN ARRAY['add_to_cart'] \
                     ELSE ARRAY['add_to_cart', 'add_to_cart'] END) WITH ORDINALITY AS x(a, j)",
            &[&first, &n],
        )
        .await
        .expect("insert carts");
}

/// Every committed outcome on `topic`, in partition order, read with `read_committed` to the
/// end of every partition.
pub async fn read_outcomes(args: &KafkaArgs, topic: &str) -> Vec<CartOutcome> {
    read_from(args, topic, "test-outcome-reader", Offset::Beginning).await
}

/// The committed outcomes on `topic` that consumer group `group` has not committed yet: what
/// a member of it that starts now would read (all of them when it never committed).
pub async fn left_for_group(args: &KafkaArgs, topic: &str, group: &str) -> Vec<CartOutcome> {
    read_from(args, topic, group, Offset::Stored).await
}

/// Reads `topic` as `group` without committing, from `start` in every partition to its end.
async fn read_from(args: &KafkaArgs, topic: &str, group: &str, start: Offset) -> Vec<CartOutcome> {
    let config = kafka::client_config(args, "test-outcome-reader");
    let (topic, group) = (topic.to_owned(), group.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut config = config;
        let consumer: BaseConsumer<EndOfPartitionExpected> = config
            .set("group.id", &group)
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create_with_context(EndOfPartitionExpected)
            .expect("consumer");
        let timeout = Duration::from_secs(10);
        let md = consumer
            .fetch_metadata(Some(&topic), timeout)
            .expect("metadata");
        let mut list = TopicPartitionList::new();
        let mut open = HashSet::new();
        for p in md.topics()[0].partitions() {
            list.add_partition_offset(&topic, p.id(), start)
                .expect("partition");
            open.insert(p.id());
        }
        consumer.assign(&list).expect("assign");
        let codec = Codec::single_object();
        let mut out = Vec::new();
        while !open.is_empty() {
            match consumer.poll(Duration::from_secs(30)) {
                None => panic!("reading {topic} timed out"),
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                Some(Ok(m)) => out.push(
                    codec
                        .decode::<CartOutcome>(m.payload().expect("payload"))
                        .expect("a CartOutcome"),
                ),
            }
        }
        out
    })
    .await
    .expect("reader thread")
}

/// The outcomes topic of `env`.
pub fn topic(env: &TestEnv) -> String {
    format!("t{}-cart-outcomes", env.id)
}

/// The relay's command line (after the program name) for `env`'s database and outcomes
/// topic, with a transactional id of its own (tests share the broker).
pub fn relay_flags(env: &TestEnv) -> Vec<String> {
    [
        "relay",
        "--database-url",
        &env.database_url,
        "--kafka-brokers",
        &env.brokers,
        "--outcomes-topic",
        &topic(env),
        "--transactional-id",
        &format!("test-relay-{}", env.id),
    ]
    .map(String::from)
    .to_vec()
}

/// `cartflow-projector relay` with [`relay_flags`], in this process.
pub fn spawn_relay(
    env: &TestEnv,
    ops: TcpListener,
    stop: &CancellationToken,
) -> JoinHandle<Result<(), cartflow_projector::Error>> {
    use clap::Parser;
    let mut args = vec!["cartflow-projector".to_owned()];
    args.extend(relay_flags(env));
    let cli = cartflow_projector::Cli::try_parse_from(args).expect("relay flags");
    let Some(cartflow_projector::Command::Relay(args)) = cli.command else {
        panic!("a relay command");
    };
    tokio::spawn(cartflow_projector::relay::run(args, ops, stop.clone()))
}

/// Whether every outcome in the outbox is published.
pub async fn all_published(client: &Client) -> bool {
    client
        .query_one(
            "SELECT count(*) FROM outcomes.outbox WHERE published_at IS NULL",
            &[],
        )
        .await
        .expect("the outbox")
        .get::<_, i64>(0)
        == 0
}
