//! The schema registry end to end, against a real one (Apicurio Registry's Confluent API, which
//! deploy/local/test.sh builds and starts; CARTFLOW_TEST_REGISTRY_URL names it): the producer
//! registers its schemas under the topics' value subjects with BACKWARD compatibility and
//! writes the Confluent framing; the consumer looks the ids up and stores exactly what was
//! published; a newer writer's schema (v3, one optional field more) is read with the field
//! skipped; an id the registry does not know is dead-lettered with that reason.

use std::time::Duration;

use cartflow_common::kafka;
use cartflow_common::registry::{self, Registry};
use cartflow_common::retry::transient_retried;
use cartflow_schemas::{Codec, ConfluentIds, SchemaRef};
use cartflow_tests::{
    FAKESTORE_PRODUCTS, TestEnv, any_port, cart_event, expected_event_ids, register, registry_url,
    serve_catalogue, stored_event_ids, wait_until,
};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const EVENTS: u64 = 2_000;
const CUSTOMERS: u32 = 40;
/// The test-only version 3 of CartEvent: version 2 plus an optional `gift_message`.
const CART_EVENT_V3: &str = include_str!("../data/cart_event_v3.avsc");

/// The registry, checked to answer: these tests fail, not skip, without it.
async fn registry() -> Registry {
    let registry = Registry::new(&registry_url()).expect("registry client");
    if let Err(e) = registry.schema(1).await {
        panic!(
            "{e}\n(the registry tests need a schema registry: run them with deploy/local/test.sh, \
             which starts one)"
        );
    }
    registry
}

/// Publishes the catalogue, customers and EVENTS cart events through the registry.
async fn publish_through_registry(env: &TestEnv) {
    let catalogue_url = serve_catalogue(200, FAKESTORE_PRODUCTS).await;
    let mut config = env.backfill_config(&catalogue_url, CUSTOMERS, EVENTS);
    config.registry.schema_registry_url = Some(registry_url());
    let report = cartflow_producer::run(config, any_port().await, CancellationToken::new())
        .await
        .expect("producer run");
    assert_eq!(report.events, EVENTS);
}

type ConsumerTask = JoinHandle<Result<(), cartflow_consumer::Error>>;

/// A consumer of `env` that looks schema ids up in the registry.
async fn start_consumer(env: &TestEnv) -> (CancellationToken, ConsumerTask) {
    let mut config = env.consumer_config();
    config.registry.schema_registry_url = Some(registry_url());
    let stop = CancellationToken::new();
    let task = tokio::spawn(cartflow_consumer::run(
        config,
        any_port().await,
        stop.clone(),
    ));
    (stop, task)
}

async fn stop_consumer(stop: CancellationToken, task: ConsumerTask) {
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the consumer stops within 15 s")
        .expect("consumer task")
        .expect("the consumer exits cleanly");
}

