-- The projector's horizon without the rest of the cluster (#18). The projector reads the log
-- below a transaction id (the horizon) under which no row can still appear. Until V13 that was
-- the oldest transaction running anywhere on the server (the snapshot's xmin), so any long
-- writer in any database (a rebuild's write phase, a bulk load in another database, a long
-- migration) held every live step back: a 10 s write transaction in another database took the
-- projected p99 at 1,000 events/s from 44 ms to 10,590 ms (docs/benchmarks.md).
--
-- Now every transaction that writes `events` says so before it has a transaction id: it takes a
-- shared transaction lock (advisory, this database, key (1667330676, 7106407): 'cart', 'log')
-- through cartflow_events_writer(). A statement trigger calls it on every INSERT or COPY into
-- `events`, so a plain INSERT in its own transaction needs nothing more; a transaction that
-- wrote something else first (it has an xid) and then writes events is refused, because a lock
-- taken after the xid exists would let the projector read past it. Such a transaction (the
-- consumer's batch upserts customers before its events) calls cartflow_events_writer() first.
--
-- cartflow_log_horizon() is the projector's horizon: the least of the snapshot's xmax and every
-- transaction in the snapshot's running list that is, or may be, a writer of this database's
-- events. Why that is safe: a writer W still running with xid w below the result would have to
-- be in the running list (w < xmax and running when the snapshot was taken, which comes before
-- the read of pg_locks in this statement); it holds its transactionid lock, and held the
-- writers' lock since before w existed, so it is counted; and an xid whose transactionid lock
-- is not yet (or no longer) in pg_locks is counted too, whoever owns it. A writer that commits
-- leaves the running list before it releases its locks, so the later statements that read the
-- log see its rows. Costs 13 us a call on the 2-core machine.
--
-- Not covered: a session with triggers off (session_replication_role = replica, or
-- pg_restore --disable-triggers) that writes events while the projector runs. Restore a log
-- with the projector stopped, or with triggers on.

CREATE FUNCTION cartflow_events_writer() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('cartflow.events_writer', true) = 'on' THEN
        RETURN;
    END IF;
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'cartflow: this transaction wrote other rows before it wrote events'
            USING HINT = 'Call SELECT cartflow_events_writer() as the first statement of a '
                         'transaction that writes events after other rows, or write the events '
                         'in a transaction of their own.';
    END IF;
    PERFORM pg_advisory_xact_lock_shared(1667330676, 7106407);
    PERFORM set_config('cartflow.events_writer', 'on', true);
END $$;

CREATE FUNCTION cartflow_events_writer_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cartflow_events_writer();
    RETURN NULL;
END $$;

CREATE TRIGGER events_writer BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION cartflow_events_writer_trigger();

CREATE FUNCTION cartflow_log_horizon() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
WITH snapshot AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
-- pg_locks read once, after the snapshot: the owners of transaction ids, and this database's
-- events writers.
locks AS MATERIALIZED (
    SELECT locktype, transactionid, virtualtransaction
    FROM pg_locks
    WHERE granted
      AND (locktype = 'transactionid' AND mode = 'ExclusiveLock'
           OR locktype = 'advisory' AND classid = 1667330676 AND objid = 7106407
              AND objsubid = 2
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
)
SELECT least(pg_snapshot_xmax(s), (
    SELECT min(x) FROM pg_snapshot_xip(s) x
    WHERE NOT EXISTS (SELECT 1 FROM locks o
                      WHERE o.locktype = 'transactionid' AND o.transactionid = xid(x))
       OR EXISTS (SELECT 1 FROM locks o JOIN locks w USING (virtualtransaction)
                  WHERE o.locktype = 'transactionid' AND o.transactionid = xid(x)
                    AND w.locktype = 'advisory')
))::text::bigint
FROM snapshot
$$;
