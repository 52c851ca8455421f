//! The live timeline (#16): the last hour of event time by minute on `/api/snapshot`, and the
//! minutes whose 15-minute abandonment rate left their hour's usual rate by more than
//! `--change-share` marked there and counted in `cartflow_abandonment_changes_total`.

use cartflow_tests::TestDb;
use cartflow_tests::analytics::project_everything;
use cartflow_tests::ws::start;
use serde_json::Value;

/// Carts of one add each, one per minute from `from` (minutes after 2026-10-01 10:00) for
/// `minutes`, every `bought_every`-th bought (0: none).
async fn carts(pg: &tokio_postgres::Client, tag: &str, from: i32, minutes: i32, bought_every: i32) {
    pg.execute(
        "INSERT INTO events (event_id, customer_id, product_id, product_title, product_price, \
             action, \"timestamp\", session_id, kafka_partition, kafka_offset) \
         SELECT gen_random_uuid(), 1, 1, 'p', 10, a, \
             timestamptz '2026-10-01 10:00Z' + (($2::int4 + m) * interval '1 minute') + j * interval '1 second', \
             $1 || m, 0, 0 \
         FROM generate_series(0, $3::int4 - 1) m, \
             LATERAL unnest(CASE WHEN $4::int4 > 0 AND m % $4::int4 = 0 \
                 THEN ARRAY['add_to_cart', 'purchase_cart'] ELSE ARRAY['add_to_cart'] END) \
                 WITH ORDINALITY AS x(a, j)",
        &[&tag, &from, &minutes, &bought_every],
    )
    .await
    .expect("insert carts");
}

async fn timeline(gateway: &cartflow_gateway::Gateway) -> Vec<Value> {
    let snapshot: Value = reqwest::get(format!("http://{}/api/snapshot", gateway.addr))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    snapshot["data"]["timeline"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn metric(gateway: &cartflow_gateway::Gateway, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", gateway.addr))
        .await
        .expect("GET")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_in_abandonment_is_marked_on_the_timeline_and_counted() {
    let db = TestDb::new().await;
    let mut pg = db.client().await;
    // Five earlier days at 10:00-10:59: half the carts bought (usual rate 0.5).
    for day in 1..=5 {
        carts(&pg, &format!("d{day}-"), -day * 1440, 60, 2).await;
    }
    // Today 10:00-10:19: nobody buys (rate 1.0, +100%); then a shopper at 11:00 moves the
    // clock, so with the 30-minute window the minutes to 10:29 are settled.
    carts(&pg, "today-", 0, 20, 0).await;
    carts(&pg, "clock-", 60, 1, 0).await;
    project_everything(&mut pg, 10_000).await;

    let (gateway, stop) = start(&db, &[]).await;
    let rows = timeline(&gateway).await;
    let minute = |r: &Value| r["bucket"].as_str().unwrap_or("")[11..16].to_owned();
    let marked: Vec<String> = rows
        .iter()
        .filter(|r| r["marked"] == true)
        .map(minute)
        .collect();
    // The shown hour is 10:01-11:00; 10:00 itself is outside it.
    let expected: Vec<String> = (1..20).map(|m| format!("10:{m:02}")).collect();
    assert_eq!(marked, expected, "{rows:#?}");
    let first = rows.iter().find(|r| minute(r) == "10:01").expect("10:01");
    assert_eq!(first["usual_rate"].as_f64(), Some(0.5));
    assert_eq!(first["recent_rate"].as_f64(), Some(1.0));
    assert_eq!(first["change"].as_f64(), Some(1.0));
    let clock = rows.iter().find(|r| minute(r) == "11:00").expect("11:00");
    assert_eq!(clock["settled"], false);
    assert_eq!(clock["marked"], false);
    assert_eq!(
        metric(
            &gateway,
            "cartflow_abandonment_changes_total{direction=\"up\"}"
        )
        .await,
        19.0
    );
    assert_eq!(metric(&gateway, "cartflow_abandonment_change").await, 1.0);

    // The same data with a share the shift does not reach: nothing marked.
    let (calm, stop_calm) = start(&db, &["--change-share", "1.5"]).await;
    let rows = timeline(&calm).await;
    assert!(rows.iter().all(|r| r["marked"] == false), "{rows:#?}");
    assert_eq!(
        metric(
            &calm,
            "cartflow_abandonment_changes_total{direction=\"up\"}"
        )
        .await,
        0.0
    );
    stop.cancel();
    stop_calm.cancel();
    db.cleanup().await;
}
