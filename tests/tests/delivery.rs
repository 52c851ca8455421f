//! Delivery defects found by hand, each made for real against the broker and PostgreSQL:
//! a dead letter the dead-letter topic refuses, a redelivery of dead letters, rows PostgreSQL
//! refuses, an event_id reused with other content, permanent database errors, a stalled
//! partition that `/healthz` must report, and a lone event left waiting for its batch to fill.

use std::net::SocketAddr;
use std::time::Duration;

use cartflow_common::kafka::{self, TopicSpec};
use cartflow_consumer::dlq;
use cartflow_schemas::{CartEvent, Codec, Customer, Money};
use cartflow_tests::{TestEnv, any_port, cart_event, wait_until};
use chrono::Utc;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn event(customer_id: i64, price_cents: i64) -> CartEvent {
    cart_event(customer_id, price_cents)
}

/// A producer that may send records up to 2 MB (the client's default is 1,000,000 bytes).
fn producer(env: &TestEnv) -> FutureProducer {
    kafka::client_config(&env.kafka(), "test")
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer")
}

async fn send(p: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    p.send(
        FutureRecord::to(topic).key(key).payload(payload),
        Duration::from_secs(10),
    )
    .await
    .expect("send");
}

async fn create_topic(env: &TestEnv, name: &str, partitions: i32) {
    kafka::ensure_topics(
        &env.kafka(),
        &[TopicSpec {
            name: name.to_owned(),
            partitions,
            compacted: false,
        }],
    )
    .await
    .expect("create topic");
}

/// A consumer of `env` started in-process with extra flags; returns its ops address.
async fn start_consumer(
    env: &TestEnv,
    extra: &[&str],
    stop: &CancellationToken,
) -> (SocketAddr, JoinHandle<Result<(), cartflow_consumer::Error>>) {
    use clap::Parser;
    let mut args = vec!["cartflow-consumer".to_owned()];
    args.extend(env.kafka_flags());
    args.extend(["--database-url".to_owned(), env.database_url.clone()]);
    if !extra.contains(&"--group") {
        args.extend(["--group".to_owned(), format!("test-{}", env.id)]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let config = cartflow_consumer::Cli::try_parse_from(args)
        .expect("consumer flags")
        .run;
    let listener = any_port().await;
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(cartflow_consumer::run(config, listener, stop.clone()));
    (addr, task)
}

/// Every record on `topic`, read from the start until `n` have arrived.
async fn read_topic(env: &TestEnv, topic: &str, n: usize) -> Vec<OwnedMessage> {
    let reader: StreamConsumer = kafka::client_config(&env.kafka(), "test-reader")
        .set("group.id", format!("reader-{}", Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    reader.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} records on {topic}", out.len()))
            .expect("receive");
        out.push(m.detach());
    }
    out
}

/// How many records `topic` holds (high watermarks summed; the topic is never compacted).
async fn topic_size(env: &TestEnv, topic: &str) -> i64 {
    let reader: StreamConsumer = kafka::client_config(&env.kafka(), "test-size")
        .create()
        .expect("consumer");
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let md = reader
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        md.topics()[0]
            .partitions()
            .iter()
            .map(|p| {
                let (low, high) = reader
                    .fetch_watermarks(&topic, p.id(), Duration::from_secs(10))
                    .expect("watermarks");
                high - low
            })
            .sum()
    })
    .await
    .expect("task")
}

fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    m.headers()
        .and_then(|h| h.iter().find(|x| x.key == name))
        .and_then(|x| x.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The value of metric `name` whose labels include every `k="v"` of `labels`.
async fn metric(addr: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let body = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    body.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} {labels:?}"))
}

