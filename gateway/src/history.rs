//! The latest analytics deltas (as frames, ready to write), kept for clients that reconnect with `?since=SEQ`
//! (docs/gateway.md, "Resuming"): bounded by their total size and by age, oldest dropped first.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How much history is kept (`--resume-history-bytes`, `--resume-max-age-secs`).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_bytes: usize,
    pub max_age: Duration,
}

#[derive(Debug)]
struct Kept {
    seq: u64,
    at: Instant,
    text: Bytes,
}

/// Consecutive deltas, by sequence.
#[derive(Debug)]
pub struct History {
    bounds: Bounds,
    deltas: VecDeque<Kept>,
    bytes: usize,
}

impl History {
    pub fn new(bounds: Bounds) -> History {
        History {
            bounds,
            deltas: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Keeps the delta `seq` (one more than the last one kept) and drops what is out of
    /// bounds.
    pub fn push(&mut self, seq: u64, text: Bytes) {
        self.bytes += text.len();
        self.deltas.push_back(Kept {
            seq,
            at: Instant::now(),
            text,
        });
        let now = Instant::now();
        while let Some(oldest) = self.deltas.front() {
            let too_old = now.duration_since(oldest.at) > self.bounds.max_age;
            if self.bytes <= self.bounds.max_bytes && !too_old {
                break;
            }
            self.bytes -= oldest.text.len();
            self.deltas.pop_front();
        }
    }

    /// Every delta after `since` up to `current`, when all of them are still kept; an empty
    /// list when `since` is `current`. None when the history does not cover it (too old, or
    /// a sequence this gateway never issued).
    pub fn after(&self, since: u64, current: u64) -> Option<Vec<Bytes>> {
        if since == current {
            return Some(Vec::new());
        }
        if since > current {
            return None;
        }
        let first = self.deltas.front()?.seq;
        if first > since + 1 {
            return None;
        }
        let skip = usize::try_from(since + 1 - first).ok()?;
        let now = Instant::now();
        let missed: Vec<&Kept> = self.deltas.iter().skip(skip).collect();
        let complete = missed.first().map(|k| k.seq) == Some(since + 1)
            && missed.last().map(|k| k.seq) == Some(current);
        let fresh = missed
            .first()
            .is_some_and(|k| now.duration_since(k.at) <= self.bounds.max_age);
        (complete && fresh).then(|| missed.into_iter().map(|k| k.text.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(max_bytes: usize) -> History {
        History::new(Bounds {
            max_bytes,
            max_age: Duration::from_secs(60),
        })
    }

    #[test]
    fn serves_what_was_missed_while_it_is_kept() {
        let mut h = history(1_000);
        for seq in 11..=15 {
            h.push(seq, Bytes::from(format!("d{seq}")));
        }
        let texts = |v: Vec<Bytes>| {
            v.iter()
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(h.after(12, 15).unwrap()), ["d13", "d14", "d15"]);
        assert_eq!(h.after(15, 15).unwrap().len(), 0, "nothing missed");
        assert_eq!(
            texts(h.after(10, 15).unwrap()).len(),
            5,
            "from the oldest kept"
        );
        assert!(h.after(9, 15).is_none(), "older than the history");
        assert!(h.after(16, 15).is_none(), "a sequence never issued");
    }

    #[test]
    fn drops_the_oldest_past_its_size() {
        let mut h = history(10);
        for seq in 1..=4 {
            h.push(seq, Bytes::from_static(b"1234"));
        }
        // 16 bytes kept at most 10: only deltas 3 and 4 remain.
        assert!(h.after(1, 4).is_none());
        assert_eq!(h.after(2, 4).unwrap().len(), 2);
    }
}
