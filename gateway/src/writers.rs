//! The writers: one task per core, each owning a share of the WebSocket clients.
//!
//! A broadcast is serialised and framed once by the hub; each writer hands that frame to each
//! of its clients' sockets with one non-blocking write (several waiting messages in one
//! `writev`). No task per client wakes for a broadcast, and no client can hold a writer up:
//! what a socket does not take waits in its client's queue, sent by the client's own session
//! when the socket has room (the slow path, [`crate::ws`]).
//!
//! Each writer records how long its latest pass took; the slowest is what a broadcast costs
//! (`Fanout::cost`), by which the feed and the analytics space their messages (`pace.rs`): a
//! larger audience makes each broadcast dearer and the messages rarer.
//!
//! A new client is announced to its writer through the same channel as the broadcasts, by
//! the hub under the lock it publishes with, so it gets exactly the messages after its
//! snapshot or resume.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::{Histogram, IntCounter};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;

use crate::hub::Channel;
use crate::ws::peer::Peer;

/// Most messages taken from the channel in one pass.
const MAX_BATCH: usize = 16;

#[derive(Debug)]
enum ToWriter {
    /// A new client and the frames it begins with.
    Join(Arc<Peer>, Vec<Bytes>),
    /// A frame for every subscriber of a channel.
    Send(Channel, Bytes),
}

/// The hub's side: where broadcasts and new clients go.
#[derive(Debug)]
pub struct Fanout {
    writers: Vec<UnboundedSender<ToWriter>>,
    /// Each writer's latest pass, in nanoseconds.
    passes: Vec<Arc<AtomicU64>>,
    next: AtomicUsize,
}

/// One writer task's side; run it with [`Writer::run`].
#[derive(Debug)]
pub struct Writer {
    rx: UnboundedReceiver<ToWriter>,
    pass: Arc<AtomicU64>,
}

impl Fanout {
    /// A fan-out over `n` writers (at least one).
    pub fn new(n: usize) -> (Fanout, Vec<Writer>) {
        let (writers, rxs): (Vec<_>, Vec<_>) = (0..n.max(1))
            .map(|_| {
                let (tx, rx) = unbounded_channel();
                let pass = Arc::new(AtomicU64::new(0));
                (tx, Writer { rx, pass })
            })
            .unzip();
        let fanout = Fanout {
            passes: rxs.iter().map(|w| w.pass.clone()).collect(),
            writers,
            next: AtomicUsize::new(0),
        };
        (fanout, rxs)
    }

    /// Sends `frame` to every subscriber of `channel`.
    pub(crate) fn send(&self, channel: Channel, frame: &Bytes) {
        for w in &self.writers {
            // A writer gone means the gateway is stopping.
            let _ = w.send(ToWriter::Send(channel, frame.clone()));
        }
    }

    /// What the latest broadcast cost: the slowest writer's latest pass over its clients.
    pub(crate) fn cost(&self) -> Duration {
        let nanos = self.passes.iter().map(|p| p.load(Ordering::Relaxed));
        Duration::from_nanos(nanos.max().unwrap_or(0))
    }

    /// Gives `peer` to a writer, which writes `begin` to it before anything sent after this.
    pub(crate) fn join(&self, peer: Arc<Peer>, begin: Vec<Bytes>) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.writers.len();
        let _ = self.writers[i].send(ToWriter::Join(peer, begin));
    }
}

impl Writer {
    /// Writes until `shutdown`; counts every message handed to a client in `sent` and times
    /// each pass in `passes`.
    pub async fn run(mut self, sent: IntCounter, passes: Histogram, shutdown: CancellationToken) {
        let mut peers: Vec<Arc<Peer>> = Vec::new();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let first = tokio::select! {
                m = self.rx.recv() => m,
                () = shutdown.cancelled() => None,
            };
            let Some(first) = first else { return };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            sent.inc_by(pass(&mut peers, &mut batch));
            let took = started.elapsed();
            passes.observe(took.as_secs_f64());
            self.pass.store(
                u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }
}

/// Hands a batch to the peers, in order: messages before a join are not the new client's.
/// Returns the messages handed.
fn pass(peers: &mut Vec<Arc<Peer>>, batch: &mut Vec<ToWriter>) -> u64 {
    let mut handed = 0;
    let mut run: Vec<(Channel, Bytes)> = Vec::new();
    for m in batch.drain(..) {
        match m {
            ToWriter::Send(channel, frame) => run.push((channel, frame)),
            ToWriter::Join(peer, begin) => {
                handed += deliver(peers, &run);
                run.clear();
                let frames: Vec<&Bytes> = begin.iter().collect();
                if frames.is_empty() || peer.send(&frames) {
                    handed += frames.len() as u64;
                }
                peers.push(peer);
            }
        }
    }
    handed + deliver(peers, &run)
}

/// Writes each message of `run` to each peer subscribed to its channel, one write per peer.
/// A peer that takes nothing more (closing, failed, gone) is dropped from the writer.
fn deliver(peers: &mut Vec<Arc<Peer>>, run: &[(Channel, Bytes)]) -> u64 {
    if run.is_empty() {
        return 0;
    }
    let mut handed = 0;
    let mut frames: Vec<&Bytes> = Vec::with_capacity(run.len());
    peers.retain(|peer| {
        frames.clear();
        frames.extend(
            run.iter()
                .filter(|(c, _)| peer.channels.contains(*c))
                .map(|(_, f)| f),
        );
        if frames.is_empty() {
            return true;
        }
        let taken = peer.send(&frames);
        if taken {
            handed += frames.len() as u64;
        }
        taken
    });
    handed
}
