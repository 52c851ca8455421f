//! The live event feed through the real broker: the gateway reads every partition of
//! cart-events (no consumer group) and pushes `feed` messages to WebSocket clients, from a
//! producer writing single-object messages or Confluent-framed ones through a schema registry
//! (whose ids the gateway looks up).

use std::time::{Duration, Instant};

use cartflow_tests::{FAKESTORE_PRODUCTS, TestEnv, any_port, serve_catalogue};
use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_reach_websocket_clients_as_feed_messages() {
    // A minute-long tick: the first events after a quiet spell still go out at once (the
    // test gives up after 30 s; a feed that waited for its tick would send at 60 s).
    feed_reaches_clients(None, "60000").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_framed_through_a_schema_registry_reach_the_feed() {
    feed_reaches_clients(Some(cartflow_tests::registry_url()), "50").await;
}

async fn feed_reaches_clients(registry: Option<String>, tick_ms: &str) {
    let env = TestEnv::new().await;
    env.create_cart_events_topic().await;
    let mut args = cartflow_tests::flags(&["--tick-ms", tick_ms]);
    args.extend(env.kafka_flags());
    if let Some(url) = &registry {
        args.extend(cartflow_tests::flags(&["--schema-registry-url", url]));
    }
    let shutdown = CancellationToken::new();
    let gateway = cartflow_tests::spawn_gateway(&env.database_url, &args, &shutdown).await;
    let url = format!("ws://{}/ws?channels=feed", gateway.addr);
    let (mut client, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");

    // The feed starts at the end of each partition once it is assigned, so publish until a
    // feed message arrives.
    let catalogue = serve_catalogue(200, FAKESTORE_PRODUCTS).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let feed = loop {
        assert!(Instant::now() < deadline, "no feed message arrived");
        let mut config = env.backfill_config(&catalogue, 20, 300);
        config.registry.schema_registry_url.clone_from(&registry);
        cartflow_producer::run(config, any_port().await, CancellationToken::new())
            .await
            .expect("publish");
        let got = tokio::time::timeout(Duration::from_secs(3), async {
            while let Some(Ok(m)) = client.next().await {
                if let Message::Text(t) = m {
                    let v: Value = serde_json::from_str(&t).expect("JSON");
                    if v["type"] == "feed" {
                        return Some(v);
                    }
                }
            }
            None
        })
        .await;
        if let Ok(Some(v)) = got {
            break v;
        }
    };
    let count = feed["count"].as_u64().expect("count");
    let events = feed["events"].as_array().expect("events");
    assert!(count >= events.len() as u64 && !events.is_empty(), "{feed}");
    assert!(events.len() <= 25, "at most 25 events listed per message");
    let e = &events[0];
    for field in [
        "event_id",
        "customer_id",
        "product_title",
        "product_price",
        "action",
        "timestamp",
    ] {
        assert!(!e[field].is_null(), "feed events carry {field}: {e}");
    }
    shutdown.cancel();
    env.cleanup().await;
}
