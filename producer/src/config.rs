//! The producer's flags. Each one also reads the environment variable shown in `--help`.

use std::net::SocketAddr;

use cartflow_common::config::{KafkaArgs, LogArgs, RegistryArgs, TopicArgs, parse_duration};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The population every run simulates unless `--population-seed` says otherwise.
pub const DEFAULT_POPULATION_SEED: u64 = 1;

/// Simulated shoppers: publishes the catalogue, customers and cart events to Kafka.
///
/// `live` (the default) continues the simulated world in real time from now, sped up to
/// --rate events per second; `backfill` publishes --days of history as fast as the broker
/// takes them.
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
    /// Live mode's target mean rate, in cart events per second: the simulated clock runs as
    /// many times faster than the wall clock as it takes for the profile's traffic, averaged
    /// over the next 7 simulated days, to reach it (the hour, weekday and month shape is kept).
    /// 0 publishes as fast as the broker takes them. Default: 20 (unless --speedup is given).
    #[arg(long, global = true, env = "CARTFLOW_RATE", value_parser = parse_rate, allow_negative_numbers = true, conflicts_with = "speedup")]
    pub rate: Option<f64>,
    /// Live mode's clock: simulated time runs this many times faster than the wall clock
    /// (1 = real time at the profile's own traffic). Replaces --rate.
    #[arg(long, global = true, env = "CARTFLOW_SPEEDUP", value_parser = parse_speedup)]
    pub speedup: Option<f64>,
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
    /// Print the truth of the backfill these flags describe (its seed, window, population and
    /// profile) as JSON, and exit: every quantity the analytics show, each with its expected
    /// value and the sampling error of one run. Needs the `backfill` mode and a --seed (without
    /// one, a random seed is drawn and printed).
    #[arg(long, global = true)]
    pub print_truth: bool,
    /// Simulated runs the truth is measured on (other event seeds, same window and people).
    #[arg(long, global = true, env = "CARTFLOW_TRUTH_REPLICAS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(2..=10_000))]
    pub truth_replicas: u32,
    /// The projector's --abandon-after, which the truth applies to decide open carts.
    #[arg(long, global = true, env = "CARTFLOW_ABANDON_AFTER", default_value = "30m", value_parser = parse_duration)]
    pub abandon_after: std::time::Duration,
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

/// Live mode's target rate when neither --rate nor --speedup is given.
pub const DEFAULT_RATE: f64 = 20.0;

/// How live events are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the broker takes them.
    Unthrottled,
    /// Simulated time runs this many times faster than the wall clock.
    Speedup(f64),
}

/// How events are timed.
#[derive(Debug, Clone, Copy, PartialEq, Subcommand)]
pub enum Mode {
    /// The simulated world from now on, paced by the wall clock (--rate or --speedup).
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

    /// How live mode is paced, given the world's mean events per second of simulated time.
    pub fn pace(&self, world_rate: impl FnOnce() -> f64) -> Pace {
        match (self.speedup, self.rate.unwrap_or(DEFAULT_RATE)) {
            (Some(speedup), _) => Pace::Speedup(speedup),
            (None, 0.0) => Pace::Unthrottled,
            (None, rate) => Pace::Speedup(rate / world_rate().max(f64::MIN_POSITIVE)),
        }
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

fn parse_speedup(s: &str) -> Result<f64, String> {
    let speedup: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number (how many times faster than real time)"))?;
    if speedup.is_finite() && speedup > 0.0 {
        Ok(speedup)
    } else {
        Err(format!("{s} must be a positive number (1 is real time)"))
    }
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

    use super::{Config, Pace};

    #[test]
    fn defaults_match_the_documentation() {
        let c = Config::try_parse_from(["cartflow-producer"]).unwrap();
        assert_eq!(c.customers, 100);
        assert_eq!(c.pace(|| 0.25), Pace::Speedup(80.0));
        assert_eq!(c.partitions, 6);
        assert_eq!(c.schema_version, 2);
        assert_eq!(c.kafka.brokers, "127.0.0.1:9092");
    }

    #[test]
    fn a_bad_flag_says_which_and_why() {
        let err = Config::try_parse_from(["cartflow-producer", "--rate", "-3"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("--rate") && msg.contains("positive"), "{msg}");
        let err = Config::try_parse_from(["cartflow-producer", "--rate", "5", "--speedup", "2"])
            .unwrap_err();
        assert!(err.to_string().contains("--speedup"), "{err}");
        let err = Config::try_parse_from(["cartflow-producer", "--speedup", "0"]).unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
        let err =
            Config::try_parse_from(["cartflow-producer", "--schema-version", "3"]).unwrap_err();
        assert!(err.to_string().contains("--schema-version"), "{err}");
    }
}
