//! The contract with an independent Avro implementation, fastavro (tests/python/avro_peer.py),
//! through the real broker, registry and PostgreSQL, in both directions: events fastavro writes
//! in single-object and Confluent framing, as CartEvent v1, v2 and a test-only v3 with one more
//! optional field, are stored field for field; the events the producer writes, with and
//! without a registry, are read by fastavro.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use cartflow_common::kafka;
use cartflow_common::registry::{self, Compatibility, Registry};
use cartflow_schemas::{Action, CartEvent, Money, SchemaRef};
use cartflow_tests::{
    FAKESTORE_PRODUCTS, TestEnv, any_port, expected_event_ids, register, registry_url,
    serve_catalogue, wait_until,
};
use chrono::{TimeZone, Utc};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/avro_peer.py");
const V3: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/cart_event_v3.avsc");

fn avsc(schema: SchemaRef) -> String {
    let file = match schema {
        SchemaRef::CartEventV1 => "cart_event_v1",
        SchemaRef::CartEventV2 => "cart_event_v2",
        other => panic!("{other} is not used here"),
    };
    format!("{}/../schemas/avro/{file}.avsc", env!("CARGO_MANIFEST_DIR"))
}

/// Runs the fastavro peer with `args`, `input` on its standard input; its output lines.
fn peer(args: &[&str], input: &str) -> Vec<String> {
    let mut child = Command::new("python3")
        .arg(PEER)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    // Written from a thread: the peer answers line by line, and a full stdout pipe would
    // otherwise stop it reading while this side is still writing.
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("python3");
    writer.join().expect("writer").expect("write");
    assert!(
        out.status.success(),
        "the fastavro peer failed: {}\n(deploy/local/test.sh installs fastavro)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Event `n`, with every field set; `gift` is the v3 field.
fn event(n: u8) -> (CartEvent, Option<&'static str>) {
    let event = CartEvent {
        event_id: Uuid::from_u128(0x6f1c_2a4e_93b1_4c1e_9a55_2f7f_0d7c_1b00 + u128::from(n)),
        customer_id: 40 + i64::from(n),
        product_id: i64::from(n),
        product_title: format!("Product {n} – “quoted”, ünïcode"),
        product_price: Money::from_cents(1_000 + i64::from(n) * 101),
        product_image: format!("https://fakestoreapi.com/img/{n}.jpg"),
        action: [
            Action::AddToCart,
            Action::RemoveFromCart,
            Action::PurchaseCart,
        ][usize::from(n) % 3],
        description: format!("event {n}"),
        timestamp: Utc
            .timestamp_millis_opt(1_764_460_800_123 + i64::from(n) * 1_000)
            .single()
            .expect("time"),
        session_id: Some(format!("s-{n}")),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        ip_address: Some(format!("2001:db8::{n}").parse().expect("ip")),
    };
    (event, Some("for you"))
}

/// `event` as the peer's JSON record.
fn record(event: &CartEvent, gift: Option<&str>) -> Value {
    json!({
        "event_id": event.event_id.to_string(),
        "customer_id": event.customer_id,
        "product_id": event.product_id,
        "product_title": event.product_title,
        "product_price": event.product_price.to_string(),
        "product_image": event.product_image,
        "action": event.action.as_str(),
        "description": event.description,
        "timestamp": event.timestamp.timestamp_millis(),
        "session_id": event.session_id,
        "user_agent": event.user_agent,
        "ip_address": event.ip_address.map(|ip| ip.to_string()),
        "gift_message": gift,
    })
}

fn unhex(line: &str) -> Vec<u8> {
    (0..line.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&line[i..i + 2], 16).expect("hex"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_fastavro_writes_in_both_framings_and_three_versions_are_stored_field_for_field() {
    let registry = Registry::new(&registry_url()).expect("registry client");
    let env = TestEnv::new().await;
    let topic = env.topics.cart_events_topic.clone();
    kafka::ensure_topics(
        &env.kafka(),
        &[kafka::TopicSpec {
            name: topic.clone(),
            partitions: 1,
            compacted: false,
        }],
    )
    .await
    .expect("topic");
    let subject = registry::value_subject(&topic);
    let v1_text = std::fs::read_to_string(avsc(SchemaRef::CartEventV1)).expect("v1");
    let id1 = register(&registry, &subject, &v1_text)
        .await
        .expect("register v1");
    registry
        .set_compatibility(&subject, Compatibility::Backward)
        .await
        .expect("compatibility");
    let id2 = register(&registry, &subject, SchemaRef::CartEventV2.avsc())
        .await
        .expect("register v2");
    let id3 = register(
        &registry,
        &subject,
        &std::fs::read_to_string(V3).expect("v3"),
    )
    .await
    .expect("register v3");

    // (framing, schema file, id, whether the event's v2 fields survive).
    let v1 = avsc(SchemaRef::CartEventV1);
    let v2 = avsc(SchemaRef::CartEventV2);
    let (id1, id2, id3) = (id1.to_string(), id2.to_string(), id3.to_string());
    let cases: [(&[&str], bool); 5] = [
        (&["write", &v1, "single-object"], false),
        (&["write", &v2, "single-object"], true),
        (&["write", &v1, "confluent", &id1], false),
        (&["write", &v2, "confluent", &id2], true),
        (&["write", V3, "confluent", &id3], true),
    ];
    let producer: FutureProducer = kafka::client_config(&env.kafka(), "test")
        .create()
        .expect("producer");
    let mut expected = Vec::new();
    for (n, (args, has_v2_fields)) in cases.iter().enumerate() {
        let (event, gift) = event(n as u8);
        let lines = peer(args, &format!("{}\n", record(&event, gift)));
        producer
            .send(
                FutureRecord::to(&topic)
                    .key(&event.customer_id.to_string())
                    .payload(&unhex(&lines[0])),
                Duration::from_secs(10),
            )
            .await
            .expect("send");
        expected.push((event, *has_v2_fields, args[2..].join(" ")));
    }

    let mut config = env.consumer_config();
    config.registry.schema_registry_url = Some(registry_url());
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(cartflow_consumer::run(
        config,
        any_port().await,
        stop.clone(),
    ));
    wait_until(
        "fastavro's five events",
        Duration::from_secs(60),
        || async { env.count("SELECT count(*) FROM events").await == 5 },
    )
    .await;
    stop.cancel();
    consumer
        .await
        .expect("consumer task")
        .expect("the consumer exits cleanly");
    assert_eq!(env.count("SELECT count(*) FROM dead_letters").await, 0);

    let client = env.client().await;
    for (event, has_v2_fields, how) in expected {
        let row = client
            .query_one(
                "SELECT customer_id, product_id, product_title, product_price::text, \
                 product_image, action, description, \
                 (extract(epoch FROM \"timestamp\") * 1000)::bigint, session_id, user_agent, \
                 host(ip_address) FROM events WHERE event_id = $1",
                &[&event.event_id],
            )
            .await
            .unwrap_or_else(|e| panic!("{how}: the event is stored ({e})"));
        assert_eq!(row.get::<_, i64>(0), event.customer_id, "{how}");
        assert_eq!(row.get::<_, i64>(1), event.product_id, "{how}");
        assert_eq!(row.get::<_, String>(2), event.product_title, "{how}");
        assert_eq!(
            row.get::<_, String>(3),
            event.product_price.to_string(),
            "{how}"
        );
        assert_eq!(row.get::<_, String>(4), event.product_image, "{how}");
        assert_eq!(row.get::<_, String>(5), event.action.as_str(), "{how}");
        assert_eq!(row.get::<_, String>(6), event.description, "{how}");
        assert_eq!(
            row.get::<_, i64>(7),
            event.timestamp.timestamp_millis(),
            "{how}"
        );
        let v2_fields = (
            row.get::<_, Option<String>>(8),
            row.get::<_, Option<String>>(9),
            row.get::<_, Option<String>>(10),
        );
        if has_v2_fields {
            assert_eq!(
                v2_fields,
                (
                    event.session_id.clone(),
                    event.user_agent.clone(),
                    event.ip_address.map(|ip| ip.to_string())
                ),
                "{how}"
            );
        } else {
            assert_eq!(v2_fields, (None, None, None), "{how}: v1 has none");
        }
    }
    env.cleanup().await;
}

/// Every cart event on `topic` (all partitions), as the broker holds them.
fn all_payloads(env: &TestEnv, topic: &str, count: usize) -> Vec<Vec<u8>> {
    let consumer: BaseConsumer = kafka::client_config(&env.kafka(), "test-peek")
        .set("group.id", format!("peek-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut payloads = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while payloads.len() < count && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            payloads.push(m.payload().expect("payload").to_vec());
        }
    }
    assert_eq!(payloads.len(), count, "every message of {topic}");
    payloads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_the_producer_writes_are_read_by_fastavro_in_both_framings() {
    const EVENTS: u64 = 300;
    const CUSTOMERS: u32 = 20;
    let catalogue_url = serve_catalogue(200, FAKESTORE_PRODUCTS).await;
    for through_registry in [false, true] {
        let env = TestEnv::new().await;
        let mut config = env.backfill_config(&catalogue_url, CUSTOMERS, EVENTS);
        config.registry.schema_registry_url = through_registry.then(registry_url);
        cartflow_producer::run(config, any_port().await, CancellationToken::new())
            .await
            .expect("producer run");
        let topic = &env.topics.cart_events_topic;
        let hex: String = all_payloads(&env, topic, EVENTS as usize)
            .iter()
            .map(|p| p.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
            .collect();
        let lines = peer(&["read", &avsc(SchemaRef::CartEventV2)], &hex);
        // The id the registry gave v2 under this topic's subject (registering again returns it).
        let registered = if through_registry {
            let registry = Registry::new(&registry_url()).expect("registry client");
            let subject = registry::value_subject(topic);
            Some(
                register(&registry, &subject, SchemaRef::CartEventV2.avsc())
                    .await
                    .expect("register v2"),
            )
        } else {
            None
        };
        let mut ids = HashSet::new();
        for line in &lines {
            let read: BTreeMap<String, Value> = serde_json::from_str(line).expect("json");
            let meta = &read["meta"];
            assert_eq!(meta["trailing_bytes"], 0, "{line}");
            if let Some(id) = registered {
                assert_eq!(meta["framing"], "confluent", "{line}");
                assert_eq!(meta["id"], id, "{line}");
            } else {
                assert_eq!(meta["framing"], "single-object", "{line}");
                assert_eq!(meta["fingerprint_ok"], true, "{line}");
            }
            let record = &read["record"];
            assert!(
                record["product_price"]
                    .as_str()
                    .is_some_and(|p| p.contains('.'))
            );
            assert!(record["session_id"].as_str().is_some(), "{line}");
            ids.insert(Uuid::parse_str(record["event_id"].as_str().expect("id")).expect("uuid"));
        }
        assert!(
            ids == expected_event_ids(CUSTOMERS, EVENTS),
            "fastavro reads exactly the published events ({} framing)",
            if through_registry {
                "Confluent"
            } else {
                "single-object"
            }
        );
        env.cleanup().await;
    }
}
