//! Argument groups shared by the services. Every flag also reads an environment variable.

use clap::{Args, ValueEnum};

/// Where the Kafka brokers are.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated host:port pairs.
    #[arg(
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
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

/// Where PostgreSQL is.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/cartflow"
    )]
    pub database_url: String,
    /// Most connections the service opens to PostgreSQL.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub database_pool_size: u16,
}

impl DatabaseArgs {
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseArgs {
            database_url: url.into(),
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