/// The defect: a 1 MiB undecodable value made the dead-letter publish fail forever
/// (`MessageSizeTooLarge`), and nothing after it was stored on any partition; every retry
/// re-published the batch's other dead letters, every restart added `dead_letters` rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_too_large_for_its_topic_stops_nothing_and_is_kept_whole_once() {
    let env = TestEnv::new().await;
    let topic = env.topics.cart_events_topic.clone();
    create_topic(&env, &topic, 6).await;
    let p = producer(&env);
    let codec = Codec::single_object();

    // Over the dead-letter producer's 1,000,000-byte limit, under the broker's 1 MiB.
    let big: Vec<u8> = (0..1_040_000u32).map(|i| (i % 251) as u8).collect();
    send(&p, &topic, "7", &big).await;
    let small_poison: Vec<Vec<u8>> = (0..7u8).map(|i| vec![b'x', i]).collect();
    for (i, bytes) in small_poison.iter().enumerate() {
        send(&p, &topic, &i.to_string(), bytes).await;
    }
    let good: Vec<CartEvent> = (0..100).map(|c| event(c, 1_000 + c)).collect();
    for e in &good {
        let bytes = codec.encode(e).expect("encode");
        send(&p, &topic, &e.customer_id.to_string(), &bytes).await;
    }

    let stop = CancellationToken::new();
    let (addr, task) = start_consumer(&env, &[], &stop).await;
    env.wait_for_events(100, Duration::from_secs(60)).await;
    let letters = 1 + small_poison.len();
    wait_until(
        "every dead letter settled",
        Duration::from_secs(60),
        || async {
            env.count("SELECT count(*) FROM dead_letters WHERE dlq_status IS NOT NULL")
                .await
                == letters as i64
        },
    )
    .await;
    assert_eq!(
        metric(
            addr,
            "cartflow_consumer_dlq_records_total",
            &[("outcome", "trimmed")]
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            addr,
            "cartflow_consumer_dlq_records_total",
            &[("outcome", "published")]
        )
        .await,
        small_poison.len() as f64
    );
    stop.cancel();
    task.await.expect("task").expect("clean stop");

    // Kept whole in the table, exactly once.
    let client = env.client().await;
    let row = client
        .query_one(
            "SELECT payload, message_key, dlq_status FROM dead_letters WHERE length(payload) > 1000",
            &[],
        )
        .await
        .expect("the big dead letter");
    assert_eq!(row.get::<_, Vec<u8>>(0), big, "the whole payload");
    assert_eq!(row.get::<_, Vec<u8>>(1), b"7");
    assert_eq!(row.get::<_, String>(2), "trimmed");

    // On the topic: each letter once, the big one trimmed with a header saying so.
    let records = read_topic(&env, &env.topics.dlq_topic, letters).await;
    assert_eq!(
        topic_size(&env, &env.topics.dlq_topic).await,
        letters as i64,
        "no copies"
    );
    let trimmed: Vec<_> = records
        .iter()
        .filter(|m| header(m, dlq::HEADER_TRIMMED).is_some())
        .collect();
    assert_eq!(trimmed.len(), 1);
    assert_eq!(
        header(trimmed[0], dlq::HEADER_TRIMMED).as_deref(),
        Some("key=1,payload=1040000")
    );
    assert_eq!(trimmed[0].payload(), Some(&big[..dlq::TRIM_TO_BYTES]));

    // A redelivery of everything (a new member with no committed offsets, the same database)
    // adds no row and publishes nothing again.
    let stop = CancellationToken::new();
    let (addr, task) =
        start_consumer(&env, &["--group", &format!("again-{}", env.id)], &stop).await;
    wait_until("the redelivery", Duration::from_secs(60), || async {
        metric(addr, "cartflow_consumer_duplicates_total", &[]).await >= 100.0
    })
    .await;
    stop.cancel();
    task.await.expect("task").expect("clean stop");
    assert_eq!(
        env.count("SELECT count(*) FROM dead_letters").await,
        letters as i64
    );
    assert_eq!(
        topic_size(&env, &env.topics.dlq_topic).await,
        letters as i64
    );
    assert_eq!(env.count("SELECT count(*) FROM events").await, 100);
    env.cleanup().await;
}

