//! The gateway stage: N WebSocket clients on loopback, ten broadcasts a second, against
//! cartflow's gateway, a plain Python `websockets` broadcast server
//! (`bench/python/ws_broadcast.py`) and a floor server ([`crate::gateway_floor`]) measured the
//! same way. Reports publish-to-receive latency and the server's memory per idle connection.
//!
//! The server runs in a child process of its own (so its memory is its own); the clients run
//! in the measuring process. A server prints `PORT n`, waits for a line on stdin, then
//! broadcasts `{"t": <µs since the epoch>, …}` every 100 ms.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cartflow_gateway::hub::Channel;
use cartflow_gateway::{Config, Gateway};
use clap::Parser;
use futures::StreamExt;
use prometheus::{Histogram, HistogramOpts};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use cartflow_common::db;

use crate::consumer::{database as database_url, fresh_database};
use crate::measurement::{Args, Measurement};
use crate::report::{StageResult, quantile_ms};
use crate::ws_client;

/// Descriptors a process needs beside its connections (pool, runtime, pipes, libraries).
pub(crate) const OWN_FILES: u64 = 64;
const PYTHON_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/ws_broadcast.py");

pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The cartflow server child: the gateway with a fresh database and no Kafka feed.
/// `name` is its database's, which the measuring process drops afterwards.
pub(crate) async fn serve(base_url: &str, name: &str, clients: u64) -> anyhow::Result<()> {
    let url = fresh_database(base_url, name).await?.connection_string();
    // Room for every client the run asks for, however many.
    let room = (clients + OWN_FILES).to_string();
    let config = Config::try_parse_from([
        "cartflow-gateway",
        "--database-url",
        &url,
        "--listen",
        "127.0.0.1:0",
        "--no-feed",
        "--max-clients",
        &room,
        "--max-connections",
        &room,
        "--ping-secs",
        "60",
    ])?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gateway = Gateway::start(config, listener, CancellationToken::new()).await?;
    println!("PORT {}", gateway.addr.port());
    std::io::stdout().flush()?;
    wait_for_go().await?;
    let pad = "x".repeat(200);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        gateway.hub.broadcast(
            Channel::Feed,
            &serde_json::json!({"type": "feed", "t": now_micros(), "pad": pad}),
        );
    }
}

/// Which client measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ClientKind {
    /// [`ws_client`]: a minimal RFC 6455 client, so the clients cost the shared cores as
    /// little as they can.
    Lean,
    /// tokio-tungstenite's client.
    Tungstenite,
}

impl ClientKind {
    pub(crate) fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// The server under measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Server {
    /// The cartflow gateway.
    Cartflow,
    /// A server that only writes pre-encoded frames ([`crate::gateway_floor`]).
    Floor,
    /// A plain Python `websockets` broadcast server.
    Python,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Cartflow => "cartflow",
            Server::Floor => "floor",
            Server::Python => "python",
        }
    }

    /// Starts the server in a child process and reads the port it printed.
    fn start(self, args: &Args) -> anyhow::Result<Running> {
        let mut command = match self {
            // `events` is the client count, which the server makes room for.
            Server::Cartflow => args.with(Measurement::GatewayServe).command()?,
            Server::Floor => args.with(Measurement::GatewayFloorServe).command()?,
            Server::Python => {
                ensure_python_websockets()?;
                let mut c = Command::new("python3");
                c.arg(PYTHON_SERVER);
                c
            }
        };
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let pid = child.id();
        let child = Killed(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| {
                anyhow::anyhow!("the {} server printed {line:?}, not its port", self.name())
            })?;
        Ok(Running {
            _child: child,
            stdin,
            pid,
            port,
        })
    }
}

/// A server child: told to start broadcasting on stdin, killed when dropped.
struct Running {
    _child: Killed,
    stdin: std::process::ChildStdin,
    pid: u32,
    port: u16,
}

/// Waits for the measuring process's line on stdin: every client is connected.
pub(crate) async fn wait_for_go() -> anyhow::Result<()> {
    tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await??;
    Ok(())
}

