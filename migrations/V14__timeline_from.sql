-- The live timeline read without the whole minute table (#18). v_timeline_recent filtered
-- v_timeline_minute by time, but the filter cannot pass a FULL JOIN on coalesce(...), so every
-- read joined all minute rows (48 hours of them by default, 2,707 rows: 4.5-5.8 ms of the
-- gateway's 16-19 ms snapshot, which it reads up to 25 times a second at load). The minute rows
-- are now one function of a lower bound, so the recent hour reads its 75 minutes by primary key;
-- v_timeline_minute is the same function from the beginning of time, so the two cannot drift
-- apart. SECURITY DEFINER: a view reads its tables as its owner,
-- but a function it calls runs as the caller, and the gateway's read-only role may read only the
-- public views (docs/gateway.md); the function returns what those views show anyway. PL/pgSQL,
-- not SQL: a SECURITY DEFINER SQL function is not inlined, and was planned again on every call
-- (7.4 ms of a read under load); PL/pgSQL keeps its plan for the session, and a rebuild's schema
-- swap (ALTER SCHEMA ... RENAME) discards every cached plan, so names are resolved again.

CREATE FUNCTION public.cartflow_timeline_minutes(since TIMESTAMPTZ)
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
open AS (
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

ALTER FUNCTION public.cartflow_create_views() RENAME TO cartflow_create_views_v12;

CREATE FUNCTION public.cartflow_create_views() RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
PERFORM public.cartflow_create_views_v12();

CREATE OR REPLACE VIEW v_timeline_minute AS
SELECT * FROM public.cartflow_timeline_minutes('-infinity');

CREATE OR REPLACE VIEW v_timeline_recent AS
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
    FROM v_cart_hours h, k
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

END;
$fn$;

SELECT public.cartflow_create_views();
