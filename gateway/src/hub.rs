//! The fan-out: every message is serialised once and shared by all clients.
//!
//! A client's queue is its position in one bounded broadcast ring: a client more than the
//! ring's length behind is cut (it would otherwise hold memory for everyone), and the others
//! never wait for it. The current snapshot is kept beside the ring and handed out under the
//! same lock as each update is published, so a new client gets the snapshot and then exactly
//! the updates after it. A client that resumes (`?since=SEQ`) gets, under the same lock, the
//! deltas it missed from the [`History`] instead, when it still has them.
//!
//! Sequences start at the gateway's start time in milliseconds since the epoch, so a sequence
//! from an earlier gateway process is always older than this one's history (at most one delta
//! per tick of 10 ms or more cannot catch up with the clock).

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::history::{Bounds, History};

/// What a client can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Snapshot deltas after the projector's commits.
    Analytics,
    /// Cart events as they arrive on the topic.
    Feed,
}

impl Channel {
    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "analytics" => Some(Channel::Analytics),
            "feed" => Some(Channel::Feed),
            _ => None,
        }
    }

    pub const fn label(self) -> &'static str {
        match self {
            Channel::Analytics => "analytics",
            Channel::Feed => "feed",
        }
    }
}

/// One serialised message for every subscriber of its channel.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub channel: Channel,
    pub text: Utf8Bytes,
}

#[derive(Debug)]
struct Current {
    seq: u64,
    data: Map<String, Value>,
    /// `data` as a snapshot message, serialised once.
    message: Option<Utf8Bytes>,
    history: History,
}

/// How a client's analytics begin.
#[derive(Debug)]
pub enum Start {
    /// The current snapshot message (None before the analytics were first read).
    Snapshot(Option<Utf8Bytes>),
    /// The deltas after the client's `since`, in order (none when it missed nothing).
    Resume(Vec<Utf8Bytes>),
}

#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Outgoing>,
    current: RwLock<Current>,
}

impl Hub {
    /// A hub whose clients may fall `queue` messages behind, keeping `history` for resumes.
    pub fn new(queue: usize, history: Bounds) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(queue.max(1));
        Arc::new(Hub {
            tx,
            current: RwLock::new(Current {
                seq: first_seq(),
                data: Map::new(),
                message: None,
                history: History::new(history),
            }),
        })
    }

    /// How the client begins (the snapshot, or with `since` the deltas after it when the
    /// history covers them) and a receiver of everything published after that.
    pub fn subscribe(&self, since: Option<u64>) -> (Start, broadcast::Receiver<Outgoing>) {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        let resumed = since.and_then(|s| {
            current.message.as_ref()?;
            current.history.after(s, current.seq)
        });
        let start = match resumed {
            Some(deltas) => Start::Resume(deltas),
            None => Start::Snapshot(current.message.clone()),
        };
        (start, self.tx.subscribe())
    }

    /// Stores a new snapshot and broadcasts what changed. Returns the number of changed keys.
    pub fn publish_snapshot(&self, data: Map<String, Value>) -> usize {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let changes = changes(&current.data, &data);
        if changes.is_empty() && current.message.is_some() {
            return 0;
        }
        let n = changes.len();
        current.seq += 1;
        let seq = current.seq;
        current.message = Some(text(
            &json!({"type": "snapshot", "seq": seq, "data": &data}),
        ));
        current.data = data;
        let delta = text(&json!({"type": "delta", "seq": seq, "changes": changes}));
        current.history.push(seq, delta.clone());
        // No subscribers is not an error.
        let _ = self.tx.send(Outgoing {
            channel: Channel::Analytics,
            text: delta,
        });
        n
    }

    /// Broadcasts a message to every subscriber of `channel`.
    pub fn broadcast(&self, channel: Channel, message: &Value) {
        let _ = self.tx.send(Outgoing {
            channel,
            text: text(message),
        });
    }

    /// The current snapshot message (what `/api/snapshot` serves), once the analytics were read.
    pub fn data(&self) -> Option<Utf8Bytes> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .message
            .clone()
    }
}

/// Where a sequence starts: now, in milliseconds since the epoch, so that a sequence from an
/// earlier gateway process is always lower than this one's.
pub fn first_seq() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn text(v: &Value) -> Utf8Bytes {
    Utf8Bytes::from(v.to_string())
}

/// The keys of `new` whose value differs from `old`, with their new values.
pub fn changes(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    new.iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_carry_only_what_changed() {
        let old = json!({"kpis": {"events": 1}, "peaks": []});
        let new = json!({"kpis": {"events": 2}, "peaks": []});
        let d = changes(old.as_object().unwrap(), new.as_object().unwrap());
        assert_eq!(Value::Object(d), json!({"kpis": {"events": 2}}));
    }
}