fn rss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse().ok())
        })
        .unwrap_or(0.0)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ensure_python_websockets() -> anyhow::Result<()> {
    let has = Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        eprintln!("  installing the Python websockets package (pip install websockets) ...");
        let ok = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "websockets"])
            .status()
            .is_ok_and(|s| s.success());
        anyhow::ensure!(
            ok,
            "pip install websockets failed: install it to run the baseline"
        );
    }
    Ok(())
}

/// Runs `args.events` clients against `server`: latency of the broadcasts they receive, and
/// the server's memory per idle connection.
pub(crate) async fn measure(server: Server, args: &Args) -> anyhow::Result<StageResult> {
    // The cartflow server's database, named here so that it is dropped here.
    let database = format!("cartflow_bench_gw_{}", uuid::Uuid::new_v4().simple());
    let args = &Args {
        prefix: database.clone(),
        ..args.clone()
    };
    let running = server.start(args)?;
    let result = measure_running(server, args, running).await;
    if server == Server::Cartflow {
        let _ = db::drop_database(&database_url(&args.database_url, &database)?).await;
    }
    result
}

/// The measurement on a started server, which is stopped when it ends.
async fn measure_running(
    server: Server,
    args: &Args,
    mut running: Running,
) -> anyhow::Result<StageResult> {
    let clients = args.events;
    let which = server.name();
    let pid = running.pid;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);

    let probe = Probe::new()?;
    let connect_started = Instant::now();
    let (tasks, connected) = connect(running.port, clients, args.gateway_client, &probe).await;
    let _abort = AbortAll(&tasks);
    anyhow::ensure!(
        connected == clients,
        "only {connected} of {clients} clients connected to the {which} server"
    );
    eprintln!(
        "  {which}: {clients} clients connected in {:.1} s",
        connect_started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib(pid);
    let per_connection = (idle - before) / clients as f64;

    writeln!(running.stdin, "go")?;
    running.stdin.flush()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    probe.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let measure = Duration::from_secs(args.seconds);
    tokio::time::sleep(measure).await;
    probe.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let peak = rss_kib(pid) / 1024.0;
    let n = probe.received.load(Ordering::Relaxed);
    let expected = clients * 10 * measure.as_secs();
    let delivered = n as f64 / expected as f64;
    Ok(StageResult {
        name: format!(
            "{which} server, {clients} {} clients: {per_connection:.1} KiB per idle connection, \
             {:.0}% of broadcasts received",
            args.gateway_client.name(),
            100.0 * delivered
        ),
        events: n,
        seconds: elapsed.as_secs_f64(),
        events_per_second: n as f64 / elapsed.as_secs_f64(),
        latency_p50_ms: quantile_ms(&probe.latency, 0.5),
        latency_p99_ms: quantile_ms(&probe.latency, 0.99),
        peak_rss_mib: peak,
        kib_per_connection: Some(per_connection),
        delivered: Some(delivered),
        busy_core_seconds: None,
    })
}

/// The descriptors this process may open (the soft `RLIMIT_NOFILE`, from /proc), if known.
pub(crate) fn descriptor_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// One client count's results (None where a server failed).
pub(crate) struct Row {
    pub(crate) clients: u64,
    pub(crate) cartflow: Option<StageResult>,
    pub(crate) floor: Option<StageResult>,
    pub(crate) python: Option<StageResult>,
}

/// The stage's own table: cartflow's p99 against the floor's, per client count.
#[allow(clippy::print_stdout)]
pub(crate) fn print_rows(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    let latency = |r: &Option<StageResult>| {
        r.as_ref().map_or("failed".to_owned(), |r| {
            format!("{:.1} / {:.1}", r.latency_p50_ms, r.latency_p99_ms)
        })
    };
    println!(
        "| clients | cartflow p50 / p99 ms | floor p50 / p99 ms | p99 ratio | cartflow KiB per idle conn, delivered | Python p50 / p99 ms, delivered |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for row in rows {
        let ratio = match (&row.cartflow, &row.floor) {
            (Some(c), Some(f)) => format!("{:.2}", c.latency_p99_ms / f.latency_p99_ms),
            _ => "-".to_owned(),
        };
        let share = |r: &Option<StageResult>| {
            r.as_ref()
                .and_then(|r| r.delivered)
                .map_or(String::new(), |d| format!(", {:.0}%", 100.0 * d))
        };
        let kib = row
            .cartflow
            .as_ref()
            .and_then(|r| r.kib_per_connection)
            .map_or("-".to_owned(), |k| format!("{k:.1}"));
        println!(
            "| {} | {} | {} | {ratio} | {kib}{} | {}{} |",
            row.clients,
            latency(&row.cartflow),
            latency(&row.floor),
            share(&row.cartflow),
            latency(&row.python),
            share(&row.python),
        );
    }
}

