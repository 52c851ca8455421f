//! Leadership by PostgreSQL advisory lock: one active instance per database (the projector,
//! the relay), the others waiting as hot standbys. The lock belongs to the session, so when the
//! process or its connection dies PostgreSQL frees it and a standby takes over.

use std::time::Duration;

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::Error;

/// Waits until this session holds advisory lock `lock`, trying every `poll`; `who` names the
/// service in the standby log line. Returns false when shut down first.
pub(crate) async fn acquire(
    client: &Client,
    lock: i64,
    poll: Duration,
    who: &str,
    shutdown: &CancellationToken,
) -> Result<bool, Error> {
    let mut announced = false;
    loop {
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&lock])
            .await?;
        if row.get::<_, bool>(0) {
            return Ok(true);
        }
        if !announced {
            info!("Another {who} is active; waiting as standby.");
            announced = true;
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = shutdown.cancelled() => return Ok(false),
        }
    }
}
