//! The cartflow consumer: the raw event log.
//!
//! A consumer-group member reads `cart-events`, `customers` and `products`, decodes each
//! message ([`batch`]), and writes a whole batch in one PostgreSQL transaction ([`store`]):
//! events de-duplicated on `event_id`, customers and products upserted (the latest version
//! wins), undecodable or rule-breaking messages kept whole in `dead_letters` (once per offset)
//! and copied to the dead-letter topic ([`dlq`]), which can refuse a copy but never stop the
//! partition. The group's lag and stalls are read from the broker (`lag`).
//! Offsets are committed to Kafka only after that transaction commits ([`run`]), so a crash at
//! any instant loses nothing, and a redelivery duplicates nothing.

pub mod batch;
mod committer;
pub mod config;
mod context;
pub mod dlq;
mod error;
mod lag;
pub mod metrics;
mod run;
pub mod store;
mod write;

pub use config::{Cli, Command, Config, MigrateArgs};
pub use error::Error;
pub use run::run;
