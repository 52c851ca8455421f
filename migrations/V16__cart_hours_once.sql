-- The open carts counted once a read (#18). v_cart_hours counts the open carts (items in them,
-- no purchase, inside abandon_after of event time) from the carts themselves, and v_kpis,
-- v_hour_of_day, v_day_of_week, v_month and v_timeline_recent each read it: the gateway's
-- snapshot scanned the open carts five times, and the timeline's minutes and the abandoned
-- carts' list scanned them twice more. While a projection is young every unbought cart is open
-- (29,000 of 47,000 carts on the run.sh database with a long abandon_after: 45-88 ms a scan,
-- 400 ms a snapshot), and at 5,000 events/s the snapshot was the largest single user of
-- PostgreSQL's CPU. The five views' logic is now five functions of v_cart_hours' rows (as V15
-- did for peaks and insights): the snapshot reads v_cart_hours once and passes the rows in, and
-- each view passes in v_cart_hours itself, so the views show what they did and there is one
-- definition. The functions return their view's row type, so the rows fit cartflow_peaks and
-- cartflow_insights as before.
--
-- PL/pgSQL and SECURITY DEFINER, as cartflow_timeline_minutes (V14): they read the analytics
-- tables, which the gateway's read-only role may not, and PL/pgSQL keeps each plan for the
-- session (a rebuild's schema swap discards it, so names are resolved again).
--
-- v_abandoned_carts lists the latest abandoned carts: with the cutoff in a join, PostgreSQL
-- walked carts_unpurchased_idx down from the newest cart through every open one to find them;
-- as a value computed first, the cutoff bounds the index scan.

-- The timeline's minutes (V14) with the open carts aggregated once: under load the plan kept
-- for the gateway's session put the open carts' aggregate inside a nested loop over the 75
-- minutes and computed it again for each (27-104 ms of reads that took 15 idle).
CREATE OR REPLACE FUNCTION public.cartflow_timeline_minutes(since TIMESTAMPTZ)
RETURNS TABLE (bucket TIMESTAMPTZ, events BIGINT, adds BIGINT, removes BIGINT, purchases BIGINT,
               revenue NUMERIC, carts BIGINT, purchased_carts BIGINT, abandoned_carts BIGINT,
               emptied_carts BIGINT, open_carts BIGINT, cart_abandonment_rate NUMERIC,
               strict_abandonment_rate NUMERIC, cart_to_purchase_rate NUMERIC,
               abandoned_value NUMERIC)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
#variable_conflict use_column
BEGIN
RETURN QUERY
WITH k AS (SELECT watermark, abandon_after FROM analytics.checkpoint),
open AS MATERIALIZED (
    SELECT date_trunc('minute', c.first_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS minute,
           count(*) AS carts,
           sum(c.adds - c.removes) AS items, sum(c.added_value - c.removed_value) AS value
    FROM analytics.carts c, k
    WHERE c.purchases = 0 AND c.adds > c.removes AND c.last_at > k.watermark - k.abandon_after
      -- Every cart whose minute is after `since` (the minutes it is joined to).
      AND c.first_at > since
    GROUP BY 1
), c AS (
    SELECT m.minute, m.carts, m.purchased_carts, m.emptied_carts,
           m.unpurchased_carts - coalesce(o.carts, 0) AS abandoned_carts,
           m.unpurchased_value - coalesce(o.value, 0) AS abandoned_value,
           coalesce(o.carts, 0) AS open_carts
    FROM analytics.cart_minutely m LEFT JOIN open o USING (minute)
    WHERE m.carts <> 0 AND m.minute > since
), s AS (
    SELECT * FROM analytics.minute_stats WHERE minute > since
)
SELECT coalesce(s.minute, c.minute),
       coalesce(s.events, 0), coalesce(s.adds, 0), coalesce(s.removes, 0),
       coalesce(s.purchases, 0), coalesce(s.revenue, 0)::numeric,
       coalesce(c.carts, 0), coalesce(c.purchased_carts, 0), coalesce(c.abandoned_carts, 0),
       coalesce(c.emptied_carts, 0), coalesce(c.open_carts, 0),
       1 - c.purchased_carts::numeric / nullif(c.carts, 0),
       c.abandoned_carts::numeric / nullif(c.carts, 0),
       c.purchased_carts::numeric / nullif(c.carts, 0),
       coalesce(c.abandoned_value, 0)::numeric
FROM s FULL JOIN c ON c.minute = s.minute;
END
$$;

CREATE FUNCTION public.cartflow_kpis(ch v_cart_hours[]) RETURNS SETOF v_kpis
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
RETURN QUERY
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
    FROM unnest(ch)
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
END
$$;

CREATE FUNCTION public.cartflow_hour_of_day(ch v_cart_hours[]) RETURNS SETOF v_hour_of_day
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
RETURN QUERY
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
    FROM unnest(ch) GROUP BY 1
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
END
$$;

CREATE FUNCTION public.cartflow_day_of_week(ch v_cart_hours[]) RETURNS SETOF v_day_of_week
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
RETURN QUERY
WITH e AS (
    SELECT extract(isodow FROM hour AT TIME ZONE 'UTC')::int AS d, sum(events) AS events,
           sum(adds) AS adds, sum(purchases) AS purchases, sum(revenue) AS revenue
    FROM analytics.hourly_stats GROUP BY 1
), c AS (
    SELECT extract(isodow FROM hour AT TIME ZONE 'UTC')::int AS d, sum(carts) AS carts,
           sum(purchased_carts) AS purchased_carts, sum(abandoned_carts) AS abandoned_carts
    FROM unnest(ch) GROUP BY 1
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
END
$$;

CREATE FUNCTION public.cartflow_month(ch v_cart_hours[]) RETURNS SETOF v_month
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
RETURN QUERY
WITH e AS (
    SELECT extract(month FROM hour AT TIME ZONE 'UTC')::int AS m, sum(events) AS events,
           sum(adds) AS adds, sum(purchases) AS purchases, sum(revenue) AS revenue
    FROM analytics.hourly_stats GROUP BY 1
), c AS (
    SELECT extract(month FROM hour AT TIME ZONE 'UTC')::int AS m, sum(carts) AS carts,
           sum(purchased_carts) AS purchased_carts, sum(abandoned_carts) AS abandoned_carts
    FROM unnest(ch) GROUP BY 1
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
END
$$;

CREATE FUNCTION public.cartflow_timeline_recent(ch v_cart_hours[]) RETURNS SETOF v_timeline_recent
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
RETURN QUERY
WITH k AS (
    SELECT date_trunc('minute', watermark) AS last_minute, watermark - abandon_after AS settled_at
    FROM analytics.checkpoint
), m AS (
    -- 15 more minutes than shown, for the first shown minute's window.
    SELECT t.* FROM k, public.cartflow_timeline_minutes(k.last_minute - interval '75 minutes') t
), windowed AS (
    SELECT m.*, sum(m.carts) OVER w AS window_carts, sum(m.purchased_carts) OVER w AS window_purchased
    FROM m
    WINDOW w AS (ORDER BY bucket RANGE BETWEEN interval '14 minutes' PRECEDING AND CURRENT ROW)
), usual AS (
    SELECT extract(hour FROM h.hour AT TIME ZONE 'UTC')::int AS hour_of_day,
           1 - sum(h.purchased_carts)::numeric / nullif(sum(h.carts), 0) AS usual_rate
    FROM unnest(ch) h, k
    WHERE h.hour + interval '1 hour' <= k.settled_at - interval '75 minutes'
    GROUP BY 1
)
SELECT w.bucket, w.events, w.revenue, w.carts, w.purchased_carts, w.abandoned_carts,
       w.emptied_carts, w.open_carts, w.cart_abandonment_rate,
       w.bucket + interval '1 minute' <= k.settled_at AS settled,
       CASE WHEN w.bucket + interval '1 minute' <= k.settled_at
            THEN 1 - w.window_purchased::numeric / nullif(w.window_carts, 0) END AS recent_rate,
       u.usual_rate
FROM windowed w CROSS JOIN k
LEFT JOIN usual u ON u.hour_of_day = extract(hour FROM w.bucket AT TIME ZONE 'UTC')::int
WHERE w.bucket > k.last_minute - interval '60 minutes';
END
$$;

ALTER FUNCTION public.cartflow_create_views() RENAME TO cartflow_create_views_v15;

CREATE FUNCTION public.cartflow_create_views() RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
PERFORM public.cartflow_create_views_v15();

CREATE OR REPLACE VIEW v_kpis AS
SELECT * FROM public.cartflow_kpis(ARRAY(SELECT h FROM v_cart_hours h));

CREATE OR REPLACE VIEW v_hour_of_day AS
SELECT * FROM public.cartflow_hour_of_day(ARRAY(SELECT h FROM v_cart_hours h));

CREATE OR REPLACE VIEW v_day_of_week AS
SELECT * FROM public.cartflow_day_of_week(ARRAY(SELECT h FROM v_cart_hours h));

CREATE OR REPLACE VIEW v_month AS
SELECT * FROM public.cartflow_month(ARRAY(SELECT h FROM v_cart_hours h));

CREATE OR REPLACE VIEW v_timeline_recent AS
SELECT * FROM public.cartflow_timeline_recent(ARRAY(SELECT h FROM v_cart_hours h));

CREATE OR REPLACE VIEW v_abandoned_carts AS
SELECT c.cart_key, c.customer_id, c.first_at, c.last_at, c.adds - c.removes AS items,
       c.added_value - c.removed_value AS value
FROM analytics.carts c
WHERE c.purchases = 0 AND c.adds > c.removes
  AND c.last_at <= (SELECT watermark - abandon_after FROM analytics.checkpoint);

END;
$fn$;

SELECT public.cartflow_create_views();
