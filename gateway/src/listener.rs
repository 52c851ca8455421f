//! The gateway's TCP listener: what a connection may cost before it is a WebSocket client.
//!
//! axum's `serve` runs hyper without a timer, so hyper's header-read timeout never fires: a
//! socket that never sends a byte, or sends half a request, would stay open for good. Here
//! every accepted connection takes a slot of `--max-connections` (and of
//! `--max-connections-per-ip`, when set), or is closed at once and counted; and a connection
//! must upgrade to a WebSocket or finish a request within `--handshake-timeout-secs` of being
//! accepted or of its last request, or its reads fail and hyper closes it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tracing::debug;

use crate::metrics::{Metrics, Refused};

/// The bounds on connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub(crate) max_connections: usize,
    /// 0: no limit per address.
    pub(crate) max_per_ip: usize,
    pub(crate) handshake_timeout: Duration,
}

/// One connection's state, shared by its stream and the requests on it.
#[derive(Debug)]
struct State {
    accepted: Instant,
    /// Milliseconds after `accepted` that the last request ended.
    last_ms: AtomicU64,
    /// Requests being served.
    active: AtomicU32,
    upgraded: AtomicBool,
}

/// A handle on a connection, for the requests on it (an axum `ConnectInfo`).
#[derive(Debug, Clone)]
pub(crate) struct Connection(Arc<State>);

impl Connection {
    fn new() -> Connection {
        Connection(Arc::new(State {
            accepted: Instant::now(),
            last_ms: AtomicU64::new(0),
            active: AtomicU32::new(0),
            upgraded: AtomicBool::new(false),
        }))
    }

    /// When the connection must have done something, if it must.
    fn deadline(&self, timeout: Duration) -> Option<Instant> {
        let s = &self.0;
        if s.upgraded.load(Ordering::Relaxed) || s.active.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(s.accepted + Duration::from_millis(s.last_ms.load(Ordering::Relaxed)) + timeout)
    }
}

/// A request being served on a connection; its end restarts the connection's clock.
struct Serving(Connection);

impl Drop for Serving {
    fn drop(&mut self) {
        let s = &self.0.0;
        s.last_ms
            .store(s.accepted.elapsed().as_millis() as u64, Ordering::Relaxed);
        s.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The middleware that tells each connection when its requests run, and that it became a
/// WebSocket (a 101 answer).
pub(crate) async fn track_requests(request: Request, next: Next) -> Response {
    let connection = request
        .extensions()
        .get::<ConnectInfo<Connection>>()
        .map(|c| c.0.clone());
    let serving = connection.map(|c| {
        c.0.active.fetch_add(1, Ordering::Relaxed);
        Serving(c)
    });
    let response = next.run(request).await;
    if let Some(serving) = &serving
        && response.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        serving.0.0.upgraded.store(true, Ordering::Relaxed);
    }
    response
}

/// The listener.
#[derive(Debug)]
pub(crate) struct Guarded {
    inner: TcpListener,
    limits: ConnectionLimits,
    slots: Arc<Semaphore>,
    per_ip: PerIp,
    metrics: Metrics,
}

impl Guarded {
    pub(crate) fn new(inner: TcpListener, limits: ConnectionLimits, metrics: Metrics) -> Guarded {
        Guarded {
            inner,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            per_ip: Arc::default(),
            limits,
            metrics,
        }
    }

