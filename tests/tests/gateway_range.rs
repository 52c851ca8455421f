//! Time ranges (docs/gateway.md, "Ranges"): for random ranges, at minute and at hour grain,
//! `/api/range` gives the same tiles, products, categories, price bands, age groups and
//! timeline as plain SQL over `events` between the bounds the reply names; bad ranges get 400
//! and a sentence naming the parameter.

use cartflow_gateway::Gateway;
use cartflow_tests::TestDb;
use cartflow_tests::analytics::{BAND, project_everything};
use proptest::prelude::*;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Sessions of five events every seven minutes for about six days (the last two inside the
/// minute rows), carts of every state (open ones at the end), prices in every band, customers
/// and products the catalogue does not know, and v1 events without a session.
async fn store(db: &TestDb) {
    let mut pg = db.client().await;
    pg.batch_execute(
        "INSERT INTO customers (customer_id, name, age, email) \
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

/// What plain SQL over `events` says for `[$1, $2)`, shaped as the checks read the reply.
const EXPECTED: &str = r#"
WITH e AS (
    SELECT *, BAND AS band_floor FROM events WHERE "timestamp" >= $1 AND "timestamp" < $2
), k AS (
    SELECT max("timestamp") AS watermark, (SELECT abandon_after FROM analytics.checkpoint) AS a
    FROM events
), carts AS (
    SELECT coalesce(session_id, 'customer ' || customer_id || ' on ' ||
               to_char(("timestamp" AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD')) AS cart_key,
           min(customer_id) AS customer_id, min("timestamp") AS first_at,
           max("timestamp") AS last_at, count(*) AS events,
           count(*) FILTER (WHERE action = 'add_to_cart') AS adds,
           count(*) FILTER (WHERE action = 'remove_from_cart') AS removes,
           count(*) FILTER (WHERE action = 'purchase_cart') AS purchases,
           coalesce(sum(product_price) FILTER (WHERE action = 'add_to_cart'), 0)
             - coalesce(sum(product_price) FILTER (WHERE action = 'remove_from_cart'), 0) AS value,
           coalesce(sum(product_price) FILTER (WHERE action = 'purchase_cart'), 0) AS revenue
    FROM events GROUP BY 1
), started AS (
    SELECT c.*, CASE WHEN purchases > 0 THEN 'purchased' WHEN adds <= removes THEN 'emptied'
                     WHEN last_at <= k.watermark - k.a THEN 'abandoned' ELSE 'open' END AS state
    FROM carts c, k WHERE first_at >= $1 AND first_at < $2
), items AS (
    SELECT product_id, band_floor, count(*) AS events,
           count(*) FILTER (WHERE action = 'add_to_cart') AS adds,
           count(*) FILTER (WHERE action = 'remove_from_cart') AS removes,
           count(*) FILTER (WHERE action = 'purchase_cart') AS purchases,
           coalesce(sum(product_price) FILTER (WHERE action = 'purchase_cart'), 0) AS revenue,
           coalesce(sum(CASE action WHEN 'add_to_cart' THEN product_price
                                    WHEN 'remove_from_cart' THEN -product_price
                                    ELSE -product_price END), 0) AS abandoned_value
    FROM e GROUP BY 1, 2
)
SELECT json_build_object(
  'kpis', (SELECT json_build_object(
      'events', (SELECT count(*) FROM e),
      'revenue', (SELECT coalesce(sum(revenue), 0) FROM items),
      'adds', (SELECT coalesce(sum(adds), 0) FROM items),
      'removes', (SELECT coalesce(sum(removes), 0) FROM items),
      'purchases', (SELECT coalesce(sum(purchases), 0) FROM items),
      'item_abandoned_value', (SELECT coalesce(sum(abandoned_value), 0) FROM items),
      'carts', count(*),
      'purchased_carts', count(*) FILTER (WHERE state = 'purchased'),
      'abandoned_carts', count(*) FILTER (WHERE state = 'abandoned'),
      'emptied_carts', count(*) FILTER (WHERE state = 'emptied'),
      'open_carts', count(*) FILTER (WHERE state = 'open'),
      'cart_abandoned_value', coalesce(sum(value) FILTER (WHERE state = 'abandoned'), 0))
    FROM started),
  'products', coalesce((SELECT json_agg(x ORDER BY product_id) FROM (
      SELECT product_id, sum(adds) AS adds, sum(removes) AS removes, sum(purchases) AS purchases,
             sum(revenue) AS revenue, sum(abandoned_value) AS abandoned_value
      FROM items GROUP BY 1) x), '[]'),
  'categories', coalesce((SELECT json_agg(x ORDER BY category) FROM (
      SELECT coalesce(p.category, 'unknown') AS category, sum(i.adds) AS adds,
             sum(i.purchases) AS purchases, sum(i.revenue) AS revenue,
             sum(i.abandoned_value) AS abandoned_value
      FROM items i LEFT JOIN products p USING (product_id) GROUP BY 1) x), '[]'),
  'price_bands', coalesce((SELECT json_agg(x ORDER BY band_floor) FROM (
      SELECT band_floor, sum(adds) AS adds, sum(removes) AS removes, sum(purchases) AS purchases,
             sum(revenue) AS revenue, sum(abandoned_value) AS abandoned_value
      FROM items GROUP BY 1) x), '[]'),
  'age_groups', coalesce((SELECT json_agg(x ORDER BY age_group) FROM (
      SELECT CASE WHEN cu.age IS NULL THEN 'unknown' WHEN cu.age < 18 THEN '0-17'
                  WHEN cu.age < 25 THEN '18-24' WHEN cu.age < 35 THEN '25-34'
                  WHEN cu.age < 45 THEN '35-44' WHEN cu.age < 55 THEN '45-54'
                  WHEN cu.age < 65 THEN '55-64' ELSE '65+' END AS age_group,
             count(DISTINCT s.customer_id) AS customers, count(*) AS carts,
             count(*) FILTER (WHERE s.state = 'purchased') AS purchased_carts,
             sum(s.events) AS events, sum(s.revenue) AS revenue,
             sum(s.value - s.revenue) AS abandoned_value
      FROM started s LEFT JOIN customers cu USING (customer_id) GROUP BY 1) x), '[]'),
  'timeline_events', coalesce((SELECT json_agg(x ORDER BY bucket) FROM (
      SELECT date_bin($3::int8 * interval '1 second', "timestamp",
                      timestamptz '2000-01-03 00:00:00+00') AS bucket, count(*) AS events
      FROM e GROUP BY 1) x), '[]'),
  'timeline_carts', coalesce((SELECT json_agg(x ORDER BY bucket) FROM (
      SELECT date_bin($3::int8 * interval '1 second', first_at,
                      timestamptz '2000-01-03 00:00:00+00') AS bucket, count(*) AS carts,
             count(*) FILTER (WHERE state = 'abandoned') AS abandoned_carts
      FROM started GROUP BY 1) x), '[]')
)::text
"#;

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
    let sql = EXPECTED.replace("BAND", BAND);
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
