//! Argument groups shared by the services. Every flag also reads an environment variable.

use clap::{Args, ValueEnum};

use crate::DatabaseUrl;

/// The broker a service uses when neither `--kafka-brokers` nor `KAFKA_BROKERS` says (the same
/// as deploy/local/defaults.env, which a test checks).
pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:9092";
/// The database a service uses when neither `--database-url` nor `DATABASE_URL` says.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/cartflow";

/// Where the Kafka brokers are.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated host:port pairs.
    #[arg(
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        default_value = DEFAULT_KAFKA_BROKERS
    )]
    pub brokers: String,
}

/// The names of cartflow's topics.
#[derive(Debug, Clone, Args)]
pub struct TopicArgs {
    /// Topic of cart events (key = customer_id).
    #[arg(
        long,
        env = "CARTFLOW_CART_EVENTS_TOPIC",
        default_value = "cart-events"
    )]
    pub cart_events_topic: String,
    /// Compacted topic of products (key = product_id).
    #[arg(long, env = "CARTFLOW_PRODUCTS_TOPIC", default_value = "products")]
    pub products_topic: String,
    /// Compacted topic of customers (key = customer_id).
    #[arg(long, env = "CARTFLOW_CUSTOMERS_TOPIC", default_value = "customers")]
    pub customers_topic: String,
    /// Dead-letter topic: messages the consumer cannot store, with headers saying why.
    #[arg(long, env = "CARTFLOW_DLQ_TOPIC", default_value = "cart-events.dlq")]
    pub dlq_topic: String,
}

impl TopicArgs {
    /// The default topic names, with an optional prefix (tests isolate themselves this way).
    pub fn with_prefix(prefix: &str) -> Self {
        TopicArgs {
            cart_events_topic: format!("{prefix}cart-events"),
            products_topic: format!("{prefix}products"),
            customers_topic: format!("{prefix}customers"),
            dlq_topic: format!("{prefix}cart-events.dlq"),
        }
    }
}

/// The topic of cart outcomes, which the relay publishes and subscribers read.
#[derive(Debug, Clone, Args)]
pub struct OutcomesTopicArgs {
    /// Topic of cart outcomes (key = customer_id).
    #[arg(long, env = "CARTFLOW_OUTCOMES_TOPIC", default_value = "cart-outcomes")]
    pub outcomes_topic: String,
}

/// Where the schema registry is, if there is one.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Base URL of a Confluent-compatible schema registry's API (e.g.
    /// http://127.0.0.1:8081/apis/ccompat/v6 for Apicurio, http://redpanda:8081 for
    /// Redpanda). Set: the producer registers its schemas there (subject `<topic>-value`,
    /// BACKWARD compatibility) and writes the Confluent framing, and the consumer and the
    /// gateway's feed look up the schema ids they do not know. Unset (the default): Avro
    /// single-object encoding, no registry.
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: Option<String>,
}

/// Where PostgreSQL is.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL (or libpq key=value settings).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        value_parser = DatabaseUrlParser
    )]
    pub database_url: DatabaseUrl,
}

/// Parses `--database-url` once, at the edge. Its error never repeats the value (clap's own
/// would, password and all).
#[derive(Debug, Clone, Copy)]
pub struct DatabaseUrlParser;

impl clap::builder::TypedValueParser for DatabaseUrlParser {
    type Value = DatabaseUrl;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<DatabaseUrl, clap::Error> {
        use clap::error::ErrorKind;
        let text = value.to_str().ok_or_else(|| {
            clap::Error::raw(
                ErrorKind::InvalidUtf8,
                "--database-url (DATABASE_URL) is not valid UTF-8\n",
            )
        })?;
        text.parse().map_err(|e| {
            clap::Error::raw(
                ErrorKind::ValueValidation,
                format!("--database-url (DATABASE_URL): {e}\n"),
            )
        })
    }
}

/// How many connections a service with a pool keeps (the consumer, the gateway). The
/// projector, `migrate` and `rebuild` use one connection each and do not take the flag.
#[derive(Debug, Clone, Copy, Args)]
pub struct PoolArgs {
    /// Most connections the service opens to PostgreSQL.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub database_pool_size: u16,
}

impl Default for PoolArgs {
    fn default() -> Self {
        PoolArgs {
            database_pool_size: 4,
        }
    }
}

/// How the service logs.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log filter, in tracing's EnvFilter syntax (for example `info,cartflow_consumer=debug`).
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub filter: String,
    /// Log line format.
    #[arg(long, env = "CARTFLOW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `30m`, `2h`, `90s`, `1h30m`: a number and a unit, repeated.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e} (expected a duration such as 30m, 2h or 90s)"))?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_scripts_defaults() {
        let file = include_str!("../../deploy/local/defaults.env");
        let value = |key: &str| {
            file.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("{key} in deploy/local/defaults.env"))
        };
        assert_eq!(value("KAFKA_BROKERS"), DEFAULT_KAFKA_BROKERS);
        assert_eq!(value("DATABASE_URL"), DEFAULT_DATABASE_URL);
    }
}
