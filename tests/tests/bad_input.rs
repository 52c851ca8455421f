//! Bad input loses nothing: a message the consumer cannot store is kept in `dead_letters`
//! with its raw bytes and reason, and the good event after it is stored as usual.

use std::time::Duration;

use cartflow_common::kafka::{self, TopicSpec};
use cartflow_consumer::dlq;
use cartflow_schemas::{CartEvent, Codec};
use cartflow_tests::{TestEnv, any_port, cart_event, wait_until};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn event(price_cents: i64) -> CartEvent {
    cart_event(1, price_cents)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_and_the_next_event_is_stored() {
    let env = TestEnv::new().await;
    let topic = env.topics.cart_events_topic.clone();
    kafka::ensure_topics(
        &env.kafka(),
        &[TopicSpec {
            name: topic.clone(),
            partitions: 1,
            compacted: false,
        }],
    )
    .await
    .expect("create topic");

    let codec = Codec::single_object();
    let good = event(5_599);
    let mut truncated = codec.encode(&event(100)).expect("encode");
    truncated.truncate(truncated.len() - 3);
    let poison: Vec<(&str, Vec<u8>)> = vec![
        ("bad_header", b"{\"not\": \"avro\"}".to_vec()),
        (
            "unknown_fingerprint",
            vec![0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0],
        ),
        ("truncated_body", truncated),
        ("invalid_field", codec.encode(&event(-100)).expect("encode")),
    ];
    let producer: FutureProducer = kafka::client_config(&env.kafka(), "test")
        .create()
        .expect("producer");
    for (_, bytes) in &poison {
        producer
            .send(
                FutureRecord::to(&topic).key("1").payload(bytes),
                Duration::from_secs(10),
            )
            .await
            .expect("send poison");
    }
    let bytes = codec.encode(&good).expect("encode");
    producer
        .send(
            FutureRecord::to(&topic).key("1").payload(&bytes),
            Duration::from_secs(10),
        )
        .await
        .expect("send good");

    let config = env.consumer_config();
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(cartflow_consumer::run(
        config,
        any_port().await,
        stop.clone(),
    ));

    wait_until("the good event", Duration::from_secs(60), || async {
        env.count("SELECT count(*) FROM events").await == 1
    })
    .await;
    stop.cancel();
    consumer
        .await
        .expect("task")
        .expect("consumer exits cleanly");

    let client = env.client().await;
    let stored: Uuid = client
        .query_one("SELECT event_id FROM events", &[])
        .await
        .expect("event")
        .get(0);
    assert_eq!(stored, good.event_id);
    let rows = client
        .query(
            "SELECT reason, payload, kafka_offset FROM dead_letters ORDER BY kafka_offset",
            &[],
        )
        .await
        .expect("dead letters");
    assert_eq!(rows.len(), poison.len());
    for (row, (reason, bytes)) in rows.iter().zip(&poison) {
        assert_eq!(row.get::<_, String>(0), *reason);
        assert_eq!(row.get::<_, Vec<u8>>(1), *bytes, "raw bytes kept");
    }

    // The same messages on the dead-letter topic, with headers naming origin and reason.
    let dlq: StreamConsumer = kafka::client_config(&env.kafka(), "test-dlq-reader")
        .set("group.id", format!("dlq-{}", env.id))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    dlq.subscribe(&[env.topics.dlq_topic.as_str()])
        .expect("subscribe");
    for (reason, bytes) in &poison {
        let m = tokio::time::timeout(Duration::from_secs(30), dlq.recv())
            .await
            .expect("a dead-letter record")
            .expect("receive");
        let header = |name: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|x| x.key == name))
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(header(dlq::HEADER_ERROR_CLASS).as_deref(), Some(*reason));
        assert_eq!(header(dlq::HEADER_TOPIC).as_deref(), Some(topic.as_str()));
        assert!(header(dlq::HEADER_OFFSET).is_some() && header(dlq::HEADER_PARTITION).is_some());
        assert!(header(dlq::HEADER_ERROR_MESSAGE).is_some_and(|m| !m.is_empty()));
        assert_eq!(m.payload(), Some(bytes.as_slice()), "original bytes");
        assert_eq!(m.key(), Some(b"1".as_slice()), "original key");
    }
    env.cleanup().await;
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let env = TestEnv::new().await;
    // TestEnv::new applied them once already.
    let again = cartflow_common::db::migrate(&cartflow_tests::parse_url(&env.database_url))
        .await
        .expect("migrate");
    assert!(again.applied.is_empty(), "{:?}", again.applied);
    // The newest migration's version: its file's number.
    let newest = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .expect("migrations/")
        .filter_map(|f| {
            let name = f.ok()?.file_name().into_string().ok()?;
            name.strip_prefix('V')?
                .split_once("__")?
                .0
                .parse::<i32>()
                .ok()
        })
        .max();
    assert!(newest >= Some(6), "{newest:?}");
    assert_eq!(again.version, newest);
    let client = env.client().await;
    let refused = client
        .execute(
            "INSERT INTO customers (customer_id, name, age, email) VALUES (1, 'x', 121, 'x@example.com')",
            &[],
        )
        .await;
    assert!(refused.is_err(), "age above 120 is refused");
    let refused = client
        .execute(
            "INSERT INTO events (event_id, customer_id, product_id, product_title, product_price, action, \"timestamp\", kafka_partition, kafka_offset)
             VALUES (gen_random_uuid(), 1, 1, 't', 1, 'wishlist', now(), 0, 0)",
            &[],
        )
        .await;
    assert!(refused.is_err(), "unknown action is refused");
    env.cleanup().await;
}

