//! The PostgreSQL NOTIFY channels between services and their payloads, defined once: a rename
//! or a new field breaks the build, not the live updates.
//!
//! - [`EVENTS`]: the consumer, after each committed batch that stored events; the
//!   projector LISTENs and applies the new events at once instead of at its next poll.
//! - [`ANALYTICS`]: the projector, after each committed step that changed the live
//!   analytics; the gateway LISTENs and pushes the change to its clients.
//! - [`OUTCOMES`]: the projector, after a step that wrote cart outcomes to the outbox; the
//!   relay LISTENs and publishes them at once.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A NOTIFY channel whose payloads are `T`: the sender and every listener name the same
/// constant, so neither can read the other's payload as something else.
pub struct Channel<T> {
    name: &'static str,
    payload: PhantomData<fn() -> T>,
}

impl<T> Channel<T> {
    const fn new(name: &'static str) -> Self {
        Channel {
            name,
            payload: PhantomData,
        }
    }

    /// The channel's name, for LISTEN and `pg_notify`.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Channel<T> {}

impl<T> std::fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Channel").field(&self.name).finish()
    }
}

impl<T: Serialize> Channel<T> {
    /// A payload as NOTIFY carries it (JSON text).
    pub fn payload(&self, message: &T) -> String {
        serde_json::to_string(message).expect("channel payloads always serialise")
    }
}

impl<T: DeserializeOwned> Channel<T> {
    /// A payload read back; `None` for text another version wrote that this one cannot read
    /// (the listener then treats it as a bare wake-up).
    pub fn read(&self, payload: &str) -> Option<T> {
        serde_json::from_str(payload).ok()
    }
}

/// The consumer's channel.
pub const EVENTS: Channel<EventsStored> = Channel::new("cartflow_events");

/// The projector's channel.
pub const ANALYTICS: Channel<AnalyticsChanged> = Channel::new("cartflow_analytics");

/// The projector's channel for the outbox.
pub const OUTCOMES: Channel<OutcomesDecided> = Channel::new("cartflow_outcomes");

/// What the projector says on [`OUTCOMES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomesDecided {
    /// Outcomes the step wrote to the outbox.
    pub decided: u64,
}

/// What the consumer says on [`EVENTS`]: how many events one transaction stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsStored {
    pub stored: u64,
}

/// What the projector says on [`ANALYTICS`] after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyticsChanged {
    /// Events the step applied.
    pub events: u64,
    /// The checkpoint after the step.
    pub next_tx: i64,
    /// The oldest publish time (ms since the epoch) among them, so the gateway can measure
    /// publish-to-pushed latency without reading the log.
    pub oldest_published_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_keep_their_field_names() {
        let m = AnalyticsChanged {
            events: 3,
            next_tx: 99,
            oldest_published_ms: Some(1_700_000_000_000),
        };
        let text = ANALYTICS.payload(&m);
        assert_eq!(
            text,
            r#"{"events":3,"next_tx":99,"oldest_published_ms":1700000000000}"#
        );
        assert_eq!(ANALYTICS.read(&text), Some(m));
        assert_eq!(
            EVENTS.read(&EVENTS.payload(&EventsStored { stored: 7 })),
            Some(EventsStored { stored: 7 })
        );
        assert_eq!(ANALYTICS.read("12"), None);
        assert_eq!(
            EVENTS.read("7"),
            None,
            "the bare count an older consumer sent"
        );
    }
}
