-- The raw event log: the original system's three tables with their columns and rules, plus
-- where each event came from (Kafka partition and offset) and when it was stored.

CREATE TABLE customers (
    customer_id BIGINT      PRIMARY KEY,
    name        TEXT        NOT NULL,
    age         INTEGER     NOT NULL CHECK (age BETWEEN 0 AND 120),
    email       TEXT        NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE products (
    product_id   BIGINT        PRIMARY KEY,
    title        TEXT          NOT NULL CHECK (title <> ''),
    price        NUMERIC(18,2) NOT NULL CHECK (price > 0),
    description  TEXT          NOT NULL DEFAULT '',
    image_url    TEXT          NOT NULL DEFAULT '',
    category     TEXT          NOT NULL CHECK (category <> ''),
    rating_rate  DOUBLE PRECISION,
    rating_count INTEGER,
    created_at   TIMESTAMPTZ   NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ   NOT NULL DEFAULT now()
);

-- No foreign keys to customers or products: the three topics are read independently, so an
-- event may be stored before the customer or product it names. event_id de-duplicates
-- redeliveries and replays.
CREATE TABLE events (
    event_id        UUID          PRIMARY KEY,
    customer_id     BIGINT        NOT NULL,
    product_id      BIGINT        NOT NULL,
    product_title   TEXT          NOT NULL,
    product_price   NUMERIC(18,2) NOT NULL CHECK (product_price > 0),
    product_image   TEXT          NOT NULL DEFAULT '',
    action          TEXT          NOT NULL
                    CHECK (action IN ('add_to_cart', 'remove_from_cart', 'purchase_cart')),
    description     TEXT          NOT NULL DEFAULT '',
    "timestamp"     TIMESTAMPTZ   NOT NULL,
    -- The original "fields for future use" (CartEvent v2); NULL for v1 events.
    session_id      TEXT,
    user_agent      TEXT,
    ip_address      INET,
    -- Origin. Not unique: a broker that loses its topics (tansu's memory storage) starts its
    -- offsets again at 0, and the log must keep both generations.
    kafka_partition INTEGER       NOT NULL,
    kafka_offset    BIGINT        NOT NULL,
    stored_at       TIMESTAMPTZ   NOT NULL DEFAULT clock_timestamp()
);

-- The projector reads the log in order per partition.
CREATE INDEX events_origin_idx ON events (kafka_partition, kafka_offset);
-- Time-window reads (recent activity, seasonal trends).
CREATE INDEX events_timestamp_idx ON events ("timestamp");
-- Per-customer history and per-product performance.
CREATE INDEX events_customer_idx ON events (customer_id, "timestamp");
CREATE INDEX events_product_idx ON events (product_id, action);
-- Cart-level (session) reads.
CREATE INDEX events_session_idx ON events (session_id) WHERE session_id IS NOT NULL;

-- Messages that could not be stored: the raw bytes and why, so nothing is lost.
CREATE TABLE dead_letters (
    id              BIGSERIAL   PRIMARY KEY,
    topic           TEXT        NOT NULL,
    kafka_partition INTEGER     NOT NULL,
    kafka_offset    BIGINT      NOT NULL,
    message_key     BYTEA,
    payload         BYTEA,
    reason          TEXT        NOT NULL,
    error           TEXT        NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_reason_idx ON dead_letters (reason, received_at);
