//! Every service serves /healthz and /metrics; counters move while a service works.

use std::time::Duration;

use cartflow_tests::{FAKESTORE_PRODUCTS, TestEnv, any_port, serve_catalogue, wait_until};
use clap::Parser;
use tokio_util::sync::CancellationToken;

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// The value of a counter line such as `name{label="x"} 12`, summed over its labels.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_report_health_and_live_counters() {
    let env = TestEnv::new().await;
    let catalogue_url = serve_catalogue(200, FAKESTORE_PRODUCTS).await;
    let mut args = vec!["cartflow-producer".to_owned()];
    args.extend(env.kafka_flags());
    args.extend(["--catalogue-url", &catalogue_url, "live", "--rate", "50"].map(String::from));
    let config = cartflow_producer::Config::try_parse_from(args).expect("flags");
    let producer_ops = any_port().await;
    let producer_url = format!("http://{}", producer_ops.local_addr().expect("addr"));
    let consumer_ops = any_port().await;
    let consumer_url = format!("http://{}", consumer_ops.local_addr().expect("addr"));

    let stop = CancellationToken::new();
    let producer = tokio::spawn(cartflow_producer::run(config, producer_ops, stop.clone()));
    let consumer = tokio::spawn(cartflow_consumer::run(
        env.consumer_config(),
        consumer_ops,
        stop.clone(),
    ));

    for url in [&producer_url, &consumer_url] {
        wait_until(
            "/healthz to answer 200",
            Duration::from_secs(30),
            || async { get(&format!("{url}/healthz")).await.0 == 200 },
        )
        .await;
    }
    // At 50 events/s the producer's window never fills; its counters still move.
    wait_until(
        "delivered events in the producer's metrics",
        Duration::from_secs(20),
        || async {
            counter(
                &get(&format!("{producer_url}/metrics")).await.1,
                "cartflow_producer_events_total",
            ) >= 50.0
        },
    )
    .await;
    wait_until(
        "stored events in the consumer's metrics",
        Duration::from_secs(20),
        || async {
            counter(
                &get(&format!("{consumer_url}/metrics")).await.1,
                "cartflow_consumer_stored_total",
            ) >= 50.0
        },
    )
    .await;
    // Lag per partition comes from librdkafka's statistics, every 5 s.
    wait_until(
        "consumer lag per partition",
        Duration::from_secs(30),
        || async {
            get(&format!("{consumer_url}/metrics"))
                .await
                .1
                .lines()
                .any(|l| {
                    l.starts_with("cartflow_consumer_lag_messages{")
                        && l.contains("topic=\"cart_events\"")
                })
        },
    )
    .await;
    let (_, text) = get(&format!("{producer_url}/metrics")).await;
    assert!(
        text.contains("cartflow_producer_send_seconds_bucket"),
        "latency histogram exported"
    );
    assert!(
        text.contains("process_resident_memory_bytes"),
        "process metrics exported"
    );

    stop.cancel();
    producer
        .await
        .expect("task")
        .expect("producer exits cleanly");
    consumer
        .await
        .expect("task")
        .expect("consumer exits cleanly");
    env.cleanup().await;
}
