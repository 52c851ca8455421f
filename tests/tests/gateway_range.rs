//! Time ranges (docs/gateway.md, "Ranges"): for random ranges, at minute and at hour grain,
//! `/api/range` gives the same tiles, products, categories, price bands, age groups and
//! timeline as plain SQL over `events` between the bounds the reply names; bad ranges get 400
//! and a sentence naming the parameter.

use cartflow_gateway::Gateway;
use cartflow_tests::TestDb;
use cartflow_tests::analytics::{project_everything, range_sql};
use proptest::prelude::*;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Sessions of five events every seven minutes for about six days (the last two inside the
/// minute rows), carts of every state (open ones at the end), prices in every band, customers
/// and products the catalogue does not know, and v1 events without a session.
async fn store(db: &TestDb) {
    let mut pg = db.client().await;
    // One transaction that writes customers before events: it announces itself first (V13).
    pg.batch_execute(
        "SELECT cartflow_events_writer(); \
         INSERT INTO customers (customer_id, name, age, email) \
         SELECT c, 'customer ' || c, 14 + c * 2, 'c' || c || '@example.com' \
         FROM generate_series(1, 35) c; \
         INSERT INTO products (product_id, title, price, category) \
         SELECT p, 'product ' || p, 10, (ARRAY['tools', 'books', 'games'])[p % 3 + 1] \
         FROM generate_series(1, 10) p; \
         INSERT INTO events (event_id, customer_id, product_id, product_title, product_price, \
             action, \"timestamp\", session_id, kafka_partition, kafka_offset) \
         SELECT gen_random_uuid(), (i / 5) % 40 + 1, (i * 31) % 12 + 1, 'product', \
             (ARRAY[9.99, 24.99, 25.00, 109.95, 499.99, 695.00])[(i * 31) % 12 % 6 + 1], \
             (ARRAY['add_to_cart', 'add_to_cart', 'remove_from_cart', 'purchase_cart', \
                    'add_to_cart'])[abs(hashtext(i::text)) % 5 + 1], \
             timestamptz '2026-11-20 00:00:00+00' + (i / 5) * interval '7 minutes' \
                 + (i % 5) * interval '161 seconds', \
             's' || (i / 5), i % 3, i \
         FROM generate_series(0, 5999) i; \
         INSERT INTO events (event_id, customer_id, product_id, product_title, product_price, \
             action, \"timestamp\", session_id, kafka_partition, kafka_offset) \
         SELECT gen_random_uuid(), 3, 5, 'product 5', 9.99, 'add_to_cart', \
             timestamptz '2026-11-25 06:00:00+00' + i * interval '13 minutes', NULL, 3, 6000 + i \
         FROM generate_series(0, 39) i;",
    )
    .await
    .expect("store events");
    project_everything(&mut pg, 10_000).await;
}

/// `rows`, each cut down to `keys`.
fn pick(rows: &Value, keys: &[&str]) -> Vec<Value> {
    rows.as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            let mut m = serde_json::Map::new();
            for k in keys {
                m.insert((*k).to_owned(), number(&r[*k]));
            }
            Value::Object(m)
        })
        .collect()
}

/// Numbers as f64 (PostgreSQL writes 0 and 0.00 for the same sum), other values as they are.
fn number(v: &Value) -> Value {
    match v.as_f64() {
        Some(f) => serde_json::json!((f * 100.0).round() / 100.0),
        None => v.clone(),
    }
}

