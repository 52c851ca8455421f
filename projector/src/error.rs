//! The crate's one error type.

use cartflow_common::retry::Class;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Common(#[from] cartflow_common::Error),
    #[error("events holds an action the projector does not know: {0:?}")]
    UnknownAction(String),
    #[error("Another rebuild is running on this database; wait for it to finish")]
    RebuildRunning,
    #[error("Interrupted by a shutdown signal; the live analytics are unchanged")]
    Interrupted,
    #[error(
        "The analytics tables are missing: apply the migrations (cartflow-consumer migrate, or \
         start the projector without --skip-migrations)"
    )]
    NotMigrated,
    #[error(
        "{schema}.checkpoint has no row (emptied by hand?), so the projector cannot tell which \
         events its analytics hold; run `cartflow-projector rebuild`, which recomputes them from \
         the log and writes a fresh checkpoint"
    )]
    NoCheckpoint { schema: String },
    #[error("The PostgreSQL connection closed; restart the service (a standby takes over)")]
    ConnectionLost,
    #[error("The log's binary COPY stream is malformed: {0}")]
    CopyFormat(String),
    #[error("A cart outcome could not be encoded: {0}")]
    Encode(String),
    #[error("Another relay is publishing the outbox of this database")]
    RelayRunning,
}

cartflow_common::wrap_driver_errors!(Error);

impl Error {
    /// Whether a reconnect may cure it (the server went away or restarted) or it fails the
    /// same way until someone acts. One rule for every service: [`cartflow_common::retry`].
    pub fn class(&self) -> Class {
        match self {
            Error::ConnectionLost => Class::Transient,
            Error::Common(e) => e.class(),
            _ => Class::Permanent,
        }
    }

    /// A PostgreSQL refusal as the operator should read it: SQLSTATE, PostgreSQL's own
    /// message and what to do (tokio-postgres's Display says only "db error").
    pub fn explained(self, url: &cartflow_common::DatabaseUrl) -> Error {
        match self {
            Error::Common(e) => Error::Common(e.explained(url)),
            other => other,
        }
    }
}
