//! For randomised histories, delivered out of order and with duplicates and projected in
//! chunks of random size as they arrive: the incremental analytics equal a rebuild, and
//! both equal plain SQL over `events`, for every aggregate table and view.

use cartflow_projector::apply::{self, Generation};
use cartflow_projector::rebuild;
use cartflow_tests::TestDb;
use cartflow_tests::analytics::{assert_matches_plain_sql, project_everything, snapshot};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Prices around the band edges, whole and with cents.
const PRICES: [i64; 6] = [999, 2499, 2500, 10_999, 50_000, 69_500];
const ACTIONS: [&str; 3] = ["add_to_cart", "remove_from_cart", "purchase_cart"];

#[derive(Debug, Clone)]
struct Event {
    customer: i64,
    session: Option<u8>,
    product: usize,
    action: usize,
    minute: i64,
}

#[derive(Debug, Clone)]
struct History {
    events: Vec<Event>,
    /// Delivery batches: how many new events, how many earlier ones delivered again.
    batches: Vec<(usize, usize)>,
    /// Chunk size of the projector step after each batch (0: no step then).
    chunks: Vec<i64>,
    /// Connections the rebuild reads the log with: more than one cut the table's blocks
    /// between them, and carts fall on both sides of the cuts.
    readers: u16,
}

fn history() -> impl Strategy<Value = History> {
    let event = (
        1i64..6,
        prop::option::weighted(0.8, 0u8..4),
        0usize..6,
        0usize..3,
        0i64..4_000,
    )
        .prop_map(|(customer, session, product, action, minute)| Event {
            customer,
            session,
            product,
            action,
            minute,
        });
    (
        prop::collection::vec(event, 1..250),
        prop::collection::vec((1usize..40, 0usize..6), 1..30),
        prop::collection::vec(prop_oneof![Just(0i64), 1i64..60], 30),
        1u16..5,
    )
        .prop_map(|(events, batches, chunks, readers)| History {
            events,
            batches,
            chunks,
            readers,
        })
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 28, 22, 0, 0).unwrap()
}

async fn deliver(client: &Client, history: &History, indexes: &[usize]) {
    let mut ids = Vec::new();
    let mut customers = Vec::new();
    let mut products = Vec::new();
    let mut prices = Vec::new();
    let mut actions = Vec::new();
    let mut times = Vec::new();
    let mut sessions = Vec::new();
    let mut offsets = Vec::new();
    for &i in indexes {
        let e = &history.events[i];
        ids.push(Uuid::from_u128(i as u128 + 1));
        customers.push(e.customer);
        products.push(e.product as i64 + 1);
        prices.push(Decimal::new(PRICES[e.product], 2));
        actions.push(ACTIONS[e.action]);
        times.push(start() + TimeDelta::minutes(e.minute));
        // A session belongs to one customer, as in the producer.
        sessions.push(e.session.map(|s| format!("c{}-s{s}", e.customer)));
        offsets.push(i as i64);
    }
    client
        .execute(
            "INSERT INTO events (event_id, customer_id, product_id, product_title, product_price, \
                 action, \"timestamp\", session_id, kafka_partition, kafka_offset) \
             SELECT id, c, p, 'product ' || p, price, a, t, s, 0, o \
             FROM UNNEST($1::uuid[], $2::int8[], $3::int8[], $4::numeric[], $5::text[], \
                 $6::timestamptz[], $7::text[], $8::int8[]) AS x(id, c, p, price, a, t, s, o) \
             ON CONFLICT (event_id) DO NOTHING",
            &[
                &ids, &customers, &products, &prices, &actions, &times, &sessions, &offsets,
            ],
        )
        .await
        .expect("deliver a batch");
}

