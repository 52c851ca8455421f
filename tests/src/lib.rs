//! Helpers for the cross-service tests.
//!
//! The tests run against the real broker and PostgreSQL that `deploy/local/test.sh` starts
//! (or whatever `KAFKA_BROKERS` and `DATABASE_URL` point at). Each test gets a fresh database
//! and its own topic names, so tests run side by side against one shared stack; services are
//! started in-process on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

pub mod analytics;
pub mod outcomes;
pub mod process;
pub mod ws;

use cartflow_common::config::{DatabaseArgs, KafkaArgs, TopicArgs};
use cartflow_common::db;
use tokio::net::TcpListener;
use uuid::Uuid;

/// The FakeStore-shaped catalogue the tests serve (20 products, 4 categories, some whole-number
/// prices and rates).
pub const FAKESTORE_PRODUCTS: &str = include_str!("../fixtures/fakestore-products.json");

use cartflow_common::config::{DEFAULT_DATABASE_URL, DEFAULT_KAFKA_BROKERS as DEFAULT_BROKERS};

/// A fresh, migrated database on the shared PostgreSQL, for tests that need no broker.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub name: String,
    /// A unique suffix for anything else the test names.
    pub id: String,
}

impl TestDb {
    /// Creates and migrates a new database. Panics with instructions when PostgreSQL is not
    /// running.
    pub async fn new() -> TestDb {
        let base = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
        let id = Uuid::new_v4().simple().to_string()[..12].to_owned();
        let name = format!("cartflow_test_{id}");
        let url = with_database(&base, &name);
        let hint = "the tests need PostgreSQL: run them with deploy/local/test.sh, which starts it";
        db::ensure_database(&parse_url(&url))
            .await
            .unwrap_or_else(|e| panic!("{e}\n({hint})"));
        db::migrate(&parse_url(&url))
            .await
            .unwrap_or_else(|e| panic!("{e}\n({hint})"));
        TestDb { url, name, id }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        db::connect(&parse_url(&self.url))
            .await
            .expect("connect to the test database")
    }

    /// Drops the database; call it at the end of a passing test.
    pub async fn cleanup(self) {
        db::drop_database(&parse_url(&self.url))
            .await
            .expect("drop the test database");
    }
}

/// A fresh database and fresh topic names on the shared stack.
#[derive(Debug)]
pub struct TestEnv {
    pub database_url: String,
    pub database_name: String,
    pub brokers: String,
    pub topics: TopicArgs,
    /// A unique suffix for consumer groups and the like.
    pub id: String,
}

impl TestEnv {
    /// Creates and migrates a new database. Panics with instructions when the stack is not
    /// running: these tests are meant to fail, not skip, without their services.
    pub async fn new() -> TestEnv {
        let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| DEFAULT_BROKERS.into());
        let TestDb {
            url: database_url,
            name: database_name,
            id,
        } = TestDb::new().await;
        let hint = "the cross-service tests need PostgreSQL and a Kafka broker: run them with \
                    deploy/local/test.sh, which starts both";
        cartflow_common::kafka::check_reachable(
            &KafkaArgs {
                brokers: brokers.clone(),
            },
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n({hint})"));
        TestEnv {
            database_url,
            database_name,
            brokers,
            topics: TopicArgs::with_prefix(&format!("t{id}-")),
            id,
        }
    }

    pub fn kafka(&self) -> KafkaArgs {
        KafkaArgs {
            brokers: self.brokers.clone(),
        }
    }

    pub fn database(&self) -> DatabaseArgs {
        DatabaseArgs {
            database_url: parse_url(&self.database_url),
        }
    }

    /// Creates this environment's cart-events topic, six partitions as the producer makes it,
    /// for a test that reads it before anything has been published.
    pub async fn create_cart_events_topic(&self) {
        cartflow_common::kafka::ensure_topics(
            &self.kafka(),
            &[cartflow_common::kafka::TopicSpec {
                name: self.topics.cart_events_topic.clone(),
                partitions: 6,
                compacted: false,
            }],
        )
        .await
        .expect("create the cart-events topic");
    }

    /// The flags every service shares, for `Config::parse_from`.
    pub fn kafka_flags(&self) -> Vec<String> {
        vec![
            "--kafka-brokers".into(),
            self.brokers.clone(),
            "--cart-events-topic".into(),
            self.topics.cart_events_topic.clone(),
            "--products-topic".into(),
            self.topics.products_topic.clone(),
            "--customers-topic".into(),
            self.topics.customers_topic.clone(),
            "--dlq-topic".into(),
            self.topics.dlq_topic.clone(),
        ]
    }

