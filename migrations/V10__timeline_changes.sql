-- The dashboard's live timeline (#16): the last hour of event time by minute, and for each
-- settled minute the cart abandonment rate of the carts started in the 15 minutes ending
-- there, beside the usual rate of that hour of day. The gateway marks the minutes where the
-- two differ by more than its --change-share and counts them (cartflow_abandonment_changes_total).
--
-- Settled: abandon_after of event time has passed since the minute ended, so its carts have
-- had the time the abandonment clock gives them (1 - purchased / carts of a fresher minute
-- would count every cart still being filled as not bought). Usual: 1 - purchased / carts over
-- every earlier settled hour with the same hour of day (UTC).

ALTER FUNCTION public.cartflow_create_views() RENAME TO cartflow_create_views_v8;

CREATE FUNCTION public.cartflow_create_views() RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
PERFORM public.cartflow_create_views_v8();

CREATE OR REPLACE VIEW v_timeline_recent AS
WITH k AS (
    SELECT date_trunc('minute', watermark) AS last_minute, watermark - abandon_after AS settled_at
    FROM analytics.checkpoint
), m AS (
    -- 15 more minutes than shown, for the first shown minute's window.
    SELECT t.* FROM v_timeline_minute t, k WHERE t.bucket > k.last_minute - interval '75 minutes'
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
