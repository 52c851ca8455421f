//! A missing service gets a message that says how to start it. Port 1 on loopback is closed
//! on any machine, so these need no running service.

use std::time::Duration;

use cartflow_common::DatabaseUrl;
use cartflow_common::config::{KafkaArgs, PoolArgs};

#[tokio::test]
async fn unreachable_postgres_says_how_to_start_it() {
    let url: DatabaseUrl = "postgres://postgres:pw@127.0.0.1:1/cartflow"
        .parse()
        .expect("a valid URL");
    let err = cartflow_common::db::pool(&url, PoolArgs::default())
        .await
        .expect_err("nothing listens on port 1");
    let msg = err.to_string();
    assert!(msg.contains("PostgreSQL is not reachable at"), "{msg}");
    assert!(
        msg.contains("deploy/local/run.sh") && msg.contains("DATABASE_URL"),
        "{msg}"
    );
    assert!(!msg.contains(":pw@"), "the password is redacted: {msg}");
}

#[tokio::test]
async fn unreachable_kafka_says_how_to_start_it() {
    let args = KafkaArgs {
        brokers: "127.0.0.1:1".into(),
    };
    let err = cartflow_common::kafka::check_reachable(&args, Duration::from_secs(2))
        .await
        .expect_err("nothing listens on port 1");
    let msg = err.to_string();
    assert!(
        msg.contains("No Kafka broker answers at 127.0.0.1:1"),
        "{msg}"
    );
    assert!(msg.contains("KAFKA_BROKERS"), "{msg}");
}

#[tokio::test]
async fn a_bad_database_url_names_itself() {
    // Parsed where it enters: a bad URL never reaches the pool.
    let err = "postgres://h:notaport/db"
        .parse::<DatabaseUrl>()
        .expect_err("bad url");
    assert!(
        err.to_string().contains("not a valid PostgreSQL URL"),
        "{err}"
    );
}
