//! Who may read: the token (`--token`) as a layer on every protected route (`/api/snapshot`,
//! `/ws`), and the Origin rule browsers are held to on `/ws`. A refusal is counted in
//! `cartflow_gateway_refused_total{reason}`.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::metrics::{Metrics, Refused};

/// Browsers cannot set headers on a WebSocket: they offer the token as a subprotocol.
pub const TOKEN_PROTOCOL_PREFIX: &str = "cartflow.token.";

/// The access rules.
#[derive(Debug, Clone)]
pub struct Access {
    pub token: Option<String>,
    pub allowed_origins: Arc<Vec<String>>,
    pub metrics: Metrics,
}

#[derive(Debug, Default, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// The layer: a request without the token gets 401 and goes no further.
pub async fn require_token(
    State(access): State<Access>,
    Query(query): Query<TokenQuery>,
    request: Request,
    next: Next,
) -> Response {
    if authorised(
        access.token.as_deref(),
        query.token.as_deref(),
        request.headers(),
    ) {
        return next.run(request).await;
    }
    access.refuse(
        Refused::Token,
        StatusCode::UNAUTHORIZED,
        "A valid token is required.\n",
    )
}

impl Access {
    /// Counts a refusal and answers it.
    pub fn refuse(&self, reason: Refused, status: StatusCode, message: &'static str) -> Response {
        self.metrics
            .refused
            .with_label_values(&[reason.label()])
            .inc();
        (status, message).into_response()
    }
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
pub fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
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
