//! The cartflow producer: simulated shoppers.
//!
//! It loads the product catalogue ([`catalogue`]: the FakeStore API, or a generated fallback
//! when that cannot be reached), makes customers ([`customers`]), publishes both to their
//! compacted topics, and then publishes cart events from the shopper simulation
//! ([`simulate`]) through an idempotent Kafka producer ([`publish`]). [`run`] is the whole
//! service; `main.rs` only parses flags and wires signals.

pub mod catalogue;
pub mod config;
pub mod customers;
mod error;
pub mod metrics;
pub mod publish;
mod run;
pub mod simulate;

pub use config::Config;
pub use error::Error;
pub use run::{Report, run};
