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
pub mod population;
pub mod profile;
pub mod publish;
mod run;
pub mod session;
pub mod simulate;
pub mod truth;

pub use config::Config;
pub use error::Error;
pub use run::{Report, planted_truth, run};
