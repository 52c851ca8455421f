//! `/ws`: the handshake checks (token, Origin, connection limit) and one client's life.
//!
//! Protocol (docs/gateway.md): on connect a `snapshot`, then `delta` messages after projector
//! commits and `feed` messages with live events, each coalesced per tick. A client picks
//! channels with `?channels=analytics,feed` or by sending `{"subscribe": [...]}` /
//! `{"unsubscribe": [...]}`. A client that reconnects with `?since=SEQ` gets a `resume`
//! message, then the deltas it missed or, when the history no longer has them, a snapshot.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::oneshot;
use tokio::sync::{OwnedSemaphorePermit, broadcast};
use tokio_util::task::AbortOnDropHandle;
use tracing::debug;

use crate::auth::{Access, origin_allowed};
use crate::hub::{Channel, Outgoing, Start};
use crate::metrics::{Cut, Refused};
use crate::state::Shared;

mod reader;

use reader::{Ended, Heard, Subscriptions};

/// Close codes of the protocol.
pub const CLOSE_TOO_SLOW: u16 = 4001;
pub const CLOSE_NO_PONG: u16 = 4002;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_TOO_BIG: u16 = 1009;
/// The subprotocol the gateway speaks; browsers must offer it beside a token protocol.
pub const PROTOCOL: &str = "cartflow.v1";
/// A write that takes longer than this means the peer stopped reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Most messages written to one client in one system call.
const MAX_BATCH: usize = 16;

/// The WebSocket's own limits (`--max-clients`, `--max-message-bytes`, `--ping-secs`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub slots: Slots,
    pub max_message_bytes: usize,
    pub ping_every: Duration,
}

/// What `/ws` needs: the shared state, its limits, and the Origin rule.
#[derive(Debug, Clone)]
pub struct WsState {
    pub shared: Shared,
    pub limits: Limits,
    pub access: Access,
}

#[derive(Debug, Default, Deserialize)]
pub struct WsQuery {
    channels: Option<String>,
    /// The last analytics sequence the client applied, when it resumes.
    since: Option<u64>,
}

/// The handshake (the token was checked by the `auth` layer before it): the Origin, a free
/// slot, then the upgrade.
pub async fn handler(
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    Query(params): Query<WsQuery>,
    State(state): State<WsState>,
) -> Response {
    if !origin_allowed(&state.access.allowed_origins, &headers) {
        return state.access.refuse(
            Refused::Origin,
            StatusCode::FORBIDDEN,
            "This Origin is not allowed.\n",
        );
    }
    let Ok(permit) = state.limits.slots.clone().try_acquire_owned() else {
        return state.access.refuse(
            Refused::Full,
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many clients; try again later.\n",
        );
    };
    let channels = match &params.channels {
        Some(list) => Subscriptions::new(list.split(',').filter_map(|c| Channel::parse(c.trim()))),
        None => Subscriptions::new([Channel::Analytics, Channel::Feed]),
    };
    let since = params.since;
    let max = state.limits.max_message_bytes;
    ws.protocols([PROTOCOL])
        .max_message_size(max)
        .max_frame_size(max)
        // tungstenite zero-fills its read buffer before every read attempt. Clients send
        // little: 256 bytes halves an idle connection's memory (8.0 -> 4.2 KiB).
        .read_buffer_size(256)
        // Messages fed in one batch are written together at the flush (or once 16 KiB wait).
        .write_buffer_size(16 * 1024)
        .on_upgrade(move |socket| serve(socket, state, channels, since, permit))
}

async fn serve(
    socket: WebSocket,
    state: WsState,
    channels: Subscriptions,
    since: Option<u64>,
    _permit: OwnedSemaphorePermit,
) {
    let m = &state.shared.metrics;
    m.clients.inc();
    m.connections.inc();
    let reason = client(socket, &state, channels, since).await;
    if let Some(reason) = reason {
        m.cut.with_label_values(&[reason.label()]).inc();
        debug!(reason = reason.label(), "Closed a client.");
    }
    m.clients.dec();
}

