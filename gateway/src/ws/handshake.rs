//! The WebSocket opening handshake (RFC 6455 section 4.2), answered by hand: the gateway
//! writes to the socket itself after it ([`super::session`]), so it cannot use axum's
//! `WebSocket`, which keeps the socket to itself.

use axum::http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Why an upgrade request is refused.
#[derive(Debug)]
pub(super) enum Refusal {
    NotUpgrade,
    Version,
    NoKey,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NotUpgrade => (
                StatusCode::UPGRADE_REQUIRED,
                [(UPGRADE, "websocket")],
                "This is a WebSocket endpoint: send Connection: Upgrade and Upgrade: websocket.\n",
            )
                .into_response(),
            Refusal::Version => (
                StatusCode::UPGRADE_REQUIRED,
                [(SEC_WEBSOCKET_VERSION, "13")],
                "Only WebSocket version 13 is spoken here.\n",
            )
                .into_response(),
            Refusal::NoKey => {
                (StatusCode::BAD_REQUEST, "No Sec-WebSocket-Key header.\n").into_response()
            }
        }
    }
}

/// The `Sec-WebSocket-Accept` value for a valid upgrade request, or why it is refused.
pub(super) fn accept_key(headers: &HeaderMap) -> Result<String, Refusal> {
    let has = |name, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has(CONNECTION, "upgrade") || !has(UPGRADE, "websocket") {
        return Err(Refusal::NotUpgrade);
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Refusal::Version);
    }
    match headers.get(SEC_WEBSOCKET_KEY) {
        Some(key) => Ok(derive_accept_key(key.as_bytes())),
        None => Err(Refusal::NoKey),
    }
}

/// Whether the client offered the subprotocol `protocol`.
pub(super) fn offers(headers: &HeaderMap, protocol: &str) -> bool {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim() == protocol))
}

/// The 101 answer, naming `protocol` when the client offered it.
pub(super) fn switching(accept: &str, protocol: Option<&'static str>) -> Response {
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = response.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(p) = protocol {
        h.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    response
}
