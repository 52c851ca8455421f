//! The cartflow projector: the analytics, kept current from the raw event log.
//!
//! Exactly one projector writes at a time: [`run`] takes a PostgreSQL advisory lock, and a
//! second instance waits as a hot standby until the lock frees. The active one wakes on the
//! consumer's NOTIFY after each stored batch.
//!
//! This is the service's frame (leadership, wake-ups, metrics, shutdown); the aggregates and
//! `rebuild` are built on it by the projector issue.

pub mod config;
mod error;
pub mod metrics;
mod run;

pub use config::Config;
pub use error::Error;
pub use run::run;
