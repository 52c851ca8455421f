//! One client's own task, from the upgrade to the close: it reads what the client sends
//! (subscriptions, pongs, pings, its close), pings it, and is the slow path for its writes:
//! when the socket did not take a broadcast whole, it sends the rest as the socket makes room,
//! and cuts the client that takes none for [`SEND_TIMEOUT`] or falls `--client-queue`
//! messages behind.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use serde::Deserialize;
use tokio::net::TcpStream;

use super::frame::{self, Decoder, Incoming, Violation};
use super::peer::{Fault, Peer, Subscriptions};
use super::{CLOSE_GOING_AWAY, CLOSE_NO_PONG, CLOSE_TOO_BIG, CLOSE_TOO_SLOW, Limits};
use crate::hub::Channel;
use crate::listener::close_lingering;
use crate::metrics::Cut;

/// A write that takes longer than this means the peer stopped reading.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a close frame may take to be written, when the peer is not known to be slow.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes read at a time; clients send little.
const READ_SIZE: usize = 512;
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_NOT_UTF8: u16 = 1007;

/// How a session ends.
#[derive(Debug)]
enum End {
    /// The client went away without a closing handshake.
    Gone,
    /// The client closed, with this code: answer in kind.
    Answer(Option<u16>),
    /// The gateway closes it, and why, if it is a cut.
    Close(u16, &'static str, Option<Cut>),
}

/// Runs the client until it leaves or is cut; returns why it was cut. `read` holds what
/// arrived with the handshake.
pub(super) async fn run(
    socket: Arc<TcpStream>,
    peer: Arc<Peer>,
    mut read: BytesMut,
    limits: &Limits,
    stopping: tokio_util::sync::WaitForCancellationFuture<'_>,
) -> Option<Cut> {
    let ping_every = limits.ping_every;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut decoder = Decoder::new(limits.max_message_bytes);
    tokio::pin!(stopping);
    let end = loop {
        if let Some(end) = take_messages(&peer, &mut decoder, &mut read) {
            break end;
        }
        let (fault, queued, progress) = peer.state();
        match fault {
            Some(Fault::Slow) => break too_slow(),
            Some(Fault::Broken) => break End::Gone,
            None => {}
        }
        let stuck = progress + SEND_TIMEOUT;
        tokio::select! {
            () = &mut stopping => break End::Close(CLOSE_GOING_AWAY, "gateway stopping", None),
            () = peer.wake.notified() => {}
            ready = socket.writable(), if queued => match ready {
                Ok(()) => peer.flush(),
                Err(_) => break End::Gone,
            },
            () = tokio::time::sleep_until(stuck.into()), if queued => break too_slow(),
            ready = socket.readable() => match ready.map(|()| receive(&socket, &mut read)) {
                Ok(Received::Some) => {}
                _ => break End::Gone,
            },
            _ = ping.tick() => {
                if u128::from(peer.heard.silent_ms()) > 2 * ping_every.as_millis() {
                    break End::Close(CLOSE_NO_PONG, "no pong", Some(Cut::Timeout));
                }
                peer.send(&[&frame::ping()]);
            }
        }
    };
    finish(socket, &peer, end).await
}

fn too_slow() -> End {
    End::Close(
        CLOSE_TOO_SLOW,
        "too slow: fell behind the live updates",
        Some(Cut::Slow),
    )
}

enum Received {
    Some,
    Closed,
}

/// One non-blocking read into `buf`.
fn receive(socket: &TcpStream, buf: &mut BytesMut) -> Received {
    buf.reserve(READ_SIZE);
    match socket.try_read_buf(buf) {
        Ok(0) => Received::Closed,
        Ok(_) => Received::Some,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Received::Some,
        Err(_) => Received::Closed,
    }
}

/// Acts on every whole message in `buf`; the end it calls for, if any.
fn take_messages(peer: &Peer, decoder: &mut Decoder, buf: &mut BytesMut) -> Option<End> {
    let end = loop {
        match decoder.next(buf) {
            Ok(None) => break None,
            Ok(Some(message)) => {
                peer.heard.touch();
                match message {
                    Incoming::Text(text) => apply_request(&text, &peer.channels),
                    Incoming::Ping(payload) => {
                        peer.send(&[&frame::pong(&payload)]);
                    }
                    Incoming::Binary | Incoming::Pong => {}
                    Incoming::Close(code) => break Some(End::Answer(code)),
                }
            }
            Err(Violation::TooBig) => {
                break Some(End::Close(
                    CLOSE_TOO_BIG,
                    "message too big",
                    Some(Cut::Oversized),
                ));
            }
            Err(Violation::NotUtf8) => {
                break Some(End::Close(
                    CLOSE_NOT_UTF8,
                    "text is not UTF-8",
                    Some(Cut::Protocol),
                ));
            }
            Err(Violation::Protocol(why)) => {
                break Some(End::Close(CLOSE_PROTOCOL, why, Some(Cut::Protocol)));
            }
        }
    };
    // An idle client holds no read buffer.
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
    end
}

/// Sends the close frame the end calls for, then closes the socket lingering (as the
/// listener closes any connection: a reset could destroy the close frame unread).
async fn finish(socket: Arc<TcpStream>, peer: &Peer, end: End) -> Option<Cut> {
    let (close, wait, cut) = match end {
        End::Gone => {
            peer.detach();
            return None;
        }
        End::Answer(Some(code)) => (frame::close(code, ""), CLOSE_TIMEOUT, None),
        End::Answer(None) => (frame::close_empty(), CLOSE_TIMEOUT, None),
        End::Close(code, reason, cut) => {
            // A slow client gets the time any write gets to take its close frame.
            let wait = if cut == Some(Cut::Slow) {
                SEND_TIMEOUT
            } else {
                CLOSE_TIMEOUT
            };
            (frame::close(code, reason), wait, cut)
        }
    };
    peer.begin_close(close);
    let flushed = async {
        while peer.queued() {
            if socket.writable().await.is_err() {
                return;
            }
            peer.flush();
        }
    };
    let _ = tokio::time::timeout(wait, flushed).await;
    peer.detach();
    // The writers no longer hold the socket: this is the last handle.
    if let Ok(stream) = Arc::try_unwrap(socket) {
        close_lingering(stream).await;
    }
    cut
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
