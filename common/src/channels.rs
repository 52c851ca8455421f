//! The PostgreSQL NOTIFY channels between services and their payloads, defined once: a rename
//! or a new field breaks the build, not the live updates.
//!
//! - [`EVENTS_CHANNEL`]: the consumer, after each committed batch that stored events; the
//!   projector LISTENs and applies the new events at once instead of at its next poll.
//! - [`ANALYTICS_CHANNEL`]: the projector, after each committed step that changed the live
//!   analytics; the gateway LISTENs and pushes the change to its clients.

use serde::{Deserialize, Serialize};

/// The consumer's channel; the payload is [`EventsStored`].
pub const EVENTS_CHANNEL: &str = "cartflow_events";

/// The projector's channel; the payload is [`AnalyticsChanged`].
pub const ANALYTICS_CHANNEL: &str = "cartflow_analytics";

/// What the consumer says on [`EVENTS_CHANNEL`]: how many events one transaction stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsStored {
    pub stored: u64,
}

/// What the projector says on [`ANALYTICS_CHANNEL`] after a step.
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

/// A payload as NOTIFY carries it (JSON text).
pub fn to_payload<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).expect("channel payloads always serialise")
}

/// A payload read back; `None` for text another version wrote that this one cannot read
/// (the listener then treats it as a bare wake-up).
pub fn from_payload<T: for<'de> Deserialize<'de>>(payload: &str) -> Option<T> {
    serde_json::from_str(payload).ok()
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
        let text = to_payload(&m);
        assert_eq!(
            text,
            r#"{"events":3,"next_tx":99,"oldest_published_ms":1700000000000}"#
        );
        assert_eq!(from_payload::<AnalyticsChanged>(&text), Some(m));
        assert_eq!(
            from_payload::<EventsStored>(&to_payload(&EventsStored { stored: 7 })),
            Some(EventsStored { stored: 7 })
        );
        assert_eq!(from_payload::<AnalyticsChanged>("12"), None);
    }
}
