//! The projector's aggregates read back as text, and the same aggregates computed by plain SQL
//! straight from `events`: an independent statement of what every table must hold.

use tokio_postgres::Client;

/// The item counters of every `*_stats` table, by plain SQL over `events`.
const COUNTERS: &str = "count(*)::int8 AS events,
    count(*) FILTER (WHERE action = 'add_to_cart') AS adds,
    count(*) FILTER (WHERE action = 'remove_from_cart') AS removes,
    count(*) FILTER (WHERE action = 'purchase_cart') AS purchases,
    coalesce(sum(product_price) FILTER (WHERE action = 'add_to_cart'), 0)::numeric(20,2) AS added_value,
    coalesce(sum(product_price) FILTER (WHERE action = 'remove_from_cart'), 0)::numeric(20,2) AS removed_value,
    coalesce(sum(product_price) FILTER (WHERE action = 'purchase_cart'), 0)::numeric(20,2) AS revenue";
const COLUMNS: &str = "events, adds, removes, purchases, added_value, removed_value, revenue";
/// An event's price band, by plain SQL.
pub const BAND: &str = "CASE WHEN product_price >= 500 THEN 500 WHEN product_price >= 100 \
    THEN 100 WHEN product_price >= 25 THEN 25 ELSE 0 END";
/// Where the per-minute timeline begins: `minute_retention` before the latest event.
const RECENT: &str = "(SELECT max(\"timestamp\") FROM events) - \
    (SELECT minute_retention FROM analytics.checkpoint)";
/// The columns of `cart_hourly` and `cart_minutely` over carts `c`, by plain SQL.
const CART_OUTCOMES: &str = "count(*)::int8, \
    count(*) FILTER (WHERE purchases > 0), \
    coalesce(sum(revenue) FILTER (WHERE purchases > 0), 0)::numeric(20,2), \
    count(*) FILTER (WHERE purchases = 0 AND adds > removes), \
    coalesce(sum(adds - removes) FILTER (WHERE purchases = 0 AND adds > removes), 0)::int8, \
    coalesce(sum(added_value - removed_value) \
        FILTER (WHERE purchases = 0 AND adds > removes), 0)::numeric(20,2), \
    count(*) FILTER (WHERE purchases = 0 AND adds <= removes)";

/// The carts, by plain SQL over `events`: the rows of `analytics.carts`.
pub fn carts_sql() -> String {
    let cart_key = "coalesce(session_id, 'customer ' || customer_id || ' on ' || \
                    to_char((\"timestamp\" AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD'))";
    format!(
        "SELECT {cart_key} AS cart_key, {COUNTERS}, min(customer_id) AS customer_id, \
             min(\"timestamp\") AS first_at, max(\"timestamp\") AS last_at \
         FROM events GROUP BY 1"
    )
}

