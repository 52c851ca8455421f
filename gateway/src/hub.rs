//! The fan-out: every message is serialised and framed once and shared by all clients,
//! through the [`writers`](crate::writers).
//!
//! The current snapshot is kept here and a new client is handed to its writer under the same
//! lock as each update is published, so it gets the snapshot and then exactly the updates
//! after it. A client that resumes (`?since=SEQ`) gets, under the same lock, the deltas it
//! missed from the [`History`] instead, when it still has them.
//!
//! Sequences start at the gateway's start time in milliseconds since the epoch, so a sequence
//! from an earlier gateway process is always older than this one's history (at most one delta
//! per tick of 1 ms or more cannot catch up with the clock).

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::history::{Bounds, History};
use crate::writers::Fanout;
use crate::ws::frame;
use crate::ws::peer::Peer;

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

#[derive(Debug)]
struct Current {
    seq: u64,
    data: Map<String, Value>,
    /// `data` as a snapshot message, serialised once (for `/api/snapshot`) ...
    message: Option<Utf8Bytes>,
    /// ... and framed once (for new clients).
    frame: Option<Bytes>,
    history: History,
}

/// How a client's analytics begin.
#[derive(Debug)]
pub enum Start {
    /// The current snapshot frame (None before the analytics were first read).
    Snapshot(Option<Bytes>),
    /// The frames of the deltas after the client's `since`, in order (none when it missed
    /// nothing).
    Resume(Vec<Bytes>),
}

#[derive(Debug)]
pub struct Hub {
    fanout: Fanout,
    current: RwLock<Current>,
}

impl Hub {
    /// A hub writing through `fanout`, keeping `history` for resumes.
    pub fn new(fanout: Fanout, history: Bounds) -> Arc<Hub> {
        Arc::new(Hub {
            fanout,
            current: RwLock::new(Current {
                seq: first_seq(),
                data: Map::new(),
                message: None,
                frame: None,
                history: History::new(history),
            }),
        })
    }

    /// Hands `peer` to a writer. `begin` turns how its analytics start (the snapshot, or with
    /// `since` the deltas after it when the history covers them) into the frames it gets
    /// first; everything published after that follows them.
    pub(crate) fn join(
        &self,
        peer: Arc<Peer>,
        since: Option<u64>,
        begin: impl FnOnce(Start) -> Vec<Bytes>,
    ) {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        let resumed = since.and_then(|s| {
            current.message.as_ref()?;
            current.history.after(s, current.seq)
        });
        let start = match resumed {
            Some(deltas) => Start::Resume(deltas),
            None => Start::Snapshot(current.frame.clone()),
        };
        self.fanout.join(peer, begin(start));
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
        let message = json!({"type": "snapshot", "seq": seq, "data": &data}).to_string();
        current.frame = Some(frame::text(&message));
        current.message = Some(Utf8Bytes::from(message));
        current.data = data;
        let delta =
            frame::text(&json!({"type": "delta", "seq": seq, "changes": changes}).to_string());
        current.history.push(seq, delta.clone());
        self.fanout.send(Channel::Analytics, &delta);
        n
    }

    /// Broadcasts a message to every subscriber of `channel`.
    pub fn broadcast(&self, channel: Channel, message: &Value) {
        self.fanout
            .send(channel, &frame::text(&message.to_string()));
    }

    /// What the latest broadcast cost the writers: the slowest one's latest pass.
    pub(crate) fn broadcast_cost(&self) -> Duration {
        self.fanout.cost()
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
