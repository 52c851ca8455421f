//! The exactly-once path after a batch is decoded: it is written on a task of its own while
//! the next is fetched, up to `--max-in-flight` at once; each finished batch gets its dead
//! letters' copies settled on the dead-letter topic, then its offsets committed, strictly in
//! batch order. Nothing is committed for a batch whose write did not finish, nor for any batch
//! after it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use cartflow_common::DatabaseUrl;
use deadpool_postgres::Pool;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::batch::Batch;
use crate::context::Context;
use crate::dlq::{self, Outcome};
use crate::metrics::Metrics;
use crate::store::{self, Written};
use crate::{Error, write};

/// Where batches go: PostgreSQL (in `lanes` transactions each) and, for their dead letters,
/// the dead-letter topic.
pub(crate) struct Sink {
    pub(crate) pool: Pool,
    pub(crate) dlq_producer: FutureProducer,
    pub(crate) dlq_topic: String,
    pub(crate) metrics: Metrics,
    pub(crate) database_url: DatabaseUrl,
    pub(crate) lanes: usize,
}

/// A batch being written on a task of its own: `Ok(None)` when a shutdown stopped it.
type InFlight = tokio::task::JoinHandle<(Batch, Result<Option<Written>, Error>)>;

/// The batches in flight, in the order they were read, and what finishing one means.
pub(crate) struct Committer {
    consumer: Arc<StreamConsumer<Context>>,
    sink: Sink,
    in_flight: VecDeque<InFlight>,
    depth: usize,
    /// Offsets of finished batches not yet sent to the broker, by (topic, partition).
    owed: HashMap<(String, i32), i64>,
    last_commit: Instant,
}

/// Offsets of finished batches are committed together at most this often. Small batches
/// (at low load one per message) would otherwise send the group coordinator a commit each,
/// and the member's heartbeats wait behind them on the same connection: a run at 1,000
/// events/s lost its session that way. A crash forgets at most this much, which the next
/// owner reads again and de-duplicates.
const COMMIT_EVERY: Duration = Duration::from_millis(200);

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("in_flight", &self.in_flight.len())
            .field("depth", &self.depth)
            .finish()
    }
}

impl Committer {
    pub(crate) fn new(consumer: Arc<StreamConsumer<Context>>, sink: Sink, depth: usize) -> Self {
        Committer {
            consumer,
            sink,
            in_flight: VecDeque::new(),
            depth: depth.max(1),
            owed: HashMap::new(),
            last_commit: Instant::now(),
        }
    }

