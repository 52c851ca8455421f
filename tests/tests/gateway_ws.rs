//! The WebSocket protocol with real clients against an in-process gateway on a fresh
//! database: snapshot then deltas, a slow client cut while a fast one keeps receiving, an
//! oversized message refused, a silent peer closed for not answering pings, a bad token and
//! a bad Origin refused before the upgrade (and counted), a client that just goes away not
//! counted as a protocol violation.

use std::time::Duration;

use cartflow_gateway::Gateway;
use cartflow_gateway::hub::Channel;
use cartflow_tests::TestDb;
use cartflow_tests::analytics::{insert_events, project_everything};
use cartflow_tests::ws::{Client, connect, next_json, start};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_the_snapshot_then_deltas_after_projector_commits() {
    let db = TestDb::new().await;
    let (gateway, shutdown) = start(&db, &[]).await;
    let mut client = connect(&gateway, "").await;
    let first = next_json(&mut client, Duration::from_secs(5)).await;
    assert_eq!(first["type"], "snapshot");
    assert_eq!(first["data"]["kpis"]["events"], 0);
    let seq = first["seq"].as_u64().expect("seq");

    let mut pg = db.client().await;
    insert_events(&pg, 0, 7, 1).await;
    project_everything(&mut pg, 1000).await;

    let delta = next_json(&mut client, Duration::from_secs(10)).await;
    assert_eq!(delta["type"], "delta");
    assert_eq!(delta["seq"].as_u64(), Some(seq + 1), "no update skipped");
    assert_eq!(delta["changes"]["kpis"]["events"], 7);
    assert!(
        delta["changes"].get("month").is_some(),
        "changed views are in the delta"
    );
    assert!(
        delta["changes"].get("catalogue").is_none(),
        "unchanged parts (no customer or product was stored) are left out"
    );

    // A client connecting now gets the new state in its snapshot.
    let mut late = connect(&gateway, "?channels=analytics").await;
    let snapshot = next_json(&mut late, Duration::from_secs(5)).await;
    assert_eq!(snapshot["data"]["kpis"]["events"], 7);
    shutdown.cancel();
    gateway.stopped().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_while_a_fast_one_keeps_receiving() {
    const MESSAGES: u64 = 300;
    let db = TestDb::new().await;
    let (gateway, shutdown) = start(&db, &["--client-queue", "16"]).await;
    let mut fast = connect(&gateway, "?channels=feed").await;
    let mut slow = connect(&gateway, "?channels=feed").await;

    let fast_reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < MESSAGES {
            let m = next_json(&mut fast, Duration::from_secs(20)).await;
            assert_eq!(m["n"].as_u64(), Some(seen), "in order, nothing missing");
            seen += 1;
        }
        seen
    });
    let slow_reader = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match slow.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    });
    // 300 messages of 32 KiB: far more than the slow client's socket buffers and queue.
    let padding = "x".repeat(32 * 1024);
    for n in 0..MESSAGES {
        gateway.hub.broadcast(
            Channel::Feed,
            &json!({"type": "feed", "n": n, "pad": padding}),
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(fast_reader.await.unwrap(), MESSAGES);
    let code = tokio::time::timeout(Duration::from_secs(60), slow_reader)
        .await
        .expect("the slow client is closed")
        .unwrap();
    assert_eq!(code, Some(CloseCode::Library(4001)), "closed as too slow");
    shutdown.cancel();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_closes_the_connection_with_1009() {
    let db = TestDb::new().await;
    let (gateway, shutdown) = start(&db, &["--max-message-bytes", "1024"]).await;
    let mut client = connect(&gateway, "?channels=feed").await;
    client
        .send(Message::Text(
            // 10 MiB: far more than the socket buffers hold, so the gateway closes while the
            // rest is still arriving (without a lingering close, the peer sees a reset).
            json!({"subscribe": ["analytics"], "pad": "y".repeat(10 * 1024 * 1024)})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Size));
    // A small request on a new connection is fine.
    let mut ok = connect(&gateway, "?channels=feed").await;
    ok.send(Message::Text(r#"{"subscribe":["analytics"]}"#.into()))
        .await
        .unwrap();
    gateway
        .hub
        .broadcast(Channel::Feed, &json!({"type": "feed", "n": 1}));
    assert_eq!(next_json(&mut ok, Duration::from_secs(5)).await["n"], 1);
    shutdown.cancel();
    db.cleanup().await;
}

/// A peer that completed the handshake and then went silent (never reads, never answers a
/// ping): the close code the gateway sends it, read from the raw socket.
async fn close_code_of_silent_peer(gateway: &Gateway) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let request = format!(
        "GET /ws?channels=feed HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        gateway.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // Everything the gateway sends, handshake response first, until the connection closes.
    let mut bytes = Vec::new();
    tcp.read_to_end(&mut bytes).await.unwrap();
    let head = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response")
        + 4;
    assert!(bytes.starts_with(b"HTTP/1.1 101"), "upgraded");
    let mut frames = &bytes[head..];
    while frames.len() >= 2 {
        let (opcode, len) = (frames[0] & 0x0F, usize::from(frames[1] & 0x7F));
        assert!(len < 126, "only small frames expected");
        if opcode == 0x8 {
            return u16::from_be_bytes([frames[2], frames[3]]);
        }
        frames = &frames[2 + len..];
    }
    panic!("the connection closed without a close frame");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_closed_with_4002_while_one_that_answers_pings_stays() {
    let db = TestDb::new().await;
    let (gateway, shutdown) = start(&db, &["--ping-secs", "1"]).await;
    // tungstenite answers each ping while it reads.
    let mut alive = connect(&gateway, "?channels=feed").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = alive.next().await {
            let _ = tx.send(m);
        }
    });
    let code = tokio::time::timeout(Duration::from_secs(15), close_code_of_silent_peer(&gateway))
        .await
        .expect("the silent peer is closed within a few ping periods");
    assert_eq!(code, 4002, "closed for not answering pings");
    // Three more ping periods: the client that answers is not closed, and still gets
    // broadcasts.
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match rx.recv().await {
                Some(Message::Close(f)) => return format!("closed: {f:?}"),
                Some(_) => {}
                None => return "gone".to_owned(),
            }
        }
    })
    .await;
    assert!(closed.is_err(), "the answering client was cut: {closed:?}");
    gateway
        .hub
        .broadcast(Channel::Feed, &json!({"type": "feed", "n": 7}));
    let got = loop {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(Message::Text(t))) => break t,
            Ok(Some(Message::Close(f))) => panic!("the answering client was closed: {f:?}"),
            Ok(Some(_)) => {}
            other => panic!("no broadcast for the answering client: {other:?}"),
        }
    };
    assert!(got.contains(r#""n":7"#));
    shutdown.cancel();
    db.cleanup().await;
}

fn refused_status(result: Result<(Client, impl Sized), WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, the upgrade went through"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_and_a_bad_origin_are_refused_before_the_upgrade() {
    let db = TestDb::new().await;
    let (gateway, shutdown) = start(&db, &["--token", "s3cret"]).await;
    let base = format!("ws://{}/ws", gateway.addr);

    let none = tokio_tungstenite::connect_async(base.clone()).await;
    assert_eq!(refused_status(none), 401);
    let wrong = tokio_tungstenite::connect_async(format!("{base}?token=nope")).await;
    assert_eq!(refused_status(wrong), 401);

    let mut ok = connect(&gateway, "?token=s3cret").await;
    assert_eq!(
        next_json(&mut ok, Duration::from_secs(5)).await["type"],
        "snapshot"
    );

    // Browsers send the token as a subprotocol beside cartflow.v1, which the gateway picks.
    let mut request = base.clone().into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("cartflow.v1, cartflow.token.s3cret"),
    );
    let (_, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "cartflow.v1",
        "the token is never echoed back"
    );

    let mut evil = format!("{base}?token=s3cret")
        .into_client_request()
        .unwrap();
    evil.headers_mut()
        .insert("Origin", HeaderValue::from_static("http://evil.example"));
    assert_eq!(
        refused_status(tokio_tungstenite::connect_async(evil).await),
        403
    );

    let mut same = format!("{base}?token=s3cret")
        .into_client_request()
        .unwrap();
    let origin = format!("http://{}", gateway.addr);
    same.headers_mut()
        .insert("Origin", HeaderValue::from_str(&origin).unwrap());
    assert!(
        tokio_tungstenite::connect_async(same).await.is_ok(),
        "its own pages may connect"
    );

    let snapshot = reqwest::get(format!("http://{}/api/snapshot", gateway.addr))
        .await
        .unwrap();
    assert_eq!(
        snapshot.status().as_u16(),
        401,
        "the API needs the token too"
    );
    shutdown.cancel();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_works_with_a_read_only_role_even_after_a_rebuild() {
    let db = TestDb::new().await;
    let admin = db.client().await;
    // Roles are server-wide: one for every run, created once. It may read the public schema
    // (the raw log and the views) and nothing else; the views read `analytics` as their owner.
    admin
        .batch_execute(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cartflow_reader') THEN
                     CREATE ROLE cartflow_reader LOGIN;
                 END IF;
             END $$;
             REVOKE pg_read_all_data FROM cartflow_reader;
             GRANT USAGE ON SCHEMA public TO cartflow_reader;
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO cartflow_reader;",
        )
        .await
        .expect("create the read-only role");
    let reader_url = db.url.replacen("postgres@", "cartflow_reader@", 1);
    assert_ne!(reader_url, db.url, "the test URL names the postgres user");
    let reader = cartflow_common::db::connect(&cartflow_tests::parse_url(&reader_url))
        .await
        .unwrap();
    let write = reader
        .execute(
            "INSERT INTO products (product_id, title, price, category) VALUES (1, 't', 1, 'c')",
            &[],
        )
        .await;
    assert!(write.is_err(), "the role cannot write");

    let shutdown = CancellationToken::new();
    let gateway = cartflow_tests::spawn_gateway(
        &reader_url,
        &cartflow_tests::flags(&["--no-feed", "--tick-ms", "20"]),
        &shutdown,
    )
    .await;
    let mut client = connect(&gateway, "?channels=analytics").await;
    let first = next_json(&mut client, Duration::from_secs(10)).await;
    assert_eq!(first["type"], "snapshot");
    assert!(
        first["data"].is_object(),
        "the reader reads every view: {first}"
    );

    // A rebuild swaps the analytics schema; the reader still reads, and sees new data.
    let mut pg = db.client().await;
    insert_events(&pg, 0, 3, 1).await;
    cartflow_projector::rebuild::rebuild(&mut pg, 1000, &CancellationToken::new())
        .await
        .expect("rebuild");
    admin
        .execute("SELECT pg_notify('cartflow_analytics', '{}')", &[])
        .await
        .unwrap();
    let delta = next_json(&mut client, Duration::from_secs(10)).await;
    assert_eq!(delta["type"], "delta");
    assert_eq!(delta["changes"]["kpis"]["events"], 3);
    shutdown.cancel();
    drop(reader);
    db.cleanup().await;
}

/// The value of the series `name` (with its labels) on the gateway's /metrics.
async fn metric(gateway: &Gateway, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", gateway.addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} is not exported"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_is_not_a_protocol_cut_and_a_refused_snapshot_is_counted() {
    let db = TestDb::new().await;
    let (gateway, shutdown) = start(&db, &["--token", "s3cret"]).await;
    let protocol = r#"cartflow_gateway_cut_clients_total{reason="protocol"}"#;
    let token = r#"cartflow_gateway_refused_total{reason="token"}"#;

    // Ten clients whose connections simply end: no closing handshake, as when a laptop
    // sleeps or a process is killed.
    for _ in 0..10 {
        let client = connect(&gateway, "?channels=analytics&token=s3cret").await;
        drop(client);
    }
    cartflow_tests::wait_until("the clients gone", Duration::from_secs(10), || async {
        metric(&gateway, "cartflow_gateway_clients").await == 0.0
    })
    .await;
    assert_eq!(
        metric(&gateway, protocol).await,
        0.0,
        "leaving is not a violation"
    );

    // A frame that breaks the protocol still is one: a client frame must be masked.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
        let request = format!(
            "GET /ws?token=s3cret HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
            gateway.addr
        );
        raw.write_all(request.as_bytes()).await.unwrap();
        let mut response = vec![0u8; 1024];
        let n = raw.read(&mut response).await.unwrap();
        assert!(String::from_utf8_lossy(&response[..n]).starts_with("HTTP/1.1 101"));
        // An unmasked text frame "hi".
        raw.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
        cartflow_tests::wait_until("the violation counted", Duration::from_secs(10), || async {
            metric(&gateway, protocol).await == 1.0
        })
        .await;
    }

    let before = metric(&gateway, token).await;
    let snapshot = reqwest::get(format!("http://{}/api/snapshot", gateway.addr))
        .await
        .unwrap();
    assert_eq!(snapshot.status().as_u16(), 401);
    assert_eq!(
        metric(&gateway, token).await,
        before + 1.0,
        "the snapshot's 401 is counted"
    );
    shutdown.cancel();
    db.cleanup().await;
}

/// Whether the server closes `stream` within `within` (a read returns end-of-file or an
/// error), without this side sending anything more.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_upgrade_are_closed_after_the_handshake_timeout() {
    use tokio::io::AsyncWriteExt;
    let db = TestDb::new().await;
    let (gateway, shutdown) = start(&db, &["--handshake-timeout-secs", "1"]).await;
    let mut client = connect(&gateway, "?channels=feed").await;
    let started = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: cartflow\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "a connection that never sends a byte is closed"
    );
    assert!(
        closed_within(&mut half, Duration::from_secs(5)).await,
        "a connection that sends half a request is closed"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );
    // The WebSocket client, connected for longer than the timeout, still receives.
    gateway
        .hub
        .broadcast(Channel::Feed, &json!({"type": "feed", "n": 2}));
    assert_eq!(next_json(&mut client, Duration::from_secs(5)).await["n"], 2);
    assert!(
        metric(
            &gateway,
            r#"cartflow_gateway_refused_total{reason="handshake_timeout"}"#
        )
        .await
            >= 2.0
    );
    shutdown.cancel();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_bounded_in_all_and_per_address() {
    let db = TestDb::new().await;
    for (flag, reason) in [
        ("--max-connections", "connections"),
        ("--max-connections-per-ip", "per_ip"),
    ] {
        let (gateway, shutdown) = start(&db, &[flag, "4", "--handshake-timeout-secs", "30"]).await;
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(tokio::net::TcpStream::connect(gateway.addr).await.unwrap());
        }
        let mut over = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
        assert!(
            closed_within(&mut over, Duration::from_secs(2)).await,
            "{flag} 4: the fifth connection is closed at once"
        );
        for stream in &mut held {
            assert!(
                !closed_within(stream, Duration::from_millis(100)).await,
                "{flag} 4: the first four stay open"
            );
        }
        drop(held);
        // The slots are given back: the metrics endpoint answers on a new connection.
        let series = format!(r#"cartflow_gateway_refused_total{{reason="{reason}"}}"#);
        cartflow_tests::wait_until("the slots back", Duration::from_secs(10), || async {
            reqwest::get(format!("http://{}/metrics", gateway.addr))
                .await
                .is_ok()
        })
        .await;
        // At least the fifth; the metrics requests above may have been refused too while the
        // server had not yet seen the four close.
        assert!(metric(&gateway, &series).await >= 1.0, "{flag}: counted");
        shutdown.cancel();
    }
    db.cleanup().await;
}