    /// A consumer of this environment's topics and database, in its own group.
    pub fn consumer_config(&self) -> cartflow_consumer::Config {
        use clap::Parser;
        let mut args = vec!["cartflow-consumer".to_owned()];
        args.extend(self.kafka_flags());
        args.extend([
            "--database-url".into(),
            self.database_url.clone(),
            "--group".into(),
            format!("test-{}", self.id),
            "--batch-size".into(),
            "500".into(),
        ]);
        cartflow_consumer::Cli::try_parse_from(args)
            .expect("consumer flags")
            .run
    }

    /// A producer that backfills exactly `count` events of [`SEED`] ending at [`UNTIL`], as
    /// fast as the broker takes them, with its catalogue from `catalogue_url`.
    pub fn backfill_config(
        &self,
        catalogue_url: &str,
        customers: u32,
        count: u64,
    ) -> cartflow_producer::Config {
        use clap::Parser;
        let mut args = vec!["cartflow-producer".to_owned()];
        args.extend(self.kafka_flags());
        args.extend([
            "--catalogue-url".into(),
            catalogue_url.into(),
            "--customers".into(),
            customers.to_string(),
            "--count".into(),
            count.to_string(),
            "--seed".into(),
            SEED.to_string(),
            "backfill".into(),
            "--days".into(),
            BACKFILL_DAYS.to_string(),
            "--until".into(),
            UNTIL.into(),
        ]);
        cartflow_producer::Config::try_parse_from(args).expect("producer flags")
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        db::connect(&parse_url(&self.database_url))
            .await
            .expect("connect to the test database")
    }

