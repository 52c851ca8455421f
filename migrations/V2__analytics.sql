-- The projector's analytics: aggregate tables in schema `analytics` (swapped whole by
-- `cartflow-projector rebuild`) and the analytic views `v_*` in public.

-- The projector reads the log by the writing transaction: every row whose transaction id is
-- below the oldest running transaction is final, whichever consumer wrote it and whatever the
-- broker's offsets did. One number is the whole checkpoint.
ALTER TABLE events
    ADD COLUMN tx_id BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX events_tx_idx ON events (tx_id);

-- The analytics answer the dashboard's reads; these indexes cost every insert a random write
-- (docs/benchmarks.md) and served only ad-hoc queries.
DROP INDEX events_timestamp_idx, events_customer_idx, events_product_idx, events_session_idx;

CREATE SCHEMA analytics;

-- One row: every event with tx_id < next_tx is in the aggregates.
CREATE TABLE analytics.checkpoint (
    id            BOOLEAN     PRIMARY KEY DEFAULT true CHECK (id),
    next_tx       BIGINT      NOT NULL DEFAULT 0,
    events        BIGINT      NOT NULL DEFAULT 0,
    -- The latest event time seen: the clock that decides cart abandonment.
    watermark     TIMESTAMPTZ,
    abandon_after INTERVAL    NOT NULL DEFAULT '30 minutes',
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO analytics.checkpoint DEFAULT VALUES;

-- Item counters, by product, by hour (UTC) and by price band.
CREATE TABLE analytics.product_stats (
    product_id    BIGINT        PRIMARY KEY,
    events        BIGINT        NOT NULL DEFAULT 0,
    adds          BIGINT        NOT NULL DEFAULT 0,
    removes       BIGINT        NOT NULL DEFAULT 0,
    purchases     BIGINT        NOT NULL DEFAULT 0,
    added_value   NUMERIC(20,2) NOT NULL DEFAULT 0,
    removed_value NUMERIC(20,2) NOT NULL DEFAULT 0,
    revenue       NUMERIC(20,2) NOT NULL DEFAULT 0
);
CREATE TABLE analytics.hourly_stats (LIKE analytics.product_stats INCLUDING DEFAULTS);
ALTER TABLE analytics.hourly_stats DROP COLUMN product_id;
ALTER TABLE analytics.hourly_stats ADD COLUMN hour TIMESTAMPTZ PRIMARY KEY;
CREATE TABLE analytics.price_band_stats (LIKE analytics.product_stats INCLUDING DEFAULTS);
ALTER TABLE analytics.price_band_stats DROP COLUMN product_id;
-- The band's lower bound in currency units: 0, 25, 100, 500.
ALTER TABLE analytics.price_band_stats ADD COLUMN band_floor INTEGER PRIMARY KEY;

CREATE TABLE analytics.customer_stats (LIKE analytics.product_stats INCLUDING DEFAULTS);
ALTER TABLE analytics.customer_stats RENAME COLUMN product_id TO customer_id;
ALTER TABLE analytics.customer_stats ADD PRIMARY KEY (customer_id);
ALTER TABLE analytics.customer_stats
    ADD COLUMN carts            BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN purchased_carts  BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN first_seen       TIMESTAMPTZ,
    ADD COLUMN last_seen        TIMESTAMPTZ,
    ADD COLUMN last_purchase_at TIMESTAMPTZ;

-- Carts: a session (CartEvent v2), or for v1 events a customer's UTC day.
CREATE TABLE analytics.carts (LIKE analytics.product_stats INCLUDING DEFAULTS);
ALTER TABLE analytics.carts DROP COLUMN product_id;
ALTER TABLE analytics.carts
    ADD COLUMN cart_key    TEXT        PRIMARY KEY,
    ADD COLUMN customer_id BIGINT      NOT NULL,
    ADD COLUMN first_at    TIMESTAMPTZ NOT NULL,
    ADD COLUMN last_at     TIMESTAMPTZ NOT NULL;
-- Carts that may still be open: the abandonment clock reads only these.
CREATE INDEX carts_unpurchased_idx ON analytics.carts (last_at)
    WHERE purchases = 0 AND adds > removes;

-- Cart outcomes by the hour (UTC) the cart was started in. "Unpurchased" carts still hold
-- items; they are abandoned once the watermark passes last_at + abandon_after.
CREATE TABLE analytics.cart_hourly (
    hour              TIMESTAMPTZ   PRIMARY KEY,
    carts             BIGINT        NOT NULL DEFAULT 0,
    purchased_carts   BIGINT        NOT NULL DEFAULT 0,
    purchased_value   NUMERIC(20,2) NOT NULL DEFAULT 0,
    unpurchased_carts BIGINT        NOT NULL DEFAULT 0,
    unpurchased_items BIGINT        NOT NULL DEFAULT 0,
    unpurchased_value NUMERIC(20,2) NOT NULL DEFAULT 0,
    emptied_carts     BIGINT        NOT NULL DEFAULT 0
);
