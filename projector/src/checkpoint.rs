//! The checkpoint row of one generation, and where a step moves it.
//!
//! A step reads the row once, at its start. What the step's own write then makes of it (the
//! watermark, the minute floor, the abandonment cutoff) follows from the row and the delta
//! alone, so it is computed here rather than read back after the write: the statements that
//! depend on it (the timeline's upserts and deletes, the outcomes' lookups) go out in the same
//! pipelined wave as the write instead of a round trip after it (#18). The checkpoint's
//! `minute_floor` is written from [`Advance::floor`], so this is its one definition.

use chrono::{DateTime, TimeDelta, Utc};
use tokio_postgres::GenericClient;

use crate::Error;
use crate::delta::Delta;
use crate::sql::Db;

/// The checkpoint as a step found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every event with `tx_id` below this is applied.
    pub next_tx: i64,
    pub watermark: Option<DateTime<Utc>>,
    /// Whether cart outcomes are decided (live steps only).
    pub outcomes: bool,
    pub minute_floor: Option<DateTime<Utc>>,
    pub minute_retention: TimeDelta,
    pub abandon_after: TimeDelta,
}

/// Where the checkpoint's minute floor was and where a step moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloorMove {
    pub old: Option<DateTime<Utc>>,
    pub new: Option<DateTime<Utc>>,
}

/// The checkpoint after a step, as far as the step's statements depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    pub next_tx: i64,
    pub watermark: Option<DateTime<Utc>>,
    pub floor: FloorMove,
    /// Unpurchased carts last active at or before this are no longer open, after the step...
    pub cutoff: Option<DateTime<Utc>>,
    /// ...and before it.
    pub old_cutoff: Option<DateTime<Utc>>,
}

impl Checkpoint {
    /// The checkpoint of `schema`. Intervals are read as exact microseconds: the projector
    /// sets them in seconds, never in months.
    pub async fn read(
        client: &Db<'_, impl GenericClient + Sync>,
        schema: &str,
    ) -> Result<Checkpoint, Error> {
        let row = client
            .query_opt(
                &format!(
                    "SELECT next_tx, watermark, outcomes, minute_floor, \
                         (extract(epoch FROM minute_retention) * 1000000)::int8, \
                         (extract(epoch FROM abandon_after) * 1000000)::int8 \
                     FROM {schema}.checkpoint"
                ),
                &[],
            )
            .await?
            .ok_or_else(|| Error::NoCheckpoint {
                schema: schema.to_owned(),
            })?;
        Ok(Checkpoint {
            next_tx: row.get(0),
            watermark: row.get(1),
            outcomes: row.get(2),
            minute_floor: row.get(3),
            minute_retention: TimeDelta::microseconds(row.get(4)),
            abandon_after: TimeDelta::microseconds(row.get(5)),
        })
    }

    /// Where a step that applied `delta` up to `next_tx` leaves the checkpoint. The floor is
    /// `minute_retention` before the latest time known (the watermark, or the log's end when
    /// the step looked beyond its chunk), and never moves back; times absent are ignored, as
    /// SQL's GREATEST ignores NULLs.
    pub fn advance(&self, delta: &Delta, next_tx: i64) -> Advance {
        let watermark = self.watermark.max(delta.watermark);
        let reach = watermark.max(delta.log_end);
        let floor = FloorMove {
            old: self.minute_floor,
            new: reach
                .map(|r| r - self.minute_retention)
                .max(self.minute_floor),
        };
        Advance {
            next_tx,
            watermark,
            floor,
            cutoff: watermark.map(|w| w - self.abandon_after),
            old_cutoff: self.watermark.map(|w| w - self.abandon_after),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + TimeDelta::minutes(minute)
    }

    fn checkpoint(watermark: Option<i64>, floor: Option<i64>) -> Checkpoint {
        Checkpoint {
            next_tx: 1,
            watermark: watermark.map(at),
            outcomes: true,
            minute_floor: floor.map(at),
            minute_retention: TimeDelta::minutes(60),
            abandon_after: TimeDelta::minutes(30),
        }
    }

    #[test]
    fn the_floor_follows_the_latest_time_known_and_never_moves_back() {
        let delta = Delta {
            watermark: Some(at(200)),
            ..Delta::default()
        };
        let a = checkpoint(Some(100), Some(40)).advance(&delta, 7);
        assert_eq!(a.next_tx, 7);
        assert_eq!(a.watermark, Some(at(200)));
        assert_eq!(a.floor.old, Some(at(40)));
        assert_eq!(a.floor.new, Some(at(140)));
        assert_eq!(a.cutoff, Some(at(170)));
        assert_eq!(a.old_cutoff, Some(at(70)));

        // A late chunk: the watermark and the floor stay.
        let late = Delta {
            watermark: Some(at(10)),
            ..Delta::default()
        };
        let a = checkpoint(Some(100), Some(40)).advance(&late, 7);
        assert_eq!(a.watermark, Some(at(100)));
        assert_eq!(a.floor.new, Some(at(40)));

        // The log's end, when known, moves the floor beyond the watermark.
        let catching_up = Delta {
            watermark: Some(at(200)),
            log_end: Some(at(500)),
            ..Delta::default()
        };
        let a = checkpoint(Some(100), Some(40)).advance(&catching_up, 7);
        assert_eq!(a.watermark, Some(at(200)));
        assert_eq!(a.floor.new, Some(at(440)));
    }

    #[test]
    fn nothing_known_leaves_everything_unset() {
        let a = checkpoint(None, None).advance(&Delta::default(), 1);
        assert_eq!(a.watermark, None);
        assert_eq!(
            a.floor,
            FloorMove {
                old: None,
                new: None
            }
        );
        assert_eq!((a.cutoff, a.old_cutoff), (None, None));
    }
}
