//! Lag and stalls as the group sees them: for each assigned partition, the broker's high
//! watermark minus the group's committed offset, read from the broker every few seconds
//! (not librdkafka's statistics, which know only this process's commits and stop moving when
//! the fetch queue is full). A partition with lag whose committed offset has not moved for
//! `--stall-secs` makes `/healthz` answer 503 with the reason, and counts in
//! `cartflow_consumer_stalled_partitions`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cartflow_common::ops::Health;
use rdkafka::Offset;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::context::Context;
use crate::metrics::Metrics;

/// How long one broker request of the watchdog may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One partition's position as the group sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    topic: String,
    partition: i32,
    committed: i64,
    high: i64,
}

/// Progress per partition: the committed offset last seen and since when.
#[derive(Debug, Default)]
struct Progress(HashMap<(String, i32), (i64, Instant)>);

impl Progress {
    /// Updates with a fresh reading; returns the partitions stalled longer than `stall`, as
    /// (topic, partition, lag, seconds without progress).
    fn update(
        &mut self,
        positions: &[Position],
        now: Instant,
        stall: Duration,
    ) -> Vec<(String, i32, i64, u64)> {
        let mut seen = HashMap::new();
        let mut stalled = Vec::new();
        for p in positions {
            let key = (p.topic.clone(), p.partition);
            let lag = (p.high - p.committed).max(0);
            let since = match self.0.get(&key) {
                // No lag is no stall: an idle partition has nothing to progress on.
                Some(&(committed, since)) if committed == p.committed && lag > 0 => since,
                _ => now,
            };
            if lag > 0 && now.duration_since(since) >= stall {
                let secs = now.duration_since(since).as_secs();
                stalled.push((p.topic.clone(), p.partition, lag, secs));
            }
            seen.insert(key, (p.committed, since));
        }
        self.0 = seen;
        stalled
    }
}

/// Runs until `shutdown`: every `every`, reads the assigned partitions' committed offsets and
/// high watermarks, sets the lag gauge, and reports stalls to `health`.
pub(crate) async fn watch(
    consumer: Arc<StreamConsumer<Context>>,
    labels: HashMap<String, &'static str>,
    metrics: Metrics,
    health: Health,
    stall: Duration,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut progress = Progress::default();
    let mut shown: Vec<(&'static str, String)> = Vec::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let c = consumer.clone();
        let positions = match tokio::task::spawn_blocking(move || read_positions(&c)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                debug!(error = %e, "Could not read the group's positions; trying again.");
                continue;
            }
            Err(e) => {
                warn!(error = %e, "The lag reader failed.");
                continue;
            }
        };
        let mut now_shown = Vec::with_capacity(positions.len());
        for p in &positions {
            let Some(&label) = labels.get(&p.topic) else {
                continue;
            };
            let partition = p.partition.to_string();
            metrics
                .lag
                .with_label_values(&[label, partition.as_str()])
                .set((p.high - p.committed).max(0));
            now_shown.push((label, partition));
        }
        for gone in shown.iter().filter(|s| !now_shown.contains(s)) {
            let _ = metrics.lag.remove_label_values(&[gone.0, gone.1.as_str()]);
        }
        shown = now_shown;
        let stalled = progress.update(&positions, Instant::now(), stall);
        metrics.stalled_partitions.set(stalled.len() as i64);
        health.set_problem(describe(&stalled));
    }
}

/// The 503 reason, naming the worst partition.
fn describe(stalled: &[(String, i32, i64, u64)]) -> Option<String> {
    let (topic, partition, lag, secs) = stalled.iter().max_by_key(|s| s.2)?;
    let others = match stalled.len() - 1 {
        0 => String::new(),
        n => format!(" (and {n} more partitions)"),
    };
    Some(format!(
        "stalled: {topic}[{partition}] has {lag} messages of lag and its committed offset has \
         not moved for {secs} s{others}"
    ))
}

fn read_positions(
    consumer: &StreamConsumer<Context>,
) -> Result<Vec<Position>, rdkafka::error::KafkaError> {
    let assigned = consumer.assignment()?;
    if assigned.count() == 0 {
        return Ok(Vec::new());
    }
    let committed = consumer.committed_offsets(assigned, REQUEST_TIMEOUT)?;
    let mut out = Vec::with_capacity(committed.count());
    for e in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), REQUEST_TIMEOUT)?;
        // Nothing committed yet: the group starts from the earliest offset.
        let committed = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        out.push(Position {
            topic: e.topic().to_owned(),
            partition: e.partition(),
            committed,
            high,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(committed: i64, high: i64) -> Vec<Position> {
        vec![Position {
            topic: "cart-events".into(),
            partition: 3,
            committed,
            high,
        }]
    }

    #[test]
    fn a_partition_with_lag_and_no_progress_is_stalled_after_the_limit() {
        let stall = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut p = Progress::default();
        assert!(p.update(&at(100, 200), t0, stall).is_empty());
        assert!(
            p.update(&at(100, 300), t0 + Duration::from_secs(29), stall)
                .is_empty()
        );
        let stalled = p.update(&at(100, 300), t0 + Duration::from_secs(31), stall);
        assert_eq!(stalled, vec![("cart-events".into(), 3, 200, 31)]);
        assert!(describe(&stalled).is_some_and(|d| d.contains("cart-events[3]")));
        // Progress clears it and restarts the clock.
        assert!(
            p.update(&at(150, 300), t0 + Duration::from_secs(32), stall)
                .is_empty()
        );
        assert!(
            p.update(&at(150, 300), t0 + Duration::from_secs(61), stall)
                .is_empty()
        );
        assert_eq!(
            p.update(&at(150, 300), t0 + Duration::from_secs(63), stall)
                .len(),
            1
        );
    }

    #[test]
    fn an_idle_partition_is_never_stalled() {
        let stall = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut p = Progress::default();
        for s in [0, 40, 80, 120] {
            assert!(
                p.update(&at(500, 500), t0 + Duration::from_secs(s), stall)
                    .is_empty()
            );
        }
        // Lag appears: the clock starts then, not at the last commit.
        assert!(
            p.update(&at(500, 501), t0 + Duration::from_secs(121), stall)
                .is_empty()
        );
    }
}
