//! Cart outcomes (#17) against the real broker and PostgreSQL: every cart's outcome on the
//! `cart-outcomes` topic exactly once and equal to the analytics' verdict, through SIGKILLs of
//! the projector and of the relay and across a rebuild; a late purchase or a shopper back
//! corrects an abandoned cart; the example subscriber turns abandoned carts into recovery messages.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cartflow_schemas::{CartOutcome, OutcomeKind};
use cartflow_tests::analytics::{project_everything, projected_everything};
use cartflow_tests::outcomes::{
    all_published, insert_carts, left_for_group, read_outcomes, relay_flags, spawn_relay, topic,
};
use cartflow_tests::process::{Service, projector_flags};
use cartflow_tests::{TestEnv, any_port, wait_until};
use rand::RngExt;
use rust_decimal::Decimal;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// A `cartflow-projector` process (the projector or its relay), SIGKILLed when dropped.
const PROJECTOR: &str = env!("CARGO_BIN_EXE_tested-projector");

/// A projector process, applying small steps so that kills land mid-way.
async fn start_projector(env: &TestEnv) -> Service {
    Service::start(PROJECTOR, &projector_flags(&env.database_url, 300)).await
}

/// A relay process, publishing small batches.
async fn start_relay(env: &TestEnv) -> Service {
    let mut args = relay_flags(env);
    args.extend(
        [
            "--relay-batch",
            "40",
            "--poll-ms",
            "100",
            "--standby-poll-ms",
            "100",
        ]
        .map(String::from),
    );
    Service::start(PROJECTOR, &args).await
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

async fn keys(client: &Client, sql: &str) -> HashSet<String> {
    client
        .query(sql, &[])
        .await
        .expect(sql)
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Each cart's outcomes in topic order (a customer's are on one partition, in order).
fn by_cart(outcomes: &[CartOutcome]) -> HashMap<String, Vec<&CartOutcome>> {
    let mut carts: HashMap<String, Vec<&CartOutcome>> = HashMap::new();
    for o in outcomes {
        carts.entry(o.cart_key.clone()).or_default().push(o);
    }
    carts
}

/// A cart's outcomes as (kind, sequence), in order.
fn kinds(outcomes: &[&CartOutcome]) -> Vec<(OutcomeKind, i32)> {
    outcomes.iter().map(|o| (o.outcome, o.sequence)).collect()
}

/// The carts whose latest outcome is `kind`.
fn latest(carts: &HashMap<String, Vec<&CartOutcome>>, kind: OutcomeKind) -> HashSet<String> {
    carts
        .iter()
        .filter(|(_, os)| os.last().is_some_and(|o| o.outcome == kind))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The topic holds each outbox row once, every cart's outcomes are numbered 1, 2, ... in
/// order, and each cart's latest outcome is the analytics' verdict.
async fn assert_topic_matches_analytics(client: &Client, outcomes: &[CartOutcome]) {
    let ids: HashSet<_> = outcomes.iter().map(|o| o.outcome_id).collect();
    assert_eq!(ids.len(), outcomes.len(), "an outcome was published twice");
    assert_eq!(
        outcomes.len() as i64,
        count(client, "SELECT count(*) FROM outcomes.outbox").await,
        "the topic holds every outbox row once"
    );
    let carts = by_cart(outcomes);
    for (key, os) in &carts {
        let sequences: Vec<i32> = os.iter().map(|o| o.sequence).collect();
        let expected: Vec<i32> = (1..=os.len() as i32).collect();
        assert_eq!(
            sequences, expected,
            "cart {key}: outcomes out of order or missing"
        );
    }
    let purchased = keys(
        client,
        "SELECT cart_key FROM analytics.carts WHERE purchases > 0",
    )
    .await;
    let abandoned = keys(client, "SELECT cart_key FROM v_abandoned_carts").await;
    let emptied = keys(
        client,
        "SELECT cart_key FROM analytics.carts c, analytics.checkpoint k \
         WHERE purchases = 0 AND adds <= removes AND last_at <= k.watermark - k.abandon_after",
    )
    .await;
    assert!(!purchased.is_empty() && !abandoned.is_empty() && !emptied.is_empty());
    assert_eq!(latest(&carts, OutcomeKind::Purchased), purchased);
    assert_eq!(latest(&carts, OutcomeKind::Abandoned), abandoned);
    assert_eq!(latest(&carts, OutcomeKind::Emptied), emptied);
    // The abandoned value is the analytics' value, and each outcome names all its events.
    let rows = client
        .query(
            "SELECT a.cart_key, a.value, c.events FROM v_abandoned_carts a \
             JOIN analytics.carts c USING (cart_key)",
            &[],
        )
        .await
        .expect("abandoned carts");
    for row in rows {
        let key: String = row.get(0);
        let o = carts[&key].last().expect("an outcome");
        assert_eq!(
            Decimal::from(o.value),
            row.get::<_, Decimal>(1),
            "cart {key}"
        );
        assert_eq!(o.event_ids.len() as i64, row.get::<_, i64>(2), "cart {key}");
        assert!(
            !o.items.is_empty(),
            "cart {key}: an abandoned cart has items"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_outcome_is_published_once_through_kill_9_and_a_rebuild() {
    let env = TestEnv::new().await;
    let topic = topic(&env);
    let client = env.client().await;
    let mut projector = start_projector(&env).await;
    let mut relay = start_relay(&env).await;

    // Carts arrive in 40 transactions while the projector or the relay is SIGKILLed every
    // 0.5-2 s and started again at once, and a rebuild is swapped in half-way.
    let mut rng = rand::rng();
    let mut rebuild = None;
    let mut next_kill = Instant::now() + Duration::from_millis(rng.random_range(500..2000));
    let (mut projector_kills, mut relay_kills) = (0, 0);
    for batch in 0..40 {
        insert_carts(&client, batch * 100, 100).await;
        if batch == 20 {
            let mut rebuilder = env.client().await;
            rebuild = Some(tokio::spawn(async move {
                cartflow_projector::rebuild::rebuild(
                    &mut rebuilder,
                    1_000,
                    &CancellationToken::new(),
                )
                .await
            }));
        }
        // Pacing, not synchronisation: the inserts and kills are spread over about 12 s.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if Instant::now() >= next_kill {
            if rng.random_bool(0.5) {
                projector.kill();
                projector = start_projector(&env).await;
                projector_kills += 1;
            } else {
                relay.kill();
                relay = start_relay(&env).await;
                relay_kills += 1;
            }
            next_kill = Instant::now() + Duration::from_millis(rng.random_range(500..2000));
        }
    }
    assert!(projector_kills + relay_kills >= 4, "the faults happened");
    let rebuilt = rebuild.expect("started").await.expect("rebuild task");
    rebuilt.expect("the rebuild during the faults");
    wait_until(
        "every cart decided and published",
        Duration::from_secs(120),
        || async { projected_everything(&client).await && all_published(&client).await },
    )
    .await;
    let outcomes = read_outcomes(&env.kafka(), &topic).await;
    assert_topic_matches_analytics(&client, &outcomes).await;
    eprintln!(
        "{} outcomes, {projector_kills} projector and {relay_kills} relay SIGKILLs",
        outcomes.len()
    );

    // A rebuild of a current projection declares nothing.
    let before = count(&client, "SELECT count(*) FROM outcomes.outbox").await;
    let mut rebuilder = env.client().await;
    cartflow_projector::rebuild::rebuild(&mut rebuilder, 1_000, &CancellationToken::new())
        .await
        .expect("rebuild");
    assert_eq!(
        count(&client, "SELECT count(*) FROM outcomes.outbox").await,
        before
    );

    // A relay that died after the broker committed a batch but before PostgreSQL marked it
    // (the rows are un-marked here by hand: that instant cannot be hit on purpose) publishes
    // nothing twice: it finds the rows on the topic and marks them.
    relay.kill();
    let unmarked = client
        .execute(
            "UPDATE outcomes.outbox SET published_at = NULL \
             WHERE seq > (SELECT max(seq) - 25 FROM outcomes.outbox)",
            &[],
        )
        .await
        .expect("unmark");
    assert_eq!(unmarked, 25);
    let relay = start_relay(&env).await;
    wait_until(
        "the un-marked rows recovered",
        Duration::from_secs(60),
        || async { all_published(&client).await },
    )
    .await;
    let again = read_outcomes(&env.kafka(), &topic).await;
    assert_eq!(again.len(), outcomes.len(), "nothing was published twice");
    drop((projector, relay));
    env.cleanup().await;
}

/// Inserts one event.
async fn event(client: &Client, cart: &str, action: &str, price: &str, minute: i32) {
    client
        .execute(
            "INSERT INTO events (event_id, customer_id, product_id, product_title, \
                 product_price, action, \"timestamp\", session_id, kafka_partition, kafka_offset) \
             VALUES (gen_random_uuid(), 5, 1, 'product', $1::text::numeric, $2, \
                 timestamptz '2026-10-01' + $3::int4 * interval '1 minute', $4, 0, 0)",
            &[&price, &action, &minute, &cart],
        )
        .await
        .expect("insert an event");
}

/// The recovery messages a webhook received.
async fn webhook() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/recover",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().expect("lock").push(body);
                "ok"
            }
        }),
    );
    let listener = any_port().await;
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/recover"), received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_purchase_reopens_an_abandoned_cart_and_the_subscriber_hears_of_it() {
    use clap::Parser;
    let env = TestEnv::new().await;
    let topic = topic(&env);
    let mut client = env.client().await;
    client
        .execute("UPDATE analytics.checkpoint SET outcomes = true", &[])
        .await
        .expect("outcomes on");
    event(&client, "late", "add_to_cart", "695.00", 0).await;
    event(&client, "late", "add_to_cart", "695.00", 1).await;
    event(&client, "small", "add_to_cart", "9.99", 0).await;
    event(&client, "back", "add_to_cart", "50.00", 0).await;
    project_everything(&mut client, 1_000).await;
    // Another shopper 45 minutes later: the clock passes 30 minutes of idleness.
    event(&client, "clock", "add_to_cart", "9.99", 45).await;
    project_everything(&mut client, 1_000).await;
    // The purchase after the window, and a shopper back at an abandoned cart (open again).
    event(&client, "late", "purchase_cart", "695.00", 50).await;
    event(&client, "back", "add_to_cart", "50.00", 50).await;
    project_everything(&mut client, 1_000).await;

    let stop = CancellationToken::new();
    let relay = spawn_relay(&env, any_port().await, &stop);
    let (url, received) = webhook().await;
    let recover_listener = any_port().await;
    let recover_metrics = format!(
        "http://{}/metrics",
        recover_listener.local_addr().expect("addr")
    );
    let group = format!("test-recover-{}", env.id);
    let recover_config = cartflow_recover::Config::try_parse_from([
        "cartflow-recover",
        "--kafka-brokers",
        &env.brokers,
        "--outcomes-topic",
        &topic,
        "--group",
        &group,
        "--min-value",
        "100",
        "--webhook-url",
        &url,
    ])
    .expect("recover flags");
    let recover = tokio::spawn(cartflow_recover::run(
        recover_config,
        recover_listener,
        stop.clone(),
    ));

    wait_until("the outbox published", Duration::from_secs(60), || async {
        all_published(&client).await
    })
    .await;
    let outcomes = read_outcomes(&env.kafka(), &topic).await;
    let carts = by_cart(&outcomes);
    assert_eq!(
        kinds(&carts["late"]),
        [
            (OutcomeKind::Abandoned, 1),
            (OutcomeKind::Reopened, 2),
            (OutcomeKind::Purchased, 3)
        ]
    );
    let abandoned = carts["late"][0];
    assert_eq!(abandoned.items.len(), 1);
    assert_eq!(abandoned.items[0].quantity, 2);
    assert_eq!(Decimal::from(abandoned.value), Decimal::from(1390));
    assert_eq!(abandoned.event_ids.len(), 2);
    let bought = carts["late"][2];
    assert_eq!(Decimal::from(bought.value), Decimal::from(695));
    assert_eq!(bought.event_ids.len(), 3);
    assert_eq!(carts["small"].len(), 1);
    assert_eq!(
        kinds(&carts["back"]),
        [(OutcomeKind::Abandoned, 1), (OutcomeKind::Reopened, 2)]
    );
    assert!(!carts.contains_key("clock"), "an open cart has no outcome");
    assert_topic_matches_analytics_light(&client, &carts).await;

    // The subscriber read all six and sent the one abandoned cart worth 100 or more.
    wait_until(
        "the subscriber read every outcome",
        Duration::from_secs(60),
        || async {
            let Ok(r) = reqwest::get(&recover_metrics).await else {
                return false;
            };
            let body = r.text().await.unwrap_or_default();
            let n = |result: &str| {
                body.lines()
                    .find_map(|l| {
                        l.strip_prefix(&format!(
                            "cartflow_recover_outcomes_total{{result=\"{result}\"}} "
                        ))
                    })
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            n("sent") + n("ignored") == 6
        },
    )
    .await;
    let messages = received.lock().expect("lock").clone();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["cart_key"], "late");
    assert_eq!(messages[0]["value"], "1390.00");
    assert_eq!(messages[0]["outcome_id"], abandoned.outcome_id.to_string());
    stop.cancel();
    relay.await.expect("relay task").expect("relay");
    recover.await.expect("recover task").expect("recover");
    // A clean stop commits what was handled: a restart would send nothing again.
    let left = left_for_group(&env.kafka(), &topic, &group).await;
    assert!(left.is_empty(), "{} outcomes left uncommitted", left.len());
    env.cleanup().await;
}

