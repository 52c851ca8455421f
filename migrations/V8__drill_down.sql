-- Drill-down (issue #16): the raw events behind a product, a customer, a cart or a stretch of
-- time, newest first, read by the gateway's /api/events and /api/carts/{key}.
--
-- V2 dropped the events indexes that served ad-hoc reads, for the consumer's write speed. These
-- three are cheap to maintain where those were not: each key grows at its right-hand end
-- (event time rises, and there are few products and customers, each a small set of "hot" end
-- pages), where a random key such as session_id would write all over the index. A cart's events
-- are found through its customer and its time span instead.
CREATE INDEX events_time_idx ON events ("timestamp");
CREATE INDEX events_product_time_idx ON events (product_id, "timestamp");
CREATE INDEX events_customer_time_idx ON events (customer_id, "timestamp");

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

END;
$fn$;

SELECT public.cartflow_create_views();
