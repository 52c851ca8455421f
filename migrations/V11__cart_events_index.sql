-- A cart's events by its key (#18). The projector reads them back for every outcome it
-- declares (the outcome names its events and items), and /api/carts/{key} lists them. Through
-- the BRIN index alone that read scanned every event in the carts' time span: sessions last
-- minutes, so at 5,000 events/s each step read hundreds of thousands of rows to find a few
-- hundred, and the analytics fell seconds behind (docs/benchmarks.md). The b-tree costs the
-- consumer's COPY about a fifth (594,726 events: 7.3-8.9 s without it, 9.4-11.7 s with it; a
-- hash index or one on hashtext(session_id) measured the same), and the consumer's drain keeps
-- its ratio to a raw COPY into the same table. v1 events have no session and keep the
-- time-window read.
CREATE INDEX events_session_idx ON events (session_id) WHERE session_id IS NOT NULL;