/// Runs one client until it leaves or is cut; returns why it was cut. This task writes; a
/// second one ([`reader`]) reads, so that a broadcast wakes only the writer.
async fn client(
    socket: WebSocket,
    state: &WsState,
    channels: Subscriptions,
    since: Option<u64>,
) -> Option<Cut> {
    let (mut sink, stream) = socket.split();
    let (start, mut rx) = state.shared.hub.subscribe(since);
    let channels = Arc::new(channels);
    let heard = Arc::new(Heard::now());
    let (ended_tx, mut ended) = oneshot::channel();
    // The reader ends with the writer, however the writer ends.
    let _reader = AbortOnDropHandle::new(tokio::spawn(reader::run(
        stream,
        channels.clone(),
        heard.clone(),
        ended_tx,
    )));
    let send = |text: Utf8Bytes| Message::Text(text);
    if channels.contains(Channel::Analytics)
        && !deliver_all(&mut sink, beginning(start, since, state), state).await
    {
        return Some(Cut::Slow);
    }
    let ping_every = state.limits.ping_every;
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    // Created once: a new `cancelled()` per loop would register and unregister a waiter on
    // the token (a lock shared by every client) for every message sent.
    let stopping = state.shared.shutdown.cancelled();
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Ok(o) if channels.contains(o.channel) => {
                    let Some(batch) = gather(send(o.text), &mut rx, &channels) else {
                        return too_slow(&mut sink).await;
                    };
                    if !deliver_all(&mut sink, batch, state).await {
                        return Some(Cut::Slow);
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return too_slow(&mut sink).await,
                Err(RecvError::Closed) => {
                    close(&mut sink, CLOSE_GOING_AWAY, "gateway stopping").await;
                    return None;
                }
            },
            how = &mut ended => return reader_ended(&mut sink, how.unwrap_or(Ended::Left)).await,
            _ = ping.tick() => {
                if heard.silent_ms() > 2 * ping_every.as_millis() as u64 {
                    close(&mut sink, CLOSE_NO_PONG, "no pong").await;
                    return Some(Cut::Timeout);
                }
                if !deliver(&mut sink, Message::Ping(Default::default()), state).await {
                    return Some(Cut::Slow);
                }
            }
            () = &mut stopping => {
                close(&mut sink, CLOSE_GOING_AWAY, "gateway stopping").await;
                return None;
            }
        }
    }
}

/// The analytics messages a client begins with: the snapshot, or for a client that resumes a
/// `resume` message saying which it gets, then the deltas it missed or the snapshot.
fn beginning(start: Start, since: Option<u64>, state: &WsState) -> Vec<Message> {
    let mut messages = Vec::new();
    let resumes = &state.shared.metrics.resumes;
    let deltas = matches!(start, Start::Resume(_));
    if let Some(since) = since {
        resumes
            .with_label_values(&[if deltas { "deltas" } else { "snapshot" }])
            .inc();
        let missed = match &start {
            Start::Resume(d) => d.len(),
            Start::Snapshot(_) => 0,
        };
        messages.push(Message::Text(Utf8Bytes::from(
            serde_json::json!({"type": "resume", "since": since, "covered": deltas, "missed": missed})
                .to_string(),
        )));
    }
    match start {
        Start::Resume(d) => messages.extend(d.into_iter().map(Message::Text)),
        Start::Snapshot(s) => messages.push(Message::Text(s.unwrap_or_else(|| {
            Utf8Bytes::from_static(r#"{"type":"snapshot","seq":0,"data":null}"#)
        }))),
    }
    messages
}

/// `first` and whatever else for this client is already waiting, up to [`MAX_BATCH`]: a client
/// that fell behind gets it in one write, not one system call per message, which under load is
/// what lets it catch up. None when it fell so far behind that messages were dropped.
fn gather(
    first: Message,
    rx: &mut broadcast::Receiver<Outgoing>,
    channels: &Subscriptions,
) -> Option<Vec<Message>> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(o) if channels.contains(o.channel) => batch.push(Message::Text(o.text)),
            Ok(_) => {}
            Err(TryRecvError::Lagged(_)) => return None,
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Closes the connection as the reader's end asks; returns why it was cut, if it was.
async fn reader_ended(sink: &mut Sink, how: Ended) -> Option<Cut> {
    match how {
        Ended::Left => None,
        Ended::TooBig => {
            close(sink, CLOSE_TOO_BIG, "message too big").await;
            Some(Cut::Oversized)
        }
        Ended::Protocol => Some(Cut::Protocol),
    }
}

type Sink = futures::stream::SplitSink<WebSocket, Message>;

/// Writes `messages` and flushes once. False when the client does not take them within
/// [`SEND_TIMEOUT`].
async fn deliver_all(sink: &mut Sink, messages: Vec<Message>, state: &WsState) -> bool {
    let n = messages.len() as u64;
    let write = async {
        for m in messages {
            sink.feed(m).await?;
        }
        sink.flush().await
    };
    match tokio::time::timeout(SEND_TIMEOUT, write).await {
        Ok(Ok(())) => {
            state.shared.metrics.sent.inc_by(n);
            true
        }
        _ => false,
    }
}

async fn deliver(sink: &mut Sink, message: Message, state: &WsState) -> bool {
    deliver_all(sink, vec![message], state).await
}

/// Closes a client that fell off the end of the ring (4001); its reason for the metrics.
async fn too_slow(sink: &mut Sink) -> Option<Cut> {
    close(
        sink,
        CLOSE_TOO_SLOW,
        "too slow: fell behind the live updates",
    )
    .await;
    Some(Cut::Slow)
}

async fn close(sink: &mut Sink, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        sink.send(Message::Close(Some(frame))),
    )
    .await;
}

pub type Slots = Arc<tokio::sync::Semaphore>;