/// The few carts of the late-purchase test against the analytics: `small` abandoned, `late`
/// purchased.
async fn assert_topic_matches_analytics_light(
    client: &Client,
    carts: &HashMap<String, Vec<&CartOutcome>>,
) {
    assert_eq!(
        latest(carts, OutcomeKind::Abandoned),
        keys(client, "SELECT cart_key FROM v_abandoned_carts").await
    );
    assert_eq!(
        latest(carts, OutcomeKind::Purchased),
        keys(
            client,
            "SELECT cart_key FROM analytics.carts WHERE purchases > 0"
        )
        .await
    );
}

/// Outcomes switched on over an existing projection, then another `--abandon-after`: the start
/// compares every cart and declares what no step could have (a start that changes neither
/// skips the comparison: every step compared what it could have changed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_start_with_outcomes_newly_on_or_another_clock_declares_what_changed() {
    let env = TestEnv::new().await;
    let mut client = env.client().await;
    insert_carts(&client, 0, 400).await;
    // The checkpoint has outcomes off until a projector with them on starts.
    project_everything(&mut client, 5_000).await;
    let outbox = "SELECT count(*) FROM outcomes.outbox";
    assert_eq!(count(&client, outbox).await, 0, "outcomes were off");
    let purchased = count(
        &client,
        "SELECT count(*) FROM analytics.carts WHERE purchases > 0",
    )
    .await;
    let decided = count(
        &client,
        "SELECT count(*) FROM analytics.carts c, analytics.checkpoint k \
         WHERE purchases > 0 OR last_at <= k.watermark - interval '30 minutes'",
    )
    .await;
    assert!(decided > purchased && purchased > 0);

    let projector = start_projector(&env).await;
    wait_until(
        "every decided cart declared at start",
        Duration::from_secs(30),
        || async { count(&client, outbox).await == decided },
    )
    .await;
    drop(projector);

    // Ten hours: every cart without a purchase is open again.
    let mut flags = projector_flags(&env.database_url, 300);
    flags.extend(["--abandon-after".to_owned(), "10h".to_owned()]);
    let projector = Service::start(PROJECTOR, &flags).await;
    let reopened = "SELECT count(*) FROM outcomes.outbox WHERE outcome = 'reopened'";
    wait_until(
        "the carts the longer clock opens again reopened",
        Duration::from_secs(30),
        || async { count(&client, reopened).await == decided - purchased },
    )
    .await;
    wait_until("active", Duration::from_secs(30), || async {
        projector.metric("cartflow_projector_active").await == Some(1.0)
    })
    .await;
    drop(projector);
    assert_eq!(count(&client, outbox).await, 2 * decided - purchased);
    env.cleanup().await;
}
