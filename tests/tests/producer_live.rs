//! Live mode continues the simulated world: after a backfill, the live events pick up where the
//! history ends, keep their simulated timestamps, follow the profile's hour-of-day shape, and
//! are paced by the wall clock at `--speedup` times real time.

use std::time::Duration;

use cartflow_producer::profile::Profile;
use cartflow_tests::{FAKESTORE_PRODUCTS, TestEnv, any_port, serve_catalogue};
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// One simulated day every two seconds.
const SPEEDUP: f64 = 43_200.0;
const UNTIL: &str = "2026-11-02T00:00:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_continues_the_world_at_its_own_shape() {
    let env = TestEnv::new().await;
    let catalogue_url = serve_catalogue(200, FAKESTORE_PRODUCTS).await;
    let mut args = vec!["cartflow-producer".to_owned()];
    args.extend(env.kafka_flags());
    args.extend(
        [
            "--catalogue-url",
            &catalogue_url,
            "--seed",
            "5",
            "--speedup",
            &SPEEDUP.to_string(),
            "--count",
            "90000",
            "backfill",
            "--days",
            "1",
            "--until",
            UNTIL,
            "--then-live",
        ]
        .map(String::from),
    );
    let config = cartflow_producer::Config::try_parse_from(args).expect("flags");
    let consumer_stop = CancellationToken::new();
    let consumer = tokio::spawn(cartflow_consumer::run(
        env.consumer_config(),
        any_port().await,
        consumer_stop.clone(),
    ));
    let report = cartflow_producer::run(config, any_port().await, CancellationToken::new())
        .await
        .expect("the producer runs to --count");
    assert_eq!(report.events, 90_000);
    env.wait_for_events(90_000, Duration::from_secs(120)).await;
    consumer_stop.cancel();
    consumer.await.expect("task").expect("consumer stops");

    let client = env.client().await;
    let until = chrono::DateTime::parse_from_rfc3339(UNTIL)
        .unwrap()
        .to_utc();
    // The live part: simulated time after the backfill's end, no gap at the hand-over.
    let row = client
        .query_one(
            "SELECT count(*), min(\"timestamp\"), max(\"timestamp\"), \
                 (SELECT max(\"timestamp\") FROM events WHERE \"timestamp\" <= $1) \
             FROM events WHERE \"timestamp\" > $1",
            &[&until],
        )
        .await
        .unwrap();
    let live: i64 = row.get(0);
    let (first, last, history_end): (
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    ) = (row.get(1), row.get(2), row.get(3));
    assert!(live > 40_000, "{live} live events");
    assert!(
        first - history_end < chrono::Duration::minutes(5),
        "the live events continue the history: it ends {history_end}, live starts {first}"
    );
    // Paced: the live span of simulated time went out over span / speedup of the producer's
    // clock (each message's Kafka timestamp, `published_at`).
    let span = (last - until).num_milliseconds() as f64 / 1000.0;
    assert!(
        span > 86_400.0,
        "a simulated day or more went live: {span} s"
    );
    let sent_over: f64 = client
        .query_one(
            "SELECT extract(epoch FROM max(published_at) - min(published_at))::float8 \
             FROM events WHERE \"timestamp\" > $1",
            &[&until],
        )
        .await
        .unwrap()
        .get(0);
    let paced = span / SPEEDUP;
    assert!(
        (paced * 0.9..paced * 1.5 + 0.5).contains(&sent_over),
        "{span} s of simulated time went out over {sent_over:.2} s; at {SPEEDUP}x: {paced:.2} s"
    );
    // The live hours keep the profile's shape: their events by hour of day follow its weights.
    let by_hour: Vec<f64> = client
        .query(
            "SELECT h, count(e.*)::float8 FROM generate_series(0, 23) h \
             LEFT JOIN events e ON extract(hour FROM e.\"timestamp\" AT TIME ZONE 'UTC') = h \
                  AND e.\"timestamp\" > $1 AND e.\"timestamp\" <= $1 + interval '1 day' \
             GROUP BY h ORDER BY h",
            &[&until],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(1))
        .collect();
    let weights = Profile::default().traffic.hour_weights;
    let r = correlation(&by_hour, &weights);
    assert!(
        r > 0.9,
        "live events by hour {by_hour:?} against the profile's weights: r = {r:.3}"
    );
    env.cleanup().await;
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}
