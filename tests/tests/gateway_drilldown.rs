//! Drill-down (docs/gateway.md): `/api/events` pages through exactly the events plain SQL
//! finds for a product, a customer, a cart or a time range, newest first, with partition and
//! offset; `/api/carts/{key}` shows a cart in the state the views give it and its history;
//! bad parameters get 400 and a sentence naming them; the token guards both.

use cartflow_gateway::Gateway;
use cartflow_tests::TestDb;
use cartflow_tests::analytics::project_everything;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// 2,000 events in sessions of four (one customer each), and 40 v1 events (no session) of
/// customer 3 on one day.
async fn store(db: &TestDb) {
    let mut pg = db.client().await;
    pg.batch_execute(
        "INSERT INTO events (event_id, customer_id, product_id, product_title, product_price, \
             action, \"timestamp\", session_id, kafka_partition, kafka_offset) \
         SELECT gen_random_uuid(), (i / 4) % 7 + 1, i % 20 + 1, 'product ' || (i % 20 + 1), \
             (ARRAY[9.99, 24.99, 109.95, 695.00])[i % 4 + 1], \
             (ARRAY['add_to_cart', 'add_to_cart', 'remove_from_cart', 'purchase_cart'])[i % 4 + 1], \
             timestamptz '2026-10-01' + i * interval '20 seconds', 's' || (i / 4), i % 3, i \
         FROM generate_series(0, 1999) i; \
         INSERT INTO events (event_id, customer_id, product_id, product_title, product_price, \
             action, \"timestamp\", session_id, kafka_partition, kafka_offset) \
         SELECT gen_random_uuid(), 3, 5, 'product 5', 9.99, 'add_to_cart', \
             timestamptz '2026-10-02 06:00' + i * interval '1 minute', NULL, 3, i \
         FROM generate_series(0, 39) i;",
    )
    .await
    .expect("store events");
    project_everything(&mut pg, 10_000).await;
}

async fn start(db: &TestDb, extra: &[&str]) -> (Gateway, CancellationToken) {
    let shutdown = CancellationToken::new();
    let mut flags = cartflow_tests::flags(&["--no-feed"]);
    flags.extend(cartflow_tests::flags(extra));
    let gateway = cartflow_tests::spawn_gateway(&db.url, &flags, &shutdown).await;
    (gateway, shutdown)
}

