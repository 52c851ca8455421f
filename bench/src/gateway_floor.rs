//! The gateway stage's floor: the least a broadcast server can do on this machine. It answers
//! the WebSocket handshake; then, per broadcast, one thread stamps and encodes a frame and
//! hands it to a writer thread per core, each writing it to its share of the sockets in a
//! tight loop (non-blocking; a frame that does not fit waits for the next round, whose frame
//! is dropped). No per-client task, no queue, no reads after the handshake: not a server
//! anyone should run, but what is left of its latency is the kernel's and the clients' share,
//! which no server design removes.
//!
//! The frame is stamped once, before it is handed over, as a server's broadcast is published
//! once: a writer that stamped its own copy would hide the time it waited for a core.

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::gateway::{now_micros, wait_for_go};

type Sockets = Arc<Mutex<Vec<TcpStream>>>;

pub(crate) async fn serve() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("PORT {}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let sockets: Sockets = Arc::default();
    let accepting = sockets.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sockets = accepting.clone();
            tokio::spawn(async move {
                if let Ok(stream) = handshake(stream).await {
                    sockets.lock().expect("sockets").push(stream);
                }
            });
        }
    });
    wait_for_go().await?;
    // One writer per core, each with half of the sockets.
    let writers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all = std::mem::take(&mut *sockets.lock().expect("sockets"));
    let mut shares: Vec<Vec<Peer>> = (0..writers).map(|_| Vec::new()).collect();
    for (i, socket) in all.into_iter().enumerate() {
        shares[i % writers].push(Peer {
            socket,
            pending: Vec::new(),
        });
    }
    let (senders, threads): (Vec<_>, Vec<_>) = shares
        .into_iter()
        .map(|mut share| {
            let (tx, rx) = std::sync::mpsc::channel::<Arc<Vec<u8>>>();
            let thread = std::thread::spawn(move || {
                while let Ok(frame) = rx.recv() {
                    write_all(&mut share, &frame);
                }
            });
            (tx, thread)
        })
        .unzip();
    broadcast(&senders);
    drop(senders);
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Reads the upgrade request and answers it; returns the socket, non-blocking.
async fn handshake(mut stream: tokio::net::TcpStream) -> anyhow::Result<TcpStream> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "closed during the handshake");
        request.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&request);
    let key = text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim())
        })
        .ok_or_else(|| anyhow::anyhow!("no Sec-WebSocket-Key"))?;
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    stream.write_all(response.as_bytes()).await?;
    stream.set_nodelay(true)?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// A socket and the part of a frame it did not take yet (frames are never cut short).
struct Peer {
    socket: TcpStream,
    pending: Vec<u8>,
}

/// Ten times a second, one frame stamped, encoded and handed to every writer.
fn broadcast(writers: &[std::sync::mpsc::Sender<Arc<Vec<u8>>>]) {
    let pad = "x".repeat(200);
    let mut next = std::time::Instant::now();
    loop {
        next += Duration::from_millis(100);
        let payload =
            serde_json::json!({"type": "feed", "t": now_micros(), "pad": pad}).to_string();
        let mut frame = vec![0x81, 126];
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        frame.extend_from_slice(payload.as_bytes());
        let frame = Arc::new(frame);
        for w in writers {
            if w.send(frame.clone()).is_err() {
                return;
            }
        }
        std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
    }
}

/// One frame to every socket of a share.
fn write_all(peers: &mut [Peer], frame: &[u8]) {
    for peer in peers.iter_mut() {
        if !peer.pending.is_empty() {
            let n = peer.socket.write(&peer.pending).unwrap_or(0);
            peer.pending.drain(..n);
            if !peer.pending.is_empty() {
                continue;
            }
        }
        let n = peer.socket.write(frame).unwrap_or(0);
        peer.pending.extend_from_slice(&frame[n..]);
    }
}
