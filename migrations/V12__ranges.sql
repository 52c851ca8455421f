-- Time ranges (#16, item 2): the tiles, the product and category tables, the price bands and
-- the age groups for any stretch of event time, exactly, from aggregates.
--
-- * Item counters by (bucket, product, price band), per hour for all time and per minute for
--   minute_retention (as minute_stats): products, categories (product -> category at read
--   time, as v_product_performance does) and bands are sums of these rows over the range.
-- * Carts by the minute and hour they started are cart_minutely and cart_hourly already; the
--   open ones in a range are read from the carts themselves, as v_cart_hours does.
-- * Age groups are cart level in a range: the carts started in it, joined to their customer's
--   age at read time (as v_age_groups joins it). A per-(bucket, customer) table would be as
--   large as the carts table and cost the projector a second row per cart; the index below
--   costs one index entry per cart written instead (docs/benchmarks.md).
--
-- The gateway answers a range at minute grain when it lies inside the minute rows, else at hour
-- grain, with its bounds rounded outwards to the grain and the bounds it answered for in the
-- reply (docs/gateway.md, "Ranges").

SELECT pg_advisory_xact_lock(hashtext('analytics'));

CREATE TABLE analytics.item_hourly (
    hour          TIMESTAMPTZ   NOT NULL,
    product_id    BIGINT        NOT NULL,
    band_floor    INTEGER       NOT NULL,
    events        BIGINT        NOT NULL DEFAULT 0,
    adds          BIGINT        NOT NULL DEFAULT 0,
    removes       BIGINT        NOT NULL DEFAULT 0,
    purchases     BIGINT        NOT NULL DEFAULT 0,
    added_value   NUMERIC(20,2) NOT NULL DEFAULT 0,
    removed_value NUMERIC(20,2) NOT NULL DEFAULT 0,
    revenue       NUMERIC(20,2) NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, product_id, band_floor)
);

CREATE TABLE analytics.item_minutely (LIKE analytics.item_hourly INCLUDING DEFAULTS);
ALTER TABLE analytics.item_minutely RENAME COLUMN hour TO minute;
ALTER TABLE analytics.item_minutely ADD PRIMARY KEY (minute, product_id, band_floor);

-- Minute rows (minute_stats, cart_minutely, item_minutely) are complete for every minute at or
-- after minute_floor and absent before it. It is minute_retention before the watermark, or,
-- while the projector catches up, before the latest event time of the log it has yet to read:
-- minute rows a later step would drop are not written at all (a catch-up over days of backlog
-- wrote one item_minutely row per event and lost a fifth of its speed to them).
ALTER TABLE analytics.checkpoint ADD COLUMN minute_floor TIMESTAMPTZ;
UPDATE analytics.checkpoint SET minute_floor = watermark - minute_retention;

-- The carts started in a range (age groups, open carts by bucket).
CREATE INDEX carts_first_at_idx ON analytics.carts (first_at);

-- A database projected before this migration: the new tables get what the checkpoint says is
-- applied already (every event below next_tx), so they agree with the others at once.
CREATE FUNCTION pg_temp.band(price NUMERIC) RETURNS INTEGER LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN price >= 500 THEN 500 WHEN price >= 100 THEN 100
                WHEN price >= 25 THEN 25 ELSE 0 END
$$;

INSERT INTO analytics.item_hourly
SELECT date_trunc('hour', e."timestamp" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', e.product_id,
       pg_temp.band(e.product_price), count(*),
       count(*) FILTER (WHERE e.action = 'add_to_cart'),
       count(*) FILTER (WHERE e.action = 'remove_from_cart'),
       count(*) FILTER (WHERE e.action = 'purchase_cart'),
       coalesce(sum(e.product_price) FILTER (WHERE e.action = 'add_to_cart'), 0),
       coalesce(sum(e.product_price) FILTER (WHERE e.action = 'remove_from_cart'), 0),
       coalesce(sum(e.product_price) FILTER (WHERE e.action = 'purchase_cart'), 0)
FROM events e, analytics.checkpoint k WHERE e.tx_id < k.next_tx
GROUP BY 1, 2, 3;

INSERT INTO analytics.item_minutely
SELECT date_trunc('minute', h."timestamp" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', h.product_id,
       pg_temp.band(h.product_price), count(*),
       count(*) FILTER (WHERE h.action = 'add_to_cart'),
       count(*) FILTER (WHERE h.action = 'remove_from_cart'),
       count(*) FILTER (WHERE h.action = 'purchase_cart'),
       coalesce(sum(h.product_price) FILTER (WHERE h.action = 'add_to_cart'), 0),
       coalesce(sum(h.product_price) FILTER (WHERE h.action = 'remove_from_cart'), 0),
       coalesce(sum(h.product_price) FILTER (WHERE h.action = 'purchase_cart'), 0)
FROM events h, analytics.checkpoint k
WHERE h.tx_id < k.next_tx
  AND date_trunc('minute', h."timestamp" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
      >= k.minute_floor
GROUP BY 1, 2, 3;

-- The gateway reads only public views (a rebuild swaps the analytics schema, whose grants a
-- read-only role would lose): the bucketed tables, by grain.
ALTER FUNCTION public.cartflow_create_views() RENAME TO cartflow_create_views_v11;

CREATE FUNCTION public.cartflow_create_views() RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
PERFORM public.cartflow_create_views_v11();

CREATE OR REPLACE VIEW v_item_buckets AS
SELECT 'minute'::text AS grain, minute AS bucket, product_id, band_floor, events, adds, removes,
       purchases, added_value, removed_value, revenue
FROM analytics.item_minutely
UNION ALL
SELECT 'hour', hour, product_id, band_floor, events, adds, removes, purchases, added_value,
       removed_value, revenue
FROM analytics.item_hourly;

CREATE OR REPLACE VIEW v_cart_buckets AS
SELECT 'minute'::text AS grain, minute AS bucket, carts, purchased_carts, purchased_value,
       unpurchased_carts, unpurchased_items, unpurchased_value, emptied_carts
FROM analytics.cart_minutely
UNION ALL
SELECT 'hour', hour, carts, purchased_carts, purchased_value, unpurchased_carts,
       unpurchased_items, unpurchased_value, emptied_carts
FROM analytics.cart_hourly;

-- Carts still open (items in them, no purchase, inside abandon_after of event time): the
-- partial index carts_unpurchased_idx finds them.
CREATE OR REPLACE VIEW v_open_carts AS
SELECT c.cart_key, c.customer_id, c.first_at, c.last_at, c.adds - c.removes AS items,
       c.added_value - c.removed_value AS value
FROM analytics.carts c, analytics.checkpoint k
WHERE c.purchases = 0 AND c.adds > c.removes AND c.last_at > k.watermark - k.abandon_after;

-- What a range is resolved against: the clock of event time and the minute rows' reach.
CREATE OR REPLACE VIEW v_range_clock AS
SELECT watermark, minute_floor AS minute_cutoff,
       (SELECT min(hour) FROM analytics.item_hourly) AS first_hour
FROM analytics.checkpoint;

END;
$fn$;

SELECT public.cartflow_create_views();
