//! A WebSocket client for the gateway tests: a gateway started on a fresh database, a
//! connection to `/ws`, and its next JSON message.

use std::time::Duration;

use cartflow_gateway::Gateway;
use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::TestDb;

/// A client connection to the gateway.
pub type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A gateway on `db` without the live feed, ticking every 20 ms, with `extra` flags; stop it
/// with the token.
pub async fn start(db: &TestDb, extra: &[&str]) -> (Gateway, CancellationToken) {
    let mut args = crate::flags(&["--no-feed", "--tick-ms", "20"]);
    args.extend(crate::flags(extra));
    let shutdown = CancellationToken::new();
    let gateway = crate::spawn_gateway(&db.url, &args, &shutdown).await;
    (gateway, shutdown)
}

/// A client of `/ws{query}` (`query` starts with `?` when not empty).
pub async fn connect(gateway: &Gateway, query: &str) -> Client {
    let url = format!("ws://{}/ws{query}", gateway.addr);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

/// The next text message as JSON, within `timeout`.
pub async fn next_json(client: &mut Client, timeout: Duration) -> Value {
    loop {
        let m = tokio::time::timeout(timeout, client.next())
            .await
            .expect("a message in time")
            .expect("the connection open")
            .expect("a frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).expect("JSON");
        }
    }
}
