//! One client as the writers see it: its socket, the frames its socket has not taken yet,
//! its subscriptions and when it was last heard from.
//!
//! Every write to the socket happens under the peer's lock, by a writer (broadcasts) or by the
//! client's own session (pings, answers, the slow path), so frames never interleave. A write
//! never waits: what the socket does not take is queued, and the session is woken to send it
//! when the socket has room. A queue longer than `--client-queue` messages marks the client
//! too slow.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::hub::Channel;

/// Most frames handed to one `writev`.
const MAX_SLICES: usize = 64;

/// Why a peer's writes stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Its queue grew past the limit.
    Slow,
    /// The socket failed (the client went away).
    Broken,
}

#[derive(Debug)]
struct Out {
    /// None once the session is done with the socket.
    socket: Option<Arc<TcpStream>>,
    /// Frames (or the rest of one) the socket has not taken, in order.
    queue: VecDeque<Bytes>,
    /// Whether the queue's first frame was partly written (it must be finished, whatever else
    /// is dropped, or the stream of frames breaks).
    started: bool,
    /// When the queue last shrank or stopped being empty.
    progress: Instant,
    /// Set when closing: only the close frame is written after it.
    closing: bool,
    fault: Option<Fault>,
}

#[derive(Debug)]
pub(crate) struct Peer {
    out: Mutex<Out>,
    pub(crate) channels: Subscriptions,
    pub(crate) heard: Heard,
    /// Wakes the session: something is queued, or a fault.
    pub(crate) wake: Notify,
    max_queue: usize,
}

impl Peer {
    pub(crate) fn new(
        socket: Arc<TcpStream>,
        channels: Subscriptions,
        max_queue: usize,
    ) -> Arc<Peer> {
        Arc::new(Peer {
            out: Mutex::new(Out {
                socket: Some(socket),
                queue: VecDeque::new(),
                started: false,
                progress: Instant::now(),
                closing: false,
                fault: None,
            }),
            channels,
            heard: Heard::now(),
            wake: Notify::new(),
            max_queue,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `frames` now, as far as the socket takes them, and queues the rest. False when
    /// the peer takes nothing more (closing, faulty or gone).
    pub(crate) fn send(&self, frames: &[&Bytes]) -> bool {
        let mut out = self.lock();
        if out.closing || out.fault.is_some() || out.socket.is_none() {
            return false;
        }
        let mut written = 0;
        if out.queue.is_empty() {
            match write(&out, frames.iter().copied()) {
                Ok(n) => written = n,
                Err(()) => {
                    out.fault = Some(Fault::Broken);
                    self.wake.notify_one();
                    return false;
                }
            }
        }
        let was_empty = out.queue.is_empty();
        for f in frames {
            if written >= f.len() {
                written -= f.len();
                continue;
            }
            if written > 0 {
                out.started = true;
            }
            out.queue.push_back(f.slice(written..));
            written = 0;
        }
        if !out.queue.is_empty() {
            if was_empty {
                out.progress = Instant::now();
            }
            if out.queue.len() > self.max_queue {
                out.fault = Some(Fault::Slow);
            }
            self.wake.notify_one();
        }
        true
    }

    /// Writes what is queued, as far as the socket takes it.
    pub(crate) fn flush(&self) {
        let mut out = self.lock();
        if out.queue.is_empty() {
            return;
        }
        let Ok(mut written) = write(&out, out.queue.iter()) else {
            out.fault = Some(Fault::Broken);
            return;
        };
        if written > 0 {
            out.progress = Instant::now();
        }
        while let Some(front) = out.queue.front_mut() {
            if written < front.len() {
                *front = front.slice(written..);
                out.started |= written > 0;
                break;
            }
            written -= front.len();
            out.queue.pop_front();
            out.started = false;
        }
    }

    /// Whether frames wait for room in the socket (and there is still a socket to write).
    pub(crate) fn queued(&self) -> bool {
        self.state().1
    }

    /// Its fault if any, whether frames wait for room (see [`Peer::queued`]) and when the
    /// queue last moved, read together.
    pub(crate) fn state(&self) -> (Option<Fault>, bool, Instant) {
        let out = self.lock();
        let queued =
            !out.queue.is_empty() && out.socket.is_some() && out.fault != Some(Fault::Broken);
        (out.fault, queued, out.progress)
    }

    /// From now on only `close` is written: what is queued is dropped, except the rest of a
    /// frame already begun.
    pub(crate) fn begin_close(&self, close: Bytes) {
        let mut out = self.lock();
        let keep = usize::from(out.started);
        out.queue.truncate(keep);
        out.queue.push_back(close);
        out.closing = true;
        out.progress = Instant::now();
    }

    /// The session is done with the socket: writers drop this peer at their next write to it.
    pub(crate) fn detach(&self) {
        let mut out = self.lock();
        out.socket = None;
        out.queue.clear();
    }
}

/// One non-blocking `writev` of the first [`MAX_SLICES`] frames: the bytes taken (0 when the
/// socket is full), or Err when the socket failed.
fn write<'a>(out: &Out, frames: impl Iterator<Item = &'a Bytes>) -> Result<usize, ()> {
    let Some(socket) = &out.socket else {
        return Err(());
    };
    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
    let mut n = 0;
    for (slot, f) in slices.iter_mut().zip(frames) {
        *slot = IoSlice::new(f);
        n += 1;
    }
    match socket.try_write_vectored(&slices[..n]) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(_) => Err(()),
    }
}

/// The channels a client is subscribed to, changed by its session, read by the writers.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions(AtomicU8);

impl Subscriptions {
    pub(crate) fn new(channels: impl IntoIterator<Item = Channel>) -> Subscriptions {
        let s = Subscriptions::default();
        channels.into_iter().for_each(|c| s.set(c, true));
        s
    }

    pub(crate) fn contains(&self, channel: Channel) -> bool {
        self.0.load(Ordering::Relaxed) & bit(channel) != 0
    }

    pub(crate) fn set(&self, channel: Channel, on: bool) {
        if on {
            self.0.fetch_or(bit(channel), Ordering::Relaxed);
        } else {
            self.0.fetch_and(!bit(channel), Ordering::Relaxed);
        }
    }
}

const fn bit(channel: Channel) -> u8 {
    match channel {
        Channel::Analytics => 1,
        Channel::Feed => 2,
    }
}

/// When the client was last heard from (any frame, pongs included).
#[derive(Debug)]
pub(crate) struct Heard {
    since: Instant,
    ms: AtomicU64,
}

impl Heard {
    pub(crate) fn now() -> Heard {
        Heard {
            since: Instant::now(),
            ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn touch(&self) {
        self.ms
            .store(self.since.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Milliseconds since the client was last heard from.
    pub(crate) fn silent_ms(&self) -> u64 {
        (self.since.elapsed().as_millis() as u64).saturating_sub(self.ms.load(Ordering::Relaxed))
    }
}
