//! The projector's horizon (#18, migrations/V13): a long transaction that writes no events, in
//! this database or another, does not hold the projector back; one that writes events does,
//! until it ends, and nothing it wrote is skipped; a transaction that wrote other rows before
//! its events is refused with a message that says what to do.

use std::time::{Duration, Instant};

use cartflow_projector::apply::{self, Generation};
use cartflow_tests::TestDb;
use cartflow_tests::analytics::{
    assert_matches_plain_sql, insert_events, project_everything, projected_everything,
};
use tokio_postgres::Client;

const CHUNK: i64 = 1_000;

const ONE_CUSTOMER: &str = "INSERT INTO customers (customer_id, name, age, email) \
     VALUES (1, 'held', 30, 'held@example.com')";

async fn applied_events(client: &Client) -> i64 {
    client
        .query_one("SELECT events FROM analytics.checkpoint", &[])
        .await
        .expect("read the checkpoint")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_transactions_that_write_no_events_do_not_hold_the_projector_back() {
    let db = TestDb::new().await;
    let elsewhere = TestDb::new().await;
    let mut client = db.client().await;
    // Two write transactions held open for the whole test: one in this database, one in
    // another database of the same server (a bulk load, a rebuild's write phase).
    let here = db.client().await;
    here.batch_execute(&format!("BEGIN; {ONE_CUSTOMER}"))
        .await
        .expect("open a write transaction here");
    let there = elsewhere.client().await;
    there
        .batch_execute("BEGIN; CREATE TABLE held (i int)")
        .await
        .expect("open a write transaction in another database");

    insert_events(&client, 0, 400, 10).await;
    // Before V13 the horizon was the oldest transaction running on the server: no step could
    // apply these while either transaction above is open.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !projected_everything(&client).await {
        assert!(
            Instant::now() < deadline,
            "the projector is held back by transactions that write no events \
             (applied {} of 400)",
            applied_events(&client).await
        );
        apply::catch_up(&mut client, Generation::Live, CHUNK)
            .await
            .expect("projector step");
    }
    assert_eq!(applied_events(&client).await, 400);
    assert_matches_plain_sql(&client).await;

    drop((here, there));
    db.cleanup().await;
    elsewhere.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_events_writer_holds_the_projector_until_it_ends_and_nothing_is_skipped() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    // A consumer-like batch: announces itself, upserts a customer, writes four events, and
    // stays open.
    let writer = db.client().await;
    writer
        .batch_execute(&format!(
            "BEGIN; SELECT cartflow_events_writer(); {ONE_CUSTOMER}"
        ))
        .await
        .expect("open an events writer");
    insert_events(&writer, 0, 4, 1).await;
    let held: i64 = writer
        .query_one("SELECT pg_current_xact_id()::text::bigint", &[])
        .await
        .expect("read the writer's transaction id")
        .get(0);
    // Later batches commit while it runs.
    insert_events(&client, 4, 400, 10).await;

    apply::catch_up(&mut client, Generation::Live, CHUNK)
        .await
        .expect("projector step");
    let next_tx: i64 = client
        .query_one("SELECT next_tx FROM analytics.checkpoint", &[])
        .await
        .expect("read the checkpoint")
        .get(0);
    assert!(
        next_tx <= held,
        "the projector read past a running events writer: checkpoint {next_tx}, writer {held}"
    );
    assert_eq!(applied_events(&client).await, 0);

    writer.batch_execute("COMMIT").await.expect("commit");
    project_everything(&mut client, CHUNK).await;
    assert_eq!(applied_events(&client).await, 404);
    assert_matches_plain_sql(&client).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_wrote_before_its_events_is_refused_unless_it_announced_them() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let one_event = "INSERT INTO events (event_id, customer_id, product_id, product_title, \
         product_price, action, \"timestamp\", kafka_partition, kafka_offset) \
         VALUES (gen_random_uuid(), 1, 1, 'p', 10, 'add_to_cart', now(), 0, 0)";

    client
        .batch_execute(&format!("BEGIN; {ONE_CUSTOMER}"))
        .await
        .expect("begin");
    let refused = client
        .batch_execute(one_event)
        .await
        .expect_err("events after other rows, unannounced");
    let refused = refused.as_db_error().expect("a database error");
    assert!(
        refused
            .message()
            .contains("wrote other rows before it wrote events"),
        "{refused:?}"
    );
    assert!(
        refused
            .hint()
            .is_some_and(|h| h.contains("cartflow_events_writer()")),
        "{refused:?}"
    );
    client.batch_execute("ROLLBACK").await.expect("rollback");

    client
        .batch_execute(&format!(
            "BEGIN; SELECT cartflow_events_writer(); {ONE_CUSTOMER}; {one_event}; COMMIT"
        ))
        .await
        .expect("an announced writer may write other rows first");
    let stored: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);
    db.cleanup().await;
}