    /// One number from a query such as `SELECT count(*) FROM events`.
    pub async fn count(&self, sql: &str) -> i64 {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Waits until `events` holds at least `n` rows; panics after `timeout`.
    pub async fn wait_for_events(&self, n: i64, timeout: Duration) {
        wait_until(&format!("{n} stored events"), timeout, || async {
            self.count("SELECT count(*) FROM events").await >= n
        })
        .await;
    }

    /// Drops the test database and deletes the environment's topics. Call it at the end of a
    /// passing test; a failing test keeps both for a post-mortem.
    pub async fn cleanup(self) {
        db::drop_database(&parse_url(&self.database_url))
            .await
            .expect("drop the test database");
        self.delete_topics().await;
    }

    /// Deletes every topic named with this environment's prefix (the services' and any a test
    /// made). deploy/local/test.sh reuses a running broker, which gathered the topics of every
    /// run (1,100 partition folders, 1.1 GB) and recovered them one by one at its next start.
    async fn delete_topics(&self) {
        use rdkafka::admin::{AdminClient, AdminOptions};
        use rdkafka::client::DefaultClientContext;
        use rdkafka::types::RDKafkaErrorCode;

        let admin: AdminClient<DefaultClientContext> =
            cartflow_common::kafka::client_config(&self.kafka(), "test-cleanup")
                .create()
                .expect("admin client");
        let prefix = format!("t{}-", self.id);
        let metadata = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("topic list");
        let names: Vec<&str> = metadata
            .topics()
            .iter()
            .map(|t| t.name())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        if names.is_empty() {
            return;
        }
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin
            .delete_topics(&names, &options)
            .await
            .expect("delete the test topics")
        {
            if let Err((name, code)) = result {
                assert_eq!(
                    code,
                    RDKafkaErrorCode::UnknownTopicOrPartition,
                    "delete topic {name}"
                );
            }
        }
    }
}

/// The seed, end and length of the tests' backfills.
pub const SEED: u64 = 42;
pub const UNTIL: &str = "2026-11-01T00:00:00Z";
pub const BACKFILL_DAYS: i64 = 60;

/// The event ids a [`TestEnv::backfill_config`] run publishes: the simulation is a pure
/// function of the seeds, the start and the catalogue.
pub fn expected_event_ids(customers: u32, count: u64) -> std::collections::HashSet<Uuid> {
    use cartflow_producer::config::DEFAULT_POPULATION_SEED;
    use cartflow_producer::{
        catalogue, customers as people, profile::Profile, simulate::Simulator,
    };
    let metrics = cartflow_producer::metrics::Metrics::new(&prometheus::Registry::new());
    let products =
        catalogue::parse(FAKESTORE_PRODUCTS.as_bytes(), &metrics).expect("fixture parses");
    let shoppers = people::generate(DEFAULT_POPULATION_SEED, customers);
    let until: chrono::DateTime<chrono::Utc> = UNTIL.parse().expect("time");
    let start = until - chrono::Duration::days(BACKFILL_DAYS);
    let mut sim = Simulator::new(
        SEED,
        DEFAULT_POPULATION_SEED,
        Profile::default(),
        shoppers,
        products,
        start,
    );
    (0..count).map(|_| sim.next_event().event_id).collect()
}

/// The event ids stored in `events`.
pub async fn stored_event_ids(env: &TestEnv) -> std::collections::HashSet<Uuid> {
    env.client()
        .await
        .query("SELECT event_id FROM events", &[])
        .await
        .expect("event ids")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// One "add to cart" of a jacket by `customer_id` at `price_cents`, now, with a new event id:
/// the event the bad-input and delivery tests send by hand.
pub fn cart_event(customer_id: i64, price_cents: i64) -> cartflow_schemas::CartEvent {
    cartflow_schemas::CartEvent {
        event_id: Uuid::new_v4(),
        customer_id,
        product_id: 1,
        product_title: "Mens Cotton Jacket".into(),
        product_price: cartflow_schemas::Money::from_cents(price_cents),
        product_image: String::new(),
        action: cartflow_schemas::Action::AddToCart,
        description: "added".into(),
        timestamp: chrono::Utc::now(),
        session_id: None,
        user_agent: None,
        ip_address: None,
    }
}

/// A gateway on a free port reading `database_url`, with `flags` after `--database-url`,
/// stopped by `shutdown`; returned once its first snapshot is read.
pub async fn spawn_gateway(
    database_url: &str,
    flags: &[String],
    shutdown: &tokio_util::sync::CancellationToken,
) -> cartflow_gateway::Gateway {
    spawn_gateway_on(any_port().await, database_url, flags, shutdown).await
}

/// [`spawn_gateway`] on `listener` (to restart one at the same address).
pub async fn spawn_gateway_on(
    listener: TcpListener,
    database_url: &str,
    flags: &[String],
    shutdown: &tokio_util::sync::CancellationToken,
) -> cartflow_gateway::Gateway {
    use clap::Parser;
    let mut args = vec![
        "cartflow-gateway".to_owned(),
        "--database-url".into(),
        database_url.to_owned(),
    ];
    args.extend(flags.iter().cloned());
    let config = cartflow_gateway::Config::try_parse_from(args).expect("gateway flags");
    let gateway = cartflow_gateway::Gateway::start(config, listener, shutdown.clone())
        .await
        .expect("start the gateway");
    let hub = gateway.hub.clone();
    wait_until(
        "the gateway's first snapshot",
        Duration::from_secs(10),
        || async { hub.data().is_some() },
    )
    .await;
    gateway
}

/// `&str` flags as owned strings, for [`spawn_gateway`].
pub fn flags(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A URL the tests built, parsed (they are always valid).
pub fn parse_url(url: &str) -> cartflow_common::DatabaseUrl {
    url.parse()
        .unwrap_or_else(|e| panic!("the tests' database URL: {e}"))
}

/// `url` with its database name replaced by `name`, as text (password and query kept), for
/// the flags of services the tests start: each test gets a database of its own.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let root = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// A listener on a free loopback port.
pub async fn any_port() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind port 0")
}

/// Serves `body` as JSON at `/products` with `status`; returns the URL.
pub async fn serve_catalogue(status: u16, body: &'static str) -> String {
    let listener = any_port().await;
    let addr: SocketAddr = listener.local_addr().expect("local addr");
    let status = axum::http::StatusCode::from_u16(status).expect("status");
    let app = axum::Router::new().route(
        "/products",
        axum::routing::get(move || async move {
            (status, [("content-type", "application/json")], body)
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/products")
}

/// Polls `check` until it returns true; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The registry the registry tests use (deploy/local/test.sh starts Apicurio Registry there).
pub fn registry_url() -> String {
    std::env::var("CARTFLOW_TEST_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v6".into())
}

/// `registry.register`, retried while the registry answers 5xx (Apicurio's in-memory store
/// times out on a lock when tests register at once).
pub async fn register(
    registry: &cartflow_common::registry::Registry,
    subject: &str,
    schema: &str,
) -> Result<u32, cartflow_common::Error> {
    cartflow_common::retry::transient_retried(
        "Registering",
        Duration::from_secs(30),
        &tokio_util::sync::CancellationToken::new(),
        || registry.register(subject, schema),
    )
    .await
}
