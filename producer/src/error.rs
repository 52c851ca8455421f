//! The crate's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Common(#[from] cartflow_common::Error),
    #[error("Could not encode a {what}: {source}")]
    Encode {
        what: &'static str,
        source: cartflow_schemas::Error,
    },
    #[error("{0}")]
    Catalogue(String),
    #[error("{0}")]
    Truth(String),
    #[error("Invalid profile: {0}")]
    Profile(String),
    #[error("{undelivered} messages were not delivered before the deadline")]
    Undelivered { undelivered: usize },
}

cartflow_common::wrap_driver_errors!(Error);