/// A statement PostgreSQL refuses is reported with what PostgreSQL said: the driver's own
/// message is only "db error", and a log of the gateway's failing read once said no more.
#[tokio::test]
async fn a_refused_statement_says_what_postgresql_said() {
    let db = cartflow_tests::TestDb::new().await;
    let client = db.client().await;
    let refused = client
        .query("SELECT no_such_function()", &[])
        .await
        .expect_err("the function does not exist");
    let message = cartflow_common::Error::from(refused).to_string();
    assert!(
        message.contains("function no_such_function() does not exist"),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    db.cleanup().await;
}

/// A service told to skip migrations checks that the database has them all before its first
/// statement, and otherwise says which it has and what to run, instead of failing later on a
/// missing function.
#[tokio::test]
async fn a_database_behind_the_build_is_refused_with_what_to_run() {
    let db = cartflow_tests::TestDb::new().await;
    let url = cartflow_tests::parse_url(&db.url);
    let newest = cartflow_common::db::newest_migration();
    cartflow_common::db::check_migrated(&url)
        .await
        .expect("a database with every migration passes");

    // As if an older version had migrated it: the newest migration not applied.
    let client = db.client().await;
    client
        .execute(
            "DELETE FROM refinery_schema_history WHERE version = $1",
            &[&newest],
        )
        .await
        .expect("forget the newest migration");
    let refused = refusal(&url).await;
    for part in [
        format!("up to V{}", newest - 1),
        format!("needs up to V{newest}"),
        "cartflow-consumer migrate".to_owned(),
    ] {
        assert!(refused.contains(&part), "{part:?} in {refused}");
    }

    // The projector's binary exits with that message rather than starting.
    let stderr = refused_start(&db.url).await;
    assert!(
        stderr.contains(&format!("needs up to V{newest}")),
        "{stderr}"
    );

    // Never migrated at all.
    client
        .batch_execute("DROP TABLE refinery_schema_history")
        .await
        .expect("drop the history");
    let refused = refusal(&url).await;
    assert!(refused.contains("it has none"), "{refused}");
    drop(client);
    db.cleanup().await;
}

/// The driver's own refusals (no SQLSTATE) are permanent, as the retry rule reads their text;
/// a lost connection stays transient. Real errors of the pinned tokio-postgres, so a release
/// that rewords them fails here rather than turning a refusal into an endless retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_refusals_are_permanent_and_a_lost_connection_transient() {
    use cartflow_common::retry::{Class, classify_db};

    let db = cartflow_tests::TestDb::new().await;
    let client = db.client().await;
    let none = client
        .query_one("SELECT 1 WHERE false", &[])
        .await
        .expect_err("no row");
    let row = client
        .query_one("SELECT 'text'::text AS t", &[])
        .await
        .expect("one row");
    let wrong_type = row.try_get::<_, i32>(0).expect_err("text is not an i32");
    let no_column = row
        .try_get::<_, String>("nope")
        .expect_err("no such column");
    for e in [&none, &wrong_type, &no_column] {
        assert_eq!(classify_db(e), Class::Permanent, "{e}");
    }

    let (lost, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    drop(connection);
    let closed = lost
        .query_one("SELECT 1", &[])
        .await
        .expect_err("the connection is gone");
    assert_eq!(classify_db(&closed), Class::Transient, "{closed}");
    drop(client);
    db.cleanup().await;
}

/// An emptied checkpoint (by hand: nothing in cartflow deletes it) stops the projector at
/// start with what to run, and that command, the rebuild, repairs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_checkpoint_is_refused_and_the_rebuild_repairs_it() {
    let db = cartflow_tests::TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute("DELETE FROM analytics.checkpoint")
        .await
        .expect("empty the checkpoint");
    let stderr = refused_start(&db.url).await;
    for part in [
        "analytics.checkpoint has no row",
        "cartflow-projector rebuild",
    ] {
        assert!(stderr.contains(part), "{part:?} in {stderr}");
    }

    let out = projector(&db.url, &["rebuild"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the rebuild repairs it: {stderr}");
    let rows: i64 = client
        .query_one("SELECT count(*) FROM analytics.checkpoint", &[])
        .await
        .expect("count the checkpoint rows")
        .get(0);
    assert_eq!(rows, 1, "the rebuild wrote a fresh checkpoint");
    drop(client);
    db.cleanup().await;
}

/// The projector's binary run to its exit on `url`. A deadline makes a projector that does not
/// refuse (before the emptied-checkpoint refusal it retried "query returned an unexpected
/// number of rows" for ever) a failure here rather than a hung test.
async fn projector(url: &str, args: &[&str]) -> std::process::Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_tested-projector"))
        .args(args)
        .args(["--database-url", url])
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("the projector ({args:?}) was still running after 60 s"))
        .expect("run the projector")
}

/// What the projector's binary printed when it refused to start on `url` (it must not start).
async fn refused_start(url: &str) -> String {
    let out = projector(url, &["--skip-migrations", "--metrics-addr", "127.0.0.1:0"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "it must not start: {stderr}");
    stderr
}

/// What [`cartflow_common::db::check_migrated`] says of a database that lacks migrations.
async fn refusal(url: &cartflow_common::DatabaseUrl) -> String {
    cartflow_common::db::check_migrated(url)
        .await
        .expect_err("a migration is missing")
        .to_string()
}
