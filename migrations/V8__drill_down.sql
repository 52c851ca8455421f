-- Drill-down (issue #16): the raw events behind a product, a customer, a cart or a stretch of
-- time, newest first, read by the gateway's /api/events and /api/carts/{key}.
--
-- V2 dropped the events indexes that served ad-hoc reads, for the consumer's write speed, and
-- b-trees are still too dear: (timestamp), (product_id, timestamp) and (customer_id, timestamp)
-- together made a million-row insert take 19.4 s instead of 11.0 s here. A BRIN index on event
-- time costs nothing measurable (11.2-12.4 s against 10.4-12.7 s) because events arrive nearly
-- in time order: it narrows every drill-down to the blocks of a time window, and the gateway
-- walks windows backwards from the newest (docs/gateway.md). A cart's events lie within its
-- own short span.
CREATE INDEX events_time_brin ON events USING brin ("timestamp")
    WITH (pages_per_range = 32, autosummarize = on);

-- Every cart in its state, for /api/carts/{key} (the gateway reads only public views: a rebuild
-- swaps the analytics schema, whose grants a read-only role would lose).
ALTER FUNCTION public.cartflow_create_views() RENAME TO cartflow_create_views_v7;

CREATE FUNCTION public.cartflow_create_views() RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
PERFORM public.cartflow_create_views_v7();

CREATE OR REPLACE VIEW v_cart_states AS
SELECT c.cart_key, c.customer_id, c.first_at, c.last_at, c.events, c.adds, c.removes,
       c.purchases, c.adds - c.removes AS items, c.added_value - c.removed_value AS value,
       c.revenue,
       CASE WHEN c.purchases > 0 THEN 'purchased'
            WHEN c.adds <= c.removes THEN 'emptied'
            WHEN c.last_at <= k.watermark - k.abandon_after THEN 'abandoned'
            ELSE 'open' END AS state
FROM analytics.carts c, analytics.checkpoint k;

-- When each customer was first and last seen, which bounds the walk for their events.
CREATE OR REPLACE VIEW v_customer_span AS
SELECT customer_id, first_seen, last_seen FROM analytics.customer_stats;

-- Where the log's projected time begins and ends, for walking it backwards in windows.
CREATE OR REPLACE VIEW v_log_span AS
SELECT (SELECT min(hour) FROM analytics.hourly_stats) AS first_hour, k.watermark
FROM analytics.checkpoint k;

END;
$fn$;

SELECT public.cartflow_create_views();