async fn get(gateway: &Gateway, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{}{path}", gateway.addr))
        .await
        .expect("GET");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// Every page of `/api/events?{query}`, following the cursors: the event ids, in order.
async fn all_pages(gateway: &Gateway, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let path = match &cursor {
            Some(c) => format!("/api/events?{query}&cursor={c}"),
            None => format!("/api/events?{query}"),
        };
        let (status, body) = get(gateway, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let page: Value = serde_json::from_str(&body).expect("JSON");
        let events = page["events"].as_array().expect("events");
        assert!(events.len() <= page["limit"].as_u64().unwrap() as usize);
        for e in events {
            assert!(e["partition"].is_i64() && e["offset"].is_i64(), "{e}");
            ids.push(e["event_id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
    panic!("more than 1,000 pages");
}

async fn sql_ids(db: &TestDb, condition: &str) -> Vec<String> {
    db.client()
        .await
        .query(
            &format!(
                "SELECT event_id::text FROM events WHERE {condition} \
                 ORDER BY \"timestamp\" DESC, event_id DESC"
            ),
            &[],
        )
        .await
        .expect("SQL")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_events_are_exactly_what_sql_finds_newest_first() {
    let db = TestDb::new().await;
    store(&db).await;
    let (gateway, shutdown) = start(&db, &[]).await;
    for (query, condition) in [
        ("product_id=7&limit=9", "product_id = 7"),
        ("customer_id=3&limit=50", "customer_id = 3"),
        (
            "from=2026-10-01T02:00:00Z&to=2026-10-01T03:00:00Z&limit=7",
            "\"timestamp\" >= '2026-10-01T02:00:00Z' AND \"timestamp\" < '2026-10-01T03:00:00Z'",
        ),
        (
            "customer_id=3&product_id=5&from=2026-10-02T06:10:00Z&limit=4",
            "customer_id = 3 AND product_id = 5 AND \"timestamp\" >= '2026-10-02T06:10:00Z'",
        ),
        ("cart=s17", "session_id = 's17'"),
        (
            "cart=customer%203%20on%202026-10-02",
            "customer_id = 3 AND session_id IS NULL",
        ),
    ] {
        let expected = sql_ids(&db, condition).await;
        assert!(!expected.is_empty(), "{condition} finds events");
        assert_eq!(all_pages(&gateway, query).await, expected, "{query}");
    }
    // Events the projector has not reached, newer and older than everything it has: the walk
    // backwards in time windows still finds them (its first window is open towards the
    // future, its last towards the past).
    db.client()
        .await
        .batch_execute(
            "INSERT INTO events (event_id, customer_id, product_id, product_title, \
                 product_price, action, \"timestamp\", session_id, kafka_partition, kafka_offset) \
             VALUES (gen_random_uuid(), 1, 7, 'p', 9.99, 'add_to_cart', '2027-06-01', 'late-1', 5, 1), \
                    (gen_random_uuid(), 1, 7, 'p', 9.99, 'add_to_cart', '2020-06-01', 'late-2', 5, 2)",
        )
        .await
        .expect("unprojected events");
    let expected = sql_ids(&db, "product_id = 7").await;
    assert_eq!(all_pages(&gateway, "product_id=7&limit=9").await, expected);
    // A customer is walked over their projected span, after the unprojected newer events.
    let (_, body) = get(&gateway, "/api/events?customer_id=1&limit=2").await;
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["events"][0]["session_id"], "late-1", "{body}");
    assert_eq!(page["events"][1]["customer_id"], 1, "{body}");
    let (status, body) = get(&gateway, "/api/events?customer_id=999999").await;
    assert_eq!(
        (status, body.contains("\"events\":[]")),
        (200, true),
        "{body}"
    );
    // The default page is 50.
    let (_, body) = get(&gateway, "/api/events").await;
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 50);
    shutdown.cancel();
    gateway.stopped().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_shows_its_state_and_how_it_got_there() {
    let db = TestDb::new().await;
    store(&db).await;
    let (gateway, shutdown) = start(&db, &[]).await;
    let client = db.client().await;
    for key in ["s17", "customer 3 on 2026-10-02"] {
        let (status, body) = get(&gateway, &format!("/api/carts/{key}")).await;
        assert_eq!(status, 200, "{key}: {body}");
        let cart: Value = serde_json::from_str(&body).unwrap();
        let row = client
            .query_one(
                "SELECT state, events, items FROM v_cart_states WHERE cart_key = $1",
                &[&key],
            )
            .await
            .unwrap();
        assert_eq!(cart["cart"]["state"], row.get::<_, String>(0), "{key}");
        let history = cart["history"].as_array().unwrap();
        assert_eq!(
            history.len() as i64,
            row.get::<_, i64>(1),
            "{key}: every event"
        );
        let times: Vec<&str> = history
            .iter()
            .map(|e| e["timestamp"].as_str().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
        assert_eq!(
            history.last().unwrap()["items_after"].as_i64(),
            Some(row.get::<_, i64>(2).max(0)),
            "{key}: what it holds at the end"
        );
    }
    // s17 (events 68-71): add, add, remove, purchase.
    let (_, body) = get(&gateway, "/api/carts/s17").await;
    let cart: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cart["cart"]["state"], "purchased");
    let after: Vec<i64> = cart["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["items_after"].as_i64().unwrap())
        .collect();
    assert_eq!(after, [1, 2, 1, 1]);
    let (status, _) = get(&gateway, "/api/carts/no-such-cart").await;
    assert_eq!(status, 404);
    shutdown.cancel();
    gateway.stopped().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_refused_with_a_reason_and_the_token_guards_them() {
    let db = TestDb::new().await;
    let (gateway, shutdown) = start(&db, &[]).await;
    let long = "k".repeat(201);
    for (query, names) in [
        ("product_id=abc", "product_id"),
        ("customer_id=1.5", "customer_id"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        (
            "from=2026-10-02T00:00:00Z&to=2026-10-01T00:00:00Z",
            "before",
        ),
        ("cursor=nonsense", "cursor"),
        ("cursor=12_not-a-uuid", "cursor"),
        (&format!("cart={long}"), "cart"),
    ] {
        let (status, body) = get(&gateway, &format!("/api/events?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(names), "{query}: {body}");
    }
    let (status, body) = get(&gateway, &format!("/api/carts/{long}")).await;
    assert_eq!((status, body.contains("cart")), (400, true), "{body}");
    shutdown.cancel();
    gateway.stopped().await.unwrap();

    let (guarded, shutdown) = start(&db, &["--token", "s3cret"]).await;
    for path in ["/api/events", "/api/carts/s1"] {
        assert_eq!(get(&guarded, path).await.0, 401, "{path} without the token");
        let (status, _) = get(&guarded, &format!("{path}?token=s3cret")).await;
        assert_ne!(status, 401, "{path} with the token");
    }
    shutdown.cancel();
    guarded.stopped().await.unwrap();
    db.cleanup().await;
}
