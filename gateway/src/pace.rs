//! When a coalescing loop may send next: at once when its last send is a spacing old, else a
//! spacing after it. The spacing is the tick, or four times what the last broadcast cost the
//! writers when that is more: a quiet system with a few clients pushes each change at once
//! and at most every tick, a large audience gets fewer messages, and the writers spend at most
//! a quarter of their time on each stream. The analytics reader and the feed both pace
//! themselves so.

use std::time::Duration;

use tokio::time::Instant;

/// The spacing is at least this many times the cost of the last broadcast.
const COST_FACTOR: u32 = 4;

#[derive(Debug)]
pub(crate) struct Pace {
    tick: Duration,
    /// When the last send began.
    last: Option<Instant>,
}

impl Pace {
    pub(crate) fn new(tick: Duration) -> Self {
        Pace { tick, last: None }
    }

    /// The least time between two sends when a broadcast costs the writers `cost`.
    pub(crate) fn spacing(&self, cost: Duration) -> Duration {
        self.tick.max(cost.saturating_mul(COST_FACTOR))
    }

    /// When what is waiting may go out, when a broadcast costs `cost`.
    pub(crate) fn next(&self, cost: Duration) -> Instant {
        self.after(self.spacing(cost))
    }

    /// `wait` after the last send began (now if none has).
    pub(crate) fn after(&self, wait: Duration) -> Instant {
        self.last.map_or_else(Instant::now, |l| l + wait)
    }

    /// Records a send that began at `at`.
    pub(crate) fn sent(&mut self, at: Instant) {
        self.last = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spacing_is_the_tick_or_four_times_the_cost() {
        let pace = Pace::new(Duration::from_millis(10));
        assert_eq!(pace.spacing(Duration::ZERO), Duration::from_millis(10));
        assert_eq!(
            pace.spacing(Duration::from_millis(2)),
            Duration::from_millis(10)
        );
        assert_eq!(
            pace.spacing(Duration::from_millis(25)),
            Duration::from_millis(100)
        );
    }

    #[tokio::test]
    async fn the_first_send_goes_at_once_the_next_a_spacing_later() {
        let mut pace = Pace::new(Duration::from_millis(10));
        let now = Instant::now();
        assert!(pace.next(Duration::ZERO) <= Instant::now());
        pace.sent(now);
        assert_eq!(
            pace.next(Duration::from_millis(5)),
            now + Duration::from_millis(20)
        );
    }
}
