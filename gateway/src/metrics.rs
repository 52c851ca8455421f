//! Every metric the gateway exports, named in one place.

use cartflow_common::latency::{Latency, Stage};
use cartflow_common::metrics::{Registrar, io_seconds_buckets};
use prometheus::{Gauge, Histogram, IntCounter, IntCounterVec, IntGauge, Registry};

#[derive(Debug, Clone)]
pub struct Metrics {
    /// WebSocket clients connected now.
    pub clients: IntGauge,
    /// WebSocket connections accepted.
    pub connections: IntCounter,
    /// Handshakes refused, by reason (token, origin, full).
    pub refused: IntCounterVec,
    /// Clients closed by the server, by reason (slow, timeout, oversized).
    pub cut: IntCounterVec,
    /// Clients that reconnected with `?since=SEQ`, by how they resumed (deltas, snapshot).
    pub resumes: IntCounterVec,
    /// Messages written to clients.
    pub sent: IntCounter,
    /// Messages broadcast, by channel (analytics, feed).
    pub broadcasts: IntCounterVec,
    /// Time a writer takes to hand what it received at once to each of its clients.
    pub writer_pass_seconds: Histogram,
    /// Cart events read from the topic for the feed.
    pub feed_events: IntCounter,
    /// Time to read the analytics snapshot.
    pub snapshot_seconds: Histogram,
    /// Publish-to-pushed latency of the oldest event in each analytics delta.
    pub pushed_latency: Latency,
    /// Publish-to-pushed latency of each event in the live feed.
    pub feed_latency: Latency,
    /// The latest settled minute's 15-minute abandonment rate against its hour's usual one
    /// (recent ÷ usual − 1).
    pub change: Gauge,
    /// Settled minutes marked on the timeline as a change beyond `--change-share`, by
    /// direction (up, down).
    pub changes: IntCounterVec,
}

/// Why a handshake was refused: the `reason` label of `cartflow_gateway_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No valid token.
    Token,
    /// A browser page from an Origin not allowed.
    Origin,
    /// `--max-clients` reached.
    Full,
    /// `--max-connections` reached: closed at accept.
    Connections,
    /// `--max-connections-per-ip` reached for its address: closed at accept.
    PerIp,
    /// Neither upgraded nor finished a request within `--handshake-timeout-secs`.
    HandshakeTimeout,
}

impl Refused {
    pub const ALL: [Refused; 6] = [
        Refused::Token,
        Refused::Origin,
        Refused::Full,
        Refused::Connections,
        Refused::PerIp,
        Refused::HandshakeTimeout,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Refused::Token => "token",
            Refused::Origin => "origin",
            Refused::Full => "full",
            Refused::Connections => "connections",
            Refused::PerIp => "per_ip",
            Refused::HandshakeTimeout => "handshake_timeout",
        }
    }
}

/// Why the gateway closed a client: the `reason` label of `cartflow_gateway_cut_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// It fell behind the live updates or did not take a write in time.
    Slow,
    /// It stopped answering pings.
    Timeout,
    /// It sent a message over `--max-message-bytes`.
    Oversized,
    /// It broke the WebSocket protocol.
    Protocol,
}

impl Cut {
    pub const ALL: [Cut; 4] = [Cut::Slow, Cut::Timeout, Cut::Oversized, Cut::Protocol];

    pub const fn label(self) -> &'static str {
        match self {
            Cut::Slow => "slow",
            Cut::Timeout => "timeout",
            Cut::Oversized => "oversized",
            Cut::Protocol => "protocol",
        }
    }
}

impl Metrics {
    pub fn new(registry: &Registry) -> Self {
        let r = Registrar(registry);
        let [pushed_latency, feed_latency] =
            Latency::stages(registry, [Stage::Pushed, Stage::Feed]);
        Metrics {
            clients: r.gauge(
                "cartflow_gateway_clients",
                "WebSocket clients connected now.",
            ),
            connections: r.counter(
                "cartflow_gateway_connections_total",
                "WebSocket connections accepted.",
            ),
            refused: r.counter_vec(
                "cartflow_gateway_refused_total",
                "Handshakes refused before the upgrade, by reason.",
                "reason",
                &Refused::ALL.map(Refused::label),
            ),
            cut: r.counter_vec(
                "cartflow_gateway_cut_clients_total",
                "Clients closed by the gateway, by reason.",
                "reason",
                &Cut::ALL.map(Cut::label),
            ),
            resumes: r.counter_vec(
                "cartflow_gateway_resumes_total",
                "Clients that reconnected with ?since=SEQ, by how: the deltas they missed, or a new snapshot when the history no longer covered them.",
                "result",
                &["deltas", "snapshot"],
            ),
            sent: r.counter(
                "cartflow_gateway_messages_sent_total",
                "Messages written to WebSocket clients.",
            ),
            broadcasts: r.counter_vec(
                "cartflow_gateway_broadcasts_total",
                "Messages broadcast (serialised once each), by channel.",
                "channel",
                &[],
            ),
            writer_pass_seconds: r.histogram(
                "cartflow_gateway_writer_pass_seconds",
                "Time a writer task takes to hand the messages it received at once to each of its clients; what spaces the feed and the analytics deltas.",
                io_seconds_buckets(),
            ),
            feed_events: r.counter(
                "cartflow_gateway_feed_events_total",
                "Cart events read from the topic for the live feed.",
            ),
            snapshot_seconds: r.histogram(
                "cartflow_gateway_snapshot_seconds",
                "Time to read the analytics snapshot from PostgreSQL.",
                io_seconds_buckets(),
            ),
            pushed_latency,
            feed_latency,
            change: r.float_gauge(
                "cartflow_abandonment_change",
                "The latest settled minute's 15-minute cart abandonment rate against the usual rate of its hour of day: recent / usual - 1.",
            ),
            changes: r.counter_vec(
                "cartflow_abandonment_changes_total",
                "Minutes marked on the timeline because their 15-minute cart abandonment rate differed from the usual one by more than --change-share, by direction.",
                "direction",
                &["up", "down"],
            ),
        }
    }
}
