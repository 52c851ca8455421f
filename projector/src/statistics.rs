//! Keeps the planner's statistics of the analytics tables current while they are young.
//!
//! Autovacuum analyses a table once a tenth of it has changed, but looks only once a minute
//! (`autovacuum_naptime`): a fresh projection grows from nothing to a hundred thousand carts
//! before the first look, and every plan made meanwhile (the gateway's prepared snapshot
//! above all) assumes empty tables. Its nested loops grew with the tables: the snapshot read
//! took seconds a minute into a 5,000 events/s run. The projector analyses its tables each
//! time the events applied since the last analysis reach the total at that analysis (and at
//! least [`FIRST_AFTER`]): a handful of times in a table's life, then autovacuum's turn.
//!
//! The analysis runs on a connection of its own, beside the steps: on the step loop's
//! connection each ANALYZE (about 360 ms at 5,000 events/s) held every event arriving
//! meanwhile, and made most of the projected p99 (#18). ANALYZE's lock does not conflict with
//! a step's writes.
//!
//! These analyses sample [`SAMPLE_TARGET`] instead of PostgreSQL's default of 100: a young
//! projection's plans need its tables' sizes and rough shapes, not fine histograms, and at the
//! default each analysis kept a core busy for 1.3-1.8 s at 5,000 events/s, four times a run
//! (on a copy of such a database: 726-744 ms at 100 against 110-118 ms at 10). Autovacuum's
//! later analyses, at the server's target, refine them.

use cartflow_common::DatabaseUrl;
use cartflow_common::db;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::Error;
use crate::apply::LIVE_SCHEMA;

/// Events applied before the first analysis.
pub const FIRST_AFTER: u64 = 20_000;

/// The statistics target of these analyses (`default_statistics_target`, for this session).
pub const SAMPLE_TARGET: u32 = 10;

/// When to analyse next, and the analysis in progress.
#[derive(Debug)]
pub struct Analyser {
    url: DatabaseUrl,
    /// Events applied since the last analysis began.
    since: u64,
    /// Events applied when the last analysis began (those of this run).
    at_last: u64,
    running: Option<JoinHandle<()>>,
}

impl Analyser {
    pub fn new(url: DatabaseUrl) -> Analyser {
        Analyser {
            url,
            since: 0,
            at_last: 0,
            running: None,
        }
    }

    /// Counts `events` applied, and starts an analysis of the live tables when its time has
    /// come and the last one is done. Outside any transaction: ANALYZE takes only a light
    /// lock, but a step's would hold it.
    pub fn applied(&mut self, events: u64) {
        self.since += events;
        if self.since < FIRST_AFTER.max(self.at_last) {
            return;
        }
        if self.running.as_ref().is_some_and(|r| !r.is_finished()) {
            return;
        }
        self.at_last += self.since;
        self.since = 0;
        let (url, events) = (self.url.clone(), self.at_last);
        self.running = Some(tokio::spawn(async move {
            match analyse(&url).await {
                Ok(()) => debug!(events, "Analysed the analytics tables."),
                // The next analysis, or autovacuum, will do it.
                Err(e) => warn!(error = %e, "Could not analyse the analytics tables."),
            }
        }));
    }
}

impl Drop for Analyser {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
        }
    }
}

async fn analyse(url: &DatabaseUrl) -> Result<(), Error> {
    let client = db::connect(url).await?;
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
        .batch_execute(&format!(
            "SET default_statistics_target = {SAMPLE_TARGET}; ANALYZE {}",
            tables.join(", ")
        ))
        .await?;
    Ok(())
}
