//! `/ws`: the handshake checks (token, Origin, connection limit) and one client's life.
//!
//! Protocol (docs/gateway.md): on connect a `snapshot`, then `delta` messages after projector
//! commits and `feed` messages with live events, each coalesced per tick. A client picks
//! channels with `?channels=analytics,feed` or by sending `{"subscribe": [...]}` /
//! `{"unsubscribe": [...]}`. A client that reconnects with `?since=SEQ` gets a `resume`
//! message, then the deltas it missed or, when the history no longer has them, a snapshot.
//!
//! After the handshake the gateway owns the socket: broadcasts are written by the
//! [`writers`](crate::writers) (a task per core), everything else by the client's own task
//! (`ws/session.rs`), both through its `Peer` (`ws/peer.rs`) so frames never interleave.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, error};

use crate::auth::{Access, origin_allowed};
use crate::hub::{Channel, Start};
use crate::listener::GuardedStream;
use crate::metrics::Refused;
use crate::state::Shared;

pub(crate) mod frame;
mod handshake;
pub(crate) mod peer;
mod session;

use peer::{Peer, Subscriptions};
pub use session::SEND_TIMEOUT;

/// Close codes of the protocol.
pub const CLOSE_TOO_SLOW: u16 = 4001;
pub const CLOSE_NO_PONG: u16 = 4002;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_TOO_BIG: u16 = 1009;
/// The subprotocol the gateway speaks; browsers must offer it beside a token protocol.
pub const PROTOCOL: &str = "cartflow.v1";

/// The WebSocket's own limits (`--max-clients`, `--max-message-bytes`, `--ping-secs`,
/// `--client-queue`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub slots: Slots,
    pub max_message_bytes: usize,
    pub ping_every: Duration,
    /// Messages a client may have waiting beyond what its socket took.
    pub queue: usize,
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

/// The handshake (the token was checked by the `auth` layer before it): the Origin, the
/// upgrade headers, a free slot, then the 101 answer; the client runs once hyper hands over
/// the socket.
pub async fn handler(
    Query(params): Query<WsQuery>,
    State(state): State<WsState>,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    if !origin_allowed(&state.access.allowed_origins, headers) {
        return state.access.refuse(
            Refused::Origin,
            StatusCode::FORBIDDEN,
            "This Origin is not allowed.\n",
        );
    }
    let accept = match handshake::accept_key(headers) {
        Ok(accept) => accept,
        Err(refusal) => return refusal.into_response(),
    };
    let protocol = handshake::offers(headers, PROTOCOL).then_some(PROTOCOL);
    let Some(upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return (
            StatusCode::UPGRADE_REQUIRED,
            "This connection cannot be upgraded.\n",
        )
            .into_response();
    };
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
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => serve(upgraded, state, channels, since, permit).await,
            Err(e) => debug!(error = %e, "The upgrade did not complete."),
        }
    });
    handshake::switching(&accept, protocol)
}

async fn serve(
    upgraded: hyper::upgrade::Upgraded,
    state: WsState,
    channels: Subscriptions,
    since: Option<u64>,
    _permit: OwnedSemaphorePermit,
) {
    // hyper wraps the connection's stream in its own types; under them is ours.
    let parts =
        match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<GuardedStream>>(upgraded)
        {
            Ok(parts) => parts,
            Err(_) => {
                error!("An upgraded connection was not the listener's stream; closed it.");
                return;
            }
        };
    // The bytes that came after the request, copied: the rest of hyper's read buffer (8 KiB
    // or more) would otherwise stay allocated for the client's whole life.
    let read = BytesMut::from(&parts.read_buf[..]);
    drop(parts.read_buf);
    let (tcp, _held) = parts.io.into_inner().into_upgraded();
    let socket = Arc::new(tcp);
    let peer = Peer::new(socket.clone(), channels, state.limits.queue);
    let m = &state.shared.metrics;
    m.clients.inc();
    m.connections.inc();
    let analytics = peer.channels.contains(Channel::Analytics);
    state.shared.hub.join(peer.clone(), since, |start| {
        if analytics {
            beginning(start, since, &state)
        } else {
            Vec::new()
        }
    });
    let stopping = state.shared.shutdown.cancelled();
    if let Some(reason) = session::run(socket, peer, read, &state.limits, stopping).await {
        m.cut.with_label_values(&[reason.label()]).inc();
        debug!(reason = reason.label(), "Closed a client.");
    }
    m.clients.dec();
}

/// The analytics frames a client begins with: the snapshot, or for a client that resumes a
/// `resume` message saying which it gets, then the deltas it missed or the snapshot.
fn beginning(start: Start, since: Option<u64>, state: &WsState) -> Vec<Bytes> {
    let mut frames = Vec::new();
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
        frames.push(frame::text(
            &serde_json::json!({"type": "resume", "since": since, "covered": deltas, "missed": missed})
                .to_string(),
        ));
    }
    match start {
        Start::Resume(d) => frames.extend(d),
        Start::Snapshot(s) => frames
            .push(s.unwrap_or_else(|| frame::text(r#"{"type":"snapshot","seq":0,"data":null}"#))),
    }
    frames
}

pub type Slots = Arc<tokio::sync::Semaphore>;