/// Each aggregate table: its name, the stored rows, and the rows plain SQL gives.
pub fn aggregates() -> Vec<(&'static str, String, String)> {
    let carts = carts_sql();
    let hour =
        |col: &str| format!("date_trunc('hour', {col} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'");
    let minute =
        |col: &str| format!("date_trunc('minute', {col} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'");
    vec![
        (
            "product_stats",
            format!("SELECT product_id, {COLUMNS} FROM analytics.product_stats"),
            format!("SELECT product_id, {COUNTERS} FROM events GROUP BY 1"),
        ),
        (
            "hourly_stats",
            format!("SELECT hour, {COLUMNS} FROM analytics.hourly_stats"),
            format!(
                "SELECT {} AS hour, {COUNTERS} FROM events GROUP BY 1",
                hour("\"timestamp\"")
            ),
        ),
        (
            "price_band_stats",
            format!("SELECT band_floor, {COLUMNS} FROM analytics.price_band_stats"),
            format!("SELECT {BAND} AS band_floor, {COUNTERS} FROM events GROUP BY 1"),
        ),
        (
            "carts",
            format!(
                "SELECT cart_key, {COLUMNS}, customer_id, first_at, last_at FROM analytics.carts"
            ),
            carts.clone(),
        ),
        (
            "customer_stats",
            format!(
                "SELECT customer_id, {COLUMNS}, carts, purchased_carts, first_seen, last_seen, \
                     last_purchase_at FROM analytics.customer_stats"
            ),
            format!(
                "WITH c AS ({carts}) \
                 SELECT e.customer_id, {COUNTERS}, \
                     (SELECT count(*) FROM c WHERE c.customer_id = e.customer_id) AS carts, \
                     (SELECT count(*) FROM c WHERE c.customer_id = e.customer_id \
                         AND c.purchases > 0) AS purchased_carts, \
                     min(\"timestamp\"), max(\"timestamp\"), \
                     max(\"timestamp\") FILTER (WHERE action = 'purchase_cart') \
                 FROM events e GROUP BY 1"
            ),
        ),
        (
            "cart_hourly",
            "SELECT hour, carts, purchased_carts, purchased_value, unpurchased_carts, \
                 unpurchased_items, unpurchased_value, emptied_carts FROM analytics.cart_hourly \
             WHERE carts <> 0 OR purchased_carts <> 0 OR unpurchased_carts <> 0 \
                 OR emptied_carts <> 0"
                .to_owned(),
            format!(
                "WITH c AS ({carts}) SELECT {} AS hour, {CART_OUTCOMES} FROM c GROUP BY 1",
                hour("first_at")
            ),
        ),
        (
            "minute_stats",
            format!("SELECT minute, {COLUMNS} FROM analytics.minute_stats"),
            format!(
                "SELECT {} AS minute, {COUNTERS} FROM events GROUP BY 1 HAVING {} >= {RECENT}",
                minute("\"timestamp\""),
                minute("\"timestamp\"")
            ),
        ),
        (
            "cart_minutely",
            "SELECT minute, carts, purchased_carts, purchased_value, unpurchased_carts, \
                 unpurchased_items, unpurchased_value, emptied_carts FROM analytics.cart_minutely \
             WHERE carts <> 0 OR purchased_carts <> 0 OR unpurchased_carts <> 0 \
                 OR emptied_carts <> 0"
                .to_owned(),
            format!(
                "WITH c AS ({carts}) \
                 SELECT {} AS minute, {CART_OUTCOMES} FROM c GROUP BY 1 HAVING {} >= {RECENT}",
                minute("first_at"),
                minute("first_at")
            ),
        ),
        (
            "item_hourly",
            format!("SELECT hour, product_id, band_floor, {COLUMNS} FROM analytics.item_hourly"),
            format!(
                "SELECT {} AS hour, product_id, {BAND} AS band_floor, {COUNTERS} \
                 FROM events GROUP BY 1, 2, 3",
                hour("\"timestamp\"")
            ),
        ),
        (
            "item_minutely",
            format!(
                "SELECT minute, product_id, band_floor, {COLUMNS} FROM analytics.item_minutely"
            ),
            format!(
                "SELECT {} AS minute, product_id, {BAND} AS band_floor, {COUNTERS} \
                 FROM events GROUP BY 1, 2, 3 HAVING {} >= {RECENT}",
                minute("\"timestamp\""),
                minute("\"timestamp\"")
            ),
        ),
        (
            "checkpoint",
            "SELECT events, watermark FROM analytics.checkpoint".to_owned(),
            "SELECT count(*)::int8, max(\"timestamp\") FROM events".to_owned(),
        ),
    ]
}

/// The analytic views, for comparing one generation of the tables with another.
pub const VIEWS: [&str; 17] = [
    "SELECT events, adds, removes, purchases, revenue, carts, purchased_carts, abandoned_carts, \
         emptied_carts, open_carts, cart_to_purchase_rate, cart_abandonment_rate, \
         strict_abandonment_rate, cart_abandoned_value, \
         item_abandoned, item_abandonment_rate, item_abandoned_value, average_order_value, \
         watermark, projected_events FROM v_kpis",
    "SELECT * FROM v_cart_hours",
    "SELECT * FROM v_hour_of_day",
    "SELECT * FROM v_day_of_week",
    "SELECT * FROM v_month",
    "SELECT * FROM v_day_hour",
    "SELECT * FROM v_peaks",
    "SELECT * FROM v_product_performance",
    "SELECT * FROM v_category_performance",
    "SELECT * FROM v_abandoned_products",
    "SELECT * FROM v_abandonment_by_price_band",
    "SELECT * FROM v_abandoned_carts",
    "SELECT * FROM v_high_value_customers",
    "SELECT * FROM v_age_groups",
    "SELECT * FROM v_insights",
    "SELECT * FROM v_timeline_hour",
    "SELECT * FROM v_timeline_minute",
];