/// Aborts the clients' tasks however the measurement ends.
struct AbortAll<'a>(&'a [tokio::task::JoinHandle<Option<()>>]);

impl Drop for AbortAll<'_> {
    fn drop(&mut self) {
        for t in self.0 {
            t.abort();
        }
    }
}

/// What every client records while the measurement runs.
#[derive(Clone)]
struct Probe {
    latency: Histogram,
    received: Arc<AtomicU64>,
    measuring: Arc<AtomicBool>,
}

impl Probe {
    fn new() -> anyhow::Result<Probe> {
        Ok(Probe {
            latency: Histogram::with_opts(
                HistogramOpts::new("latency", "latency")
                    // 0.1 ms to 7 s in steps of 15%: fine enough to compare two p99s within 20%.
                    .buckets(prometheus::exponential_buckets(0.0001, 1.15, 80)?),
            )?,
            received: Arc::default(),
            measuring: Arc::default(),
        })
    }

    /// Records one broadcast's publish-to-receive latency, while measuring.
    fn on_message(&self, text: &[u8]) {
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        if let Some(t) = timestamp(text) {
            let seconds = now_micros().saturating_sub(t) as f64 / 1e6;
            self.latency.observe(seconds);
            self.received.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Connects `clients` clients to the server on `port`, 256 handshakes at a time; returns their
/// tasks and how many connected (waiting at most a minute for each next one).
async fn connect(
    port: u16,
    clients: u64,
    kind: ClientKind,
    probe: &Probe,
) -> (Vec<tokio::task::JoinHandle<Option<()>>>, u64) {
    let path = "/ws?channels=feed";
    let limit = Arc::new(tokio::sync::Semaphore::new(256));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut tasks = Vec::with_capacity(clients as usize);
    for _ in 0..clients {
        let (probe, limit, ready) = (probe.clone(), limit.clone(), ready_tx.clone());
        tasks.push(tokio::spawn(async move {
            let permit = limit.acquire_owned().await.ok()?;
            match kind {
                ClientKind::Lean => {
                    let client = ws_client::connect(port, path).await.ok()?;
                    drop(permit);
                    let _ = ready.send(());
                    client.run(|text| probe.on_message(text)).await.ok()?;
                }
                ClientKind::Tungstenite => {
                    // tungstenite zero-fills its whole read buffer (128 KiB by default) on
                    // every read: a 4 KiB one keeps 10,000 clients from spending a core on
                    // memset.
                    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
                    let url = format!("ws://127.0.0.1:{port}{path}");
                    let (mut ws, _) =
                        tokio_tungstenite::connect_async_with_config(url, Some(config), true)
                            .await
                            .ok()?;
                    drop(permit);
                    let _ = ready.send(());
                    while let Some(Ok(m)) = ws.next().await {
                        probe.on_message(&m.into_data());
                    }
                }
            }
            Some(())
        }));
    }
    drop(ready_tx);
    let mut connected = 0;
    while connected < clients {
        match tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await {
            Ok(Some(())) => connected += 1,
            _ => break,
        }
    }
    (tasks, connected)
}

/// The `"t"` field of a broadcast, without parsing the whole message.
fn timestamp(text: &[u8]) -> Option<u64> {
    let rest = &text[text.windows(4).position(|w| w == b"\"t\":")? + 4..];
    let rest = std::str::from_utf8(rest).ok()?.trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}
