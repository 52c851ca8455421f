//! `/ws`: the handshake checks (token, Origin, connection limit) and one client's life.
//!
//! Protocol (docs/gateway.md): on connect a `snapshot`, then `delta` messages after projector
//! commits and `feed` messages with live events, each coalesced per tick. A client picks
//! channels with `?channels=analytics,feed` or by sending `{"subscribe": [...]}` /
//! `{"unsubscribe": [...]}`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::oneshot;
use tokio_util::task::AbortOnDropHandle;
use tracing::debug;

use crate::hub::Channel;
use crate::metrics::{Cut, Refused};
use crate::server::AppState;

mod reader;

use reader::{Ended, Heard, Subscriptions};

/// Close codes of the protocol.
pub const CLOSE_TOO_SLOW: u16 = 4001;
pub const CLOSE_NO_PONG: u16 = 4002;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_TOO_BIG: u16 = 1009;
/// The subprotocol the gateway speaks; browsers must offer it beside a token protocol.
pub const PROTOCOL: &str = "cartflow.v1";
const TOKEN_PROTOCOL_PREFIX: &str = "cartflow.token.";
/// A write that takes longer than this means the peer stopped reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Most messages written to one client in one system call.
const MAX_BATCH: usize = 16;

#[derive(Debug, Default, Deserialize)]
pub struct WsParams {
    token: Option<String>,
    channels: Option<String>,
}

/// Whether the request carries the configured token (query, subprotocol or bearer header).
pub fn authorised(expected: Option<&str>, query_token: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let from_protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .flat_map(|v| v.split(','))
        .filter_map(|p| {
            p.trim()
                .strip_prefix(TOKEN_PROTOCOL_PREFIX)
                .map(str::to_owned)
        });
    let from_bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    query_token
        .map(str::to_owned)
        .into_iter()
        .chain(from_protocol)
        .chain(from_bearer)
        .any(|t| t == expected)
}

/// Browsers send an Origin: it must be this gateway's own or in the allow-list. Clients
/// that send none (not browsers) are let in.
fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    host.is_some() && origin_host == host
}

pub async fn handler(
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    Query(params): Query<WsParams>,
    State(state): State<AppState>,
) -> Response {
    let refuse = |reason: Refused, status: StatusCode, message: &'static str| {
        state
            .metrics
            .refused
            .with_label_values(&[reason.label()])
            .inc();
        (status, message).into_response()
    };
    if !authorised(state.token.as_deref(), params.token.as_deref(), &headers) {
        return refuse(
            Refused::Token,
            StatusCode::UNAUTHORIZED,
            "A valid token is required.\n",
        );
    }
    if !origin_allowed(&state.allowed_origins, &headers) {
        return refuse(
            Refused::Origin,
            StatusCode::FORBIDDEN,
            "This Origin is not allowed.\n",
        );
    }
    let Ok(permit) = state.slots.clone().try_acquire_owned() else {
        return refuse(
            Refused::Full,
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many clients; try again later.\n",
        );
    };
    let channels = match &params.channels {
        Some(list) => Subscriptions::new(list.split(',').filter_map(|c| Channel::parse(c.trim()))),
        None => Subscriptions::new([Channel::Analytics, Channel::Feed]),
    };
    let max = state.max_message_bytes;
    ws.protocols([PROTOCOL])
        .max_message_size(max)
        .max_frame_size(max)
        // tungstenite zero-fills its read buffer before every read attempt. Clients send
        // little: 256 bytes halves an idle connection's memory (8.0 -> 4.2 KiB).
        .read_buffer_size(256)
        // Messages fed in one batch are written together at the flush (or once 16 KiB wait).
        .write_buffer_size(16 * 1024)
        .on_upgrade(move |socket| serve(socket, state, channels, permit))
}

async fn serve(
    socket: WebSocket,
    state: AppState,
    channels: Subscriptions,
    _permit: OwnedSemaphorePermit,
) {
    let m = &state.metrics;
    m.clients.inc();
    m.connections.inc();
    let reason = client(socket, &state, channels).await;
    if let Some(reason) = reason {
        m.cut.with_label_values(&[reason.label()]).inc();
        debug!(reason = reason.label(), "Closed a client.");
    }
    m.clients.dec();
}

/// Runs one client until it leaves or is cut; returns why it was cut. This task writes; a
/// second one ([`reader`]) reads, so that a broadcast wakes only the writer.
async fn client(socket: WebSocket, state: &AppState, channels: Subscriptions) -> Option<Cut> {
    let (mut sink, stream) = socket.split();
    let (snapshot, mut rx) = state.hub.subscribe();
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
    if channels.contains(Channel::Analytics) {
        let first = snapshot.unwrap_or_else(|| {
            Utf8Bytes::from_static(r#"{"type":"snapshot","seq":0,"data":null}"#)
        });
        if !deliver(&mut sink, send(first), state).await {
            return Some(Cut::Slow);
        }
    }
    let ping_every = state.ping_every;
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    // Created once: a new `cancelled()` per loop would register and unregister a waiter on
    // the token (a lock shared by every client) for every message sent.
    let stopping = state.shutdown.cancelled();
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Ok(o) if channels.contains(o.channel) => {
                    // A client that fell behind gets what is waiting in one write, not one
                    // system call per message: under load that is what lets it catch up.
                    let mut batch = vec![send(o.text)];
                    let mut lagged = false;
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(o) if channels.contains(o.channel) => batch.push(send(o.text)),
                            Ok(_) => {}
                            Err(TryRecvError::Lagged(_)) => {
                                lagged = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if lagged {
                        return too_slow(&mut sink).await;
                    }
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
            how = &mut ended => match how.unwrap_or(Ended::Left) {
                Ended::Left => return None,
                Ended::TooBig => {
                    close(&mut sink, CLOSE_TOO_BIG, "message too big").await;
                    return Some(Cut::Oversized);
                }
                Ended::Protocol => return Some(Cut::Protocol),
            },
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

type Sink = futures::stream::SplitSink<WebSocket, Message>;

/// Writes `messages` and flushes once. False when the client does not take them within
/// [`SEND_TIMEOUT`].
async fn deliver_all(sink: &mut Sink, messages: Vec<Message>, state: &AppState) -> bool {
    let n = messages.len() as u64;
    let write = async {
        for m in messages {
            sink.feed(m).await?;
        }
        sink.flush().await
    };
    match tokio::time::timeout(SEND_TIMEOUT, write).await {
        Ok(Ok(())) => {
            state.metrics.sent.inc_by(n);
            true
        }
        _ => false,
    }
}

async fn deliver(sink: &mut Sink, message: Message, state: &AppState) -> bool {
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

/// Used by `/api/snapshot` too.
pub fn check_token(state: &AppState, params: &WsParams, headers: &HeaderMap) -> bool {
    authorised(state.token.as_deref(), params.token.as_deref(), headers)
}

pub type Slots = Arc<tokio::sync::Semaphore>;
