-- The timeline (issue #16): the same counters as hourly_stats and cart_hourly, per minute, for
-- recent time. Minute rows older than minute_retention before the watermark are dropped by
-- the projector at every step (the hourly tables keep all of time); a rebuild keeps the same
-- window, so the two generations stay equal.

ALTER TABLE analytics.checkpoint
    ADD COLUMN minute_retention INTERVAL NOT NULL DEFAULT '48 hours';

CREATE TABLE analytics.minute_stats (LIKE analytics.hourly_stats INCLUDING DEFAULTS);
ALTER TABLE analytics.minute_stats DROP COLUMN hour;
ALTER TABLE analytics.minute_stats ADD COLUMN minute TIMESTAMPTZ PRIMARY KEY;

-- Cart outcomes by the minute the cart started (as cart_hourly by the hour).
CREATE TABLE analytics.cart_minutely (LIKE analytics.cart_hourly INCLUDING DEFAULTS);
ALTER TABLE analytics.cart_minutely DROP COLUMN hour;
ALTER TABLE analytics.cart_minutely ADD COLUMN minute TIMESTAMPTZ PRIMARY KEY;

-- The views of V6 stay as they are; the timeline's are added beside them by the function a
-- rebuild's swap calls.
ALTER FUNCTION public.cartflow_create_views() RENAME TO cartflow_create_core_views;

CREATE FUNCTION public.cartflow_create_views() RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
PERFORM public.cartflow_create_core_views();

-- One row per bucket: events by action, revenue, and the carts started in the bucket in each
-- of the four states (the abandonment clock applied as in v_cart_hours), with both
-- abandonment rates, the cart-to-purchase rate and the abandoned value (cart level).
CREATE OR REPLACE VIEW v_timeline_hour AS
SELECT coalesce(s.hour, c.hour) AS bucket,
       coalesce(s.events, 0) AS events, coalesce(s.adds, 0) AS adds,
       coalesce(s.removes, 0) AS removes, coalesce(s.purchases, 0) AS purchases,
       coalesce(s.revenue, 0) AS revenue,
       coalesce(c.carts, 0) AS carts, coalesce(c.purchased_carts, 0) AS purchased_carts,
       coalesce(c.abandoned_carts, 0) AS abandoned_carts,
       coalesce(c.emptied_carts, 0) AS emptied_carts, coalesce(c.open_carts, 0) AS open_carts,
       1 - c.purchased_carts::numeric / nullif(c.carts, 0) AS cart_abandonment_rate,
       c.abandoned_carts::numeric / nullif(c.carts, 0) AS strict_abandonment_rate,
       c.purchased_carts::numeric / nullif(c.carts, 0) AS cart_to_purchase_rate,
       coalesce(c.abandoned_value, 0) AS abandoned_value
FROM analytics.hourly_stats s
FULL JOIN (SELECT * FROM v_cart_hours WHERE carts <> 0) c ON c.hour = s.hour;

CREATE OR REPLACE VIEW v_timeline_minute AS
WITH k AS (SELECT watermark, abandon_after FROM analytics.checkpoint),
open AS (
    SELECT date_trunc('minute', c.first_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS minute,
           count(*) AS carts,
           sum(c.adds - c.removes) AS items, sum(c.added_value - c.removed_value) AS value
    FROM analytics.carts c, k
    WHERE c.purchases = 0 AND c.adds > c.removes AND c.last_at > k.watermark - k.abandon_after
    GROUP BY 1
), c AS (
    SELECT m.minute, m.carts, m.purchased_carts, m.emptied_carts,
           m.unpurchased_carts - coalesce(o.carts, 0) AS abandoned_carts,
           m.unpurchased_value - coalesce(o.value, 0) AS abandoned_value,
           coalesce(o.carts, 0) AS open_carts
    FROM analytics.cart_minutely m LEFT JOIN open o USING (minute)
    WHERE m.carts <> 0
)
SELECT coalesce(s.minute, c.minute) AS bucket,
       coalesce(s.events, 0) AS events, coalesce(s.adds, 0) AS adds,
       coalesce(s.removes, 0) AS removes, coalesce(s.purchases, 0) AS purchases,
       coalesce(s.revenue, 0) AS revenue,
       coalesce(c.carts, 0) AS carts, coalesce(c.purchased_carts, 0) AS purchased_carts,
       coalesce(c.abandoned_carts, 0) AS abandoned_carts,
       coalesce(c.emptied_carts, 0) AS emptied_carts, coalesce(c.open_carts, 0) AS open_carts,
       1 - c.purchased_carts::numeric / nullif(c.carts, 0) AS cart_abandonment_rate,
       c.abandoned_carts::numeric / nullif(c.carts, 0) AS strict_abandonment_rate,
       c.purchased_carts::numeric / nullif(c.carts, 0) AS cart_to_purchase_rate,
       coalesce(c.abandoned_value, 0) AS abandoned_value
FROM analytics.minute_stats s FULL JOIN c ON c.minute = s.minute;

END;
$fn$;

SELECT public.cartflow_create_views();
