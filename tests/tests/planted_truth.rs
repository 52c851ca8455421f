//! The simulator plants effects in its data (`cartflow-producer --print-truth`); the analytics
//! must find them in a large enough backfill: the peak hour, the most-abandoned category and
//! the price effect.

use std::collections::BTreeMap;

use cartflow_producer::profile::Profile;
use cartflow_producer::simulate::Simulator;
use cartflow_producer::{catalogue, customers, truth};
use cartflow_schemas::CartEvent;
use cartflow_tests::TestDb;
use cartflow_tests::analytics::project_everything;
use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use tokio_postgres::Client;

const SEED: u64 = 7;
const CUSTOMERS: u32 = 2_000;
/// Two weeks of the default profile: about 250,000 events.
const DAYS: i64 = 14;

async fn store_catalogue(client: &Client, customers: &[cartflow_schemas::Customer]) {
    for p in catalogue::fallback() {
        client
            .execute(
                "INSERT INTO products (product_id, title, price, category) VALUES ($1, $2, $3, $4)",
                &[
                    &p.product_id,
                    &p.title,
                    &Decimal::from(p.price),
                    &p.category,
                ],
            )
            .await
            .expect("insert product");
    }
    let ids: Vec<i64> = customers.iter().map(|c| c.customer_id).collect();
    let names: Vec<&str> = customers.iter().map(|c| c.name.as_str()).collect();
    let ages: Vec<i32> = customers.iter().map(|c| c.age).collect();
    let emails: Vec<&str> = customers.iter().map(|c| c.email.as_str()).collect();
    client
        .execute(
            "INSERT INTO customers (customer_id, name, age, email) \
             SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int4[], $4::text[])",
            &[&ids, &names, &ages, &emails],
        )
        .await
        .expect("insert customers");
}

async fn store_events(client: &Client, events: &[CartEvent], first_offset: i64) {
    let ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
    let customers: Vec<i64> = events.iter().map(|e| e.customer_id).collect();
    let products: Vec<i64> = events.iter().map(|e| e.product_id).collect();
    let titles: Vec<&str> = events.iter().map(|e| e.product_title.as_str()).collect();
    let prices: Vec<Decimal> = events
        .iter()
        .map(|e| Decimal::from(e.product_price))
        .collect();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    let times: Vec<_> = events.iter().map(|e| e.timestamp).collect();
    let sessions: Vec<Option<&str>> = events.iter().map(|e| e.session_id.as_deref()).collect();
    let offsets: Vec<i64> = (first_offset..first_offset + events.len() as i64).collect();
    client
        .execute(
            "INSERT INTO events (event_id, customer_id, product_id, product_title, product_price, \
                 action, \"timestamp\", session_id, kafka_partition, kafka_offset) \
             SELECT id, c, p, t, price, a, ts, s, 0, o FROM UNNEST($1::uuid[], $2::int8[], \
                 $3::int8[], $4::text[], $5::numeric[], $6::text[], $7::timestamptz[], \
                 $8::text[], $9::int8[]) AS x(id, c, p, t, price, a, ts, s, o)",
            &[
                &ids, &customers, &products, &titles, &prices, &actions, &times, &sessions,
                &offsets,
            ],
        )
        .await
        .expect("insert events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analytics_recover_the_planted_truth() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let profile = Profile::default();
    let people = customers::generate(SEED, CUSTOMERS);
    store_catalogue(&client, &people).await;
    let planted = truth::compute(
        SEED,
        SEED,
        &profile,
        people.clone(),
        catalogue::fallback(),
        200_000,
    );

    let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    let end = start + chrono::Duration::days(DAYS);
    let mut sim = Simulator::new(SEED, SEED, profile, people, catalogue::fallback(), start);
    let mut batch = Vec::with_capacity(10_000);
    let mut stored = 0i64;
    loop {
        let e = sim.next_event();
        if e.timestamp >= end {
            break;
        }
        batch.push(e);
        if batch.len() == 10_000 {
            store_events(&client, &batch, stored).await;
            stored += batch.len() as i64;
            batch.clear();
        }
    }
    store_events(&client, &batch, stored).await;
    stored += batch.len() as i64;
    assert!(stored > 150_000, "only {stored} events");
    project_everything(&mut client, 50_000).await;

    let peak: String = client
        .query_one(
            "SELECT peak FROM v_peaks WHERE dimension = 'hour of day' AND measure = 'events'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(peak, planted.peak_hour.to_string(), "peak hour");

    let categories: Vec<(String, f64)> = client
        .query(
            "SELECT category, item_abandonment_rate::float8 FROM v_category_performance \
             ORDER BY item_abandonment_rate DESC",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        categories[0].0, planted.most_abandoned_category,
        "most abandoned category: {categories:?} vs {:?}",
        planted.item_abandonment_by_category
    );

    let bands: BTreeMap<String, f64> = client
        .query(
            "SELECT band, item_abandonment_rate::float8 FROM v_abandonment_by_price_band",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let (cheap, dear) = ("under 25", "500 and over");
    assert!(
        bands[dear] > bands[cheap] + 0.2,
        "dearer items are abandoned more: {bands:?}"
    );
    for (band, planted_rate) in &planted.item_abandonment_by_price_band {
        let found = bands[*band];
        assert!(
            (found - planted_rate).abs() < 0.04,
            "{band}: found {found:.3}, planted {planted_rate:.3}"
        );
    }
    let rate: f64 = client
        .query_one("SELECT cart_abandonment_rate::float8 FROM v_kpis", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        (rate - planted.cart_abandonment_rate).abs() < 0.05,
        "cart abandonment: found {rate:.3}, planted {:.3}",
        planted.cart_abandonment_rate
    );
    db.cleanup().await;
}