async fn get(gateway: &Gateway, query: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{}/api/range?{query}", gateway.addr))
        .await
        .expect("GET");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// One range: the reply equals plain SQL over the bounds it names. Returns its grain.
async fn check(db: &TestDb, gateway: &Gateway, query: &str) -> String {
    let (status, body) = get(gateway, query).await;
    assert_eq!(status, 200, "{query}: {body}");
    let got: Value = serde_json::from_str(&body).expect("JSON");
    let range = &got["range"];
    let parse = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(range[k].as_str().expect("a bound"))
            .expect("RFC 3339")
            .to_utc()
    };
    let (from, to) = (parse("from"), parse("to"));
    let bucket = range["bucket_seconds"].as_i64().expect("bucket_seconds");
    let sql = range_sql();
    let text: String = db
        .client()
        .await
        .query_one(&sql, &[&from, &to, &bucket])
        .await
        .expect("plain SQL")
        .get(0);
    let want: Value = serde_json::from_str(&text).unwrap();

    let kpi_keys: Vec<&str> = want["kpis"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        pick(&Value::Array(vec![got["kpis"].clone()]), &kpi_keys),
        pick(&Value::Array(vec![want["kpis"].clone()]), &kpi_keys),
        "{query}: tiles"
    );
    let mut products = got["products"].as_array().unwrap().clone();
    products.sort_by_key(|p| p["product_id"].as_i64());
    let keys = [
        "product_id",
        "adds",
        "removes",
        "purchases",
        "revenue",
        "abandoned_value",
    ];
    assert_eq!(
        pick(&Value::Array(products), &keys),
        pick(&want["products"], &keys),
        "{query}: products"
    );
    let mut categories = got["categories"].as_array().unwrap().clone();
    categories.sort_by(|a, b| a["category"].as_str().cmp(&b["category"].as_str()));
    let keys = [
        "category",
        "adds",
        "purchases",
        "revenue",
        "abandoned_value",
    ];
    assert_eq!(
        pick(&Value::Array(categories), &keys),
        pick(&want["categories"], &keys),
        "{query}: categories"
    );
    let keys = [
        "band_floor",
        "adds",
        "removes",
        "purchases",
        "revenue",
        "abandoned_value",
    ];
    assert_eq!(
        pick(&got["price_bands"], &keys),
        pick(&want["price_bands"], &keys),
        "{query}: price bands"
    );
    let keys = [
        "age_group",
        "customers",
        "carts",
        "purchased_carts",
        "events",
        "revenue",
        "abandoned_value",
    ];
    assert_eq!(
        pick(&got["age_groups"], &keys),
        pick(&want["age_groups"], &keys),
        "{query}: age groups"
    );
    // The timeline: every bucket with events or carts, as plain SQL bins them.
    let timeline = got["timeline"].as_array().unwrap();
    let with = |key: &str| {
        let rows: Vec<Value> = timeline
            .iter()
            .filter(|t| t[key].as_i64() != Some(0))
            .cloned()
            .collect();
        Value::Array(rows)
    };
    assert_eq!(
        pick(&with("events"), &["bucket", "events"]),
        pick(&want["timeline_events"], &["bucket", "events"]),
        "{query}: timeline events"
    );
    assert_eq!(
        pick(&with("carts"), &["bucket", "carts", "abandoned_carts"]),
        pick(
            &want["timeline_carts"],
            &["bucket", "carts", "abandoned_carts"]
        ),
        "{query}: timeline carts"
    );
    assert!(timeline.len() <= 120, "{query}: {} buckets", timeline.len());
    range["grain"].as_str().unwrap().to_owned()
}

/// A range as a query string: `last=` or `from=`/`to=` anywhere in the six days (and a little
/// beyond), with bounds off the minute.
fn range() -> impl Strategy<Value = String> {
    let last = (1i64..200, 0usize..3).prop_map(|(n, unit)| {
        let unit = ["m", "h", "d"][unit];
        format!("last={n}{unit}")
    });
    let between = (0i64..9_000, 1i64..4_000, 0u32..60, any::<bool>()).prop_map(
        |(start, minutes, second, open)| {
            let from = chrono::DateTime::parse_from_rfc3339("2026-11-19T23:00:00Z").unwrap()
                + chrono::TimeDelta::minutes(start)
                + chrono::TimeDelta::seconds(second.into());
            let to = from + chrono::TimeDelta::minutes(minutes);
            let fmt = |t: chrono::DateTime<chrono::FixedOffset>| {
                t.to_utc()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            };
            if open {
                format!("from={}", fmt(from))
            } else {
                format!("from={}&to={}", fmt(from), fmt(to))
            }
        },
    );
    prop_oneof![last, between]
}

#[test]
fn random_ranges_equal_plain_sql_over_the_log() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new());
    rt.block_on(store(&db));
    let shutdown = CancellationToken::new();
    let gateway = rt.block_on(cartflow_tests::spawn_gateway(
        &db.url,
        &cartflow_tests::flags(&["--no-feed"]),
        &shutdown,
    ));
    // The stated ranges, both sides of where the minute rows end (48 hours before the latest
    // event), then random ones.
    let mut grains = Vec::new();
    for query in [
        "last=15m",
        "last=1h",
        "last=24h",
        "last=7d",
        "last=30d",
        "last=all",
        "",
        "last=2880m",
        "last=2881m",
        "last=49h",
    ] {
        grains.push(rt.block_on(check(&db, &gateway, query)));
    }
    assert_eq!(
        grains[7..],
        ["minute", "hour", "hour"],
        "the grains at the edge"
    );
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(query in range())| {
        rt.block_on(check(&db, &gateway, &query));
    });
    shutdown.cancel();
    rt.block_on(db.cleanup());
}

#[tokio::test]
async fn bad_ranges_get_400_naming_the_parameter() {
    let db = TestDb::new().await;
    let shutdown = CancellationToken::new();
    let gateway = cartflow_tests::spawn_gateway(
        &db.url,
        &cartflow_tests::flags(&["--no-feed", "--token", "s3cret"]),
        &shutdown,
    )
    .await;
    for (query, name) in [
        ("last=2w&token=s3cret", "last:"),
        ("last=1h&from=2026-11-01T00:00:00Z&token=s3cret", "last:"),
        ("from=monday&token=s3cret", "from:"),
        ("to=2026-11-01T00:00:00Z&token=s3cret", "from:"),
        (
            "from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z&token=s3cret",
            "to:",
        ),
    ] {
        let (status, body) = get(&gateway, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.starts_with(name), "{query}: {body}");
    }
    // Behind the token like the rest of /api.
    let (status, _) = get(&gateway, "last=1h").await;
    assert_eq!(status, 401);
    let (status, body) = get(&gateway, "last=1h&token=s3cret").await;
    assert_eq!(status, 200, "{body}");
    let empty: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(empty["kpis"]["events"], 0, "{body}");
    shutdown.cancel();
    db.cleanup().await;
}
