//! Service plumbing shared by every cartflow binary.
//!
//! Each service is a library with a thin `main.rs`; what they all need lives here, in one
//! place: the clap argument groups for Kafka, PostgreSQL and logging ([`config`]), tracing set
//! up once ([`telemetry`]), the `/metrics` and `/healthz` endpoint ([`ops`]), SIGINT/SIGTERM
//! as a [`CancellationToken`](tokio_util::sync::CancellationToken) ([`shutdown`]), the
//! PostgreSQL pool and the embedded migrations ([`db`]), and Kafka client settings and topic
//! creation ([`kafka`]); the end-to-end latency histogram every stage reports into
//! ([`latency`]); which failures to retry, and how ([`retry`]); the NOTIFY channels between
//! services and their payloads ([`channels`]).

pub mod channels;
pub mod config;
mod database_url;
pub mod db;
mod error;
pub mod kafka;
pub mod latency;
pub mod metrics;
pub mod ops;
pub mod registry;
pub mod retry;
pub mod shutdown;
pub mod telemetry;

pub use database_url::DatabaseUrl;
pub use error::Error;

/// The driver crates whose errors [`wrap_driver_errors!`] converts, re-exported so the macro
/// works in a crate that does not depend on all of them.
#[doc(hidden)]
pub mod drivers {
    pub use deadpool_postgres;
    pub use rdkafka;
    pub use tokio_postgres;
}