async fn reset(client: &Client) {
    client
        .batch_execute(
            // Every aggregate table, whichever a migration added.
            "TRUNCATE events; \
             DO $$ DECLARE t text; BEGIN \
                 FOR t IN SELECT tablename FROM pg_tables \
                     WHERE schemaname = 'analytics' AND tablename <> 'checkpoint' LOOP \
                     EXECUTE format('TRUNCATE analytics.%I', t); \
                 END LOOP; END $$; \
             UPDATE analytics.checkpoint SET next_tx = 0, events = 0, watermark = NULL, \
                 minute_floor = NULL",
        )
        .await
        .expect("reset the database");
}

async fn check(db: &TestDb, history: History) {
    let mut client = db.client().await;
    reset(&client).await;
    let mut delivered = 0;
    for (n, (fresh, again)) in history.batches.iter().enumerate() {
        let end = (delivered + fresh).min(history.events.len());
        let mut batch: Vec<usize> = (delivered..end).collect();
        // Redeliveries of earlier events, interleaved.
        batch.extend(
            (0..*again)
                .filter(|_| delivered > 0)
                .map(|k| (k * 7919) % delivered),
        );
        batch.reverse();
        if !batch.is_empty() {
            deliver(&client, &history, &batch).await;
        }
        delivered = end;
        let chunk = history.chunks[n % history.chunks.len()];
        if chunk > 0 {
            apply::catch_up(&mut client, Generation::Live, chunk)
                .await
                .expect("step");
        }
    }
    if delivered < history.events.len() {
        let rest: Vec<usize> = (delivered..history.events.len()).collect();
        deliver(&client, &history, &rest).await;
    }
    project_everything(&mut client, 17).await;
    let incremental = snapshot(&client).await;

    let mut rebuilder = db.client().await;
    let mut readers = Vec::new();
    for _ in 0..rebuild::reader_connections(history.readers) {
        readers.push(db.client().await);
    }
    rebuild::rebuild_with(&mut rebuilder, readers, 50, &CancellationToken::new())
        .await
        .expect("rebuild");
    let rebuilt = snapshot(&client).await;
    let unanalysed: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_user_tables \
             WHERE schemaname = 'analytics' AND last_analyze IS NULL",
            &[],
        )
        .await
        .expect("statistics")
        .get(0);
    assert_eq!(
        unanalysed, 0,
        "the rebuild swapped in tables without statistics"
    );
    for ((name, a), (_, b)) in incremental.iter().zip(&rebuilt) {
        assert_eq!(a, b, "{name}: incremental and rebuilt differ");
    }
    assert_matches_plain_sql(&client).await;
}

#[test]
fn incremental_equals_rebuild_equals_plain_sql() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new());
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(h in history())| {
        rt.block_on(check(&db, h));
    });
    rt.block_on(db.cleanup());
}

#[tokio::test]
async fn the_views_agree_with_each_other() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let history = History {
        events: (0..400)
            .map(|i| Event {
                customer: i % 7 + 1,
                session: Some((i % 5) as u8),
                product: (i % 6) as usize,
                action: [0, 0, 0, 1, 2][(i % 5) as usize],
                minute: (i * 37) % 3000,
            })
            .collect(),
        batches: vec![],
        chunks: vec![0],
        readers: 1,
    };
    deliver(&client, &history, &(0..400).collect::<Vec<_>>()).await;
    let mut c = db.client().await;
    project_everything(&mut c, 100).await;
    // The first column of a one-row query, as a whole number.
    let one = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(&format!("SELECT x::int8 FROM ({sql}) s(x)"), &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .get::<_, i64>(0)
        }
    };
    let events = one("SELECT events FROM v_kpis").await;
    assert_eq!(events, 400);
    assert_eq!(
        one("SELECT sum(events)::int8 FROM v_hour_of_day").await,
        events
    );
    assert_eq!(
        one("SELECT sum(events)::int8 FROM v_day_of_week").await,
        events
    );
    assert_eq!(
        one("SELECT sum(events)::int8 FROM v_day_hour").await,
        events
    );
    let carts = one("SELECT carts FROM v_kpis").await;
    assert_eq!(
        carts,
        one("SELECT purchased_carts + abandoned_carts + emptied_carts + open_carts FROM v_kpis")
            .await,
        "every cart is purchased, abandoned, emptied or open"
    );
    // The four states, each counted over the carts themselves.
    let states = "SELECT ARRAY[purchased_carts, abandoned_carts, emptied_carts, open_carts]::int8[] \
                  FROM v_kpis";
    let direct = "SELECT ARRAY[count(*) FILTER (WHERE purchases > 0), \
             count(*) FILTER (WHERE purchases = 0 AND adds > removes \
                 AND last_at <= k.watermark - k.abandon_after), \
             count(*) FILTER (WHERE purchases = 0 AND adds <= removes), \
             count(*) FILTER (WHERE purchases = 0 AND adds > removes \
                 AND last_at > k.watermark - k.abandon_after)] \
         FROM analytics.carts, analytics.checkpoint k";
    let shown: Vec<i64> = client.query_one(states, &[]).await.unwrap().get(0);
    let counted: Vec<i64> = client.query_one(direct, &[]).await.unwrap().get(0);
    assert_eq!(shown, counted, "purchased, abandoned, emptied, open");
    assert_eq!(
        one("SELECT sum(carts)::int8 FROM v_age_groups").await,
        carts
    );
    assert!(one("SELECT count(*) FROM v_insights").await >= 5);
    db.cleanup().await;
}