    fn refuse(&self, reason: Refused) {
        self.metrics
            .refused
            .with_label_values(&[reason.label()])
            .inc();
    }
}

impl axum::serve::Listener for Guarded {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (GuardedStream, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    debug!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                self.refuse(Refused::Connections);
                continue;
            };
            let Some(ip) = IpSlot::take(&self.per_ip, addr.ip(), self.limits.max_per_ip) else {
                self.refuse(Refused::PerIp);
                continue;
            };
            // Pushes are small and latency matters: no Nagle delay behind an unacknowledged one.
            if let Err(e) = stream.set_nodelay(true) {
                debug!(error = %e, "Could not set TCP_NODELAY.");
            }
            let timeout = self.limits.handshake_timeout;
            let stream = GuardedStream {
                inner: Lingering(Some(stream)),
                _slot: slot,
                _ip: ip,
                connection: Connection::new(),
                timeout,
                sleep: Box::pin(tokio::time::sleep(timeout)),
                timeouts: self
                    .metrics
                    .refused
                    .with_label_values(&[Refused::HandshakeTimeout.label()]),
            };
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Connected<IncomingStream<'_, Guarded>> for Connection {
    fn connect_info(stream: IncomingStream<'_, Guarded>) -> Connection {
        stream.io().connection.clone()
    }
}

/// Open connections by address.
type PerIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// A place among one address's connections, given back when the connection closes.
#[derive(Debug)]
struct IpSlot(Option<(PerIp, IpAddr)>);

impl IpSlot {
    fn take(map: &PerIp, ip: IpAddr, max: usize) -> Option<IpSlot> {
        if max == 0 {
            return Some(IpSlot(None));
        }
        let mut counts = map.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(IpSlot(Some((map.clone(), ip))))
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some((map, ip)) = &self.0 {
            let mut counts = map.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = counts.get_mut(ip) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(ip);
                }
            }
        }
    }
}

/// An accepted connection: its slots, and the deadline its reads enforce until it upgrades.
#[derive(Debug)]
pub(crate) struct GuardedStream {
    inner: Lingering,
    _slot: OwnedSemaphorePermit,
    _ip: IpSlot,
    connection: Connection,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    /// `refused{reason="handshake_timeout"}`: one counter handle, not the service's metrics.
    timeouts: IntCounter,
}

/// What an open connection holds: its places among all connections and its address's.
#[derive(Debug)]
pub(crate) struct Held {
    _slot: OwnedSemaphorePermit,
    _ip: IpSlot,
}

impl GuardedStream {
    /// The socket of a connection that became a WebSocket, and its places, which its session
    /// keeps until it has closed the socket (lingering, as [`Lingering`] does).
    pub(crate) fn into_upgraded(mut self) -> (TcpStream, Held) {
        let stream = self.inner.0.take().expect("the stream until drop");
        let held = Held {
            _slot: self._slot,
            _ip: self._ip,
        };
        (stream, held)
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(deadline) = this.connection.deadline(this.timeout) {
            if Instant::now() >= deadline {
                this.timeouts.inc();
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no WebSocket upgrade or request within the handshake timeout",
                )));
            }
            if this.sleep.deadline() != deadline {
                this.sleep.as_mut().reset(deadline);
            }
            // Registers this task to be woken at the deadline, when the next read fails.
            let _ = this.sleep.as_mut().poll(cx);
        }
        Pin::new(this.inner.io()).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().inner.io()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().inner.io()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner
            .0
            .as_ref()
            .is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().inner.io()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().inner.io()).poll_shutdown(cx)
    }
}

/// How long a closing connection may keep sending before it is closed outright.
const LINGER: Duration = Duration::from_secs(1);

/// A socket closed gracefully: when dropped, it sends FIN and reads (discarding) whatever the
/// peer still sends, until the peer closes too or [`LINGER`] passes. Closing a socket with
/// unread data makes the kernel send a reset, which can destroy a close frame the peer has not
/// read yet: a client that sent a 10 MiB message would see "connection reset" instead of 1009.
#[derive(Debug)]
struct Lingering(Option<TcpStream>);

impl Lingering {
    fn io(&mut self) -> &mut TcpStream {
        // Only Drop takes the stream, and nothing reads or writes after that.
        self.0.as_mut().expect("the stream until drop")
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let (Some(stream), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        runtime.spawn(close_lingering(stream));
    }
}

/// Closes `stream` as [`Lingering`] describes: FIN, then reads and drops what the peer still
/// sends until it closes too or [`LINGER`] passes.
pub(crate) async fn close_lingering(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    // On the heap: a WebSocket session awaits this, and an array would sit in its future for
    // the client's whole life.
    let mut sink = vec![0u8; 8192];
    let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
