-- When each event was published: its Kafka message timestamp (the producer's clock at send).
-- The end-to-end latency metric measures every stage from it (docs/observability.md). NULL for
-- rows stored before this column existed, and for messages without a timestamp.
ALTER TABLE events ADD COLUMN published_at TIMESTAMPTZ;
