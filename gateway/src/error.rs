//! The crate's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Common(#[from] cartflow_common::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("The analytics snapshot is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("The analytics snapshot is malformed: {0}")]
    Snapshot(String),
}

cartflow_common::wrap_driver_errors!(Error);