/// The defect: rows PostgreSQL refused reached `dead_letters` with a NULL key and payload and
/// the reason "… refused: db error".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_postgres_refuses_are_kept_whole_with_its_sqlstate_and_detail() {
    let env = TestEnv::new().await;
    create_topic(&env, &env.topics.cart_events_topic, 1).await;
    create_topic(&env, &env.topics.customers_topic, 1).await;
    let p = producer(&env);
    let codec = Codec::single_object();
    let customer = |id: i64| Customer {
        customer_id: id,
        name: "Ada".into(),
        age: 36,
        email: "ada@example.com".into(),
        created_at: Utc::now(),
    };
    let first = codec.encode(&customer(1)).expect("encode");
    let taken_email = codec.encode(&customer(2)).expect("encode");
    send(&p, &env.topics.customers_topic, "1", &first).await;
    send(&p, &env.topics.customers_topic, "2", &taken_email).await;
    let mut nul = event(1, 500);
    nul.description = "a NUL \0 byte".into();
    let nul_bytes = codec.encode(&nul).expect("encode");
    send(&p, &env.topics.cart_events_topic, "1", &nul_bytes).await;
    let good = event(1, 700);
    send(
        &p,
        &env.topics.cart_events_topic,
        "1",
        &codec.encode(&good).expect("encode"),
    )
    .await;

    let stop = CancellationToken::new();
    let (_, task) = start_consumer(&env, &[], &stop).await;
    env.wait_for_events(1, Duration::from_secs(60)).await;
    wait_until("two dead letters", Duration::from_secs(30), || async {
        env.count("SELECT count(*) FROM dead_letters").await == 2
    })
    .await;
    stop.cancel();
    task.await.expect("task").expect("clean stop");

    let client = env.client().await;
    let rows = client
        .query(
            "SELECT topic, message_key, payload, reason, error FROM dead_letters ORDER BY topic",
            &[],
        )
        .await
        .expect("dead letters");
    let by_topic = |t: &str| {
        rows.iter()
            .find(|r| r.get::<_, String>(0) == t)
            .unwrap_or_else(|| panic!("a dead letter from {t}"))
    };
    let c = by_topic(&env.topics.customers_topic);
    assert_eq!(
        c.get::<_, Option<Vec<u8>>>(1).as_deref(),
        Some(&b"2"[..]),
        "key kept"
    );
    assert_eq!(
        c.get::<_, Option<Vec<u8>>>(2),
        Some(taken_email),
        "payload kept"
    );
    assert_eq!(c.get::<_, String>(3), "rejected_by_database");
    let error: String = c.get(4);
    assert!(error.contains("SQLSTATE 23505"), "{error}");
    assert!(
        error.contains("detail: Key (email)=(ada@example.com) already exists"),
        "{error}"
    );

    let e = by_topic(&env.topics.cart_events_topic);
    assert_eq!(
        e.get::<_, Option<Vec<u8>>>(2),
        Some(nul_bytes),
        "payload kept"
    );
    let error: String = e.get(4);
    assert!(error.contains("SQLSTATE 22021"), "{error}");
    let stored: Uuid = client
        .query_one("SELECT event_id FROM events", &[])
        .await
        .expect("event")
        .get(0);
    assert_eq!(stored, good.event_id);
    env.cleanup().await;
}

