//! The cartflow projector: the conversion analytics, kept current from the raw event log.
//!
//! - [`log`] reads the log in settled chunks, by writing transaction;
//! - [`delta`] sums a chunk in memory (every aggregate is order-independent);
//! - [`store`] adds a delta to one generation of the aggregate tables;
//! - [`apply`] is one step: chunk, delta and checkpoint in one transaction (exactly once);
//! - [`run`] keeps the live analytics current: one active projector holds an advisory lock,
//!   others wait as hot standbys; it wakes on the consumer's NOTIFY and NOTIFYs in turn;
//! - [`rebuild`] recomputes everything into fresh tables and swaps them in atomically.

pub mod apply;
pub mod config;
pub mod delta;
mod error;
pub mod log;
pub mod metrics;
pub mod rebuild;
mod run;
pub mod store;

pub use config::{Cli, Command, Config, RebuildArgs};
pub use error::Error;
pub use run::run;
