//! The producer's flags. Each one also reads the environment variable shown in `--help`.

use std::net::SocketAddr;

use cartflow_common::config::{KafkaArgs, LogArgs, RegistryArgs, TopicArgs};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The population every run simulates unless `--population-seed` says otherwise.
pub const DEFAULT_POPULATION_SEED: u64 = 1;

/// Simulated shoppers: publishes the catalogue, customers and cart events to Kafka.
///
/// `live` (the default) publishes events stamped now at --rate per second; `backfill` publishes
/// --days of history with event-time stamps as fast as the broker takes them.
#[derive(Debug, Clone, Parser)]
#[command(name = "cartflow-producer", version)]
pub struct Config {
    #[command(subcommand)]
    pub mode: Option<Mode>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
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
    /// Live cart events per second; 0 publishes as fast as the broker takes them.
    #[arg(long, global = true, env = "CARTFLOW_RATE", default_value_t = 20.0, value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: f64,
    /// Stop after this many cart events (default: live runs until stopped, a backfill until
    /// it reaches now).
    #[arg(long, global = true, env = "CARTFLOW_COUNT")]
    pub count: Option<u64>,
    /// Seed of the simulation: the same seed, start time and profile give the same customers
    /// and events, event ids included (live events are stamped with the clock). Default: a
    /// random seed, logged at start.
    #[arg(long, global = true, env = "CARTFLOW_SEED")]
    pub seed: Option<u64>,
    /// Seed of the population: the customers (names, ages, sign-up times) and the shoppers
    /// behind them (value tier, device, address). The same for every run with the same value,
    /// whatever `--seed`, so another run never renames the people already in the log;
    /// changing it publishes other people under the same ids, which the consumer stores as an
    /// update of each customer.
    #[arg(
        long,
        global = true,
        env = "CARTFLOW_POPULATION_SEED",
        default_value_t = 1
    )]
    pub population_seed: u64,
    /// Shopper profile (TOML); default: the shipped profiles/default.toml.
    #[arg(long, global = true, env = "CARTFLOW_PROFILE_FILE")]
    pub profile: Option<PathBuf>,
    /// Print the truth the profile plants (expected abandonment by category, price band, age
    /// group and tier, peak hour, day and month) as JSON, and exit.
    #[arg(long, global = true)]
    pub print_truth: bool,
    /// Sessions sampled to measure the planted truth.
    #[arg(
        long,
        global = true,
        env = "CARTFLOW_TRUTH_SESSIONS",
        default_value_t = 200_000
    )]
    pub truth_sessions: u64,
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

/// How events are timed.
#[derive(Debug, Clone, Copy, PartialEq, Subcommand)]
pub enum Mode {
    /// Events stamped now, at --rate per second (the default).
    Live,
    /// History: --days of events with event-time stamps, as fast as the broker takes them.
    Backfill {
        /// Days of history, ending now.
        #[arg(long, env = "CARTFLOW_BACKFILL_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
        /// Continue live once the backfill reaches now.
        #[arg(long, env = "CARTFLOW_THEN_LIVE")]
        then_live: bool,
        /// End the history here (RFC 3339, e.g. 2026-11-01T00:00:00Z) instead of now. With
        /// --seed, a backfill is then the same byte for byte on every run.
        #[arg(long, env = "CARTFLOW_BACKFILL_UNTIL", value_parser = parse_time)]
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
}

impl Config {
    /// The schema cart events are written with (`--schema-version`).
    pub fn cart_event_schema(&self) -> cartflow_schemas::SchemaRef {
        if self.schema_version == 1 {
            cartflow_schemas::SchemaRef::CartEventV1
        } else {
            cartflow_schemas::SchemaRef::CartEventV2
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode.unwrap_or(Mode::Live)
    }

    /// The profile file, or the shipped default.
    pub fn load_profile(&self) -> Result<crate::profile::Profile, crate::Error> {
        match &self.profile {
            Some(path) => crate::profile::Profile::load(path),
            None => Ok(crate::profile::Profile::default()),
        }
    }
}

fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z ({e})"))
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
