-- Cart outcomes as events (#17): the projector decides what became of each cart (purchased,
-- abandoned, emptied, or reopened by a later event) and writes the decision to an outbox in
-- the same transaction as the aggregates; `cartflow-projector relay` publishes the outbox to
-- Kafka. Both tables live outside `analytics`, which a rebuild replaces: what was decided and
-- published survives a rebuild, so a rebuild never publishes an outcome twice.
CREATE SCHEMA outcomes;

-- The last outcome declared for each cart and how many were declared: the state a new
-- decision is compared with. 'open' after a 'reopened'.
CREATE TABLE outcomes.verdicts (
    cart_key  TEXT    PRIMARY KEY,
    outcome   TEXT    NOT NULL CHECK (outcome IN ('purchased', 'abandoned', 'emptied', 'open')),
    sequence  INTEGER NOT NULL CHECK (sequence > 0)
);

-- Every outcome decided, in the order decided (seq). payload is the CartOutcome, Avro
-- single-object encoded, exactly as published. The relay sets published_at (and where the
-- broker put it) once the broker has acknowledged it.
CREATE TABLE outcomes.outbox (
    seq             BIGSERIAL   PRIMARY KEY,
    outcome_id      UUID        NOT NULL UNIQUE,
    cart_key        TEXT        NOT NULL,
    customer_id     BIGINT      NOT NULL,
    outcome         TEXT        NOT NULL
                    CHECK (outcome IN ('purchased', 'abandoned', 'emptied', 'reopened')),
    payload         BYTEA       NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at    TIMESTAMPTZ,
    kafka_partition INTEGER,
    kafka_offset    BIGINT
);
-- The relay's queue.
CREATE INDEX outbox_unpublished_idx ON outcomes.outbox (seq) WHERE published_at IS NULL;

-- Whether the live projector decides outcomes (its --outcomes flag); a rebuild reads it.
ALTER TABLE analytics.checkpoint ADD COLUMN outcomes BOOLEAN NOT NULL DEFAULT false;

-- The abandonment clock now also finds emptied carts (no purchase, nothing left) when they
-- go idle: one index over every unpurchased cart instead of those holding items. The views'
-- open-cart condition (purchases = 0 AND adds > removes) still implies its predicate.
DROP INDEX analytics.carts_unpurchased_idx;
CREATE INDEX carts_unpurchased_idx ON analytics.carts (last_at) WHERE purchases = 0;
