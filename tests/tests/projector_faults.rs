//! The projector binary under faults, against a real PostgreSQL: SIGKILLed mid-batch and
//! restarted, a hot standby taking over, and a rebuild swapped in while events keep coming.
//! Whatever happens, the analytics end equal to plain SQL over `events` (and to a rebuild), and
//! the projector has analysed its young tables itself.

use std::time::{Duration, Instant};

use cartflow_tests::analytics::{
    assert_matches_plain_sql, insert_events, projected_everything, snapshot,
};
use cartflow_tests::process::{Service, projector_flags};
use cartflow_tests::{TestDb, wait_until};
use rand::RngExt;
use tokio_postgres::Client;

/// A projector process, SIGKILLed if the test ends without stopping it.
/// A projector process on `db`, applying `chunk` events per step.
async fn projector(db: &TestDb, chunk: u32) -> Service {
    Service::start(
        env!("CARGO_BIN_EXE_tested-projector"),
        &projector_flags(&db.url, chunk),
    )
    .await
}

/// Whether the projector is the active one, once its endpoint answers.
async fn active(p: &Service) -> Option<bool> {
    p.metric("cartflow_projector_active")
        .await
        .map(|v| v == 1.0)
}

async fn insert_batches(client: &Client, first: i64, batches: i64, size: i64) {
    for b in 0..batches {
        insert_events(client, first + b * size, size, 500).await;
    }
}

async fn wait_projected(client: &Client, timeout: Duration) {
    wait_until("every event projected", timeout, || async {
        projected_everything(client).await
    })
    .await;
}

/// The analytics equal plain SQL, and a rebuild changes nothing.
async fn assert_exact(db: &TestDb, client: &Client) {
    assert_matches_plain_sql(client).await;
    let before = snapshot(client).await;
    let mut rebuilder = db.client().await;
    cartflow_projector::rebuild::rebuild(
        &mut rebuilder,
        5_000,
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("rebuild");
    for ((name, a), (_, b)) in before.iter().zip(&snapshot(client).await) {
        assert_eq!(a, b, "{name}: the projection differs from a rebuild");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_mid_batch_and_restarted_equals_a_rebuild() {
    let db = TestDb::new().await;
    let client = db.client().await;
    insert_batches(&client, 0, 40, 5_000).await;
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !projected_everything(&client).await {
        assert!(Instant::now() < deadline, "the projector never caught up");
        let mut p = projector(&db, 3_000).await;
        let ms = rand::rng().random_range(300..1_200);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        p.kill();
        kills += 1;
    }
    assert!(kills >= 2, "the log was projected before a second kill");
    let p = projector(&db, 3_000).await;
    insert_batches(&client, 200_000, 4, 5_000).await;
    wait_projected(&client, Duration::from_secs(60)).await;
    // 20,000 events in one run: the projector has analysed its young tables itself (only a
    // manual ANALYZE sets last_analyze; autovacuum's sets last_autoanalyze).
    wait_until("the carts analysed", Duration::from_secs(30), || async {
        let analysed: Option<chrono::DateTime<chrono::Utc>> = client
            .query_one(
                "SELECT last_analyze FROM pg_stat_user_tables \
                 WHERE schemaname = 'analytics' AND relname = 'carts'",
                &[],
            )
            .await
            .expect("statistics")
            .get(0);
        analysed.is_some()
    })
    .await;
    drop(p);
    assert_exact(&db, &client).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_when_the_active_projector_dies() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let mut first = projector(&db, 5_000).await;
    wait_until(
        "the first projector active",
        Duration::from_secs(30),
        || async { active(&first).await == Some(true) },
    )
    .await;
    let second = projector(&db, 5_000).await;
    wait_until(
        "the second projector up",
        Duration::from_secs(30),
        || async { active(&second).await.is_some() },
    )
    .await;
    assert_eq!(
        active(&second).await,
        Some(false),
        "only one projector writes"
    );
    insert_batches(&client, 0, 4, 5_000).await;
    wait_projected(&client, Duration::from_secs(30)).await;

    first.kill();
    let killed = Instant::now();
    wait_until("the standby active", Duration::from_secs(15), || async {
        active(&second).await == Some(true)
    })
    .await;
    let takeover = killed.elapsed();
    insert_batches(&client, 20_000, 4, 5_000).await;
    wait_projected(&client, Duration::from_secs(30)).await;
    assert!(
        takeover < Duration::from_secs(5),
        "took over in {takeover:?}"
    );
    drop(second);
    assert_exact(&db, &client).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_while_events_arrive_loses_and_doubles_nothing() {
    let db = TestDb::new().await;
    let client = db.client().await;
    insert_batches(&client, 0, 20, 5_000).await;
    let projector = projector(&db, 5_000).await;
    wait_projected(&client, Duration::from_secs(60)).await;

    // Events keep arriving while the rebuild runs and swaps.
    let writer = {
        let client = db.client().await;
        tokio::spawn(async move { insert_batches(&client, 100_000, 40, 1_000).await })
    };
    let mut rebuilder = db.client().await;
    let rebuilt = cartflow_projector::rebuild::rebuild(
        &mut rebuilder,
        2_000,
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("rebuild");
    assert!(rebuilt.bulk_events >= 100_000, "{rebuilt:?}");
    writer.await.expect("writer");
    wait_projected(&client, Duration::from_secs(60)).await;
    drop(projector);
    assert_matches_plain_sql(&client).await;
    db.cleanup().await;
}
