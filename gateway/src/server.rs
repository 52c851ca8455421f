//! The HTTP server.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use cartflow_common::db;
use cartflow_common::ops::{self, Health};
use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Config, Error, snapshot};

const INDEX_HTML: &str = include_str!("../static/index.html");

/// The gateway's routes over `pool`, with `/metrics` and `/healthz`.
pub fn router(pool: Pool, registry: prometheus::Registry, health: Health) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route("/api/snapshot", get(api_snapshot))
        .with_state(pool)
        .merge(ops::router(registry, health))
}

async fn api_snapshot(State(pool): State<Pool>) -> Response {
    match snapshot::load(&pool).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => {
            warn!(error = %e, "Snapshot failed.");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "error": e.to_string() })),
            )
                .into_response()
        }
    }
}

/// Serves on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let pool = db::pool(&config.database).await?;
    let registry = ops::registry();
    let health = Health::default();
    health.set_ready(true);
    let addr = listener.local_addr()?;
    info!(url = %format!("http://{addr}/"), "Dashboard ready.");
    axum::serve(listener, router(pool, registry, health))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    info!("Gateway stopped.");
    Ok(())
}
