//! What a client sends, read in a task of its own.
//!
//! The writer is woken by every broadcast; if it also read, each wake-up would attempt a
//! read (tungstenite zero-fills a buffer, registers wakers, checks the socket) although
//! clients rarely send anything. The reader sleeps until the socket has data and shares
//! what it learns through two atomics and, when the client is done, one message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket};
use futures::StreamExt;
use futures::stream::SplitStream;
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::hub::Channel;

/// The channels a client is subscribed to, changed by the reader, read by the writer.
#[derive(Debug, Default)]
pub(super) struct Subscriptions(AtomicU8);

impl Subscriptions {
    pub(super) fn new(channels: impl IntoIterator<Item = Channel>) -> Subscriptions {
        let s = Subscriptions::default();
        channels.into_iter().for_each(|c| s.set(c, true));
        s
    }

    pub(super) fn contains(&self, channel: Channel) -> bool {
        self.0.load(Ordering::Relaxed) & bit(channel) != 0
    }

    fn set(&self, channel: Channel, on: bool) {
        if on {
            self.0.fetch_or(bit(channel), Ordering::Relaxed);
        } else {
            self.0.fetch_and(!bit(channel), Ordering::Relaxed);
        }
    }
}

const fn bit(channel: Channel) -> u8 {
    match channel {
        Channel::Analytics => 1,
        Channel::Feed => 2,
    }
}

/// When the client was last heard from (any frame, pongs included).
#[derive(Debug)]
pub(super) struct Heard {
    since: Instant,
    ms: AtomicU64,
}

impl Heard {
    pub(super) fn now() -> Heard {
        Heard {
            since: Instant::now(),
            ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        self.ms
            .store(self.since.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Milliseconds since the client was last heard from.
    pub(super) fn silent_ms(&self) -> u64 {
        (self.since.elapsed().as_millis() as u64).saturating_sub(self.ms.load(Ordering::Relaxed))
    }
}

/// How the client's side ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// It closed the connection or went away.
    Left,
    /// It sent a message over the size limit.
    TooBig,
    /// It broke the protocol.
    Protocol,
}

/// Reads until the client is done, then says how on `ended`.
pub(super) async fn run(
    mut stream: SplitStream<WebSocket>,
    subscriptions: Arc<Subscriptions>,
    heard: Arc<Heard>,
    ended: oneshot::Sender<Ended>,
) {
    let how = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => {
                heard.touch();
                apply_request(&text, &subscriptions);
            }
            Some(Ok(Message::Close(_))) | None => break Ended::Left,
            Some(Ok(_)) => heard.touch(),
            Some(Err(e)) if over_capacity(&e) => break Ended::TooBig,
            Some(Err(e)) if went_away(&e) => break Ended::Left,
            Some(Err(_)) => break Ended::Protocol,
        }
    };
    let _ = ended.send(how);
}

/// Whether tungstenite refused the message for its size (it does so before reading it whole),
/// recognised by its error type under axum's.
fn over_capacity(e: &axum::Error) -> bool {
    use std::error::Error as _;
    e.source()
        .and_then(|s| s.downcast_ref::<tokio_tungstenite::tungstenite::Error>())
        .is_some_and(|e| matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)))
}

/// Whether the error only says the client went away without a closing handshake (its
/// process ended, its network dropped): a departure, not a protocol violation.
fn went_away(e: &axum::Error) -> bool {
    use std::error::Error as _;
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    e.source()
        .and_then(|s| s.downcast_ref::<WsError>())
        .is_some_and(|e| {
            matches!(
                e,
                WsError::ConnectionClosed
                    | WsError::AlreadyClosed
                    | WsError::Io(_)
                    | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
            )
        })
}

#[derive(Debug, Deserialize)]
struct Request {
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    unsubscribe: Vec<String>,
}

/// `{"subscribe": ["feed"]}` / `{"unsubscribe": ["analytics"]}`; anything else is ignored.
fn apply_request(text: &str, subscriptions: &Subscriptions) {
    let Ok(request) = serde_json::from_str::<Request>(text) else {
        return;
    };
    for c in request.subscribe.iter().filter_map(|c| Channel::parse(c)) {
        subscriptions.set(c, true);
    }
    for c in request.unsubscribe.iter().filter_map(|c| Channel::parse(c)) {
        subscriptions.set(c, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_change_the_subscriptions() {
        let s = Subscriptions::new([Channel::Analytics]);
        assert!(s.contains(Channel::Analytics) && !s.contains(Channel::Feed));
        apply_request(
            r#"{"subscribe": ["feed"], "unsubscribe": ["analytics"]}"#,
            &s,
        );
        assert!(!s.contains(Channel::Analytics) && s.contains(Channel::Feed));
        apply_request("not json", &s);
        assert!(s.contains(Channel::Feed));
    }
}