/// The gateway's snapshot reads the views it shares (V15) once and hands their rows to
/// `cartflow_peaks` and `cartflow_insights`: every key must still be its view read alone.
#[tokio::test]
async fn the_gateways_snapshot_is_each_view_read_alone() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let history = History {
        events: (0..300)
            .map(|i| Event {
                customer: i % 5 + 1,
                session: Some((i % 4) as u8),
                product: (i % 6) as usize,
                action: [0, 0, 1, 0, 2][(i % 5) as usize],
                minute: (i * 53) % 9000,
            })
            .collect(),
        batches: vec![],
        chunks: vec![0],
        readers: 1,
    };
    deliver(&client, &history, &(0..300).collect::<Vec<_>>()).await;
    let mut c = db.client().await;
    project_everything(&mut c, 100).await;
    let pool = cartflow_common::db::pool(
        &cartflow_tests::parse_url(&db.url),
        cartflow_common::config::PoolArgs::default(),
    )
    .await
    .unwrap();
    let snapshot = cartflow_gateway::snapshot::load(&pool).await.unwrap();
    let alone = [
        ("kpis", "SELECT row_to_json(v) FROM v_kpis v"),
        (
            "hour_of_day",
            "SELECT json_agg(v ORDER BY hour_of_day) FROM v_hour_of_day v",
        ),
        (
            "day_of_week",
            "SELECT json_agg(v ORDER BY iso_day_of_week) FROM v_day_of_week v",
        ),
        ("month", "SELECT json_agg(v ORDER BY month) FROM v_month v"),
        ("peaks", "SELECT json_agg(v) FROM v_peaks v"),
        (
            "products",
            "SELECT json_agg(v ORDER BY rank_revenue, product_id) FROM v_product_performance v",
        ),
        (
            "categories",
            "SELECT json_agg(v ORDER BY revenue DESC, category) FROM v_category_performance v",
        ),
        (
            "price_bands",
            "SELECT json_agg(v ORDER BY band_floor) FROM v_abandonment_by_price_band v",
        ),
        (
            "age_groups",
            "SELECT json_agg(v ORDER BY age_group) FROM v_age_groups v",
        ),
        (
            "insights",
            "SELECT json_agg(v ORDER BY rank) FROM v_insights v",
        ),
    ];
    for (key, sql) in alone {
        let text: String = client
            .query_one(&format!("SELECT ({sql})::text"), &[])
            .await
            .unwrap()
            .get(0);
        let view: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(snapshot[key], view, "{key}");
    }
    let insights = snapshot["insights"].as_array().unwrap();
    assert!(insights.len() >= 5, "{insights:?}");
    assert_eq!(snapshot["peaks"].as_array().unwrap().len(), 6);
    db.cleanup().await;
}
