//! The producer's flags. Each one also reads the environment variable shown in `--help`.

use std::net::SocketAddr;

use cartflow_common::config::{KafkaArgs, LogArgs, TopicArgs};
use clap::Parser;

/// Simulated shoppers: publishes the catalogue, customers and cart events to Kafka.
#[derive(Debug, Clone, Parser)]
#[command(name = "cartflow-producer", version)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub log: LogArgs,

    /// Where the product catalogue comes from (a FakeStore-shaped JSON array). When it cannot
    /// be fetched, a generated catalogue is used instead.
    #[arg(
        long,
        env = "CARTFLOW_CATALOGUE_URL",
        default_value = "https://fakestoreapi.com/products"
    )]
    pub catalogue_url: String,
    /// Seconds to wait for the catalogue, per attempt (three attempts).
    #[arg(long, env = "CARTFLOW_CATALOGUE_TIMEOUT_SECS", default_value_t = 5)]
    pub catalogue_timeout_secs: u64,

    /// Number of simulated customers.
    #[arg(long, env = "CARTFLOW_CUSTOMERS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub customers: u32,
    /// Cart events per second; 0 publishes as fast as the broker takes them.
    #[arg(long, env = "CARTFLOW_RATE", default_value_t = 20.0, value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: f64,
    /// Stop after this many cart events (default: run until stopped).
    #[arg(long, env = "CARTFLOW_COUNT")]
    pub count: Option<u64>,
    /// Seed of the simulation: the same seed gives the same customers and events (event ids
    /// included); only timestamps follow the clock. Default: a random seed, logged at start.
    #[arg(long, env = "CARTFLOW_SEED")]
    pub seed: Option<u64>,
    /// Avro schema version of cart events (2 adds session, user agent and IP address).
    #[arg(long, env = "CARTFLOW_SCHEMA_VERSION", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub schema_version: u8,
    /// Partitions of the cart-events topic when the producer creates it.
    #[arg(long, env = "CARTFLOW_PARTITIONS", default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=1024))]
    pub partitions: i32,
    /// Address of the /metrics and /healthz endpoint (port 0 picks a free port).
    #[arg(long, env = "CARTFLOW_METRICS_ADDR", default_value = "127.0.0.1:9101")]
    pub metrics_addr: SocketAddr,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of events per second"))?;
    if rate.is_finite() && rate >= 0.0 {
        Ok(rate)
    } else {
        Err(format!("{s} must be 0 (unthrottled) or a positive number"))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Config;

    #[test]
    fn defaults_match_the_documentation() {
        let c = Config::try_parse_from(["cartflow-producer"]).unwrap();
        assert_eq!(c.customers, 100);
        assert_eq!(c.rate, 20.0);
        assert_eq!(c.partitions, 6);
        assert_eq!(c.schema_version, 2);
        assert_eq!(c.kafka.brokers, "127.0.0.1:9092");
    }

    #[test]
    fn a_bad_flag_says_which_and_why() {
        let err = Config::try_parse_from(["cartflow-producer", "--rate", "-3"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("--rate") && msg.contains("positive"), "{msg}");
        let err =
            Config::try_parse_from(["cartflow-producer", "--schema-version", "3"]).unwrap_err();
        assert!(err.to_string().contains("--schema-version"), "{err}");
    }
}