    /// Nothing in flight and no offsets owed to the broker.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.owed.is_empty()
    }

    /// Starts writing `batch` on a task of its own.
    pub(crate) fn start(&mut self, mut batch: Batch, shutdown: &CancellationToken) {
        let (pool, metrics, stop) = (
            self.sink.pool.clone(),
            self.sink.metrics.clone(),
            shutdown.clone(),
        );
        let (lanes, url) = (self.sink.lanes, self.sink.database_url.clone());
        self.in_flight.push_back(tokio::spawn(async move {
            let written = write::write_lanes(&pool, &mut batch, lanes, &metrics, &stop)
                .await
                .map_err(|e| e.explained(&url));
            (batch, written)
        }));
    }

    /// Finishes the writes at the front of the queue that are done. False when a shutdown
    /// stopped one of them (nothing after it is committed).
    pub(crate) async fn reap(&mut self) -> Result<bool, Error> {
        while self.in_flight.front().is_some_and(|t| t.is_finished()) {
            let done = self.in_flight.pop_front().expect("not empty");
            if !self.finish(done, CommitMode::Async).await? {
                return Ok(false);
            }
        }
        if self.last_commit.elapsed() >= COMMIT_EVERY {
            self.commit_owed(CommitMode::Async)?;
        }
        Ok(true)
    }

    /// Whether another batch could start writing now: fewer than `depth` writes unfinished.
    pub(crate) fn has_room(&self) -> bool {
        self.in_flight.iter().filter(|w| !w.is_finished()).count() < self.depth
    }

    /// Waits for the oldest writes until another batch may start (or, with nothing new to
    /// write, until none is in flight). False when a shutdown stopped one: that batch is not
    /// committed and will be read again by whoever owns its partitions next.
    pub(crate) async fn make_room(&mut self, nothing_new: bool) -> Result<bool, Error> {
        while self.in_flight.len() >= self.depth || (nothing_new && !self.in_flight.is_empty()) {
            // About to wait on a write, which may take long (a locked table, a slow disk):
            // what is stored by then is committed first.
            self.commit_owed(CommitMode::Async)?;
            let oldest = self.in_flight.pop_front().expect("not empty");
            if !self.finish(oldest, CommitMode::Async).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Finishes everything in flight with synchronous commits: they must reach the broker
    /// before the member leaves.
    pub(crate) async fn drain(&mut self) -> Result<(), Error> {
        while let Some(oldest) = self.in_flight.pop_front() {
            if !self.finish(oldest, CommitMode::Sync).await? {
                break;
            }
        }
        self.commit_owed(CommitMode::Sync)
    }

    /// Waits for a batch's write, settles its dead letters' copies on the dead-letter topic
    /// and commits its offsets. False when a shutdown stopped the write (nothing is committed
    /// then); an error when the write failed for good.
    async fn finish(&mut self, in_flight: InFlight, mode: CommitMode) -> Result<bool, Error> {
        let (batch, written) = in_flight.await?;
        let Some(written) = written? else {
            // A shutdown: what the batches before this one stored is still committed.
            self.commit_owed(CommitMode::Sync)?;
            return Ok(false);
        };
        // Before the offsets: a crash here publishes again on redelivery (at least once). The
        // letters are already whole in dead_letters, so the topic's answer never holds us up.
        if !written.to_publish.is_empty() {
            let outcomes = dlq::publish(
                &self.sink.dlq_producer,
                &self.sink.dlq_topic,
                &written.to_publish,
            )
            .await;
            settle_dead_letters(&self.sink, &outcomes).await;
        }
        for ((topic, partition), next) in batch.next_offsets {
            let owed = self.owed.entry((topic, partition)).or_insert(next);
            *owed = (*owed).max(next);
        }
        if matches!(mode, CommitMode::Sync) || self.last_commit.elapsed() >= COMMIT_EVERY {
            self.commit_owed(mode)?;
        }
        Ok(true)
    }

    /// Commits the offsets owed for the partitions this member still owns: after a
    /// rebalance, a revoked partition's offsets belong to its new owner. Its rows are stored
    /// all the same, and the new owner's redelivery of them is de-duplicated.
    fn commit_owed(&mut self, mode: CommitMode) -> Result<(), Error> {
        // The clock starts at a commit, so the first batch after a quiet spell commits at once.
        if self.owed.is_empty() {
            return Ok(());
        }
        self.last_commit = Instant::now();
        let owned = self.consumer.assignment()?;
        let mut list = TopicPartitionList::new();
        for ((topic, partition), next) in self.owed.drain() {
            if owned.find_partition(&topic, partition).is_some() {
                list.add_partition_offset(&topic, partition, Offset::Offset(next))?;
            } else {
                debug!(topic, partition, "Not committing a revoked partition.");
            }
        }
        if list.count() > 0 {
            self.consumer.commit(&list, mode)?;
        }
        Ok(())
    }
}

/// Counts the dead letters' outcomes and records them in their rows, so a redelivery does not
/// publish them again. A failure to record is only logged: the worst it causes is a second
/// copy on the topic after a redelivery.
async fn settle_dead_letters(sink: &Sink, outcomes: &[(i64, Outcome)]) {
    for outcome in Outcome::ALL {
        let ids: Vec<i64> = outcomes
            .iter()
            .filter(|(_, o)| *o == outcome)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        sink.metrics
            .dlq_records
            .with_label_values(&[outcome.as_str()])
            .inc_by(ids.len() as u64);
        if let Err(e) = store::mark_dead_letters(&sink.pool, &ids, outcome.as_str()).await {
            warn!(error = %e.explained(&sink.database_url), "Could not record the dead-letter topic's answer.");
        }
    }
}
