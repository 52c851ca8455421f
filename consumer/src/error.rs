//! The crate's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Common(#[from] cartflow_common::Error),
    #[error("Kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("PostgreSQL error: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("PostgreSQL pool error: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("A batch write task failed: {0}")]
    Task(String),
}

impl Error {
    /// Whether retrying later may succeed (the database or broker was away), as opposed to a
    /// statement that will fail the same way every time.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Database(e) => e.as_db_error().is_none_or(|db| {
                let code = db.code().code();
                // Connection exceptions, resources, operator intervention (shutdown, restart).
                code.starts_with("08") || code.starts_with("53") || code.starts_with("57")
            }),
            Error::Pool(_) => true,
            Error::Kafka(_) | Error::Common(_) | Error::Task(_) => false,
        }
    }
}
