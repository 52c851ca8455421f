//! Keeps the planner's statistics of the analytics tables current while they are young.
//!
//! Autovacuum analyses a table once a tenth of it has changed, but looks only once a minute
//! (`autovacuum_naptime`): a fresh projection grows from nothing to a hundred thousand carts
//! before the first look, and every plan made meanwhile (the gateway's prepared snapshot
//! above all) assumes empty tables. Its nested loops grew with the tables: the snapshot read
//! took seconds a minute into a 5,000 events/s run. The projector analyses its tables each
//! time the events applied since the last analysis reach the total at that analysis (and at
//! least [`FIRST_AFTER`]): a handful of times in a table's life, then autovacuum's turn.

use tokio_postgres::Client;
use tracing::debug;

use crate::Error;
use crate::apply::LIVE_SCHEMA;

/// Events applied before the first analysis.
pub const FIRST_AFTER: u64 = 20_000;

/// When to analyse next.
#[derive(Debug, Default)]
pub struct Analyser {
    /// Events applied since the last analysis.
    since: u64,
    /// Events applied at the last analysis (those of this run).
    at_last: u64,
}

impl Analyser {
    /// Counts `events` applied, and analyses the live tables when their time has come.
    /// Outside any transaction: ANALYZE takes only a light lock, but a step's would hold it.
    pub async fn applied(&mut self, client: &Client, events: u64) -> Result<(), Error> {
        self.since += events;
        if self.since < FIRST_AFTER.max(self.at_last) {
            return Ok(());
        }
        let tables: Vec<String> = client
            .query(
                "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables \
                 WHERE schemaname IN ($1, 'outcomes')",
                &[&LIVE_SCHEMA],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        client
            .batch_execute(&format!("ANALYZE {}", tables.join(", ")))
            .await?;
        self.at_last += self.since;
        debug!(events = self.at_last, "Analysed the analytics tables.");
        self.since = 0;
        Ok(())
    }
}
