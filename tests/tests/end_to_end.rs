//! One slice end to end: the producer publishes a catalogue, customers and N cart events to
//! the real broker; the consumer stores them in the real PostgreSQL; exactly the published
//! set arrives.

use std::collections::HashSet;
use std::time::Duration;

use cartflow_producer::catalogue::Source;
use cartflow_tests::{
    FAKESTORE_PRODUCTS, TestEnv, any_port, expected_event_ids, serve_catalogue, stored_event_ids,
    wait_until,
};
use tokio_util::sync::CancellationToken;

const EVENTS: u64 = 3_000;
const CUSTOMERS: u32 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_customer_and_product_lands_in_postgres_exactly_once() {
    let env = TestEnv::new().await;
    let catalogue_url = serve_catalogue(200, FAKESTORE_PRODUCTS).await;

    let stop_consumer = CancellationToken::new();
    let consumer = tokio::spawn(cartflow_consumer::run(
        env.consumer_config(),
        any_port().await,
        stop_consumer.clone(),
    ));

    let report = cartflow_producer::run(
        env.backfill_config(&catalogue_url, CUSTOMERS, EVENTS),
        any_port().await,
        CancellationToken::new(),
    )
    .await
    .expect("producer run");
    assert_eq!(report.events, EVENTS);
    assert_eq!(report.catalogue, Source::Fetched);
    assert_eq!(report.products, 20);

    wait_until(
        "every event to be stored",
        Duration::from_secs(60),
        || async { env.count("SELECT count(*) FROM events").await >= EVENTS as i64 },
    )
    .await;
    wait_until(
        "every customer and product",
        Duration::from_secs(30),
        || async {
            env.count("SELECT count(*) FROM customers").await == i64::from(CUSTOMERS)
                && env.count("SELECT count(*) FROM products").await == 20
        },
    )
    .await;

    stop_consumer.cancel();
    tokio::time::timeout(Duration::from_secs(10), consumer)
        .await
        .expect("consumer stops within 10 s")
        .expect("consumer task")
        .expect("consumer exits cleanly");

    let client = env.client().await;
    let stored = stored_event_ids(&env).await;
    assert_eq!(
        env.count("SELECT count(*) FROM events").await,
        EVENTS as i64,
        "no duplicates"
    );
    assert_eq!(
        stored,
        expected_event_ids(CUSTOMERS, EVENTS),
        "exactly the published events"
    );

    let customer_ids: HashSet<i64> = client
        .query("SELECT customer_id FROM customers", &[])
        .await
        .expect("customers")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(customer_ids, (1..=i64::from(CUSTOMERS)).collect());
    let whole = env
        .count("SELECT count(*) FROM products WHERE price = 695.00 AND rating_rate = 4.6")
        .await;
    assert_eq!(whole, 1, "the whole-number price 695 is stored exactly");
    assert_eq!(env.count("SELECT count(*) FROM dead_letters").await, 0);
    let origins = env
        .count("SELECT count(DISTINCT kafka_partition) FROM events")
        .await;
    assert!(origins > 1, "events spread over the topic's partitions");
    env.cleanup().await;
}

/// The customers as stored: everything a run could rename.
async fn customers(env: &TestEnv) -> Vec<(i64, String, i32, String, String)> {
    env.client()
        .await
        .query(
            "SELECT customer_id, name, age, email, created_at::text FROM customers ORDER BY 1",
            &[],
        )
        .await
        .expect("customers")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_producer_run_with_another_seed_leaves_every_customer_as_it_was() {
    let env = TestEnv::new().await;
    let catalogue_url = serve_catalogue(200, FAKESTORE_PRODUCTS).await;
    let stop_consumer = CancellationToken::new();
    let consumer = tokio::spawn(cartflow_consumer::run(
        env.consumer_config(),
        any_port().await,
        stop_consumer.clone(),
    ));
    let mut total = 0;
    let mut before = Vec::new();
    for seed in [cartflow_tests::SEED, 7] {
        // Every customer row written from here on is this run's (the upsert stamps updated_at).
        let mark: String = env
            .client()
            .await
            .query_one("SELECT now()::text", &[])
            .await
            .expect("now")
            .get(0);
        let mut config = env.backfill_config(&catalogue_url, CUSTOMERS, 500);
        config.seed = Some(seed);
        let report = cartflow_producer::run(config, any_port().await, CancellationToken::new())
            .await
            .expect("producer run");
        total += report.events as i64;
        // The events come after the customers on the broker, but on other topics: wait for both.
        env.wait_for_events(total, Duration::from_secs(60)).await;
        let this_run =
            format!("SELECT count(*) FROM customers WHERE updated_at >= '{mark}'::timestamptz");
        wait_until("this run's customers", Duration::from_secs(30), || async {
            env.count(&this_run).await == i64::from(CUSTOMERS)
        })
        .await;
        if before.is_empty() {
            before = customers(&env).await;
        }
    }
    stop_consumer.cancel();
    consumer
        .await
        .expect("consumer task")
        .expect("the consumer exits cleanly");
    assert_eq!(
        env.count("SELECT count(*) FROM events").await,
        1_000,
        "the second run's events are new ones"
    );
    assert_eq!(
        customers(&env).await,
        before,
        "another event seed renamed no one"
    );
    env.cleanup().await;
}