/// What plain SQL over `events` says of the time range `[$1, $2)` (timeline bins of $3 seconds):
/// the tiles, products, categories, price bands, age groups and timeline that `/api/range` sums
/// from the aggregates, keyed as its answer is.
const RANGE_SQL: &str = r#"
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

/// The plain SQL of a time range (`RANGE_SQL` above), ready to run.
pub fn range_sql() -> String {
    RANGE_SQL.replace("BAND", BAND)
}

/// The rows of `sql`, each as text, sorted.
pub async fn rows(client: &Client, sql: &str) -> Vec<String> {
    client
        .query(&format!("SELECT t::text FROM ({sql}) t ORDER BY 1"), &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every aggregate table and view, as text: two generations are equal when this is.
pub async fn snapshot(client: &Client) -> Vec<(String, Vec<String>)> {
    let mut all = Vec::new();
    for (name, stored, _) in aggregates() {
        all.push((name.to_owned(), rows(client, &stored).await));
    }
    for view in VIEWS {
        all.push((view.to_owned(), rows(client, view).await));
    }
    // The tables' shape too: a rebuild that lost an index or a key would still hold the rows.
    let shape = [
        (
            "indexes",
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'analytics'",
        ),
        (
            "constraints",
            "SELECT t.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c \
             JOIN pg_class t ON t.oid = c.conrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = 'analytics'",
        ),
    ];
    for (name, sql) in shape {
        all.push((name.to_owned(), rows(client, sql).await));
    }
    all
}

/// Panics with the first difference between the stored aggregates and plain SQL.
pub async fn assert_matches_plain_sql(client: &Client) {
    for (name, stored, expected) in aggregates() {
        let (stored, expected) = (rows(client, &stored).await, rows(client, &expected).await);
        assert_eq!(
            stored.len(),
            expected.len(),
            "{name}: {} rows stored, plain SQL gives {}",
            stored.len(),
            expected.len()
        );
        for (s, e) in stored.iter().zip(&expected) {
            assert_eq!(s, e, "{name}: stored row differs from plain SQL");
        }
    }
}

/// Whether the projector has applied every committed event.
pub async fn projected_everything(client: &Client) -> bool {
    client
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM events e, analytics.checkpoint k \
                 WHERE e.tx_id >= k.next_tx)",
            &[],
        )
        .await
        .expect("read the checkpoint")
        .get(0)
}

/// Inserts `n` synthetic events numbered from `first`, in one transaction: `customers`
/// customers, 20 products, carts (sessions) of four events spread over a few weeks (late
/// events included), every action and every price band.
pub async fn insert_events(client: &Client, first: i64, n: i64, customers: i64) {
    client
        .execute(
            "INSERT INTO events (event_id, customer_id, product_id, product_title, \
                 product_price, action, \"timestamp\", session_id, kafka_partition, kafka_offset) \
             SELECT gen_random_uuid(), i % $3::int8 + 1, i % 20 + 1, 'product', \
                 (ARRAY[9.99, 24.99, 109.95, 695.00])[i % 4 + 1], \
                 (ARRAY['add_to_cart', 'add_to_cart', 'remove_from_cart', 'purchase_cart'])[i % 4 + 1], \
                 timestamptz '2026-10-01' + (i * 7919 % 40000) * interval '1 minute', \
                 's' || (i / 4), 0, i \
             FROM generate_series($1::int8, $1::int8 + $2::int8 - 1) i",
            &[&first, &n, &customers],
        )
        .await
        .expect("insert events");
}

/// Runs the projector's steps in this process until every committed event is applied
/// (another test's transaction on the same server can hold the horizon back for a moment).
pub async fn project_everything(client: &mut Client, chunk: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !projected_everything(client).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the projector never caught up"
        );
        cartflow_projector::apply::catch_up(
            client,
            cartflow_projector::apply::Generation::Live,
            chunk,
        )
        .await
        .expect("projector step");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
