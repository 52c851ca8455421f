//! The crate's one error type. Driver errors (PostgreSQL, the pool, Kafka) are wrapped once,
//! in [`cartflow_common::Error`], which also classifies them.

use cartflow_common::retry::Class;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Common(#[from] cartflow_common::Error),
    #[error("A batch write task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

cartflow_common::wrap_driver_errors!(Error);

impl Error {
    /// Whether retrying later may succeed (the database or broker was away), as opposed to
    /// work that fails the same way until someone changes something.
    pub fn class(&self) -> Class {
        match self {
            Error::Common(e) => e.class(),
            Error::Task(_) => Class::Permanent,
        }
    }

    /// The PostgreSQL error inside, if this is one.
    pub fn database(&self) -> Option<&tokio_postgres::Error> {
        match self {
            Error::Common(e) => e.database(),
            Error::Task(_) => None,
        }
    }

    /// A PostgreSQL refusal as the operator should read it: SQLSTATE, PostgreSQL's own
    /// message, and what to do (tokio-postgres's Display says only "db error").
    pub fn explained(self, url: &cartflow_common::DatabaseUrl) -> Error {
        match self {
            Error::Common(e) => Error::Common(e.explained(url)),
            other => other,
        }
    }
}
