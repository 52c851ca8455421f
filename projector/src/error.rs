//! The crate's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Common(#[from] cartflow_common::Error),
    #[error("PostgreSQL error: {0}")]
    Database(#[from] tokio_postgres::Error),
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
    #[error("The PostgreSQL connection closed; restart the projector (a standby takes over)")]
    ConnectionLost,
}

impl Error {
    /// Errors a reconnect can cure: the server went away or restarted.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::ConnectionLost => true,
            Error::Database(e) => {
                e.is_closed()
                    || e.as_db_error().is_none_or(|d| {
                        let code = d.code().code();
                        // Connection exceptions, admin shutdown, cannot connect now.
                        code.starts_with("08") || code.starts_with("57P")
                    })
            }
            Error::Common(cartflow_common::Error::DatabaseUnreachable { .. }) => true,
            Error::Common(cartflow_common::Error::Database(e)) => {
                e.is_closed() || e.as_db_error().is_none()
            }
            _ => false,
        }
    }
}
