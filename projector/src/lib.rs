//! The cartflow projector: the conversion analytics, kept current from the raw event log.
//!
//! - [`log`] reads the log in settled chunks, by writing transaction;
//! - [`cents`] is money as whole cents, read from and written to `numeric` directly;
//! - [`delta`] sums a chunk in memory (every aggregate is order-independent);
//! - [`store`] adds a delta to one generation of the aggregate tables;
//! - [`apply`] is one step: chunk, delta and checkpoint in one transaction (exactly once);
//! - [`checkpoint`] is where a step starts, and where it moves the watermark and floors;
//! - [`sql`] keeps a connection's statements prepared, so a step does not re-plan them;
//! - [`run`] keeps the live analytics current: one active projector holds an advisory lock,
//!   others wait as hot standbys; it wakes on the consumer's NOTIFY and NOTIFYs in turn;
//! - [`outcome`] decides what became of each cart and writes it to the outbox in the step;
//! - [`relay`] publishes the outbox to Kafka, exactly once (`cartflow-projector relay`);
//! - [`rebuild`] recomputes everything into fresh tables and swaps them in atomically.

pub mod apply;
pub mod cents;
pub mod checkpoint;
pub mod config;
pub mod delta;
mod error;
mod leader;
pub mod log;
pub mod metrics;
pub mod outcome;
pub mod rebuild;
pub mod relay;
mod run;
pub mod sql;
pub mod statistics;
pub mod store;

pub use config::{Cli, Command, Config, RebuildArgs, RelayArgs};
pub use error::Error;
pub use run::run;
