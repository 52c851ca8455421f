//! The crate's one error type. Messages for missing services say how to start them.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "PostgreSQL is not reachable at {url}: {source}. Start it (deploy/local/run.sh starts \
         one) or point DATABASE_URL at a running server"
    )]
    DatabaseUnreachable {
        url: String,
        /// The driver's or the pool's error, kept whole for its chain of causes.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("PostgreSQL at {url} refused: {message} (SQLSTATE {code}); {hint}")]
    DatabaseRefused {
        url: String,
        code: String,
        message: String,
        hint: &'static str,
    },
    #[error("{url} is not a valid PostgreSQL URL: {reason}")]
    DatabaseUrl { url: String, reason: String },
    #[error("PostgreSQL error: {}", with_causes(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error("PostgreSQL pool error: {}", with_causes(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("Migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error(
        "The database at {url} lacks migrations: it has {have}, this build needs up to \
         V{need}. Apply them with `cartflow-consumer migrate` (or start without \
         --skip-migrations)"
    )]
    NotMigrated {
        url: String,
        have: String,
        need: i32,
    },
    #[error(
        "No Kafka broker answers at {brokers}: {reason}. Start one (deploy/local/run.sh starts \
         Apache Kafka) or point KAFKA_BROKERS at a running broker"
    )]
    KafkaUnreachable { brokers: String, reason: String },
    #[error("Kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(
        "No schema registry answers at {url}: {source}. Start one (deploy/local/run.sh with \
         SCHEMA_REGISTRY_URL=http://127.0.0.1:8081/apis/ccompat/v6 starts Apicurio Registry) or \
         point SCHEMA_REGISTRY_URL at a running registry's Confluent API"
    )]
    RegistryUnreachable { url: String, source: reqwest::Error },
    #[error(
        "The schema registry at {url} refused (HTTP {status}, error code {error_code}): {message}"
    )]
    RegistryRefused {
        url: String,
        status: u16,
        error_code: i64,
        message: String,
    },
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

/// `e` and its causes on one line. The driver's own message for a refusal is only "db error",
/// with what PostgreSQL said (and its hint) in the cause: without it a log showed "PostgreSQL
/// error: db error" for a missing function.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string().replace('\n', "; "));
        cause = c.source();
    }
    text
}

impl Error {
    /// Whether retrying later may succeed: the one rule every service uses
    /// ([`crate::retry`]).
    pub fn class(&self) -> crate::retry::Class {
        use crate::retry::{self, Class};
        match self {
            Error::Database(e) | Error::Pool(deadpool_postgres::PoolError::Backend(e)) => {
                retry::classify_db(e)
            }
            Error::Pool(_) | Error::DatabaseUnreachable { .. } | Error::KafkaUnreachable { .. } => {
                Class::Transient
            }
            Error::Kafka(e) => retry::classify_kafka(e),
            Error::RegistryUnreachable { .. } => Class::Transient,
            Error::RegistryRefused { status, .. } if *status >= 500 => Class::Transient,
            _ => Class::Permanent,
        }
    }

    /// The PostgreSQL error inside, if this is one.
    pub fn database(&self) -> Option<&tokio_postgres::Error> {
        match self {
            Error::Database(e) | Error::Pool(deadpool_postgres::PoolError::Backend(e)) => Some(e),
            _ => None,
        }
    }

    /// A refusal PostgreSQL explained (SQLSTATE, its message) as the operator should read it,
    /// with what to do; anything else as it is.
    pub fn explained(self, url: &crate::DatabaseUrl) -> Error {
        match self {
            Error::Database(e) | Error::Pool(deadpool_postgres::PoolError::Backend(e))
                if e.as_db_error().is_some() =>
            {
                Error::database_connect(url, e)
            }
            other => other,
        }
    }

    /// A connection or pool error as the operator should read it: a server that answered and
    /// said no (a wrong password, a missing database) is not "unreachable".
    pub fn database_connect(url: &crate::DatabaseUrl, e: tokio_postgres::Error) -> Error {
        match e.as_db_error() {
            Some(db) => Error::DatabaseRefused {
                url: url.to_string(),
                code: db.code().code().to_owned(),
                message: db.message().to_owned(),
                hint: crate::retry::db_hint(db.code().code()),
            },
            None => Error::DatabaseUnreachable {
                url: url.to_string(),
                source: Box::new(e),
            },
        }
    }
}

/// Gives a service's error enum (which wraps this one as `Common`) the conversions from the
/// drivers' errors, so each is wrapped once, in this type, whatever the crate.
#[macro_export]
macro_rules! wrap_driver_errors {
    ($error:ty) => {
        impl From<$crate::drivers::tokio_postgres::Error> for $error {
            fn from(e: $crate::drivers::tokio_postgres::Error) -> Self {
                Self::Common(e.into())
            }
        }
        impl From<$crate::drivers::deadpool_postgres::PoolError> for $error {
            fn from(e: $crate::drivers::deadpool_postgres::PoolError) -> Self {
                Self::Common(e.into())
            }
        }
        impl From<$crate::drivers::rdkafka::error::KafkaError> for $error {
            fn from(e: $crate::drivers::rdkafka::error::KafkaError) -> Self {
                Self::Common(e.into())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_keeps_the_cause_it_reports() {
        let e = Error::DatabaseUnreachable {
            url: "postgres://cartflow@127.0.0.1:1/cartflow".into(),
            source: Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            )),
        };
        let cause = std::error::Error::source(&e).expect("the cause is kept");
        assert_eq!(cause.to_string(), "connection refused");
        assert!(e.to_string().contains("connection refused"), "{e}");
    }
}
