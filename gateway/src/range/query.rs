//! The statement behind `/api/range`: a resolved range summed from the public views of the
//! bucketed tables, every number computed as the all-time views compute it (migrations/V6) so
//! a range covering everything reads like the snapshot.

use chrono::Utc;
use serde_json::Value;
use tokio_postgres::Transaction;

use super::{Clock, Resolved, Spec, describe};

/// Parameters: $1 grain ('minute' or 'hour'), $2 from, $3 to (timestamptz, `[from, to)`), $4
/// the timeline's bucket width in seconds. Buckets are aligned on Monday 2000-01-03 UTC.
const SQL: &str = r#"
WITH items AS (
    SELECT * FROM v_item_buckets WHERE grain = $1 AND bucket >= $2 AND bucket < $3
), cartb AS (
    SELECT * FROM v_cart_buckets WHERE grain = $1 AND bucket >= $2 AND bucket < $3
), open_now AS MATERIALIZED (
    -- Every open cart (few: their last event is within abandon_after), through the partial
    -- index; the planner would otherwise walk the range's carts by first_at to find them.
    SELECT first_at, items, value FROM v_open_carts
), open AS (
    SELECT * FROM open_now WHERE first_at >= $2 AND first_at < $3
), started AS (
    SELECT * FROM v_cart_states WHERE first_at >= $2 AND first_at < $3
), ipb AS (
    -- One pass over the range's rows for the totals, products and bands.
    SELECT product_id, band_floor, sum(events) AS events, sum(adds) AS adds,
           sum(removes) AS removes, sum(purchases) AS purchases, sum(added_value) AS added_value,
           sum(removed_value) AS removed_value, sum(revenue) AS revenue
    FROM items GROUP BY product_id, band_floor
), i AS (
    SELECT coalesce(sum(events), 0) AS events, coalesce(sum(adds), 0) AS adds,
           coalesce(sum(removes), 0) AS removes, coalesce(sum(purchases), 0) AS purchases,
           coalesce(sum(revenue), 0) AS revenue,
           coalesce(sum(added_value - removed_value - revenue), 0) AS item_abandoned_value
    FROM ipb
), o AS (
    SELECT count(*) AS carts, coalesce(sum(value), 0) AS value FROM open
), cb AS (
    SELECT coalesce(sum(carts), 0) AS carts, coalesce(sum(purchased_carts), 0) AS purchased_carts,
           coalesce(sum(unpurchased_carts), 0) AS unpurchased_carts,
           coalesce(sum(unpurchased_value), 0) AS unpurchased_value,
           coalesce(sum(emptied_carts), 0) AS emptied_carts
    FROM cartb
), c AS (
    SELECT cb.carts, cb.purchased_carts, cb.unpurchased_carts - o.carts AS abandoned_carts,
           cb.emptied_carts, o.carts AS open_carts,
           cb.unpurchased_value - o.value AS abandoned_value
    FROM cb, o
), kpis AS (
    SELECT i.events, i.adds, i.removes, i.purchases, i.revenue,
           c.carts, c.purchased_carts, c.abandoned_carts, c.emptied_carts, c.open_carts,
           c.purchased_carts::numeric / nullif(c.carts, 0) AS cart_to_purchase_rate,
           1 - c.purchased_carts::numeric / nullif(c.carts, 0) AS cart_abandonment_rate,
           c.abandoned_carts::numeric / nullif(c.carts, 0) AS strict_abandonment_rate,
           c.abandoned_value AS cart_abandoned_value,
           i.adds - i.removes - i.purchases AS item_abandoned,
           (i.adds - i.removes - i.purchases)::numeric / nullif(i.adds - i.removes, 0)
               AS item_abandonment_rate,
           i.item_abandoned_value,
           round(i.revenue / nullif(c.purchased_carts, 0), 2) AS average_order_value
    FROM i, c
), p AS (
    SELECT product_id, sum(adds) AS adds, sum(removes) AS removes, sum(purchases) AS purchases,
           sum(revenue) AS revenue, sum(added_value - removed_value - revenue) AS abandoned_value
    FROM ipb GROUP BY product_id
), prod AS (
    SELECT p.product_id, coalesce(pr.title, 'product ' || p.product_id) AS title,
           coalesce(pr.category, 'unknown') AS category, pr.price,
           p.adds, p.removes, p.purchases, p.revenue,
           p.purchases::numeric / nullif(p.adds, 0) AS add_to_purchase_rate,
           p.adds - p.removes - p.purchases AS items_abandoned,
           (p.adds - p.removes - p.purchases)::numeric / nullif(p.adds - p.removes, 0)
               AS item_abandonment_rate,
           p.abandoned_value,
           rank() OVER (ORDER BY p.revenue DESC) AS rank_revenue
    FROM p LEFT JOIN products pr USING (product_id)
), cat AS (
    SELECT category, count(*) AS products, sum(adds) AS adds, sum(removes) AS removes,
           sum(purchases) AS purchases, sum(revenue) AS revenue,
           sum(purchases)::numeric / nullif(sum(adds), 0) AS add_to_purchase_rate,
           sum(items_abandoned) AS items_abandoned,
           sum(items_abandoned)::numeric / nullif(sum(adds - removes), 0) AS item_abandonment_rate,
           sum(abandoned_value) AS abandoned_value
    FROM prod GROUP BY category
), bands AS (
    SELECT band_floor,
           CASE band_floor WHEN 0 THEN 'under 25' WHEN 25 THEN '25 to 100'
                           WHEN 100 THEN '100 to 500' ELSE '500 and over' END AS band,
           sum(adds) AS adds, sum(removes) AS removes, sum(purchases) AS purchases,
           sum(revenue) AS revenue, sum(adds - removes - purchases) AS items_abandoned,
           sum(adds - removes - purchases)::numeric / nullif(sum(adds - removes), 0)
               AS item_abandonment_rate,
           sum(added_value - removed_value - revenue) AS abandoned_value
    FROM ipb GROUP BY band_floor
), by_customer AS (
    -- Summed per customer first: a hash aggregate, where a DISTINCT count would sort every cart.
    SELECT customer_id, count(*) AS carts, count(*) FILTER (WHERE purchases > 0) AS purchased_carts,
           sum(events) AS events, sum(adds) AS adds, sum(purchases) AS purchases,
           sum(revenue) AS revenue, sum(value - revenue) AS abandoned_value
    FROM started GROUP BY customer_id
), age AS (
    SELECT CASE WHEN cu.age IS NULL THEN 'unknown' WHEN cu.age < 18 THEN '0-17'
                WHEN cu.age < 25 THEN '18-24' WHEN cu.age < 35 THEN '25-34'
                WHEN cu.age < 45 THEN '35-44' WHEN cu.age < 55 THEN '45-54'
                WHEN cu.age < 65 THEN '55-64' ELSE '65+' END AS age_group,
           count(*) AS customers, sum(s.events) AS events, sum(s.adds) AS adds,
           sum(s.purchases) AS purchases, sum(s.revenue) AS revenue, sum(s.carts) AS carts,
           sum(s.purchased_carts) AS purchased_carts,
           sum(s.purchased_carts)::numeric / sum(s.carts) AS cart_to_purchase_rate,
           1 - sum(s.purchased_carts)::numeric / sum(s.carts) AS cart_abandonment_rate,
           sum(s.abandoned_value) AS abandoned_value
    FROM by_customer s LEFT JOIN customers cu USING (customer_id) GROUP BY 1
), bins AS (
    SELECT generate_series(date_bin(w, $2, origin), $3 - interval '1 microsecond', w) AS bucket
    FROM (SELECT $4::int8 * interval '1 second' AS w,
                 timestamptz '2000-01-03 00:00:00+00' AS origin) x
), tl_items AS (
    SELECT date_bin($4::int8 * interval '1 second', bucket, timestamptz '2000-01-03 00:00:00+00')
               AS bucket, sum(events) AS events, sum(revenue) AS revenue
    FROM items GROUP BY 1
), tl_carts AS (
    SELECT date_bin($4::int8 * interval '1 second', bucket, timestamptz '2000-01-03 00:00:00+00')
               AS bucket, sum(carts) AS carts, sum(purchased_carts) AS purchased_carts,
           sum(unpurchased_carts) AS unpurchased_carts
    FROM cartb GROUP BY 1
), tl_open AS (
    SELECT date_bin($4::int8 * interval '1 second', first_at, timestamptz '2000-01-03 00:00:00+00')
               AS bucket, count(*) AS open_carts
    FROM open GROUP BY 1
), tl AS (
    SELECT b.bucket, coalesce(ti.events, 0) AS events, coalesce(ti.revenue, 0) AS revenue,
           coalesce(tc.carts, 0) AS carts, coalesce(tc.purchased_carts, 0) AS purchased_carts,
           coalesce(tc.unpurchased_carts, 0) - coalesce(tn.open_carts, 0) AS abandoned_carts,
           coalesce(tn.open_carts, 0) AS open_carts,
           1 - tc.purchased_carts::numeric / nullif(tc.carts, 0) AS cart_abandonment_rate
    FROM bins b LEFT JOIN tl_items ti USING (bucket) LEFT JOIN tl_carts tc USING (bucket)
    LEFT JOIN tl_open tn USING (bucket)
)
SELECT json_build_object(
    'kpis', (SELECT row_to_json(kpis) FROM kpis),
    'products', coalesce((SELECT json_agg(prod ORDER BY rank_revenue, product_id) FROM prod), '[]'),
    'categories', coalesce((SELECT json_agg(cat ORDER BY revenue DESC, category) FROM cat), '[]'),
    'abandoned_products', coalesce((SELECT json_agg(x) FROM (
        SELECT 'item level' AS definition, product_id, title, category, adds, items_abandoned,
               item_abandonment_rate, abandoned_value
        FROM prod WHERE items_abandoned > 0 ORDER BY abandoned_value DESC, product_id LIMIT 10) x),
        '[]'),
    'price_bands', coalesce((SELECT json_agg(bands ORDER BY band_floor) FROM bands), '[]'),
    'age_groups', coalesce((SELECT json_agg(age ORDER BY age_group) FROM age), '[]'),
    'timeline', coalesce((SELECT json_agg(tl ORDER BY bucket) FROM tl), '[]')
)::text
"#;

/// Reads the clock, resolves `spec` and answers it, inside `tx` (one snapshot).
pub(super) async fn answer(
    tx: &Transaction<'_>,
    spec: Spec,
) -> Result<Value, tokio_postgres::Error> {
    let row = tx
        .query_one(
            "SELECT watermark, minute_cutoff, first_hour FROM v_range_clock",
            &[],
        )
        .await?;
    let clock = Clock {
        watermark: row.get(0),
        minute_cutoff: row.get(1),
        first_hour: row.get(2),
    };
    let r = Resolved::new(spec, &clock, Utc::now());
    let text: String = tx
        .query_one(
            SQL,
            &[&r.grain.name(), &r.from, &r.to, &r.bucket.num_seconds()],
        )
        .await?
        .get(0);
    let mut value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    value["range"] = describe(spec, &r, &clock);
    Ok(value)
}
