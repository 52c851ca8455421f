//! Resuming (docs/gateway.md): a client that reconnects with `?since=SEQ` gets the deltas it
//! missed, which bring its old snapshot to the gateway's current one, then live deltas; a
//! sequence the history no longer covers, or one from a gateway that has since restarted,
//! gets a new snapshot, and a `resume` message says which.

use std::time::Duration;

use cartflow_gateway::Gateway;
use cartflow_tests::analytics::{insert_events, project_everything};
use cartflow_tests::ws::{self, Client, start};
use cartflow_tests::{TestDb, wait_until};
use serde_json::{Map, Value};

/// A client of the analytics channel only.
async fn connect(gateway: &Gateway, query: &str) -> Client {
    ws::connect(gateway, &format!("?channels=analytics{query}")).await
}

async fn next_json(client: &mut Client) -> Value {
    ws::next_json(client, Duration::from_secs(10)).await
}

/// The gateway's current snapshot message, from `/api/snapshot`.
async fn current(gateway: &Gateway) -> Value {
    reqwest::get(format!("http://{}/api/snapshot", gateway.addr))
        .await
        .expect("GET /api/snapshot")
        .json()
        .await
        .expect("JSON")
}

/// Stores and projects `n` more events, and waits until the gateway shows `total`.
async fn add_events(db: &TestDb, gateway: &Gateway, first: i64, n: i64, total: i64) {
    let mut pg = db.client().await;
    insert_events(&pg, first, n, 3).await;
    project_everything(&mut pg, 1_000).await;
    wait_until(
        "the gateway to read it",
        Duration::from_secs(10),
        || async { current(gateway).await["data"]["kpis"]["events"] == total },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_gets_what_it_missed_then_live_deltas() {
    let db = TestDb::new().await;
    let (gateway, shutdown) = start(&db, &[]).await;
    let mut client = connect(&gateway, "").await;
    let snapshot = next_json(&mut client).await;
    assert_eq!(snapshot["type"], "snapshot");
    let since = snapshot["seq"].as_u64().expect("seq");
    let mut data: Map<String, Value> = snapshot["data"].as_object().expect("data").clone();
    drop(client);

    // Two commits while it is away.
    add_events(&db, &gateway, 0, 5, 5).await;
    add_events(&db, &gateway, 5, 7, 12).await;
    let now = current(&gateway).await;
    let now_seq = now["seq"].as_u64().unwrap();
    assert!(
        now_seq >= since + 2,
        "two deltas at least: {since} -> {now_seq}"
    );

    let mut client = connect(&gateway, &format!("&since={since}")).await;
    let resume = next_json(&mut client).await;
    assert_eq!(resume["type"], "resume", "{resume}");
    assert_eq!(resume["covered"], true, "{resume}");
    assert_eq!(resume["missed"].as_u64(), Some(now_seq - since), "{resume}");
    for expected in since + 1..=now_seq {
        let delta = next_json(&mut client).await;
        assert_eq!(delta["type"], "delta", "{delta}");
        assert_eq!(
            delta["seq"].as_u64(),
            Some(expected),
            "in order, none missing"
        );
        for (k, v) in delta["changes"].as_object().unwrap() {
            data.insert(k.clone(), v.clone());
        }
    }
    assert_eq!(
        Value::Object(data),
        now["data"],
        "the missed deltas bring the old snapshot to the current one"
    );
    // Then live.
    add_events(&db, &gateway, 12, 2, 14).await;
    let live = next_json(&mut client).await;
    assert_eq!(live["type"], "delta");
    assert_eq!(live["seq"].as_u64(), Some(now_seq + 1));

    // Nothing missed: covered, no deltas, and the next message is live.
    let mut up_to_date = connect(&gateway, &format!("&since={}", now_seq + 1)).await;
    let resume = next_json(&mut up_to_date).await;
    assert_eq!(
        (&resume["covered"], &resume["missed"]),
        (&Value::Bool(true), &0.into())
    );
    add_events(&db, &gateway, 14, 1, 15).await;
    assert_eq!(
        next_json(&mut up_to_date).await["seq"].as_u64(),
        Some(now_seq + 2)
    );

    // Older than the history (and a sequence never issued): a new snapshot, and said so.
    for stale in [1, now_seq + 1_000] {
        let mut old = connect(&gateway, &format!("&since={stale}")).await;
        let resume = next_json(&mut old).await;
        assert_eq!(resume["covered"], false, "since={stale}: {resume}");
        let fresh = next_json(&mut old).await;
        assert_eq!(fresh["type"], "snapshot");
        assert_eq!(fresh["data"]["kpis"]["events"], 15);
    }
    let metrics = reqwest::get(format!("http://{}/metrics", gateway.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "cartflow_gateway_resumes_total{result=\"deltas\"} 2",
        "cartflow_gateway_resumes_total{result=\"snapshot\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    // A since that is not a number is refused before the upgrade, saying which parameter.
    let url = format!("ws://{}/ws?since=yesterday", gateway.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("since"), "{body}");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    shutdown.cancel();
    gateway.stopped().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_restarted_gateway_gets_a_new_snapshot() {
    let db = TestDb::new().await;
    add_events_direct(&db, 0, 4).await;
    let (first, stop_first) = start(&db, &[]).await;
    let mut client = connect(&first, "").await;
    let before = next_json(&mut client).await;
    let since = before["seq"].as_u64().unwrap();
    stop_first.cancel();
    first.stopped().await.unwrap();
    add_events_direct(&db, 4, 3).await;

    let (second, stop_second) = start(&db, &[]).await;
    let mut client = connect(&second, &format!("&since={since}")).await;
    let resume = next_json(&mut client).await;
    assert_eq!(resume["type"], "resume");
    assert_eq!(
        resume["covered"], false,
        "another gateway's sequence: {resume}"
    );
    let snapshot = next_json(&mut client).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["data"]["kpis"]["events"], 7);
    assert!(
        snapshot["seq"].as_u64().unwrap() > since,
        "a restarted gateway's sequences are newer than the old one's"
    );
    stop_second.cancel();
    second.stopped().await.unwrap();
    db.cleanup().await;
}

async fn add_events_direct(db: &TestDb, first: i64, n: i64) {
    let mut pg = db.client().await;
    insert_events(&pg, first, n, 3).await;
    project_everything(&mut pg, 1_000).await;
}
