//! The operations endpoint every service serves: `/metrics` (Prometheus text format) and
//! `/healthz`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::Error;

/// Whether the service is ready and well: `/healthz` answers 200 when it is ready and has no
/// problem, 503 with the reason otherwise.
#[derive(Debug, Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    problem: Arc<Mutex<Option<String>>>,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Reports a problem an operator should see (`None` clears it): `/healthz` answers 503
    /// with it while it lasts.
    pub fn set_problem(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(PoisonError::into_inner) = problem;
    }

    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[derive(Debug, Clone)]
struct OpsState {
    registry: Registry,
    health: Health,
}

/// The `/metrics` and `/healthz` routes, to serve alone or merge into a service's own router.
pub fn router(registry: Registry, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(OpsState { registry, health })
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    let mut body = Vec::new();
    let encoder = TextEncoder::new();
    match encoder.encode(&state.registry.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain".to_owned())],
            e.to_string().into_bytes(),
        ),
    }
}

async fn healthz(State(state): State<OpsState>) -> impl IntoResponse {
    if !state.health.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_owned());
    }
    match state.health.problem() {
        Some(problem) => (StatusCode::SERVICE_UNAVAILABLE, format!("{problem}\n")),
        None => (StatusCode::OK, "ok\n".to_owned()),
    }
}

/// A running ops endpoint: the registry services add their metrics to, the health flag, and
/// the server task, stopped when this is dropped or `shutdown` is cancelled.
#[derive(Debug)]
pub struct OpsServer {
    pub registry: Registry,
    pub health: Health,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl OpsServer {
    /// Serves `/metrics` and `/healthz` on `listener`.
    pub fn start(listener: TcpListener, shutdown: &CancellationToken) -> Self {
        let registry = registry();
        let health = Health::default();
        let task = tokio::spawn(serve(
            listener,
            router(registry.clone(), health.clone()),
            shutdown.child_token(),
        ));
        OpsServer {
            registry,
            health,
            task,
        }
    }
}

impl Drop for OpsServer {
    fn drop(&mut self) {
        self.health.set_ready(false);
        self.task.abort();
    }
}

/// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`). The standard
/// library's 128 overflowed when thousands of WebSocket clients connected at once (a gateway
/// restart): each dropped SYN is retried a second later, so 3,000 connects took 4.2 s here.
const BACKLOG: u32 = 4096;

/// Binds `addr` with a deep accept queue, with an error that names the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    let listen = || {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // As TcpListener::bind does: a restarted service may rebind at once.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    };
    listen().map_err(|source| Error::Bind { addr, source })
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let addr = listener.local_addr()?;
    info!(%addr, "Serving /metrics and /healthz.");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// A registry with the process collector (RSS, CPU, open files). Metric names carry their full
/// `cartflow_…` name where each service defines them.
pub fn registry() -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
    }
    registry
}
