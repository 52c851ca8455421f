-- The analytic views, second edition (issue #15). What changed from V3, and why:
--
-- * Cart outcomes are four labelled states that add up to the carts created: purchased,
--   abandoned (items left, no purchase for abandon_after of event time), emptied (every item
--   removed, no purchase) and open (items in it, still inside abandon_after). Two abandonment
--   rates are defined on them: cart_abandonment_rate = 1 - purchased / carts (the trade's: every
--   cart not bought, emptied and open included) and strict_abandonment_rate = abandoned / carts.
-- * Rates are not rounded here: a view that rounds to 4 places and a page that rounds again
--   for display showed 94.8% for 94.749%. Sentences and pages round once, for display.
-- * Insight sentences compute every number from the counts beside it (cartflow_percent), rank
--   by what their title says, put only real money left in carts in value_at_stake (never a
--   hypothetical) and never name the same product or category twice.
-- * RFM recency is in hours of event time, and the scores use fixed, documented thresholds
--   instead of quintiles, so a customer's segment changes when they (or the clock) do, not
--   because somebody else bought something between two refreshes.
--
-- Times are UTC. Item level: items abandoned = added - removed - purchased; the item
-- abandonment rate is their share of the items kept in carts (added - removed).

-- A share as a percentage with one decimal, for sentences: one rounding, from the counts.
CREATE FUNCTION public.cartflow_percent(part NUMERIC, whole NUMERIC) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN whole IS NULL OR whole = 0 THEN 'n/a'
                ELSE round(100 * part / whole, 1)::text || '%' END
$$;

-- The views change columns, which CREATE OR REPLACE VIEW cannot do: drop them all first.
DROP VIEW IF EXISTS v_insights, v_age_groups, v_high_value_customers, v_abandoned_carts,
    v_abandonment_by_hour, v_abandonment_by_price_band, v_abandoned_products,
    v_category_performance, v_product_performance, v_peaks, v_day_hour, v_month,
    v_day_of_week, v_hour_of_day, v_kpis, v_cart_hours CASCADE;

CREATE OR REPLACE FUNCTION public.cartflow_create_views() RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN

-- Cart outcomes by the hour the cart started, with the abandonment clock applied:
-- carts = purchased_carts + abandoned_carts + emptied_carts + open_carts.
CREATE OR REPLACE VIEW v_cart_hours AS
WITH k AS (SELECT watermark, abandon_after FROM analytics.checkpoint),
open AS (
    SELECT date_trunc('hour', c.first_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour,
           count(*) AS carts, sum(c.adds - c.removes) AS items,
           sum(c.added_value - c.removed_value) AS value
    FROM analytics.carts c, k
    WHERE c.purchases = 0 AND c.adds > c.removes AND c.last_at > k.watermark - k.abandon_after
    GROUP BY 1
)
SELECT h.hour, h.carts, h.purchased_carts, h.purchased_value,
       h.unpurchased_carts - coalesce(o.carts, 0) AS abandoned_carts,
       h.unpurchased_items - coalesce(o.items, 0) AS abandoned_items,
       h.unpurchased_value - coalesce(o.value, 0) AS abandoned_value,
       coalesce(o.carts, 0) AS open_carts,
       h.emptied_carts
FROM analytics.cart_hourly h LEFT JOIN open o USING (hour);

CREATE OR REPLACE VIEW v_kpis AS
WITH i AS (
    SELECT coalesce(sum(events), 0) AS events, coalesce(sum(adds), 0) AS adds,
           coalesce(sum(removes), 0) AS removes, coalesce(sum(purchases), 0) AS purchases,
           coalesce(sum(revenue), 0) AS revenue,
           coalesce(sum(added_value - removed_value - revenue), 0) AS item_abandoned_value
    FROM analytics.hourly_stats
), c AS (
    SELECT coalesce(sum(carts), 0) AS carts, coalesce(sum(purchased_carts), 0) AS purchased_carts,
           coalesce(sum(abandoned_carts), 0) AS abandoned_carts,
           coalesce(sum(emptied_carts), 0) AS emptied_carts,
           coalesce(sum(open_carts), 0) AS open_carts,
           coalesce(sum(abandoned_value), 0) AS abandoned_value
    FROM v_cart_hours
)
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
       round(i.revenue / nullif(c.purchased_carts, 0), 2) AS average_order_value,
       k.watermark, k.abandon_after, k.events AS projected_events, k.updated_at
FROM i, c, analytics.checkpoint k;

-- Seasonal trends.
CREATE OR REPLACE VIEW v_hour_of_day AS
WITH e AS (
    SELECT extract(hour FROM hour AT TIME ZONE 'UTC')::int AS hour_of_day, sum(events) AS events,
           sum(adds) AS adds, sum(removes) AS removes, sum(purchases) AS purchases,
           sum(revenue) AS revenue
    FROM analytics.hourly_stats GROUP BY 1
), c AS (
    SELECT extract(hour FROM hour AT TIME ZONE 'UTC')::int AS hour_of_day, sum(carts) AS carts,
           sum(purchased_carts) AS purchased_carts, sum(abandoned_carts) AS abandoned_carts,
           sum(emptied_carts) AS emptied_carts, sum(open_carts) AS open_carts,
           sum(abandoned_value) AS abandoned_value
    FROM v_cart_hours GROUP BY 1
)
SELECT h AS hour_of_day, coalesce(e.events, 0) AS events, coalesce(e.adds, 0) AS adds,
       coalesce(e.removes, 0) AS removes, coalesce(e.purchases, 0) AS purchases,
       coalesce(e.revenue, 0) AS revenue, coalesce(c.carts, 0) AS carts,
       coalesce(c.purchased_carts, 0) AS purchased_carts,
       coalesce(c.abandoned_carts, 0) AS abandoned_carts,
       coalesce(c.emptied_carts, 0) AS emptied_carts,
       coalesce(c.open_carts, 0) AS open_carts,
       coalesce(c.abandoned_value, 0) AS abandoned_value,
       1 - c.purchased_carts::numeric / nullif(c.carts, 0) AS cart_abandonment_rate,
       c.abandoned_carts::numeric / nullif(c.carts, 0) AS strict_abandonment_rate,
       (e.adds - e.removes - e.purchases)::numeric / nullif(e.adds - e.removes, 0)
           AS item_abandonment_rate
FROM generate_series(0, 23) h
LEFT JOIN e ON e.hour_of_day = h LEFT JOIN c ON c.hour_of_day = h;

CREATE OR REPLACE VIEW v_day_of_week AS
WITH e AS (
    SELECT extract(isodow FROM hour AT TIME ZONE 'UTC')::int AS d, sum(events) AS events,
           sum(adds) AS adds, sum(purchases) AS purchases, sum(revenue) AS revenue
    FROM analytics.hourly_stats GROUP BY 1
), c AS (
    SELECT extract(isodow FROM hour AT TIME ZONE 'UTC')::int AS d, sum(carts) AS carts,
           sum(purchased_carts) AS purchased_carts, sum(abandoned_carts) AS abandoned_carts
    FROM v_cart_hours GROUP BY 1
)
SELECT d AS iso_day_of_week,
       (ARRAY['Monday','Tuesday','Wednesday','Thursday','Friday','Saturday','Sunday'])[d] AS day,
       coalesce(e.events, 0) AS events, coalesce(e.adds, 0) AS adds,
       coalesce(e.purchases, 0) AS purchases, coalesce(e.revenue, 0) AS revenue,
       coalesce(c.carts, 0) AS carts, coalesce(c.purchased_carts, 0) AS purchased_carts,
       coalesce(c.abandoned_carts, 0) AS abandoned_carts,
       1 - c.purchased_carts::numeric / nullif(c.carts, 0) AS cart_abandonment_rate,
       c.abandoned_carts::numeric / nullif(c.carts, 0) AS strict_abandonment_rate
FROM generate_series(1, 7) d LEFT JOIN e USING (d) LEFT JOIN c USING (d);

CREATE OR REPLACE VIEW v_month AS
WITH e AS (
    SELECT extract(month FROM hour AT TIME ZONE 'UTC')::int AS m, sum(events) AS events,
           sum(adds) AS adds, sum(purchases) AS purchases, sum(revenue) AS revenue
    FROM analytics.hourly_stats GROUP BY 1
), c AS (
    SELECT extract(month FROM hour AT TIME ZONE 'UTC')::int AS m, sum(carts) AS carts,
           sum(purchased_carts) AS purchased_carts, sum(abandoned_carts) AS abandoned_carts
    FROM v_cart_hours GROUP BY 1
)
SELECT m AS month,
       (ARRAY['January','February','March','April','May','June','July','August','September',
              'October','November','December'])[m] AS month_name,
       coalesce(e.events, 0) AS events, coalesce(e.adds, 0) AS adds,
       coalesce(e.purchases, 0) AS purchases, coalesce(e.revenue, 0) AS revenue,
       coalesce(c.carts, 0) AS carts, coalesce(c.purchased_carts, 0) AS purchased_carts,
       coalesce(c.abandoned_carts, 0) AS abandoned_carts,
       1 - c.purchased_carts::numeric / nullif(c.carts, 0) AS cart_abandonment_rate,
       c.abandoned_carts::numeric / nullif(c.carts, 0) AS strict_abandonment_rate
FROM generate_series(1, 12) m LEFT JOIN e USING (m) LEFT JOIN c USING (m);

CREATE OR REPLACE VIEW v_day_hour AS
SELECT d AS iso_day_of_week, h AS hour_of_day,
       coalesce(sum(s.events), 0) AS events, coalesce(sum(s.purchases), 0) AS purchases,
       coalesce(sum(s.revenue), 0) AS revenue
FROM generate_series(1, 7) d CROSS JOIN generate_series(0, 23) h
LEFT JOIN analytics.hourly_stats s
       ON extract(isodow FROM s.hour AT TIME ZONE 'UTC') = d
      AND extract(hour FROM s.hour AT TIME ZONE 'UTC') = h
GROUP BY d, h;

CREATE OR REPLACE VIEW v_peaks AS
(SELECT 'hour of day' AS dimension, 'events' AS measure, hour_of_day::text AS peak,
        events::numeric AS value FROM v_hour_of_day WHERE events > 0
 ORDER BY events DESC, hour_of_day LIMIT 1)
UNION ALL
(SELECT 'hour of day', 'revenue', hour_of_day::text, revenue FROM v_hour_of_day
 WHERE revenue > 0 ORDER BY revenue DESC, hour_of_day LIMIT 1)
UNION ALL
(SELECT 'day of week', 'events', day, events FROM v_day_of_week WHERE events > 0
 ORDER BY events DESC, iso_day_of_week LIMIT 1)
UNION ALL
(SELECT 'day of week', 'revenue', day, revenue FROM v_day_of_week WHERE revenue > 0
 ORDER BY revenue DESC, iso_day_of_week LIMIT 1)
UNION ALL
(SELECT 'month', 'events', month_name, events FROM v_month WHERE events > 0
 ORDER BY events DESC, month LIMIT 1)
UNION ALL
(SELECT 'month', 'revenue', month_name, revenue FROM v_month WHERE revenue > 0
 ORDER BY revenue DESC, month LIMIT 1);

-- Product performance; abandonment here is item level.
CREATE OR REPLACE VIEW v_product_performance AS
SELECT s.product_id, coalesce(p.title, 'product ' || s.product_id) AS title,
       coalesce(p.category, 'unknown') AS category, p.price,
       s.adds, s.removes, s.purchases, s.revenue,
       s.purchases::numeric / nullif(s.adds, 0) AS add_to_purchase_rate,
       s.adds - s.removes - s.purchases AS items_abandoned,
       (s.adds - s.removes - s.purchases)::numeric / nullif(s.adds - s.removes, 0)
           AS item_abandonment_rate,
       s.added_value - s.removed_value - s.revenue AS abandoned_value,
       rank() OVER (ORDER BY s.adds DESC) AS rank_added,
       rank() OVER (ORDER BY s.purchases DESC) AS rank_purchased,
       rank() OVER (ORDER BY s.revenue DESC) AS rank_revenue,
       rank() OVER (PARTITION BY coalesce(p.category, 'unknown') ORDER BY s.revenue DESC)
           AS rank_revenue_in_category
FROM analytics.product_stats s LEFT JOIN products p USING (product_id);

CREATE OR REPLACE VIEW v_category_performance AS
SELECT category, count(*) AS products, sum(adds) AS adds, sum(removes) AS removes,
       sum(purchases) AS purchases, sum(revenue) AS revenue,
       sum(purchases)::numeric / nullif(sum(adds), 0) AS add_to_purchase_rate,
       sum(items_abandoned) AS items_abandoned,
       sum(items_abandoned)::numeric / nullif(sum(adds - removes), 0) AS item_abandonment_rate,
       sum(abandoned_value) AS abandoned_value
FROM v_product_performance GROUP BY category;

CREATE OR REPLACE VIEW v_abandoned_products AS
SELECT 'item level' AS definition, product_id, title, category, adds, items_abandoned,
       item_abandonment_rate, abandoned_value
FROM v_product_performance WHERE items_abandoned > 0;

CREATE OR REPLACE VIEW v_abandonment_by_price_band AS
SELECT 'item level' AS definition, band_floor,
       CASE band_floor WHEN 0 THEN 'under 25' WHEN 25 THEN '25 to 100'
                       WHEN 100 THEN '100 to 500' ELSE '500 and over' END AS band,
       adds, removes, purchases, revenue,
       adds - removes - purchases AS items_abandoned,
       (adds - removes - purchases)::numeric / nullif(adds - removes, 0) AS item_abandonment_rate,
       added_value - removed_value - revenue AS abandoned_value
FROM analytics.price_band_stats;

CREATE OR REPLACE VIEW v_abandonment_by_hour AS
SELECT 'cart level, by the hour the cart started' AS definition, hour_of_day, carts,
       purchased_carts, abandoned_carts, emptied_carts, open_carts, abandoned_value,
       cart_abandonment_rate, strict_abandonment_rate, item_abandonment_rate
FROM v_hour_of_day;

-- Abandoned carts themselves (cart level), the latest first.
CREATE OR REPLACE VIEW v_abandoned_carts AS
SELECT c.cart_key, c.customer_id, c.first_at, c.last_at, c.adds - c.removes AS items,
       c.added_value - c.removed_value AS value
FROM analytics.carts c, analytics.checkpoint k
WHERE c.purchases = 0 AND c.adds > c.removes AND c.last_at <= k.watermark - k.abandon_after;

-- Customers who bought: value, RFM scores (1 to 5, 5 best) and a segment. Fixed thresholds:
-- recency by hours of event time since the last purchase (< 24, 72, 168, 720), frequency by
-- orders (>= 8, 5, 3, 2), monetary by revenue against the mean buyer's (>= 2.5x, 1.5x,
-- 0.75x, 0.4x).
CREATE OR REPLACE VIEW v_high_value_customers AS
WITH buyers AS (
    SELECT s.*,
           extract(epoch FROM k.watermark - s.last_purchase_at) / 3600 AS hours,
           s.revenue / nullif(avg(s.revenue) OVER (), 0) AS relative_revenue
    FROM analytics.customer_stats s, analytics.checkpoint k
    WHERE s.purchased_carts > 0
), scored AS (
    SELECT b.*,
           CASE WHEN hours < 24 THEN 5 WHEN hours < 72 THEN 4 WHEN hours < 168 THEN 3
                WHEN hours < 720 THEN 2 ELSE 1 END AS r,
           CASE WHEN purchased_carts >= 8 THEN 5 WHEN purchased_carts >= 5 THEN 4
                WHEN purchased_carts >= 3 THEN 3 WHEN purchased_carts >= 2 THEN 2
                ELSE 1 END AS f,
           CASE WHEN relative_revenue >= 2.5 THEN 5 WHEN relative_revenue >= 1.5 THEN 4
                WHEN relative_revenue >= 0.75 THEN 3 WHEN relative_revenue >= 0.4 THEN 2
                ELSE 1 END AS m
    FROM buyers b
)
SELECT s.customer_id, cu.name, cu.age, s.revenue, s.purchased_carts AS orders,
       round(s.revenue / s.purchased_carts, 2) AS average_order_value,
       s.last_purchase_at,
       round(s.hours, 2) AS hours_since_purchase,
       s.r AS recency_score, s.f AS frequency_score, s.m AS monetary_score,
       (s.r * 100 + s.f * 10 + s.m) AS rfm_score,
       CASE WHEN s.r >= 4 AND s.f >= 4 AND s.m >= 4 THEN 'champions'
            WHEN s.f >= 4 THEN 'loyal'
            WHEN s.r <= 2 AND s.m >= 4 THEN 'at risk, high value'
            WHEN s.r >= 4 AND s.f <= 2 THEN 'new'
            WHEN s.r <= 2 THEN 'hibernating'
            ELSE 'promising' END AS segment,
       rank() OVER (ORDER BY s.revenue DESC) AS rank_revenue
FROM scored s LEFT JOIN customers cu USING (customer_id);

CREATE OR REPLACE VIEW v_age_groups AS
WITH g AS (
    SELECT CASE WHEN cu.age IS NULL THEN 'unknown' WHEN cu.age < 18 THEN '0-17'
                WHEN cu.age < 25 THEN '18-24' WHEN cu.age < 35 THEN '25-34'
                WHEN cu.age < 45 THEN '35-44' WHEN cu.age < 55 THEN '45-54'
                WHEN cu.age < 65 THEN '55-64' ELSE '65+' END AS age_group,
           s.*
    FROM analytics.customer_stats s LEFT JOIN customers cu USING (customer_id)
)
SELECT age_group, count(*) AS customers, sum(events) AS events, sum(adds) AS adds,
       sum(purchases) AS purchases, sum(revenue) AS revenue, sum(carts) AS carts,
       sum(purchased_carts) AS purchased_carts,
       sum(purchased_carts)::numeric / nullif(sum(carts), 0) AS cart_to_purchase_rate,
       1 - sum(purchased_carts)::numeric / nullif(sum(carts), 0) AS cart_abandonment_rate,
       sum(added_value - removed_value - revenue) AS abandoned_value
FROM g GROUP BY age_group;

-- Findings for raising conversion. value_at_stake is always money left unbought in carts
-- (item level, or cart level where the finding is about carts); findings without one rank last.
CREATE OR REPLACE VIEW v_insights AS
WITH k AS (SELECT * FROM v_kpis),
top_category AS (
    SELECT * FROM v_category_performance WHERE abandoned_value > 0
    ORDER BY abandoned_value DESC, category LIMIT 1
), top_product AS (
    SELECT * FROM v_product_performance WHERE abandoned_value > 0
    ORDER BY abandoned_value DESC, product_id LIMIT 1
), f AS (
    SELECT 'category losing the most value' AS finding, category AS subject,
           abandoned_value AS value_at_stake,
           format('%s items abandoned of %s kept in carts (%s, item level), worth %s',
                  items_abandoned, adds - removes,
                  cartflow_percent(items_abandoned, adds - removes), abandoned_value) AS evidence
    FROM top_category
    UNION ALL
    SELECT 'product losing the most value', title, abandoned_value,
           format('%s items abandoned of %s kept in carts (%s, item level), worth %s',
                  items_abandoned, adds - removes,
                  cartflow_percent(items_abandoned, adds - removes), abandoned_value)
    FROM top_product
    UNION ALL
    (SELECT 'product with the most adds not bought', title, abandoned_value,
            format('%s added, %s bought (%s of adds), %s left unbought in carts, worth %s',
                   adds, purchases, cartflow_percent(purchases, adds), items_abandoned,
                   abandoned_value)
     FROM v_product_performance
     WHERE adds > purchases AND product_id NOT IN (SELECT product_id FROM top_product)
     ORDER BY adds - purchases DESC, product_id LIMIT 1)
    UNION ALL
    (SELECT 'price band with the highest item abandonment rate', band, abandoned_value,
            format('%s of the %s items kept in carts are abandoned (%s, item level), against %s overall; worth %s',
                   items_abandoned, adds - removes, cartflow_percent(items_abandoned, adds - removes),
                   (SELECT cartflow_percent(item_abandoned, adds - removes) FROM k),
                   abandoned_value)
     FROM v_abandonment_by_price_band WHERE adds > removes
     ORDER BY item_abandonment_rate DESC, band_floor LIMIT 1)
    UNION ALL
    (SELECT 'hour of day with the most carts abandoned', hour_of_day || ':00 UTC',
            abandoned_value,
            format('%s of the %s carts started in that hour were abandoned (%s, cart level), worth %s',
                   abandoned_carts, carts, cartflow_percent(abandoned_carts, carts),
                   abandoned_value)
     FROM v_hour_of_day WHERE abandoned_carts > 0
     ORDER BY abandoned_carts DESC, hour_of_day LIMIT 1)
    UNION ALL
    (SELECT 'age group with the lowest cart-to-purchase rate', age_group, abandoned_value,
            format('%s of its %s carts were bought (%s), against %s overall; %s left unbought in its carts',
                   purchased_carts, carts, cartflow_percent(purchased_carts, carts),
                   (SELECT cartflow_percent(purchased_carts, carts) FROM k), abandoned_value)
     FROM v_age_groups WHERE carts > 0 AND age_group <> 'unknown'
     ORDER BY cart_to_purchase_rate, age_group LIMIT 1)
    UNION ALL
    (SELECT 'category with the highest add-to-purchase rate', category, NULL::numeric,
            format('%s of %s adds bought (%s), worth %s', purchases, adds,
                   cartflow_percent(purchases, adds), revenue)
     FROM v_category_performance
     WHERE adds > 0 AND category NOT IN (SELECT category FROM top_category)
     ORDER BY add_to_purchase_rate DESC, category LIMIT 1)
    UNION ALL
    (SELECT 'hour of day with the most events', hour_of_day || ':00 UTC', NULL::numeric,
            format('%s of %s events (%s) fall in that hour of day', events,
                   (SELECT events FROM k), cartflow_percent(events, (SELECT events FROM k)))
     FROM v_hour_of_day WHERE events > 0
     ORDER BY events DESC, hour_of_day LIMIT 1)
)
SELECT row_number() OVER (ORDER BY value_at_stake DESC NULLS LAST, finding)::int AS rank,
       finding, subject, value_at_stake, evidence
FROM f;

END;
$fn$;

SELECT public.cartflow_create_views();
