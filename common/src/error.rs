//! The crate's one error type. Messages for missing services say how to start them.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "PostgreSQL is not reachable at {url}: {reason}. Start it (deploy/local/run.sh starts \
         one) or point DATABASE_URL at a running server"
    )]
    DatabaseUnreachable { url: String, reason: String },
    #[error("DATABASE_URL {url} is not a valid PostgreSQL URL: {reason}")]
    DatabaseUrl { url: String, reason: String },
    #[error("PostgreSQL error: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("PostgreSQL pool error: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("Migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error(
        "No Kafka broker answers at {brokers}: {reason}. Start one (deploy/local/run.sh starts \
         tansu) or point KAFKA_BROKERS at a running broker"
    )]
    KafkaUnreachable { brokers: String, reason: String },
    #[error("Kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("Could not create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("Could not listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
