//! The cartflow event contract.
//!
//! Everything that crosses Kafka is defined here: the Avro schemas (the `.avsc` files under
//! `schemas/avro/`), the Rust types they map to, and the two wire formats a message can use:
//!
//! * Avro single-object encoding (`C3 01`, an 8-byte little-endian CRC-64-AVRO fingerprint of
//!   the writer schema's Parsing Canonical Form, computed as the specification says
//!   ([`canonical`]), then the Avro body). The default: every message names its schema without
//!   a registry. The fingerprints apache-avro computed before are still read.
//! * The Confluent wire format (`00`, a 4-byte big-endian schema id, then the body), used when
//!   a schema registry hands out ids.
//!
//! [`Codec`] encodes and decodes both, resolving old and new writer schemas to the reader's
//! schema (a v2 reader reads v1 data and the reverse). Decoding never panics: every bad input
//! comes back as a typed [`Error`] whose [`Error::reason`] is a stable, low-cardinality label
//! that the consumer uses for its dead-letter metrics.

pub mod canonical;
mod cart_event;
mod cart_outcome;
mod codec;
mod contract;
mod customer;
mod error;
mod fast;
mod money;
mod product;
mod record;

pub use cart_event::{Action, CartEvent};
pub use cart_outcome::{CartOutcome, OutcomeItem, OutcomeKind};
pub use codec::{Codec, ConfluentIds, WireFormat, Writer};
pub use contract::{Contract, SchemaRef};
pub use customer::Customer;
pub use error::Error;
pub use money::Money;
pub use product::{Product, Rating};
pub use record::Record;