/// The first message's payload on partition 0 of `topic`.
fn first_payload(env: &TestEnv, topic: &str) -> Vec<u8> {
    let consumer: BaseConsumer = kafka::client_config(&env.kafka(), "test-peek")
        .set("group.id", format!("peek-{}", env.id))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    consumer.assign(&assignment).expect("assign");
    for _ in 0..100 {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            return m.payload().expect("payload").to_vec();
        }
    }
    panic!("no message on {topic}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_registers_its_schemas_and_the_consumer_reads_through_the_registry() {
    let registry = registry().await;
    let env = TestEnv::new().await;
    publish_through_registry(&env).await;

    // Every topic's subject holds the schema it is written with, under BACKWARD.
    let t = &env.topics;
    for (topic, schema) in [
        (&t.cart_events_topic, SchemaRef::CartEventV2),
        (&t.products_topic, SchemaRef::Product),
        (&t.customers_topic, SchemaRef::Customer),
    ] {
        let subject = registry::value_subject(topic);
        let id = register(&registry, &subject, schema.avsc())
            .await
            .expect("the subject holds the schema already");
        let payload = first_payload(&env, topic);
        assert_eq!(payload[0], 0, "{topic} carries the Confluent framing");
        assert_eq!(
            u32::from_be_bytes(payload[1..5].try_into().expect("id")),
            id,
            "{topic}'s messages name the registered id"
        );
        // BACKWARD: a new required field (no default) cannot read the data already written.
        let mut breaking: serde_json::Value =
            serde_json::from_str(schema.avsc()).expect("schema JSON");
        breaking["fields"]
            .as_array_mut()
            .expect("fields")
            .push(serde_json::json!({"name": "required_later", "type": "long"}));
        match register(&registry, &subject, &breaking.to_string()).await {
            Err(cartflow_common::Error::RegistryRefused { status: 409, .. }) => {}
            other => panic!("{subject} accepted a backward-incompatible schema: {other:?}"),
        }
    }

    let (stop, task) = start_consumer(&env).await;
    env.wait_for_events(EVENTS as i64, Duration::from_secs(60))
        .await;
    wait_until(
        "the customers and products",
        Duration::from_secs(30),
        || async {
            env.count("SELECT count(*) FROM customers").await == i64::from(CUSTOMERS)
                && env.count("SELECT count(*) FROM products").await == 20
        },
    )
    .await;
    stop_consumer(stop, task).await;
    assert_eq!(
        env.count("SELECT count(*) FROM events").await,
        EVENTS as i64
    );
    assert!(stored_event_ids(&env).await == expected_event_ids(CUSTOMERS, EVENTS));
    assert_eq!(env.count("SELECT count(*) FROM dead_letters").await, 0);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_writer_schema_is_read_with_its_new_field_skipped_and_an_unknown_id_is_dead_lettered()
 {
    let registry = registry().await;
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
    let v2 = register(&registry, &subject, SchemaRef::CartEventV2.avsc())
        .await
        .expect("register v2");
    transient_retried(
        "Setting compatibility",
        Duration::from_secs(30),
        &CancellationToken::new(),
        || registry.set_compatibility(&subject, registry::Compatibility::Backward),
    )
    .await
    .expect("compatibility");
    // Adding an optional field is a BACKWARD-compatible change: the registry takes it.
    let v3 = register(&registry, &subject, CART_EVENT_V3)
        .await
        .expect("register v3");
    assert_ne!(v2, v3);

    // A v3 body is the v2 body followed by the added field: union branch 1, a 4-byte string.
    let mut ids = ConfluentIds::default();
    ids.insert(v2, SchemaRef::CartEventV2);
    let mut event = cart_event(7, 12_345);
    event.session_id = Some("s-7".into());
    let v2_message = Codec::confluent(ids).encode(&event).expect("encode");
    let mut v3_message = vec![0];
    v3_message.extend_from_slice(&v3.to_be_bytes());
    v3_message.extend_from_slice(&v2_message[5..]);
    v3_message.extend_from_slice(&[0x02, 0x08]);
    v3_message.extend_from_slice(b"gift");
    // An id no registry has handed out.
    let mut unknown = v2_message.clone();
    unknown[1..5].copy_from_slice(&999_999_u32.to_be_bytes());

    let producer: FutureProducer = kafka::client_config(&env.kafka(), "test")
        .create()
        .expect("producer");
    for payload in [&v3_message, &unknown] {
        producer
            .send(
                FutureRecord::to(&topic).key("7").payload(payload),
                Duration::from_secs(10),
            )
            .await
            .expect("send");
    }

    let (stop, task) = start_consumer(&env).await;
    wait_until(
        "the v3 event and the dead letter",
        Duration::from_secs(60),
        || async {
            env.count("SELECT count(*) FROM events").await == 1
                && env.count("SELECT count(*) FROM dead_letters").await == 1
        },
    )
    .await;
    stop_consumer(stop, task).await;

    let client = env.client().await;
    let row = client
        .query_one(
            "SELECT event_id, product_title, product_price::text, action, session_id \
             FROM events",
            &[],
        )
        .await
        .expect("the event");
    assert_eq!(row.get::<_, uuid::Uuid>(0), event.event_id);
    assert_eq!(row.get::<_, String>(1), event.product_title);
    assert_eq!(row.get::<_, String>(2), "123.45");
    assert_eq!(row.get::<_, String>(3), "add_to_cart");
    assert_eq!(row.get::<_, Option<String>>(4).as_deref(), Some("s-7"));
    let reason: String = client
        .query_one("SELECT reason FROM dead_letters", &[])
        .await
        .expect("the dead letter")
        .get(0);
    assert_eq!(reason, "unknown_schema_id");
    env.cleanup().await;
}

/// Forwards every connection on `listener` to `target`: the registry, reachable at a new
/// address from the moment this starts.
async fn forward(listener: tokio::net::TcpListener, target: String) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_holds_messages_back_instead_of_dead_lettering_them() {
    let registry = registry().await;
    let env = TestEnv::new().await;
    let topic = env.topics.cart_events_topic.clone();
    let subject = registry::value_subject(&topic);
    let id = register(&registry, &subject, SchemaRef::CartEventV2.avsc())
        .await
        .expect("register v2");
    let mut ids = ConfluentIds::default();
    ids.insert(id, SchemaRef::CartEventV2);
    let event = cart_event(9, 2_500);
    let message = Codec::confluent(ids).encode(&event).expect("encode");
    let producer: FutureProducer = kafka::client_config(&env.kafka(), "test")
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::to(&topic).key("9").payload(&message),
            Duration::from_secs(10),
        )
        .await
        .expect("send");

    // The consumer's registry address: nothing listens there yet (a real refused connection).
    let port = any_port().await.local_addr().expect("port").port();
    let real = reqwest::Url::parse(&registry_url()).expect("registry URL");
    let mut config = env.consumer_config();
    config.registry.schema_registry_url = Some(format!("http://127.0.0.1:{port}{}", real.path()));
    let stop = CancellationToken::new();
    let task = tokio::spawn(cartflow_consumer::run(
        config,
        any_port().await,
        stop.clone(),
    ));
    // While the registry is away the message is neither stored nor dead-lettered. (A fixed
    // wait: what is checked is that nothing happens.)
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(env.count("SELECT count(*) FROM events").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM dead_letters").await, 0);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the registry's new address");
    let target = format!(
        "{}:{}",
        real.host_str().expect("host"),
        real.port_or_known_default().expect("port")
    );
    let proxy = tokio::spawn(forward(listener, target));
    env.wait_for_events(1, Duration::from_secs(60)).await;
    stop_consumer(stop, task).await;
    proxy.abort();
    assert_eq!(env.count("SELECT count(*) FROM dead_letters").await, 0);
    assert!(stored_event_ids(&env).await.contains(&event.event_id));
    env.cleanup().await;
}
