//! The crate's one error type.

use cartflow_common::retry::{self, Class};

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
    Task(#[from] tokio::task::JoinError),
}

impl Error {
    /// Whether retrying later may succeed (the database or broker was away), as opposed to
    /// work that fails the same way until someone changes something. One rule for every
    /// service: [`cartflow_common::retry`].
    pub fn class(&self) -> Class {
        match self {
            Error::Database(e) | Error::Pool(deadpool_postgres::PoolError::Backend(e)) => {
                retry::classify_db(e)
            }
            Error::Common(cartflow_common::Error::Database(e)) => retry::classify_db(e),
            Error::Pool(_) => Class::Transient,
            Error::Kafka(e) => retry::classify_kafka(e),
            Error::Common(_) | Error::Task(_) => Class::Permanent,
        }
    }

    /// A PostgreSQL refusal as the operator should read it: SQLSTATE, PostgreSQL's own
    /// message, and what to do (tokio-postgres's Display says only "db error").
    pub fn explained(self, url: &str) -> Error {
        let db = match &self {
            Error::Database(e) | Error::Pool(deadpool_postgres::PoolError::Backend(e)) => e,
            Error::Common(cartflow_common::Error::Database(e)) => e,
            _ => return self,
        };
        if db.as_db_error().is_none() {
            return self;
        }
        Error::Common(cartflow_common::Error::database_connect(url, db))
    }
}
