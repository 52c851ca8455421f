//! The crate's one error type.

use crate::contract::SchemaRef;

/// Everything that can go wrong encoding, decoding or validating a contract type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Message is empty")]
    Empty,
    #[error(
        "Message starts with {0:#04x}, which is neither the single-object marker C3 01 nor the Confluent magic byte 00"
    )]
    BadMarker(u8),
    #[error("Message is {len} bytes long, shorter than its {needed}-byte header")]
    TruncatedHeader { len: usize, needed: usize },
    #[error("Unknown schema fingerprint {0:#018x}")]
    UnknownFingerprint(u64),
    #[error("Unknown schema id {0}")]
    UnknownSchemaId(u32),
    #[error("Message holds a {found} but a {expected} was expected")]
    UnexpectedSchema {
        expected: &'static str,
        found: &'static str,
    },
    #[error("Avro body ends too early: {0}")]
    TruncatedBody(String),
    #[error("Avro body is followed by {0} bytes of trailing garbage")]
    TrailingBytes(usize),
    #[error("Enum index {index} is not a symbol of {enum_name}")]
    BadEnumSymbol {
        enum_name: &'static str,
        index: usize,
    },
    #[error("Avro body is invalid: {0}")]
    InvalidBody(String),
    #[error("Field {field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("Avro encoding failed: {0}")]
    Encode(String),
    #[error("No Confluent schema id is registered for {0}")]
    MissingSchemaId(SchemaRef),
    #[error("Schema id {id} is not a version of a contract record: {reason}")]
    UnsupportedSchema { id: u32, reason: String },
}

impl Error {
    /// A stable, low-cardinality label for metrics and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Empty => "empty",
            Error::BadMarker(_) | Error::TruncatedHeader { .. } => "bad_header",
            Error::UnknownFingerprint(_) => "unknown_fingerprint",
            Error::UnknownSchemaId(_) => "unknown_schema_id",
            Error::UnexpectedSchema { .. } => "unexpected_schema",
            Error::TruncatedBody(_) => "truncated_body",
            Error::TrailingBytes(_) => "trailing_bytes",
            Error::BadEnumSymbol { .. } => "bad_enum_symbol",
            Error::InvalidBody(_) => "invalid_body",
            Error::InvalidField { .. } => "invalid_field",
            Error::Encode(_) => "encode",
            Error::MissingSchemaId(_) => "missing_schema_id",
            Error::UnsupportedSchema { .. } => "unsupported_schema",
        }
    }

    pub(crate) fn field(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidField {
            field,
            reason: reason.into(),
        }
    }
}