/// The defect: a second event with an existing event_id and different content was silently
/// dropped, counted only as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_reused_with_other_content_is_dead_lettered_and_the_first_stays() {
    let env = TestEnv::new().await;
    let topic = env.topics.cart_events_topic.clone();
    create_topic(&env, &topic, 1).await;
    let p = producer(&env);
    let codec = Codec::single_object();
    let first = event(3, 1_999);
    let mut other = first.clone();
    other.product_price = Money::from_cents(1);
    let first_bytes = codec.encode(&first).expect("encode");
    let other_bytes = codec.encode(&other).expect("encode");
    // The same event sent twice (a producer retry) is a plain duplicate; the altered one is not.
    send(&p, &topic, "3", &first_bytes).await;
    send(&p, &topic, "3", &first_bytes).await;
    send(&p, &topic, "3", &other_bytes).await;
    let later = event(4, 100);
    send(&p, &topic, "4", &codec.encode(&later).expect("encode")).await;

    let stop = CancellationToken::new();
    let (addr, task) = start_consumer(&env, &[], &stop).await;
    env.wait_for_events(2, Duration::from_secs(60)).await;
    wait_until(
        "the conflict dead-lettered",
        Duration::from_secs(30),
        || async { env.count("SELECT count(*) FROM dead_letters").await == 1 },
    )
    .await;
    assert_eq!(
        metric(addr, "cartflow_consumer_duplicates_total", &[]).await,
        1.0
    );
    stop.cancel();
    task.await.expect("task").expect("clean stop");

    let client = env.client().await;
    let price: String = client
        .query_one(
            "SELECT product_price::text FROM events WHERE event_id = $1",
            &[&first.event_id],
        )
        .await
        .expect("first")
        .get(0);
    assert_eq!(price, "19.99", "the first stays");
    let row = client
        .query_one(
            "SELECT reason, payload, kafka_offset FROM dead_letters",
            &[],
        )
        .await
        .expect("dead letter");
    assert_eq!(row.get::<_, String>(0), "conflicting_duplicate");
    assert_eq!(row.get::<_, Vec<u8>>(1), other_bytes);
    assert_eq!(row.get::<_, i64>(2), 2);
    env.cleanup().await;
}

/// A batch closes when nothing more is waiting and a write can start: with a ten-minute
/// batch timeout and room for a million messages, each of two events sent a while apart is
/// still stored at once (before, each waited out the timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_event_is_stored_without_waiting_for_the_batch_to_fill() {
    let env = TestEnv::new().await;
    let topic = env.topics.cart_events_topic.clone();
    create_topic(&env, &topic, 1).await;
    let p = producer(&env);
    let codec = Codec::single_object();
    let flags = ["--batch-timeout-ms", "600000", "--batch-size", "1000000"];
    let stop = CancellationToken::new();
    let (_addr, task) = start_consumer(&env, &flags, &stop).await;
    for n in 1..=2 {
        let e = event(n, 1_000);
        send(
            &p,
            &topic,
            &n.to_string(),
            &codec.encode(&e).expect("encode"),
        )
        .await;
        // Well under the batch timeout; the group join before the first takes a few seconds.
        env.wait_for_events(n, Duration::from_secs(60)).await;
    }
    stop.cancel();
    task.await.expect("task").expect("clean stop");
    env.cleanup().await;
}

/// Runs a consumer that must stop on its own with an error; returns the error's text.
async fn fails_for_good(env: &TestEnv, database_url: &str, extra: &[&str]) -> String {
    use clap::Parser;
    let mut args = vec!["cartflow-consumer".to_owned()];
    args.extend(env.kafka_flags());
    args.extend(["--database-url".to_owned(), database_url.to_owned()]);
    args.extend(["--group".to_owned(), format!("test-{}", env.id)]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let config = cartflow_consumer::Cli::try_parse_from(args)
        .expect("flags")
        .run;
    let run = cartflow_consumer::run(config, any_port().await, CancellationToken::new());
    match tokio::time::timeout(Duration::from_secs(60), run).await {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(())) => panic!("the consumer stopped without an error"),
        Err(_) => panic!("the consumer kept retrying a permanent error for 60 s"),
    }
}

