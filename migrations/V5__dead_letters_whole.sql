-- Dead letters kept whole and once: the message's headers beside its key and payload, one row
-- per message however often it is redelivered, and whether its copy reached the dead-letter
-- topic. A message is its origin and its bytes: a topic deleted and created again restarts its
-- offsets, and another bad message at a used offset must still get a row of its own.

-- Earlier consumers added a row per redelivery; keep the first.
DELETE FROM dead_letters a
 USING dead_letters b
 WHERE a.topic = b.topic
   AND a.kafka_partition = b.kafka_partition
   AND a.kafka_offset = b.kafka_offset
   AND a.payload IS NOT DISTINCT FROM b.payload
   AND a.id > b.id;

CREATE UNIQUE INDEX dead_letters_message_key
    ON dead_letters (topic, kafka_partition, kafka_offset, md5(coalesce(payload, '\x'::bytea)));

-- Header names and values in message order; a NULL value is a header without one.
ALTER TABLE dead_letters ADD COLUMN header_keys TEXT[];
ALTER TABLE dead_letters ADD COLUMN header_values BYTEA[];

-- NULL until the copy on the dead-letter topic is settled: 'published', 'trimmed' (published
-- with its payload cut to fit, header cartflow.trimmed), or 'not_published' (the topic
-- refused it; this row is the only copy).
ALTER TABLE dead_letters ADD COLUMN dlq_status TEXT
    CHECK (dlq_status IN ('published', 'trimmed', 'not_published'));

-- Rows already here were published by the consumers that wrote them.
UPDATE dead_letters SET dlq_status = 'published';
