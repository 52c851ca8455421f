//! A producer stopped mid-run flushes: every event it reports as sent reaches the log. It runs
//! with `--schema-version 1`, so this also carries v1 events end to end.

use std::time::Duration;

use cartflow_tests::{FAKESTORE_PRODUCTS, TestEnv, any_port, serve_catalogue, wait_until};
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_producer_loses_nothing_it_reported_sent() {
    let env = TestEnv::new().await;
    let catalogue_url = serve_catalogue(200, FAKESTORE_PRODUCTS).await;
    let mut args = vec!["cartflow-producer".to_owned()];
    args.extend(env.kafka_flags());
    args.extend(
        [
            "--catalogue-url",
            &catalogue_url,
            "--rate",
            "0",
            "--schema-version",
            "1",
            "live",
        ]
        .map(String::from),
    );
    let config = cartflow_producer::Config::try_parse_from(args).expect("flags");

    let stop = CancellationToken::new();
    let producer = tokio::spawn(cartflow_producer::run(
        config,
        any_port().await,
        stop.clone(),
    ));
    let consumer_stop = CancellationToken::new();
    let consumer = tokio::spawn(cartflow_consumer::run(
        env.consumer_config(),
        any_port().await,
        consumer_stop.clone(),
    ));
    // Stop the producer while it is publishing at full speed.
    wait_until("events to flow", Duration::from_secs(60), || async {
        env.count("SELECT count(*) FROM events").await > 2_000
    })
    .await;
    stop.cancel();
    let report = tokio::time::timeout(Duration::from_secs(30), producer)
        .await
        .expect("the producer stops within 30 s")
        .expect("task")
        .expect("the producer exits cleanly");
    assert!(report.events > 2_000);

    let expected = report.events as i64;
    env.wait_for_events(expected, Duration::from_secs(60)).await;
    consumer_stop.cancel();
    consumer
        .await
        .expect("task")
        .expect("consumer exits cleanly");
    assert_eq!(
        env.count("SELECT count(*) FROM events").await,
        expected,
        "exactly what was reported"
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM events WHERE session_id IS NOT NULL OR ip_address IS NOT NULL"
        )
        .await,
        0,
        "v1 events carry no session, user agent or address"
    );
    env.cleanup().await;
}