/// The defects: a read-only role and `--skip-migrations` against an unmigrated database
/// retried forever; an unknown user was reported as "PostgreSQL is not reachable … Start it".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_database_errors_stop_the_consumer_with_what_to_do() {
    let env = TestEnv::new().await;
    let topic = env.topics.cart_events_topic.clone();
    create_topic(&env, &topic, 1).await;
    let p = producer(&env);
    let codec = Codec::single_object();
    send(
        &p,
        &topic,
        "1",
        &codec.encode(&event(1, 100)).expect("encode"),
    )
    .await;

    // A role that may read but not write.
    let role = format!("reader_{}", env.id);
    let admin = env.client().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
        ))
        .await
        .expect("create role");
    let read_only = env
        .database_url
        .replacen("postgres@", &format!("{role}@"), 1);
    let error = fails_for_good(&env, &read_only, &["--skip-migrations"]).await;
    assert!(
        error.contains("42501") && error.contains("privilege"),
        "{error}"
    );

    // An unmigrated database.
    let bare = cartflow_tests::with_database(&env.database_url, &format!("bare_{}", env.id));
    cartflow_common::db::ensure_database(&cartflow_tests::parse_url(&bare))
        .await
        .expect("create");
    let error = fails_for_good(&env, &bare, &["--skip-migrations"]).await;
    // Checked at start, before any batch (whose first statement would fail on a missing
    // function, 42883).
    assert!(
        error.contains("lacks migrations") && error.contains("cartflow-consumer migrate"),
        "{error}"
    );
    cartflow_common::db::drop_database(&cartflow_tests::parse_url(&bare))
        .await
        .expect("drop");

    // A user the server does not know: refused, not "unreachable".
    let stranger = env.database_url.replacen("postgres@", "nobody_here@", 1);
    let error = fails_for_good(&env, &stranger, &["--skip-migrations"]).await;
    assert!(error.contains("refused") && error.contains("28"), "{error}");
    assert!(!error.contains("not reachable"), "{error}");

    admin
        .batch_execute(&format!(
            "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}; DROP ROLE {role};"
        ))
        .await
        .expect("drop role");
    env.cleanup().await;
}

async fn healthz(addr: SocketAddr) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .expect("healthz");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// The defect: with ingestion stopped, `/healthz` stayed 200 and the lag gauge read 0 while the
/// group's committed lag grew. Here the events table is locked (a real stall: every write
/// waits on it), so the committed offset stops while messages wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_partition_turns_healthz_503_with_the_reason_and_lag_is_the_groups() {
    let env = TestEnv::new().await;
    let topic = env.topics.cart_events_topic.clone();
    create_topic(&env, &topic, 1).await;
    let p = producer(&env);
    let codec = Codec::single_object();
    let stop = CancellationToken::new();
    let (addr, task) = start_consumer(
        &env,
        &["--stall-secs", "3", "--lag-interval-ms", "500"],
        &stop,
    )
    .await;
    send(
        &p,
        &topic,
        "1",
        &codec.encode(&event(1, 100)).expect("encode"),
    )
    .await;
    env.wait_for_events(1, Duration::from_secs(60)).await;
    wait_until("healthy", Duration::from_secs(30), || async {
        healthz(addr).await.0 == 200
    })
    .await;

    let mut locker = env.client().await;
    let lock = locker.transaction().await.expect("begin");
    lock.batch_execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    for c in 0..20 {
        send(
            &p,
            &topic,
            "1",
            &codec.encode(&event(c, 100)).expect("encode"),
        )
        .await;
    }
    wait_until(
        "a 503 naming the partition",
        Duration::from_secs(30),
        || async {
            let (status, body) = healthz(addr).await;
            status == 503 && body.contains(&format!("{topic}[0]")) && body.contains("20 messages")
        },
    )
    .await;
    assert_eq!(
        metric(addr, "cartflow_consumer_stalled_partitions", &[]).await,
        1.0
    );
    assert_eq!(
        metric(
            addr,
            "cartflow_consumer_lag_messages",
            &[("topic", "cart_events"), ("partition", "0")]
        )
        .await,
        20.0
    );

    lock.rollback().await.expect("unlock");
    env.wait_for_events(21, Duration::from_secs(60)).await;
    wait_until("healthy again", Duration::from_secs(30), || async {
        healthz(addr).await.0 == 200
    })
    .await;
    assert_eq!(
        metric(addr, "cartflow_consumer_stalled_partitions", &[]).await,
        0.0
    );
    stop.cancel();
    task.await.expect("task").expect("clean stop");
    env.cleanup().await;
}
