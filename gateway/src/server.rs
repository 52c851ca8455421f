//! The HTTP server: the dashboard, `/api/snapshot`, `/ws`, `/healthz` and `/metrics` on one
//! port, and the tasks that feed the hub.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use cartflow_common::db;
use cartflow_common::ops::{self, Health};
use cartflow_common::registry::SchemaLookup;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::changes::Changes;
use crate::listener::{self, Connection, ConnectionLimits, Guarded};
use tracing::info;

use crate::auth::{self, Access};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::state::Shared;
use crate::writers::Fanout;
use crate::{Config, Error, analytics, assets, drilldown, feed, range, ws};
use deadpool_postgres::Pool;

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    pub addr: SocketAddr,
    /// The fan-out, for publishing from outside (tests, embedders).
    pub hub: Arc<Hub>,
    server: JoinHandle<Result<(), Error>>,
    /// Every task the gateway started (the server, the analytics follower, the feed), so a
    /// stop waits for all of its work.
    tasks: TaskTracker,
}

impl Gateway {
    /// Starts serving on `listener` and following the analytics (and, unless `--no-feed`,
    /// the cart-events topic) until `shutdown` is cancelled.
    pub async fn start(
        config: Config,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<Gateway, Error> {
        // The snapshot's views read small tables; JIT compiling their plans cost 25 ms or more
        // each (775 ms per snapshot instead of 53 ms).
        let pool = db::pool_without_jit(&config.database.database_url, config.pool).await?;
        let registry = ops::registry();
        let metrics = Metrics::new(&registry);
        let health = Health::default();
        let tasks = TaskTracker::new();
        // A writer per core (the runtime's worker threads, by default one per core).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (fanout, writers) = Fanout::new(cores);
        for writer in writers {
            tasks.spawn(writer.run(
                metrics.sent.clone(),
                metrics.writer_pass_seconds.clone(),
                shutdown.clone(),
            ));
        }
        let hub = Hub::new(
            fanout,
            crate::history::Bounds {
                max_bytes: usize::try_from(config.resume_history_bytes).unwrap_or(usize::MAX),
                max_age: Duration::from_secs(config.resume_max_age_secs),
            },
        );
        let tick = Duration::from_millis(config.tick_ms);
        tasks.spawn(analytics::run(
            config.database.database_url.clone(),
            pool.clone(),
            hub.clone(),
            metrics.clone(),
            analytics::ReadPace {
                tick,
                spacing: config.read_spacing,
            },
            Changes::new(config.change_share),
            shutdown.clone(),
        ));
        if !config.no_feed {
            let lookup = match &config.registry.schema_registry_url {
                Some(url) => Some(SchemaLookup::new(url)?),
                None => None,
            };
            tasks.spawn(feed::run(
                config.kafka.clone(),
                config.topics.clone(),
                lookup,
                hub.clone(),
                metrics.clone(),
                tick,
                shutdown.clone(),
            ));
        }
        let shared = Shared {
            hub: hub.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        };
        let access_metrics = metrics.clone();
        let access = Access {
            token: config.token.clone(),
            allowed_origins: Arc::new(config.allowed_origins.clone()),
            metrics,
        };
        let limits = ws::Limits {
            slots: Arc::new(tokio::sync::Semaphore::new(config.max_clients as usize)),
            max_message_bytes: config.max_message_bytes as usize,
            ping_every: Duration::from_secs(config.ping_secs),
            queue: config.client_queue as usize,
        };
        let app = router(shared, pool, access, limits).merge(ops::router(registry, health.clone()));
        let addr = listener.local_addr()?;
        health.set_ready(true);
        info!(url = %format!("http://{addr}/"), "Dashboard ready.");
        let listener = Guarded::new(
            listener,
            ConnectionLimits {
                max_connections: config.max_connections as usize,
                max_per_ip: config.max_connections_per_ip as usize,
                handshake_timeout: Duration::from_secs(config.handshake_timeout_secs),
            },
            access_metrics,
        );
        let app = app
            .layer(middleware::from_fn(listener::track_requests))
            .into_make_service_with_connect_info::<Connection>();
        let server = tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await?;
            Ok(())
        });
        tasks.close();
        Ok(Gateway {
            addr,
            hub,
            server,
            tasks,
        })
    }

    /// Waits until the server and every other task of the gateway have stopped.
    pub async fn stopped(self) -> Result<(), Error> {
        let served = self
            .server
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        self.tasks.wait().await;
        info!("Gateway stopped.");
        served
    }
}

/// Serves on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    Gateway::start(config, listener, shutdown)
        .await?
        .stopped()
        .await
}

/// The gateway's own routes: the dashboard's files open to all, the data behind the token.
fn router(shared: Shared, pool: Pool, access: Access, limits: ws::Limits) -> Router {
    let ws_state = ws::WsState {
        shared: shared.clone(),
        limits,
        access: access.clone(),
    };
    let protected = Router::new()
        .route("/api/snapshot", get(api_snapshot))
        .with_state(shared)
        .merge(
            Router::new()
                .route("/api/events", get(drilldown::events))
                .route("/api/carts/{key}", get(drilldown::cart))
                .route("/api/range", get(range::range))
                .with_state(pool),
        )
        .merge(
            Router::new()
                .route("/ws", get(ws::handler))
                .with_state(ws_state),
        )
        .layer(middleware::from_fn_with_state(access, auth::require_token));
    Router::new()
        .route("/", get(|| async { Html(assets::INDEX_HTML) }))
        .route("/dashboard.js", get(|| async { js(assets::DASHBOARD_JS) }))
        .route("/echarts.min.js", get(|| async { js(assets::ECHARTS_JS) }))
        .merge(protected)
}

fn js(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The snapshot document the WebSocket clients get first (`docs/gateway.md`).
async fn api_snapshot(State(shared): State<Shared>) -> Response {
    match shared.hub.data() {
        Some(text) => (
            [(header::CONTENT_TYPE, "application/json")],
            text.as_str().to_owned(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The analytics have not been read yet; try again in a moment.\n",
        )
            .into_response(),
    }
}
